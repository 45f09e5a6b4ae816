"""Freeze one training step of the official PyTorch FOMM as numbers: tests/fixtures/fomm_train_step.npz.

Usage (the official code stays outside this repository; this script imports it and writes numbers only)::

    OFFICIAL_DIR=/path/to/first-order-model python tools/make_fixtures.py

The step is the official ``train.py`` loop body on a batch of two 64 x 64 frames, with every loss
term on: ``GeneratorFullModel`` (modules/model.py), backward, Adam steps of the generator and
keypoint-detector optimizers (``betas = (0.5, 0.999)``, PyTorch's default epsilon), then
``DiscriminatorFullModel`` on the detached prediction, backward, Adam step of the discriminator.
The networks start from the weights of ``tests/fixtures/fomm_tiny.npz``. The perceptual network is
torchvision's VGG19 architecture with the seeded weights of :func:`kmt.vgg.seeded_vgg19_state_dict`
instead of the ImageNet download (the fixture stores the seed and per-key checksums; the arrays
themselves would be 50 MB). The same step is then run in float64 from the same weights, inputs and
transform, and the float32-vs-float64 drift per group is printed as a Markdown table (the floor that
tests/fixtures/README.md records and the test tolerances derive from).
"""

import argparse
import ctypes
import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
sys.path.insert(0, str(ROOT))

os.environ.setdefault("KERAS_BACKEND", "torch")  # kmt imports Keras; PyTorch is loaded anyway
from kmt.vgg import seeded_vgg19_state_dict  # noqa: E402

VGG_SEED = 2019
TRAIN_PARAMS = {
    "num_epochs": 1,
    "num_repeats": 1,
    "epoch_milestones": [],
    "lr_generator": 2.0e-4,
    "lr_discriminator": 2.0e-4,
    "lr_kp_detector": 2.0e-4,
    "batch_size": 2,
    # 64, 32 and 16 pixels: VGG19 up to relu5_1 needs at least 16 x 16 (four 2 x 2 max pools).
    "scales": [1, 0.5, 0.25],
    "checkpoint_freq": 1,
    "transform_params": {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5},
    "loss_weights": {
        "generator_gan": 1,
        "discriminator_gan": 1,
        "feature_matching": [10, 10, 10, 10],
        "perceptual": [10, 10, 10, 10, 10],
        "equivariance_value": 10,
        "equivariance_jacobian": 10,
    },
}
NETWORKS = ("kp_detector", "generator", "discriminator")
LOSSES = ("perceptual", "gen_gan", "feature_matching", "equivariance_value", "equivariance_jacobian", "disc_gan")


def import_torchvision():
    """``torchvision``, also where its compiled operators cannot load (a CUDA build on a CPU-only torch).

    Only the VGG19 architecture is used; torchvision's import registers shape functions for its
    detection operators (``nms``, ``qnms``), which fails when the extension did not load. Declaring
    those two schemas first lets the pure-Python models import.
    """
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None:
        raise SystemExit("torchvision is not installed: pip install torchvision==0.28.0 --no-deps")
    extension = Path(spec.submodule_search_locations[0]) / "_C.so"
    try:
        ctypes.CDLL(str(extension))
    except OSError:
        library = torch.library.Library("torchvision", "DEF")
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import_torchvision.library = library  # keep the registration alive
    import torchvision

    return torchvision


def official_modules(official_dir):
    sys.path.insert(0, str(official_dir))
    import_torchvision()
    from modules import model as official_model
    from modules.discriminator import MultiScaleDiscriminator
    from modules.generator import OcclusionAwareGenerator
    from modules.keypoint_detector import KPDetector

    return official_model, KPDetector, OcclusionAwareGenerator, MultiScaleDiscriminator


class SeededVgg19Models:
    """Stands in for ``torchvision.models`` inside modules/model.py: ``vgg19(pretrained=True)`` gives
    torchvision's VGG19 with the seeded weights instead of downloading the ImageNet ones."""

    def __init__(self, torchvision, state):
        self.torchvision, self.state = torchvision, state

    def vgg19(self, pretrained=False):
        import torch

        network = self.torchvision.models.vgg19(weights=None)
        missing = network.load_state_dict({k: torch.from_numpy(v) for k, v in self.state.items()}, strict=False)
        assert not missing.unexpected_keys, missing.unexpected_keys
        return network


