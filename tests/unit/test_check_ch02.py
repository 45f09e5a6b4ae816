"""Chapter 2's exercise checkers accept right answers, reject typical wrong ones and say why."""

import math

import numpy as np
from keras import ops

from fomm_reference import call
from helpers import value_and_grads
from kmt import check, keypoints
from kmt.check.ch02_keypoints import _reference_gradient


def unguarded(checker, candidate):
    """Run a checker without disabling the kmt functions its exercise re-implements: kmt itself is the right answer."""
    return check.check_candidate(checker.exercise(), candidate)


def numpy_grid(h, w):
    x = 2 * np.arange(w) / (w - 1) - 1
    y = 2 * np.arange(h) / (h - 1) - 1
    return np.stack(np.meshgrid(x, y), axis=-1)


def right_soft_argmax(heatmap):
    heatmap = np.asarray(heatmap)
    return np.einsum("bhwk,hwc->bkc", heatmap, numpy_grid(*heatmap.shape[1:3]))


def right_kp2gaussian(kp, spatial_size, kp_variance):
    z = numpy_grid(*spatial_size)
    squared = ((z[None, :, :, None, :] - np.asarray(kp)[:, None, None]) ** 2).sum(-1)
    return np.exp(-squared / (2 * kp_variance))


def test_soft_argmax_accepts_kmt_and_a_numpy_version():
    assert unguarded(check.soft_argmax, keypoints.soft_argmax)
    report = check.soft_argmax(right_soft_argmax)
    assert report and str(report) == "soft_argmax: all 4 cases pass."


def test_soft_argmax_hints_at_swapped_axes_pixel_units_and_a_second_softmax():
    report = check.soft_argmax(lambda m: right_soft_argmax(m)[..., ::-1])
    assert not report and "must hold (x, y), not (y, x)" in str(report)
    report = check.soft_argmax(lambda m: (right_soft_argmax(m) + 1) / 2 * (np.array(m.shape[2:0:-1]) - 1))
    assert "pixel units" in str(report)
    report = unguarded(check.soft_argmax, lambda m: keypoints.soft_argmax(keypoints.spatial_softmax(m)))
    assert "do not apply a softmax again" in str(report)


def test_soft_argmax_reports_shapes_and_exceptions():
    report = check.soft_argmax(lambda m: right_soft_argmax(m)[0])
    assert "expected shape (1, 1, 2), got (1, 2)" in str(report)
    report = check.soft_argmax(lambda m: m.missing_attribute)
    assert "your function raised AttributeError" in str(report) and report.score == 0.0


def test_kp2gaussian_accepts_right_answers_and_explains_wrong_variances():
    assert unguarded(check.kp2gaussian, keypoints.kp2gaussian)
    assert check.kp2gaussian(right_kp2gaussian)
    report = check.kp2gaussian(lambda kp, s, v: right_kp2gaussian(kp, s, v / 2))
    assert not report and "the factor 2 is missing" in str(report)
    report = check.kp2gaussian(lambda kp, s, v: right_kp2gaussian(kp, s, v).transpose(0, 3, 1, 2))
    assert "channels-last" in str(report)
    report = check.kp2gaussian(lambda kp, s, v: right_kp2gaussian(kp, s, v * v))
    assert "not a standard deviation" in str(report)


def heatmap_size(frame_shape, scale_factor, pad):
    return tuple(math.ceil(n * scale_factor) + 2 * pad - 6 for n in frame_shape)


def test_heatmap_size_agrees_with_a_real_detector():
    assert check.heatmap_size(heatmap_size)
    for frame_shape, scale_factor, pad in [((32, 24), 0.5, 1)]:
        detector = keypoints.KPDetector(4, 2, 3, 16, 2, 0.1, scale_factor=scale_factor, pad=pad)
        out = call(detector, np.zeros((1,) + frame_shape + (3,), "float32"))
        assert tuple(out["heatmap"].shape[1:3]) == heatmap_size(frame_shape, scale_factor, pad)


def test_heatmap_size_hints():
    report = check.heatmap_size(lambda f, s, p: heatmap_size(f, s, 0))
    assert not report and "padded by `pad` on each side" in str(report)
    report = check.heatmap_size(lambda f, s, p: tuple(math.ceil(n * s) for n in f))
    assert "loses 3 pixels on each side" in str(report)
    report = check.heatmap_size(lambda f, s, p: heatmap_size(f, s, p)[::-1])
    assert "the height first" in str(report)
    report = check.heatmap_size(lambda f, s, p: None)
    assert report.passed == 0 and "expected shape (2,), got ()" in str(report)


def soft_argmax_x_and_y(logits, temperature):
    heatmap = keypoints.spatial_softmax(ops.reshape(logits, (1,) + tuple(logits.shape) + (1,)), temperature)
    return keypoints.soft_argmax(heatmap)[0, 0]


def test_soft_argmax_gradient_reference_is_the_autodiff_gradient(rng):
    logits = rng.normal(0, 0.3, (6, 5)).astype("float32")
    gradients = []
    for c in range(2):
        _, (grad,) = value_and_grads(lambda l, c=c: soft_argmax_x_and_y(l, 0.2)[c], logits)
        gradients.append(grad)
    autodiff = np.stack(gradients, axis=-1)
    np.testing.assert_allclose(_reference_gradient(logits, 0.2), autodiff, atol=2e-5)
    assert check.soft_argmax_gradient(_reference_gradient)


def test_soft_argmax_gradient_hints_at_the_temperature_and_the_sign():
    report = check.soft_argmax_gradient(lambda l, t: _reference_gradient(l, t) * t)
    assert not report and "factor 1 / T" in str(report)
    report = check.soft_argmax_gradient(lambda l, t: -_reference_gradient(l, t))
    assert "the sign is flipped" in str(report)
