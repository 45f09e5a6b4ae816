"""Shared by the model tests: the fixtures' config and weights, layout changes, and model calls.

The fixtures (tests/fixtures/README.md) store the official PyTorch FOMM in its own layouts:
images NCHW, kernels OIHW. kmt is NHWC; the functions here convert between the two.
"""

import inspect
import json

import keras
import numpy as np

from helpers import BACKEND, to_numpy
from kmt.convert import load_state_dict, split_state_dicts
from kmt.discriminator import MultiScaleDiscriminator
from kmt.generator import OcclusionAwareGenerator
from kmt.keypoints import KPDetector

# The float32 floor of the official code (its float64 run minus its float32 run, max abs error over
# max(1, max |reference|)), from tests/fixtures/README.md (fomm_tiny.npz).
FLOOR = {
    "eval": {
        "kp_source/value": 1.5e-06,
        "kp_source/jacobian": 1.5e-07,
        "kp_driving/value": 2.3e-06,
        "kp_driving/jacobian": 1.9e-07,
        "generator/mask": 9.6e-06,
        "generator/sparse_deformed": 2.3e-05,
        "generator/occlusion_map": 7.6e-06,
        "generator/deformed": 1.5e-04,
        "generator/prediction": 7.5e-05,
        "dense_motion/deformation": 7.2e-06,
        "discriminator/feature_maps_1/0": 2.7e-05,
        "discriminator/feature_maps_1/1": 2.2e-05,
        "discriminator/feature_maps_1/2": 2.2e-05,
        "discriminator/feature_maps_1/3": 7.5e-05,
        "discriminator/prediction_map_1": 3.5e-05,
    },
    "train": {
        "kp_source/value": 2.3e-06,
        "kp_source/jacobian": 9.8e-08,
        "kp_driving/value": 1.2e-06,
        "kp_driving/jacobian": 1.7e-07,
        "generator/mask": 6.3e-06,
        "generator/sparse_deformed": 1.2e-05,
        "generator/occlusion_map": 8.0e-06,
        "generator/deformed": 6.1e-05,
        "generator/prediction": 3.6e-05,
        "dense_motion/deformation": 2.7e-06,
        "discriminator/feature_maps_1/0": 8.7e-06,
        "discriminator/feature_maps_1/1": 1.1e-05,
        "discriminator/feature_maps_1/2": 1.1e-05,
        "discriminator/feature_maps_1/3": 3.0e-05,
        "discriminator/prediction_map_1": 6.0e-06,
    },
}


def tolerance(mode, key):
    """The tolerance of output ``key`` (a fixture key without its mode) in ``mode``.

    The README's rule: about 10x the float32 floor of the table, at least 1e-5; train-mode
    discriminator outputs within 3x (a missing power iteration moves them by only ~2e-4).
    Outputs the table does not list use the row they follow: the heatmaps and the transformed
    keypoints those of the keypoint values, the discriminator on real frames that of the
    discriminator on generated ones; spectral-norm kernels are simple enough for 1e-5.
    """
    row = key
    if key.startswith("kp_transformed/"):
        row = "kp_driving/" + key.split("/", 1)[1]
    if row.endswith("/heatmap"):
        row = row.rsplit("/", 1)[0] + "/value"
    if row.startswith("discriminator_real/"):
        row = "discriminator/" + row.split("/", 1)[1]
    if row.startswith("discriminator_sn_weight/"):
        return 1e-5
    factor = 3.0 if (mode == "train" and row.startswith("discriminator/")) else 10.0
    return max(1e-5, factor * FLOOR[mode][row])


def relative_error(ours, reference):
    """Max abs error divided by max(1, max |reference|), the README's measure."""
    ours, reference = np.asarray(ours, "float64"), np.asarray(reference, "float64")
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    return float(np.max(np.abs(ours - reference)) / max(1.0, float(np.max(np.abs(reference)))))


def nhwc(x):
    """NCHW -> NHWC."""
    return np.transpose(np.asarray(x), (0, 2, 3, 1))


def nchw(x):
    """NHWC -> NCHW."""
    return np.transpose(np.asarray(x), (0, 3, 1, 2))


def fixture_config(npz):
    return json.loads(str(npz["config"]))


def official_config(npz):
    """The fixture's constructor arguments as an official config's ``model_params``."""
    config = fixture_config(npz)
    return {
        "model_params": {
            "common_params": config["common"],
            "kp_detector_params": config["kp"],
            "generator_params": config["gen"],
            "discriminator_params": config["disc"],
        }
    }


def fixture_models(npz, networks=("kp_detector", "generator", "discriminator")):
    """Fresh kmt models with the fixture's weights, loaded through the converter."""
    config = fixture_config(npz)
    state_dicts = split_state_dicts(npz, "weights/")
    builders = {
        "kp_detector": lambda: KPDetector(**config["kp"], **config["common"]),
        "generator": lambda: OcclusionAwareGenerator(
            **config["gen"], **config["common"], align_corners=config["align_corners"]
        ),
        "discriminator": lambda: MultiScaleDiscriminator(**config["disc"], **config["common"]),
    }
    models = {}
    for name in networks:
        models[name] = load_state_dict(builders[name](), state_dicts[name])
    return models


def call(model, *args, training=False, **kwargs):
    """``model(*args, training=training, **kwargs)`` as NumPy, state updates (BatchNorm, spectral norm) kept.

    On JAX it runs ``stateless_call`` under ``jax.jit`` (op-by-op JAX compiles every primitive
    for every shape) and writes the new non-trainable values back into the model.
    """
    static = {"training": bool(training)} if "training" in inspect.signature(model.call).parameters else {}
    if not model.built:
        model.build(keras.tree.map_structure(lambda a: np.shape(a), args[0]))
    if BACKEND == "jax":
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        config = {k: v for k, v in model.get_config().items() if k != "name"}
        key = (type(model), json.dumps(config, sort_keys=True, default=str), tuple(static.items()))
        fn = _JITTED.setdefault(key, _jitted_stateless_call(model, dict(static)))
        outputs, non_trainable = fn(trainable, non_trainable, args, kwargs)
        for variable, value in zip(model.non_trainable_variables, non_trainable):
            variable.assign(value)
    else:
        outputs = model(*args, **kwargs, **static)
    return keras.tree.map_structure(to_numpy, outputs)


# One compiled function per architecture: every state comes in as arguments, so models built from
# the same config share it (the two fixtures differ only in weights and align_corners).
_JITTED = {}


def _jitted_stateless_call(model, static):
    import jax

    def fn(trainable, non_trainable, args, kwargs):
        return model.stateless_call(trainable, non_trainable, *args, **kwargs, **static)

    return jax.jit(fn)


def official_gradients(model, optimizer):
    """The gradients of one optimizer step of ``model``, in the official layouts and key names.

    Read from the optimizer's first moments: after one Adam step from zero moments
    ``m = (1 - beta_1) * g`` (``optimizer`` is a :class:`kmt.optimizers.TorchAdam`).
    """
    from kmt.convert import _entries

    grads = {}
    for entry in _entries(model):
        if entry.layout in ("buffer", "counter") or not entry.variable.trainable:
            continue
        first, _ = optimizer.moments(entry.variable)
        grads[entry.key] = entry.to_official(to_numpy(first) / (1.0 - float(optimizer.beta_1)))
    return grads


def unpack_mask(packed, shape):
    """A boolean array of ``shape`` stored with ``np.packbits`` (the fixtures' ``determined/`` keys)."""
    size = int(np.prod(shape))
    return np.unpackbits(np.asarray(packed, "uint8"), count=size).astype(bool).reshape(shape)
