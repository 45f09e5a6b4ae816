"""kmt.dense_motion: the input layout, the masks with their background slot, the occlusion map."""

import keras
import numpy as np
import pytest

from fomm_reference import call, fixture_config, fixture_models, nhwc, relative_error, tolerance
from helpers import run, to_numpy
from kmt.dense_motion import DenseMotionNetwork
from kmt.motion import heatmap_representations, sparse_motions


def network(**kwargs):
    args = dict(block_expansion=4, num_blocks=2, max_features=16, num_kp=3, num_channels=2)
    args.update(kwargs)
    return DenseMotionNetwork(**args)


def random_kp(rng, batch=2, num_kp=3):
    return {
        "value": rng.uniform(-0.7, 0.7, size=(batch, num_kp, 2)).astype("float32"),
        "jacobian": (np.eye(2) + 0.2 * rng.normal(size=(batch, num_kp, 2, 2))).astype("float32"),
    }


def test_outputs_masks_and_occlusion(rng):
    dense = network(estimate_occlusion_map=True, scale_factor=0.5)
    source = rng.random((2, 16, 16, 2), dtype="float32")
    kp_s, kp_d = random_kp(rng), random_kp(rng)
    out = call(dense, source, kp_d, kp_s)
    assert out["sparse_deformed"].shape == (2, 4, 8, 8, 2)
    assert out["mask"].shape == (2, 8, 8, 4)
    assert out["deformation"].shape == (2, 8, 8, 2)
    assert out["occlusion_map"].shape == (2, 8, 8, 1)
    np.testing.assert_allclose(out["mask"].sum(-1), 1.0, atol=1e-5)  # softmax over the K + 1 slots
    assert np.all((out["occlusion_map"] > 0) & (out["occlusion_map"] < 1))
    motions = to_numpy(sparse_motions((8, 8), kp_d, kp_s))
    expected = np.einsum("bhwk,bkhwc->bhwc", out["mask"], motions)
    np.testing.assert_allclose(out["deformation"], expected, atol=1e-5)


def test_no_occlusion_map_unless_asked(rng):
    out = call(network(), rng.random((1, 8, 8, 2), dtype="float32"), random_kp(rng, 1), random_kp(rng, 1))
    assert "occlusion_map" not in out


def test_hourglass_input_interleaves_heatmap_then_deformed_source_per_slot(rng):
    dense = network()
    source = rng.random((2, 8, 8, 2), dtype="float32")
    kp_s, kp_d = random_kp(rng), random_kp(rng)
    inputs, motions, deformed = (to_numpy(x) for x in dense.motion_inputs(source, kp_d, kp_s))
    assert inputs.shape == (2, 8, 8, 4 * 3) and dense.in_features == 12
    heatmaps = to_numpy(heatmap_representations((8, 8), kp_d, kp_s))
    for k in range(4):  # channel k * (C + 1) is slot k's heatmap, then its C deformed channels
        np.testing.assert_array_equal(inputs[..., 3 * k], heatmaps[..., k])
        np.testing.assert_array_equal(inputs[..., 3 * k + 1: 3 * k + 3], deformed[:, k])
    np.testing.assert_array_equal(inputs[..., 0], 0.0)  # the background slot has no heatmap


def test_rejects_the_wrong_number_of_keypoints(rng):
    with pytest.raises(ValueError, match="3 keypoints"):
        network()(rng.random((1, 8, 8, 2), dtype="float32"), random_kp(rng, 1, 4), random_kp(rng, 1, 4))


@pytest.mark.parametrize("fixture", ["fomm_tiny", "fomm_tiny_align_corners"])
def test_matches_the_official_dense_motion(fixture, request):
    """The network alone, on the fixture's keypoints; tolerances from fomm_reference (10x the README floor)."""
    npz = request.getfixturevalue(fixture)
    dense = fixture_models(npz, ["generator"])["generator"].dense_motion_network
    assert dense.align_corners == fixture_config(npz)["align_corners"]
    kp = {
        name: {k: npz[f"eval/{name}/{k}"] for k in ("value", "jacobian")} for name in ("kp_source", "kp_driving")
    }
    out = call(dense, nhwc(npz["inputs/source"]), kp["kp_driving"], kp["kp_source"])
    checks = {
        "generator/mask": np.transpose(out["mask"], (0, 3, 1, 2)),
        "generator/occlusion_map": np.transpose(out["occlusion_map"], (0, 3, 1, 2)),
        "generator/sparse_deformed": np.transpose(out["sparse_deformed"], (0, 1, 4, 2, 3)),
        "dense_motion/deformation": out["deformation"],
    }
    for key, ours in checks.items():
        assert relative_error(ours, npz[f"eval/{key}"]) <= tolerance("eval", key), key


def test_get_config_round_trip_keeps_align_corners():
    dense = network(estimate_occlusion_map=True, scale_factor=0.25, kp_variance=0.02, align_corners=False)
    config = dense.get_config()
    assert config["align_corners"] is False
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(dense))
    assert isinstance(restored, DenseMotionNetwork) and restored.get_config() == config


def test_motion_inputs_compile(rng):
    dense = network()
    source = rng.random((1, 8, 8, 2), dtype="float32")
    kp_s, kp_d = random_kp(rng, 1), random_kp(rng, 1)
    inputs = run(lambda s, v, j: dense.motion_inputs(s, {"value": v, "jacobian": j}, kp_s)[0], source, *kp_d.values())
    assert inputs.shape == (1, 8, 8, 12)
