"""Seconds per FOMM training step on each Keras backend, beside the official PyTorch code.

Two workloads:

- ``vox-adv-256``, batch 2, 256 x 256: the official adversarial config (keypoint detector, generator,
  discriminator, VGG19 perceptual pyramid at four scales, equivariance), one full step = the
  generator/keypoint-detector update then the discriminator update, random weights;
- ``synthetic-faces-64``: kmt's small config at its own batch size, reported as images per second.

Each backend runs, in its own process, the step ``kmt train`` runs: a :class:`kmt.training.Trainer`
built from the config (its models, Adam optimisers, learning rates and ``align_corners``) and its
:class:`kmt.train_step.TrainStep`, ``trainer.step`` (XLA on TensorFlow and JAX, eager autograd on
PyTorch), with a random-weight VGG19 (ImageNet weights cannot be downloaded here; only its cost counts).
Times are medians with min-max over ``--repeats`` steps after a first (compiling) step. With ``--official-script`` (the project's
``official_fomm_bench.py``) and ``--official-dir`` (a checkout of the official first-order-model code,
kept outside this repository) the official step is timed in the same run, before and after kmt.

    python benchmarks/train_step.py --official-script ../shared/bench/official_fomm_bench.py \\
        --official-dir ../official-fomm [--repeats 3] [--backends tensorflow jax torch]

Results go to benchmarks/results/train_step.md and train_step.json (``--no-write`` to skip).
"""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

HERE = harness.HERE
REPO = harness.REPO
BACKENDS = ("tensorflow", "jax", "torch")
COMPILED_AS = {"tensorflow": "tf.function(jit_compile=True)", "jax": "jax.jit", "torch": "eager autograd"}


def worker(args):
    import keras
    import numpy as np

    from kmt.config import load_config
    from kmt.losses import VGG19Features, sample_transform_parameters, vgg_layers_needed
    from kmt.training import Trainer

    harness.limit_threads(args.threads)
    config = load_config(args.config)
    train_params = config["train_params"]
    batch = args.batch or int(train_params["batch_size"])
    size = args.size or int(config["dataset_params"]["frame_shape"][0])
    layers = vgg_layers_needed(train_params["loss_weights"]["perceptual"])
    with tempfile.TemporaryDirectory() as log_dir:
        # What `kmt train` builds (seed 0), with VGG19 at random weights instead of downloading ImageNet's.
        trainer = Trainer(config, log_dir, vgg=VGG19Features("random", num_layers=layers) if layers else None, seed=0)
        rng = np.random.default_rng(0)
        source = rng.random((batch, size, size, 3), dtype="float32")
        driving = rng.random((batch, size, size, 3), dtype="float32")
        tp = train_params["transform_params"]

        def run():
            params = sample_transform_parameters(rng, batch, tp["sigma_affine"], tp.get("sigma_tps"),
                                                 tp.get("points_tps"))
            trainer.step(source, driving, params)

        first, times = harness.timed(run, args.repeats)
    summary = harness.spread(times)
    print(json.dumps({
        "backend": keras.backend.backend(), "config": os.path.basename(str(args.config)), "batch": batch,
        "size": size, "first_s": first, "times_s": times, "median_s": summary["median"], "min_s": summary["min"],
        "max_s": summary["max"],
        "params": {name: int(sum(np.prod(v.shape) for v in m.trainable_variables))
                   for name, m in trainer.models.items()},
    }))


def run_worker(backend, config, repeats, batch=None, size=None):
    argv = ["--worker", "--config", config, "--repeats", str(repeats)]
    argv += ["--batch", str(batch)] if batch else []
    argv += ["--size", str(size)] if size else []
    return harness.run_worker(__file__, argv, backend=backend)[-1]


def run_official(script, official_dir, config_path, repeats):
    """The shared official timing script (its own process): a training step of the official code."""
    import subprocess

    result = subprocess.run([sys.executable, script, config_path, "256", "2", str(repeats)], capture_output=True,
                            text=True, env=dict(os.environ, REF=official_dir))
    lines = harness.json_lines(result.stdout)
    if result.returncode or not lines:
        raise RuntimeError(f"official bench failed:\n{result.stderr[-3000:]}")
    return lines[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", default="vox-adv-256")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--size", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS))
    parser.add_argument("--official-script", help="the project's official_fomm_bench.py")
    parser.add_argument("--official-dir", help="a checkout of the official first-order-model code")
    parser.add_argument("--small-config", default="synthetic-faces-64")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from kmt.config import config_path

    load = harness.load_average()
    described = harness.describe()
    official = []
    if args.official_script and args.official_dir:
        official_config = os.path.join(args.official_dir, "config", "vox-adv-256.yaml")
        official.append(run_official(args.official_script, args.official_dir, official_config, args.repeats))
    rows = [run_worker(b, config_path(args.config), args.repeats, batch=2, size=256) for b in args.backends]
    if args.official_script and args.official_dir:
        official.append(run_official(args.official_script, args.official_dir, official_config, args.repeats))
    small = [run_worker(b, config_path(args.small_config), max(args.repeats, 5)) for b in args.backends]

    reference = min(o["train_step_s"] for o in official) if official else None
    lines = [
        "# Training step speed",
        "",
        f"`python benchmarks/train_step.py` on {described['machine']}, {described['date']}; "
        + harness.versions_text(described["versions"])
        + f". Load average before/after: {load} / {harness.load_average()}.",
        "",
        "One full step of `vox-adv-256` (keypoint detector + generator update, then discriminator update; VGG19 "
        "perceptual pyramid at 4 scales; equivariance), batch 2, 256 x 256, random weights; kmt's step is "
        "`Trainer(config).step`, what `kmt train` runs. Seconds are medians (min-max) of "
        f"{args.repeats} steps after a first (compiling) step; the official script reports medians only.",
        "",
        "| implementation | compiled as | s / step, median (min-max) | x official | first step (s) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for index, o in enumerate(official):
        lines.append(f"| official PyTorch FOMM (run {index + 1}) | eager, torch {o['torch']}, {o['threads']} threads | "
                     f"{o['train_step_s']:.2f} | {o['train_step_s'] / reference:.2f}x | |")
    for r in rows:
        ratio = f"{r['median_s'] / reference:.2f}x" if reference else "n/a"
        lines.append(f"| kmt, {r['backend']} | {COMPILED_AS[r['backend']]} | {r['median_s']:.2f} "
                     f"({r['min_s']:.2f}-{r['max_s']:.2f}) | {ratio} | "
                     f"{r['first_s']:.1f} |")
    lines += ["", f"`{args.small_config}` (kmt's small synthetic config), its own batch size:", "",
              "| backend | batch | size | s / step | images / s |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in small:
        lines.append(f"| {r['backend']} | {r['batch']} | {r['size']} | {r['median_s']:.3f} | "
                     f"{r['batch'] / r['median_s']:.1f} |")
    if rows:
        lines += ["", "Trainable parameters (vox-adv-256): " + ", ".join(f"{k} {v:,}" for k, v in rows[0]["params"].items())
                  + ("; official: " + ", ".join(f"{k} {v:,}" for k, v in official[0]["params"].items()) if official else "") + "."]
    text = "\n".join(lines) + "\n"
    harness.write_results("train_step", {"official": official, "kmt": rows, "small": small, **described}, text,
                          args.no_write)


if __name__ == "__main__":
    main()
