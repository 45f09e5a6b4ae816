"""The exercise checkers accept right answers, reject wrong ones and explain why in words."""

import numpy as np
from keras import ops

from kmt import check, warping


def right_affine_grid(theta, size):
    base = ops.convert_to_numpy(warping.make_coordinate_grid(size))
    homogeneous = np.concatenate([base, np.ones(base.shape[:2] + (1,), "float32")], -1)
    return np.einsum("hwk,bjk->bhwj", homogeneous, theta)


def test_affine_grid_accepts_a_correct_solution():
    report = check.affine_grid(right_affine_grid)
    assert report and report.score == 1.0
    assert str(report) == "affine_grid: all 3 cases pass."


def test_affine_grid_explains_swapped_axes():
    report = check.affine_grid(lambda t, s: right_affine_grid(t, s)[..., ::-1])
    assert not report and report.passed == 0
    assert "must hold (x, y), not (y, x)" in str(report)


def test_affine_grid_reports_wrong_shapes_and_exceptions():
    report = check.affine_grid(lambda t, s: right_affine_grid(t, s)[0])
    assert "expected shape (1, 4, 4, 2), got (4, 4, 2)" in str(report)
    report = check.affine_grid(lambda t, s: 1 / 0)
    assert "your function raised ZeroDivisionError" in str(report)
    assert report.score == 0.0


def test_grid_sample_nearest_accepts_kmt_and_hints_at_conventions():
    assert check.grid_sample_nearest(lambda i, g: warping.grid_sample(i, g, mode="nearest"))
    report = check.grid_sample_nearest(
        lambda i, g: warping.grid_sample(i, g, mode="nearest", align_corners=False)
    )
    assert not report and "align_corners=False convention" in str(report)
    report = check.grid_sample_nearest(
        lambda i, g: warping.grid_sample(i, g, mode="nearest", padding_mode="border")
    )
    assert "must read zeros" in str(report)


def test_identity_grid_unaligned():
    def right(h, w):
        x = (np.arange(w) + 0.5) * 2 / w - 1
        y = (np.arange(h) + 0.5) * 2 / h - 1
        return np.stack(np.meshgrid(x, y), -1)

    assert check.identity_grid_unaligned(right)
    report = check.identity_grid_unaligned(lambda h, w: warping.make_coordinate_grid((h, w)))
    assert "that is the align_corners=True grid" in str(report)
    image = np.random.default_rng(0).random((1, 4, 6, 3), dtype="float32")
    grid = right(4, 6)[None].astype("float32")
    out = ops.convert_to_numpy(warping.grid_sample(image, grid, align_corners=False))
    np.testing.assert_allclose(out, image, atol=1e-6)