def build_networks(official, config, weights, dtype):
    import torch

    _, KPDetector, OcclusionAwareGenerator, MultiScaleDiscriminator = official
    networks = {
        "kp_detector": KPDetector(**config["kp"], **config["common"]),
        "generator": OcclusionAwareGenerator(**config["gen"], **config["common"]),
        "discriminator": MultiScaleDiscriminator(**config["disc"], **config["common"]),
    }
    for name, network in networks.items():
        state = {key[len(name) + 1:]: torch.from_numpy(np.array(value)) for key, value in weights.items()
                 if key.startswith(name + "/")}
        network.load_state_dict(state, strict=True)
        network.to(dtype).train()
    return networks


def recording_transform(official_model, record, replay=None):
    """The official ``Transform``, recording what it drew (or, with ``replay``, using given parameters)."""
    import torch

    class Transform(official_model.Transform):
        def __init__(self, bs, **kwargs):
            super().__init__(bs, **kwargs)
            if replay is not None:
                self.theta = torch.from_numpy(replay["theta"]).to(torch.float64)
                self.control_params = torch.from_numpy(replay["control_params"]).to(torch.float64)
                self.control_points = self.control_points.to(torch.float64)
            record.update(theta=self.theta, control_points=self.control_points, control_params=self.control_params)

    return Transform


def numpy_state(module):
    return {key: value.detach().cpu().numpy().copy() for key, value in module.state_dict().items()}


def run_step(official, config, weights, inputs, vgg_state, dtype, replay=None, seed=0):
    """One official training step; returns every number the fixture stores."""
    import torch
    import torchvision

    official_model = official[0]
    networks = build_networks(official, config, weights, dtype)
    record = {}
    official_model.Transform = recording_transform(official_model, record, replay)
    official_model.models = SeededVgg19Models(torchvision, vgg_state)
    kp_detector, generator, discriminator = (networks[n] for n in NETWORKS)
    generator_full = official_model.GeneratorFullModel(kp_detector, generator, discriminator, TRAIN_PARAMS).to(dtype)
    discriminator_full = official_model.DiscriminatorFullModel(kp_detector, generator, discriminator, TRAIN_PARAMS)
    discriminator_full.to(dtype)
    optimizers = {
        name: torch.optim.Adam(networks[name].parameters(), lr=TRAIN_PARAMS[f"lr_{name}"], betas=(0.5, 0.999))
        for name in NETWORKS
    }
    x = {key: torch.from_numpy(value).to(dtype) for key, value in inputs.items()}
    out = {"grads": {}, "after": {}}

    torch.manual_seed(seed)
    losses_generator, generated = generator_full(x)
    loss = sum(value.mean() for value in losses_generator.values())
    loss.backward()
    for name in ("kp_detector", "generator"):
        out["grads"][name] = {k: p.grad.detach().numpy().copy() for k, p in networks[name].named_parameters()
                              if p.grad is not None}
    optimizers["generator"].step()
    optimizers["generator"].zero_grad()
    optimizers["kp_detector"].step()
    optimizers["kp_detector"].zero_grad()

    optimizers["discriminator"].zero_grad()
    losses_discriminator = discriminator_full(x, generated)
    loss = sum(value.mean() for value in losses_discriminator.values())
    loss.backward()
    out["grads"]["discriminator"] = {k: p.grad.detach().numpy().copy()
                                     for k, p in discriminator.named_parameters() if p.grad is not None}
    optimizers["discriminator"].step()
    optimizers["discriminator"].zero_grad()

    losses_generator.update(losses_discriminator)
    out["losses"] = {k: float(v.mean().detach()) for k, v in losses_generator.items()}
    out["after"] = {name: numpy_state(networks[name]) for name in NETWORKS}
    out["transform"] = {k: v.detach().numpy().astype("float32") for k, v in record.items()}
    return out


def relative_error(ours, reference):
    """Max abs error over max(1, max |reference|): the measure of every table in tests/fixtures/README.md."""
    ours, reference = np.asarray(ours, "float64"), np.asarray(reference, "float64")
    return float(np.max(np.abs(ours - reference)) / max(1.0, float(np.max(np.abs(reference)))))


def l2_error(ours, reference):
    """``|ours - reference| / |reference|`` over all arrays of a network (Euclidean norms)."""
    num = sum(np.sum((np.asarray(ours[k], "float64") - reference[k]) ** 2) for k in reference)
    den = sum(np.sum(np.asarray(reference[k], "float64") ** 2) for k in reference)
    return float(np.sqrt(num / den))


