"""kmt computes the official FOMM's numbers: every eval/ and train/ output of both fixtures.

The fixtures' weights go through the converter (kmt.convert) into fresh kmt models, which then
replay the official sequence of calls: the keypoint detector on the source, on the driving frames
and on the transformed driving frames (three separate calls, which matters for train-mode
BatchNorm); the generator; the discriminator on the pyramid of the prediction with the driving
keypoints, then on the pyramid of the driving frames (in train mode each discriminator call does
one power iteration first, so the second call sees updated spectral-norm vectors).
The generator runs on kmt's own keypoints (end to end); the discriminator runs on the fixture's
prediction and driving keypoints, so that its comparison, whose train-mode tolerance is tight,
measures the discriminator alone.

Tolerances (fomm_reference.tolerance): the fixture README's float32 floor of each output, x10,
at least 1e-5; train-mode discriminator outputs x3; measured as max abs error / max(1, max |ref|).
"""

import functools
import os

import numpy as np
import pytest

from conftest import FIXTURES
from helpers import to_numpy
from fomm_reference import call, fixture_models, nchw, nhwc, relative_error, tolerance
from kmt.warping import ImagePyramid

FILES = ("fomm_tiny", "fomm_tiny_align_corners")
MODES = ("eval", "train")


def _npz(name):
    return np.load(os.path.join(FIXTURES, f"{name}.npz"))


def _kp_inputs(kp):
    return {"value": kp["value"], "jacobian": kp["jacobian"]}


def _kp_outputs(prefix, kp):
    return {
        f"{prefix}/value": kp["value"],
        f"{prefix}/jacobian": kp["jacobian"],
        f"{prefix}/heatmap": nchw(kp["heatmap"]),
    }


def _discriminator_outputs(prefix, out):
    result = {}
    for name, value in out.items():
        if name.startswith("feature_maps_"):
            for i, feature_map in enumerate(value):
                result[f"{prefix}/{name}/{i}"] = nchw(feature_map)
        else:
            result[f"{prefix}/{name}"] = nchw(value)
    return result


def _sn_kernels(discriminator):
    kernels = {}
    for key, disc in discriminator.discs.items():
        prefix = f"discs.{key.replace('.', '-')}."
        for i, block in enumerate(disc.down_blocks):
            kernels[f"discriminator_sn_weight/{prefix}down_blocks.{i}.conv"] = block.conv
        kernels[f"discriminator_sn_weight/{prefix}conv"] = disc.conv
    return {
        key: np.transpose(to_numpy(conv.normalized_kernel(False)), (3, 2, 0, 1))
        for key, conv in kernels.items()
    }


@functools.lru_cache(maxsize=None)
def computed(name, mode):
    """kmt's outputs for one fixture and mode, keyed and laid out like the fixture."""
    npz = _npz(name)
    models = fixture_models(npz)
    training = mode == "train"
    source, driving = nhwc(npz["inputs/source"]), nhwc(npz["inputs/driving"])
    transformed = nhwc(npz["transform/driving_frame"])

    kp_source = call(models["kp_detector"], source, training=training)
    kp_driving = call(models["kp_detector"], driving, training=training)
    kp_transformed = call(models["kp_detector"], transformed, training=training)
    generated = call(
        models["generator"],
        source,
        kp_driving=_kp_inputs(kp_driving),
        kp_source=_kp_inputs(kp_source),
        training=training,
    )
    out = {}
    out.update(_kp_outputs("kp_source", kp_source))
    out.update(_kp_outputs("kp_driving", kp_driving))
    out.update(_kp_outputs("kp_transformed", kp_transformed))
    for key in ("prediction", "deformed", "mask", "occlusion_map"):
        out[f"generator/{key}"] = nchw(generated[key])
    out["generator/sparse_deformed"] = np.transpose(generated["sparse_deformed"], (0, 1, 4, 2, 3))
    out["dense_motion/deformation"] = generated["deformation"]

    discriminator = models["discriminator"]
    pyramid = ImagePyramid(discriminator.scales, source.shape[-1])
    reference_kp = npz[f"{mode}/kp_driving/value"]
    prediction = nhwc(npz[f"{mode}/generator/prediction"])
    fake = call(discriminator, pyramid(prediction), kp=reference_kp, training=training)
    out.update(_sn_kernels(discriminator))  # what the first call used (after its power iteration)
    real = call(discriminator, pyramid(driving), kp=reference_kp, training=training)
    out.update(_discriminator_outputs("discriminator", fake))
    out.update(_discriminator_outputs("discriminator_real", real))
    return out


def _cases():
    cases = []
    for name in FILES:
        npz = _npz(name)
        for mode in MODES:
            for key in npz.files:
                if key.startswith(f"{mode}/") and not key.startswith(f"{mode}/losses/"):
                    cases.append((name, mode, key[len(mode) + 1:]))
    return cases


CASES = _cases()


def test_every_fixture_output_is_compared():
    keys = {key for _, _, key in CASES}
    assert len(CASES) == len(FILES) * len(MODES) * len(keys)
    assert {k.split("/")[0] for k in keys} == {
        "kp_source", "kp_driving", "kp_transformed", "generator", "dense_motion",
        "discriminator", "discriminator_real", "discriminator_sn_weight",
    }


@pytest.mark.parametrize("name,mode,key", CASES, ids=["/".join(c) for c in CASES])
def test_matches_official(name, mode, key):
    reference = _npz(name)[f"{mode}/{key}"]
    ours = computed(name, mode)[key]
    error = relative_error(ours, reference)
    limit = tolerance(mode, key)
    assert error <= limit, f"{name} {mode}/{key}: relative error {error:.3g} > tolerance {limit:.3g}"


@pytest.mark.parametrize("mode", MODES)
def test_align_corners_matters(mode):
    """The two fixtures differ only by the grid_sample convention (and BatchNorm statistics):
    the deformed image of one must not match the other's, or the flag would not be reaching it."""
    ours = computed("fomm_tiny", mode)["generator/deformed"]
    other = _npz("fomm_tiny_align_corners")[f"{mode}/generator/deformed"]
    assert relative_error(ours, other) > 100 * tolerance(mode, "generator/deformed")
