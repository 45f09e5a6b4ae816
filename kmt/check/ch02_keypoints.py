"""Checkers for the exercises of chapter 2, "Keypoints as heatmaps"."""

import math

import numpy as np

from kmt import keypoints, warping
from kmt.check.core import Exercise, as_array, checker, compare_judge

__all__ = ["soft_argmax", "kp2gaussian", "heatmap_size", "soft_argmax_gradient"]


def _grid(h, w):
    return as_array(warping.make_coordinate_grid((h, w))).astype("float64")


def _softmax_over_pixels(logits):
    b, h, w, k = logits.shape
    flat = logits.reshape(b, h * w, k)
    flat = np.exp(flat - flat.max(axis=1, keepdims=True))
    return (flat / flat.sum(axis=1, keepdims=True)).reshape(b, h, w, k)


def _expectation(heatmap, grid):
    return np.einsum("bhwk,hwc->bkc", np.asarray(heatmap, "float64"), grid)


@checker("kmt.keypoints.soft_argmax")
def soft_argmax():
    """Check ``candidate(heatmap)``: the expected (x, y) position under each map.

    ``heatmap`` is ``(B, h, w, K)``, each map a distribution over pixels; the
    answer is ``(B, K, 2)``, ``sum_ij heatmap[b, i, j, k] * z_ij`` with ``z_ij``
    from :func:`kmt.warping.make_coordinate_grid`.
    """
    rng = np.random.default_rng(20)
    cases = []
    for shape, spread in [((1, 4, 4, 1), 1.0), ((2, 5, 7, 3), 3.0), ((2, 10, 10, 5), 6.0)]:
        heatmap = _softmax_over_pixels(rng.normal(0, spread, shape)).astype("float32")
        expected = as_array(keypoints.soft_argmax(heatmap)).astype("float64")
        cases.append((f"heatmap {shape}", (heatmap,), expected))
    one_hot = np.zeros((1, 3, 6, 2), "float32")
    one_hot[0, 2, 1, 0] = 1.0
    one_hot[0, 0, 5, 1] = 1.0
    cases.append(("a one-hot heatmap (1, 3, 6, 2)", (one_hot,), as_array(keypoints.soft_argmax(one_hot)).astype("float64")))

    def pixel_units(heatmap):
        h, w = heatmap.shape[1:3]
        rows, cols = np.mgrid[0:h, 0:w]
        return _expectation(heatmap, np.stack([cols, rows], axis=-1).astype("float64"))

    def unaligned(heatmap):
        h, w = heatmap.shape[1:3]
        x = (2 * np.arange(w) + 1) / w - 1
        y = (2 * np.arange(h) + 1) / h - 1
        return _expectation(heatmap, np.stack(np.meshgrid(x, y), axis=-1))

    hints = [
        (lambda m: _expectation(m, _grid(*m.shape[1:3]))[..., ::-1],
         "the last axis must hold (x, y), not (y, x): x runs along the width (axis 2 of the heatmap)."),
        (pixel_units,
         "these are pixel units (column, row); keypoints are normalised to [-1, 1] with make_coordinate_grid."),
        (lambda m: _expectation(_softmax_over_pixels(np.asarray(m, "float64")), _grid(*m.shape[1:3])),
         "the heatmap is already a distribution: do not apply a softmax again, just take the expectation."),
        (unaligned,
         "that grid puts -1 and 1 on the outer edges of the image (align_corners=False); FOMM's grid puts "
         "them on the centres of the edge pixels (make_coordinate_grid)."),
    ]
    return Exercise("soft_argmax", cases, compare_judge(1e-5, hints))


def _reference_gaussian(kp, size, variance):
    return as_array(keypoints.kp2gaussian(kp, size, variance)).astype("float64")


@checker("kmt.keypoints.kp2gaussian")
def kp2gaussian():
    """Check ``candidate(kp, spatial_size, kp_variance)``: keypoints drawn as Gaussians.

    ``kp`` is ``(B, K, 2)`` holding (x, y) in [-1, 1], ``spatial_size`` is
    ``(h, w)``; the answer is ``(B, h, w, K)`` with
    ``exp(-|z_ij - kp[b, k]|**2 / (2 * kp_variance))``, peak value 1.
    """
    rng = np.random.default_rng(21)
    cases = []
    for batch, num_kp, size, variance in [(1, 1, (5, 5), 0.05), (2, 3, (6, 9), 0.05), (2, 4, (16, 12), 0.01)]:
        kp = rng.uniform(-0.9, 0.9, (batch, num_kp, 2)).astype("float32")
        label = f"kp {kp.shape}, spatial_size {size}, kp_variance {variance}"
        cases.append((label, (kp, size, variance), _reference_gaussian(kp, size, variance)))
    hints = [
        (lambda kp, s, v: _reference_gaussian(kp, s, v).transpose(0, 3, 1, 2),
         "heatmaps are channels-last in kmt: (B, h, w, K), not (B, K, h, w)."),
        (lambda kp, s, v: _reference_gaussian(np.asarray(kp)[..., ::-1], s, v),
         "keypoints hold (x, y) with x along the width: compare kp[..., 0] with the grid's x."),
        (lambda kp, s, v: _reference_gaussian(kp, s, v / 2),
         "the exponent is -|z - kp|^2 / (2 * kp_variance): the factor 2 is missing."),
        (lambda kp, s, v: _reference_gaussian(kp, s, v * v),
         "kp_variance is a variance, not a standard deviation: divide by 2 * kp_variance, not by 2 * kp_variance**2."),
        (lambda kp, s, v: (lambda g: g / g.sum(axis=(1, 2), keepdims=True))(_reference_gaussian(kp, s, v)),
         "the Gaussians are not normalised to sum to 1: their peak value is 1."),
    ]
    return Exercise("kp2gaussian", cases, compare_judge(1e-5, hints))


