"""kmt.keypoints: Gaussian heatmaps, soft-argmax with temperature, and the keypoint detector."""

import keras
import numpy as np
import pytest

from fomm_reference import call, fixture_models, nchw, nhwc, relative_error
from helpers import run, to_numpy
from kmt.keypoints import KP_VARIANCE, KPDetector, kp2gaussian, soft_argmax, spatial_softmax


def numpy_grid(h, w):
    x = 2 * np.arange(w) / (w - 1) - 1
    y = 2 * np.arange(h) / (h - 1) - 1
    return np.stack(np.meshgrid(x, y), axis=-1)  # (h, w, 2) holding (x, y)


def small_detector(**kwargs):
    args = dict(block_expansion=4, num_kp=3, num_channels=3, max_features=16, num_blocks=2, temperature=0.1)
    args.update(kwargs)
    return KPDetector(**args)


def test_kp2gaussian_matches_its_formula(rng):
    kp = rng.uniform(-1, 1, size=(2, 4, 2)).astype("float32")
    ours = run(lambda k: kp2gaussian(k, (5, 7), 0.05), kp)
    z = numpy_grid(5, 7)
    expected = np.exp(-0.5 * ((z[None, :, :, None, :] - kp[:, None, None]) ** 2).sum(-1) / 0.05)
    assert ours.shape == (2, 5, 7, 4)
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_kp2gaussian_peaks_at_the_keypoint_pixel():
    # (x, y) = (0.5, -1): column 3 of 5, row 0 of 3.
    heatmap = to_numpy(kp2gaussian({"value": np.array([[[0.5, -1.0]]], "float32")}, (3, 5)))
    assert heatmap[0, 0, 3, 0] == pytest.approx(1.0)
    assert np.unravel_index(heatmap[0, ..., 0].argmax(), (3, 5)) == (0, 3)
    assert KP_VARIANCE == 0.01


def test_kp2gaussian_accepts_leading_axes_and_rejects_bad_shapes(rng):
    kp = rng.uniform(-1, 1, size=(2, 3, 4, 2)).astype("float32")
    assert to_numpy(kp2gaussian(kp, (6, 6))).shape == (2, 3, 6, 6, 4)
    with pytest.raises(ValueError, match=r"\(batch, num_kp, 2\)"):
        kp2gaussian(np.zeros((2, 4, 3), "float32"), (6, 6))


def test_spatial_softmax_divides_by_the_temperature(rng):
    logits = rng.normal(size=(2, 4, 5, 3)).astype("float32")
    ours = run(lambda x: spatial_softmax(x, 0.1), logits)
    flat = logits.reshape(2, 20, 3) / 0.1
    expected = np.exp(flat - flat.max(1, keepdims=True))
    expected = (expected / expected.sum(1, keepdims=True)).reshape(2, 4, 5, 3)
    np.testing.assert_allclose(ours, expected, atol=1e-6)
    np.testing.assert_allclose(ours.sum(axis=(1, 2)), 1.0, atol=1e-5)
    assert run(lambda x: spatial_softmax(x, 1.0), logits).max() < ours.max()


def test_soft_argmax_of_a_one_hot_map_is_that_pixel():
    heatmap = np.zeros((1, 4, 6, 2), "float32")
    heatmap[0, 1, 5, 0] = 1.0  # row 1, column 5
    heatmap[0, 3, 0, 1] = 1.0
    value = run(soft_argmax, heatmap)
    np.testing.assert_allclose(value, [[[1.0, -1 / 3], [-1.0, 1.0]]], atol=1e-6)


def test_soft_argmax_of_a_normalised_gaussian_recovers_the_keypoint():
    kp = np.array([[[0.1, -0.2], [-0.3, 0.25]]], "float32")
    gaussian = to_numpy(kp2gaussian(kp, (64, 64), 0.005))
    gaussian = gaussian / gaussian.sum(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(run(soft_argmax, gaussian), kp, atol=1e-4)


def test_detector_outputs_and_identity_jacobians_at_initialisation(rng):
    detector = small_detector(estimate_jacobian=True)
    out = call(detector, rng.random((2, 16, 16, 3), dtype="float32"))
    assert out["value"].shape == (2, 3, 2) and out["jacobian"].shape == (2, 3, 2, 2)
    assert out["heatmap"].shape == (2, 10, 10, 3)  # a 7x7 "valid" head: 16 - 6
    assert np.all(np.abs(out["value"]) <= 1)
    np.testing.assert_allclose(out["heatmap"].sum(axis=(1, 2)), 1.0, atol=1e-5)
    np.testing.assert_allclose(out["jacobian"], np.broadcast_to(np.eye(2), (2, 3, 2, 2)), atol=1e-6)


def test_single_jacobian_map_shares_one_head(rng):
    detector = small_detector(estimate_jacobian=True, single_jacobian_map=True)
    detector.build((None, 16, 16, 3))
    assert detector.jacobian.kernel.shape == (7, 7, 7, 4)
    detector.jacobian.kernel.assign(rng.normal(size=(7, 7, 7, 4)).astype("float32") * 0.1)
    x = rng.random((1, 16, 16, 3), dtype="float32")
    out = call(detector, x)
    assert out["jacobian"].shape == (1, 3, 2, 2)
    assert not np.allclose(out["jacobian"][0, 0], out["jacobian"][0, 1])  # same map, other weights


def test_pad_and_scale_factor_set_the_heatmap_size(rng):
    x = rng.random((1, 32, 32, 3), dtype="float32")
    assert call(small_detector(pad=3), x)["heatmap"].shape == (1, 32, 32, 3)
    assert call(small_detector(scale_factor=0.5), x)["heatmap"].shape == (1, 10, 10, 3)
    assert "jacobian" not in call(small_detector(), x)


def test_detector_rejects_images_with_the_wrong_layout(rng):
    detector = small_detector()
    with pytest.raises(ValueError, match=r"\(batch, height, width, 3\)"):
        detector(rng.random((1, 3, 16, 16), dtype="float32"))
    with pytest.raises(ValueError, match="temperature"):
        small_detector(temperature=0)


def test_detector_matches_the_official_heatmaps(fomm_tiny):
    """The detector alone, with the fixture's weights (tolerance: 10x the README floor of the values)."""
    detector = fixture_models(fomm_tiny, ["kp_detector"])["kp_detector"]
    out = call(detector, nhwc(fomm_tiny["inputs/source"]))
    assert relative_error(nchw(out["heatmap"]), fomm_tiny["eval/kp_source/heatmap"]) < 1.5e-5
    assert relative_error(out["value"], fomm_tiny["eval/kp_source/value"]) < 1.5e-5
    assert relative_error(out["jacobian"], fomm_tiny["eval/kp_source/jacobian"]) < 1e-5


def test_detector_get_config_round_trip():
    detector = small_detector(estimate_jacobian=True, single_jacobian_map=True, pad=1, scale_factor=0.5)
    config = detector.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(detector))
    assert isinstance(restored, KPDetector) and restored.get_config() == config
