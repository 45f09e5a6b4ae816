"""Checkers for the exercises of chapter 1, "Coordinates and warping"."""

import numpy as np

from kmt import warping
from kmt.check.core import Exercise, as_array, checker, compare_judge

__all__ = ["affine_grid", "grid_sample_nearest", "identity_grid_unaligned"]


def _homogeneous_grid(size):
    base = as_array(warping.make_coordinate_grid(size)).astype("float64")
    return np.concatenate([base, np.ones(base.shape[:2] + (1,))], axis=-1)


def _reference_affine_grid(theta, size):
    return np.einsum("hwk,bjk->bhwj", _homogeneous_grid(size), np.asarray(theta, "float64"))


@checker()
def affine_grid():
    """Check ``candidate(theta, size)``: the sampling grid of affine maps.

    ``theta`` is ``(B, 2, 3)``; ``size`` is ``(h, w)``; the answer is the
    ``(B, h, w, 2)`` grid whose entry ``[b, i, j]`` is ``theta[b] @ (x_j, y_i, 1)``
    with ``(x_j, y_i)`` from :func:`kmt.warping.make_coordinate_grid`.
    """
    rng = np.random.default_rng(0)
    cases = []
    for size, batch in [((4, 4), 1), ((3, 5), 2), ((7, 2), 3)]:
        theta = np.eye(2, 3)[None] + rng.normal(0, 0.3, (batch, 2, 3))
        theta = theta.astype("float32")
        cases.append((f"size {size}, batch {batch}", (theta, size), _reference_affine_grid(theta, size)))
    hints = [
        (lambda t, s: _reference_affine_grid(t, s[::-1]).transpose(0, 2, 1, 3),
         "height and width look swapped: the grid is (B, h, w, 2) and x runs along the width."),
        (lambda t, s: _reference_affine_grid(t, s)[..., ::-1],
         "the last axis must hold (x, y), not (y, x)."),
        (lambda t, s: np.einsum("hwk,bkj->bhwj", _homogeneous_grid(s)[..., :2], np.asarray(t)[:, :, :2]) + np.asarray(t)[:, None, None, :, 2],
         "the 2 x 2 part of theta is applied transposed: use theta @ (x, y, 1), i.e. sum over the last axis of theta."),
    ]
    return Exercise("affine_grid", cases, compare_judge(1e-5, hints))


def _reference_sample(image, grid, mode, align_corners):
    return as_array(
        warping.grid_sample_keras(image, grid, mode=mode, padding_mode="zeros", align_corners=align_corners)
    ).astype("float64")


@checker("kmt.warping.grid_sample", "kmt.warping.grid_sample_keras", "kmt.sampling.sample_nearest")
def grid_sample_nearest():
    """Check ``candidate(image, grid)``: nearest-neighbour sampling, zero padding, ``align_corners=True``.

    ``image`` is ``(B, H, W, C)``, ``grid`` ``(B, Ho, Wo, 2)`` of (x, y) in [-1, 1]
    (values outside read zeros); the answer is ``(B, Ho, Wo, C)``.
    """
    rng = np.random.default_rng(1)
    cases = []
    for b, h, w, c, ho, wo, spread in [(1, 4, 4, 1, 3, 3, 0.9), (2, 5, 7, 3, 4, 6, 0.9), (2, 6, 3, 2, 5, 5, 1.8)]:
        image = rng.random((b, h, w, c)).astype("float32")
        grid = rng.uniform(-spread, spread, (b, ho, wo, 2)).astype("float32")
        expected = _reference_sample(image, grid, "nearest", True)
        label = f"image {image.shape}, grid {grid.shape}" + (" with points outside" if spread > 1 else "")
        cases.append((label, (image, grid), expected))

    def floor_variant(image, grid):
        h, w = image.shape[1:3]
        x = np.floor((grid[..., 0] + 1) / 2 * (w - 1)).astype(int)
        y = np.floor((grid[..., 1] + 1) / 2 * (h - 1)).astype(int)
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        b = np.arange(image.shape[0])[:, None, None]
        return image[b, y.clip(0, h - 1), x.clip(0, w - 1)] * inside[..., None]

    def clamp_variant(image, grid):
        h, w = image.shape[1:3]
        x = np.round((grid[..., 0] + 1) / 2 * (w - 1)).astype(int).clip(0, w - 1)
        y = np.round((grid[..., 1] + 1) / 2 * (h - 1)).astype(int).clip(0, h - 1)
        return image[np.arange(image.shape[0])[:, None, None], y, x]

    hints = [
        (lambda i, g: _reference_sample(i, g, "nearest", False),
         "this is the align_corners=False convention; with align_corners=True, -1 and 1 are the centres of the edge pixels."),
        (floor_variant, "round to the nearest pixel instead of flooring."),
        (clamp_variant, "points outside the image must read zeros, not the nearest edge pixel."),
    ]
    return Exercise("grid_sample_nearest", cases, compare_judge(1e-6, hints))


def _reference_identity_unaligned(h, w):
    x = (2 * np.arange(w) + 1) / w - 1
    y = (2 * np.arange(h) + 1) / h - 1
    xx, yy = np.meshgrid(x, y)
    return np.stack([xx, yy], axis=-1)


@checker()
def identity_grid_unaligned():
    """Check ``candidate(h, w)``: the ``(h, w, 2)`` grid that reproduces an image with ``align_corners=False``."""
    cases = [(f"size ({h}, {w})", (h, w), _reference_identity_unaligned(h, w)) for h, w in [(2, 2), (4, 6), (5, 3)]]
    hints = [
        (lambda h, w: as_array(warping.make_coordinate_grid((h, w))),
         "that is the align_corners=True grid (make_coordinate_grid); with align_corners=False, -1 and 1 are the outer edges of the image, so pixel centres sit half a pixel inside."),
        (lambda h, w: _reference_identity_unaligned(h, w)[..., ::-1],
         "the last axis must hold (x, y), not (y, x)."),
    ]
    return Exercise("identity_grid_unaligned", cases, compare_judge(1e-6, hints))