def determined(single_grad, double_grad):
    """Elements whose float32 gradient is within a tenth of its float64 value's magnitude of it.

    Adam's first step moves a weight by ``lr * g / (|g| + eps)``, about ``lr * sign(g)``: where the
    float32 gradient is noise (a conv bias before a normalisation has a zero gradient in exact
    arithmetic; an L1 loss flips sign at near-ties), the official step itself is not determined.
    """
    return np.abs(double_grad) > 10.0 * np.abs(single_grad - double_grad)


def drift(single, double):
    """The float32 run against the float64 run: ``{group: figure}`` and the determined-element masks."""
    rows = {f"losses/{name}": relative_error(single["losses"][name], double["losses"][name]) for name in LOSSES}
    masks = {}
    for name in NETWORKS:
        grads32, grads64 = single["grads"][name], double["grads"][name]
        rows[f"grads/{name}"] = max(relative_error(v, grads64[k]) for k, v in grads32.items())
        rows[f"grads/{name} (L2)"] = l2_error(grads32, grads64)
    for name in NETWORKS:
        after32, after64 = single["after"][name], double["after"][name]
        grads32, grads64 = single["grads"][name], double["grads"][name]
        params, buffers, count = 0.0, 0.0, 0
        masks[name] = {}
        for key, value in after32.items():
            if key.endswith("num_batches_tracked"):
                continue
            if key in grads32:
                mask = determined(grads32[key], grads64[key])
                masks[name][key] = mask
                count += int(mask.size - mask.sum())
                error = np.abs(value.astype("float64") - after64[key])[mask]
                if error.size:
                    params = max(params, float(error.max()) / max(1.0, float(np.max(np.abs(after64[key])))))
            else:
                buffers = max(buffers, relative_error(value, after64[key]))
        rows[f"after/{name} (determined weights)"] = params
        rows[f"after/{name} (undetermined weights, count)"] = count
        rows[f"after/{name} (buffers)"] = buffers
    return rows, masks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-dir", default=os.environ.get("OFFICIAL_DIR"),
                        help="the official first-order-model checkout (default: $OFFICIAL_DIR)")
    parser.add_argument("--out", default=str(FIXTURES / "fomm_train_step.npz"))
    args = parser.parse_args(argv)
    if not args.official_dir or not (Path(args.official_dir) / "modules" / "model.py").exists():
        parser.error(f"--official-dir / OFFICIAL_DIR must name a first-order-model checkout; got {args.official_dir!r}")
    import torch

    torch.use_deterministic_algorithms(True)
    official = official_modules(args.official_dir)
    with np.load(FIXTURES / "fomm_tiny.npz") as tiny:
        config = json.loads(str(tiny["config"]))
        weights = {k[len("weights/"):]: tiny[k] for k in tiny.files if k.startswith("weights/")}
        inputs = {"source": tiny["inputs/source"], "driving": tiny["inputs/driving"]}
    vgg_state = seeded_vgg19_state_dict(VGG_SEED)

    single = run_step(official, config, weights, inputs, vgg_state, torch.float32)
    double = run_step(official, config, weights, inputs, {k: v for k, v in vgg_state.items()}, torch.float64,
                      replay=single["transform"])

    arrays = {
        "config": json.dumps(config),
        "train_params": json.dumps(TRAIN_PARAMS),
        "inputs/source": inputs["source"],
        "inputs/driving": inputs["driving"],
        "vgg/seed": np.int64(VGG_SEED),
    }
    for key, value in vgg_state.items():
        arrays[f"vgg/checksum/{key}"] = np.array(
            [np.sum(value, dtype="float64"), np.sum(np.abs(value), dtype="float64"), value.flat[0], value.flat[-1]]
        )
    arrays.update({f"weights/{k}": v for k, v in weights.items()})
    arrays.update({f"transform/{k}": v for k, v in single["transform"].items()})
    arrays.update({f"losses/{k}": np.float32(v) for k, v in single["losses"].items()})
    rows, masks = drift(single, double)
    for name in NETWORKS:
        arrays.update({f"grads/{name}/{k}": v for k, v in single["grads"][name].items()})
        arrays.update({f"after/{name}/{k}": v for k, v in single["after"][name].items()})
        arrays.update({f"determined/{name}/{k}": np.packbits(m.ravel()) for k, m in masks[name].items()})
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB, {len(arrays)} arrays)")
    print("losses (weighted):", json.dumps(single["losses"]))
    print("\n| group | float32 vs float64 |\n| --- | --- |")
    for group, figure in rows.items():
        print(f"| `{group}` | {figure if isinstance(figure, int) else format(figure, '.1e')} |")
    return single, double


if __name__ == "__main__":
    main()
