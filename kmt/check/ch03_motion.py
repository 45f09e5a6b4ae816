"""Checkers for the exercises of chapter 3, "First-order motion"."""

import numpy as np

from kmt import motion, warping
from kmt.check.core import Exercise, as_array, checker, compare_judge

__all__ = ["sparse_motion", "relative_jacobians", "grid_jacobian"]


def _random_jacobians(rng, shape):
    """Invertible, non-symmetric 2 x 2 matrices near a rotation and scale, so wrong orders show."""
    angle = rng.uniform(-0.6, 0.6, shape)
    scale = rng.uniform(0.7, 1.3, shape)
    rotation = np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1), np.stack([np.sin(angle), np.cos(angle)], -1)], -2)
    shear = np.eye(2) + rng.normal(0, 0.25, shape + (2, 2))
    return (scale[..., None, None] * rotation @ shear).astype("float32")


def _one_keypoint_motion(size, p_driving, p_source, jacobian):
    """``p_s + J (z - p_d)`` for one keypoint per batch element: ``(B, h, w, 2)``."""
    z = as_array(warping.make_coordinate_grid(size)).astype("float64")
    offsets = z[None] - np.asarray(p_driving, "float64")[:, None, None]
    return np.einsum("bij,bhwj->bhwi", np.asarray(jacobian, "float64"), offsets) + np.asarray(p_source, "float64")[:, None, None]


def _inverse(matrix):
    return np.linalg.inv(np.asarray(matrix, "float64"))


@checker("kmt.motion.sparse_motions", "kmt.motion.relative_jacobians", "kmt.motion.inverse_2x2")
def sparse_motion():
    """Check ``candidate(spatial_size, p_driving, p_source, jacobian_driving, jacobian_source)``: Eq. (4).

    ``p_driving`` and ``p_source`` are ``(B, 2)`` keypoints (x, y),
    the Jacobians ``(B, 2, 2)``; the answer is the ``(B, h, w, 2)`` sampling grid
    ``p_source + J_s J_d^-1 (z - p_driving)`` over the ``(h, w)`` coordinate grid ``z``
    (:func:`kmt.warping.make_coordinate_grid`).
    """
    rng = np.random.default_rng(30)
    cases = []
    for batch, size in [(1, (4, 4)), (2, (5, 7)), (3, (8, 6))]:
        p_d, p_s = (rng.uniform(-0.7, 0.7, (batch, 2)).astype("float32") for _ in range(2))
        j_d, j_s = _random_jacobians(rng, (batch,)), _random_jacobians(rng, (batch,))
        grids = motion.sparse_motions(
            size, {"value": p_d[:, None], "jacobian": j_d[:, None]}, {"value": p_s[:, None], "jacobian": j_s[:, None]}
        )
        expected = as_array(grids)[:, 1].astype("float64")
        cases.append((f"batch {batch}, spatial_size {size}", (size, p_d, p_s, j_d, j_s), expected))
    hints = [
        (lambda s, pd, ps, jd, js: _one_keypoint_motion(s, ps, pd, jd @ _inverse(js)),
         "this maps the source to the driving frame; T_{S<-D} tells each driving pixel z where to read the "
         "source: p_source + J (z - p_driving)."),
        (lambda s, pd, ps, jd, js: _one_keypoint_motion(s, pd, ps, _inverse(jd) @ js),
         "the product is in the wrong order: J = J_source @ inverse(J_driving), not inverse(J_driving) @ J_source."),
        (lambda s, pd, ps, jd, js: _one_keypoint_motion(s, pd, ps, jd @ _inverse(js)),
         "the roles of the Jacobians are swapped: J = J_source @ inverse(J_driving)."),
        (lambda s, pd, ps, jd, js: _one_keypoint_motion(s, pd, ps, np.swapaxes(js @ _inverse(jd), -1, -2)),
         "J is applied transposed: the offset (x, y) is a column vector, J @ offset sums over the last axis of J."),
        (lambda s, pd, ps, jd, js: _one_keypoint_motion(s, pd, ps, np.broadcast_to(np.eye(2), np.shape(jd))),
         "that is the zero-order motion (a translation): multiply the offset z - p_driving by J_s J_d^-1."),
    ]
    return Exercise("sparse_motion", cases, compare_judge(1e-4, hints))