def _heatmap_size(frame_shape, scale_factor, pad):
    stride = int(1 / scale_factor)
    return tuple(math.ceil(n / stride) + 2 * pad - 6 for n in frame_shape)


@checker()
def heatmap_size():
    """Check ``candidate(frame_shape, scale_factor, pad)``: the ``(h, w)`` of a KPDetector's heatmaps.

    ``frame_shape`` is the ``(H, W)`` of the input frames; the detector
    downsamples them by ``scale_factor`` (``1 / scale_factor`` an integer),
    keeps that size through the hourglass, and applies a 7 x 7 convolution to
    the features padded by ``pad`` pixels on each side.
    """
    cases = []
    for frame_shape, scale_factor, pad in [((64, 64), 0.25, 0), ((256, 256), 0.25, 0), ((64, 64), 0.5, 3),
                                           ((96, 128), 0.5, 1), ((128, 64), 1, 0)]:
        label = f"frame_shape {frame_shape}, scale_factor {scale_factor}, pad {pad}"
        expected = np.asarray(_heatmap_size(frame_shape, scale_factor, pad), "float64")
        cases.append((label, (frame_shape, scale_factor, pad), expected))
    hints = [
        (lambda f, s, p: _heatmap_size(f, s, p)[::-1], "return (h, w): the height first."),
        (lambda f, s, p: _heatmap_size(f, s, 3),
         "a 7 x 7 convolution without padding loses 3 pixels on each side; only pad = 3 keeps the size."),
        (lambda f, s, p: _heatmap_size(f, s, 0), "the features are padded by `pad` on each side before the 7 x 7 convolution."),
        (lambda f, s, p: tuple(n + p for n in _heatmap_size(f, s, 0)),
         "`pad` pixels are added on both sides: 2 * pad in all."),
        (lambda f, s, p: _heatmap_size(f, 1, p), "the frames are first downsampled by scale_factor."),
    ]

    def as_float(got):
        return np.asarray(got, dtype="float64")

    return Exercise("heatmap_size", cases, compare_judge(0, hints, convert=as_float, what="a pair of numbers (h, w)"))


def _reference_gradient(logits, temperature):
    logits = np.asarray(logits, "float64")
    h, w = logits.shape
    z = _grid(h, w)
    p = _softmax_over_pixels(logits[None, :, :, None] / temperature)[0, :, :, 0]
    mean = np.einsum("hw,hwc->c", p, z)
    return p[..., None] * (z - mean) / temperature


@checker()
def soft_argmax_gradient():
    """Check ``candidate(logits, temperature)``: how the soft-argmax moves when one logit changes.

    ``logits`` is ``(h, w)``, one map; the keypoint is the soft-argmax of
    ``softmax(logits / temperature)``. The answer is ``(h, w, 2)``: entry
    ``[i, j, c]`` is the derivative of coordinate ``c`` (0: x, 1: y) of the
    keypoint with respect to ``logits[i, j]``.
    """
    rng = np.random.default_rng(22)
    cases = []
    for shape, temperature, spread in [((5, 5), 1.0, 1.0), ((6, 8), 0.1, 0.2), ((7, 4), 0.5, 0.5)]:
        logits = rng.normal(0, spread, shape).astype("float32")
        label = f"logits {shape}, temperature {temperature}"
        cases.append((label, (logits, temperature), _reference_gradient(logits, temperature)))
    hints = [
        (lambda l, t: _reference_gradient(l, t) * t, "the logits are divided by the temperature: the chain rule adds a factor 1 / T."),
        (lambda l, t: -_reference_gradient(l, t), "the sign is flipped: raising a logit pulls the keypoint towards that pixel."),
        (lambda l, t: _reference_gradient(l, t)[..., ::-1], "the last axis must hold (d x, d y), not (d y, d x)."),
        (lambda l, t: _reference_gradient(l, t) / t, "the factor 1 / T appears once, not twice."),
    ]
    return Exercise("soft_argmax_gradient", cases, compare_judge(1e-4, hints))
