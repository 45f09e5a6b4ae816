"""Chapter 3's exercise checkers accept right answers, reject typical wrong ones and say why."""

import numpy as np

from kmt import check, motion


def unguarded(checker, candidate):
    """Run a checker without disabling the kmt functions its exercise re-implements: kmt itself is the right answer."""
    return check.check_candidate(checker.exercise(), candidate)


def numpy_grid(h, w):
    x = 2 * np.arange(w) / (w - 1) - 1
    y = 2 * np.arange(h) / (h - 1) - 1
    return np.stack(np.meshgrid(x, y), axis=-1)


def right_sparse_motion(spatial_size, p_driving, p_source, jacobian_driving, jacobian_source):
    jacobian = np.asarray(jacobian_source) @ np.linalg.inv(jacobian_driving)
    offsets = numpy_grid(*spatial_size)[None] - np.asarray(p_driving)[:, None, None]
    return np.einsum("bij,bhwj->bhwi", jacobian, offsets) + np.asarray(p_source)[:, None, None]


def test_sparse_motion_accepts_a_right_answer_and_kmt():
    report = check.sparse_motion(right_sparse_motion)
    assert report and str(report) == "sparse_motion: all 3 cases pass."

    def through_kmt(size, p_d, p_s, j_d, j_s):
        grids = motion.sparse_motions(
            size, {"value": p_d[:, None], "jacobian": j_d[:, None]}, {"value": p_s[:, None], "jacobian": j_s[:, None]}
        )
        return grids[:, 1]

    assert unguarded(check.sparse_motion, through_kmt)


def test_sparse_motion_explains_common_mistakes():
    report = check.sparse_motion(lambda s, pd, ps, jd, js: right_sparse_motion(s, ps, pd, js, jd))
    assert not report and "maps the source to the driving frame" in str(report)
    report = check.sparse_motion(
        lambda s, pd, ps, jd, js: right_sparse_motion(s, pd, ps, np.eye(2)[None].repeat(len(pd), 0), np.eye(2)[None])
    )
    assert "zero-order motion" in str(report)
    report = check.sparse_motion(lambda s, pd, ps, jd, js: right_sparse_motion(s, pd, ps, js, jd))
    assert "roles of the Jacobians are swapped" in str(report)


def test_sparse_motion_reports_exceptions_and_shapes():
    report = check.sparse_motion(lambda s, pd, ps, jd, js: np.linalg.inv(pd))
    assert report.score == 0.0 and "your function raised LinAlgError" in str(report)
    report = check.sparse_motion(lambda s, pd, ps, jd, js: right_sparse_motion(s, pd, ps, jd, js)[0])
    assert "expected shape (1, 4, 4, 2), got (4, 4, 2)" in str(report)


def test_relative_jacobians():
    assert check.relative_jacobians(lambda js, jd: js @ np.linalg.inv(jd))
    assert unguarded(check.relative_jacobians, lambda js, jd: motion.relative_jacobians({"jacobian": js}, {"jacobian": jd}))
    report = check.relative_jacobians(lambda js, jd: np.linalg.inv(jd) @ js)
    assert not report and "wrong order" in str(report)
    report = check.relative_jacobians(lambda js, jd: js @ jd)
    assert "J_d must be inverted" in str(report)
    report = check.relative_jacobians(lambda js, jd: js @ np.swapaxes(np.linalg.inv(jd), -1, -2))
    assert "the inverse is transposed" in str(report)


def right_grid_jacobian(grid):
    grid = np.asarray(grid, "float64")
    h, w = grid.shape[1:3]
    d_dx = np.gradient(grid, 2 / (w - 1), axis=2)
    d_dy = np.gradient(grid, 2 / (h - 1), axis=1)
    return np.stack([d_dx, d_dy], axis=-1)


def test_grid_jacobian_is_exact_on_affine_grids_and_accepts_numpy_gradient():
    assert check.grid_jacobian(right_grid_jacobian)
    theta = np.array([[0.9, 0.4], [-0.2, 1.3]])
    grid = numpy_grid(4, 7) @ theta.T + 0.1
    np.testing.assert_allclose(right_grid_jacobian(grid[None]), np.broadcast_to(theta, (1, 4, 7, 2, 2)), atol=1e-12)


def test_grid_jacobian_hints():
    report = check.grid_jacobian(lambda g: np.swapaxes(right_grid_jacobian(g), -1, -2))
    assert not report and "is transposed" in str(report)
    report = check.grid_jacobian(lambda g: right_grid_jacobian(g)[..., ::-1])
    assert "the columns are swapped" in str(report)

    def per_pixel(grid):
        return np.stack([np.gradient(grid, axis=2), np.gradient(grid, axis=1)], axis=-1)

    report = check.grid_jacobian(per_pixel)
    assert "differences per pixel" in str(report)