@checker("kmt.motion.relative_jacobians", "kmt.motion.inverse_2x2")
def relative_jacobians():
    """Check ``candidate(jacobian_source, jacobian_driving)``: ``J_s J_d^-1`` for each keypoint.

    Both arguments are ``(B, K, 2, 2)``; so is the answer.
    """
    rng = np.random.default_rng(31)
    cases = []
    for shape in [(1, 1), (2, 3), (3, 10)]:
        j_s, j_d = _random_jacobians(rng, shape), _random_jacobians(rng, shape)
        expected = as_array(motion.relative_jacobians({"jacobian": j_s}, {"jacobian": j_d})).astype("float64")
        cases.append((f"Jacobians {j_s.shape}", (j_s, j_d), expected))
    hints = [
        (lambda js, jd: _inverse(jd) @ js, "the product is in the wrong order: J_s @ inverse(J_d), not inverse(J_d) @ J_s."),
        (lambda js, jd: jd @ _inverse(js), "the roles are swapped: the source Jacobian is the one that is not inverted."),
        (lambda js, jd: np.asarray(js, "float64") @ np.asarray(jd, "float64"), "J_d must be inverted: J_s @ inverse(J_d)."),
        (lambda js, jd: np.swapaxes(np.asarray(js, "float64") @ _inverse(jd), -1, -2),
         "the result is transposed; check the adjugate of [[a, b], [c, d]]: [[d, -b], [-c, a]] / (ad - bc)."),
        (lambda js, jd: np.asarray(js, "float64") @ np.swapaxes(_inverse(jd), -1, -2),
         "the inverse is transposed: the adjugate of [[a, b], [c, d]] is [[d, -b], [-c, a]]."),
    ]
    return Exercise("relative_jacobians", cases, compare_judge(1e-4, hints))


def _grid_jacobian(grid, spacing=True):
    grid = np.asarray(grid, "float64")
    h, w = grid.shape[1:3]
    dx = 2.0 / (w - 1) if spacing else 1.0
    dy = 2.0 / (h - 1) if spacing else 1.0
    d_dx = np.gradient(grid, dx, axis=2)  # (B, h, w, 2): d T_i / d x
    d_dy = np.gradient(grid, dy, axis=1)
    return np.stack([d_dx, d_dy], axis=-1)  # [..., i, j] = d T_i / d z_j


def _swirl(size, strength, centre):
    z = as_array(warping.make_coordinate_grid(size)).astype("float64")
    offset = z - np.asarray(centre)
    angle = strength * np.exp(-np.sum(offset**2, -1) / 0.3)
    cos, sin = np.cos(angle)[..., None], np.sin(angle)[..., None]
    rotated = np.concatenate([cos * offset[..., :1] - sin * offset[..., 1:], sin * offset[..., :1] + cos * offset[..., 1:]], -1)
    return (rotated + np.asarray(centre))[None]


@checker()
def grid_jacobian():
    """Check ``candidate(grid)``: the Jacobian of a sampling grid at every pixel, by finite differences.

    ``grid`` is ``(B, h, w, 2)``, a map ``T`` sampled on the coordinate grid
    ``z`` of :func:`kmt.warping.make_coordinate_grid`. The answer is
    ``(B, h, w, 2, 2)`` with ``[..., i, j] = d T_i / d z_j`` (``z_0 = x`` along
    the width, ``z_1 = y`` along the height), in normalised units: central
    differences inside, one-sided differences on the border (as ``numpy.gradient``).
    """
    rng = np.random.default_rng(32)
    theta = np.array([[1.1, -0.3, 0.1], [0.2, 0.8, -0.2]])
    z = as_array(warping.make_coordinate_grid((5, 6))).astype("float64")
    affine = (z @ theta[:, :2].T + theta[:, 2])[None]
    smooth = as_array(warping.make_coordinate_grid((9, 7)))[None] + rng.normal(0, 0.05, (2, 9, 7, 2))
    grids = [("an affine grid (1, 5, 6, 2)", affine), ("a swirl (1, 12, 10, 2)", _swirl((12, 10), 1.5, (0.1, -0.2))),
             ("a random grid (2, 9, 7, 2)", smooth)]
    cases = [(label, (grid.astype("float32"),), _grid_jacobian(grid.astype("float32"))) for label, grid in grids]
    hints = [
        (lambda g: np.swapaxes(_grid_jacobian(g), -1, -2),
         "the Jacobian is transposed: entry [..., i, j] is d T_i / d z_j (row: output coordinate, column: input)."),
        (lambda g: _grid_jacobian(g)[..., ::-1],
         "the columns are swapped: column 0 is the derivative along x (the width, axis 2 of the grid), column 1 along y."),
        (lambda g: _grid_jacobian(g, spacing=False),
         "these are differences per pixel; divide by the pixel spacing in normalised units, 2 / (w - 1) along x "
         "and 2 / (h - 1) along y."),
    ]
    return Exercise("grid_jacobian", cases, compare_judge(1e-4, hints))
