"""kmt.coordinates: the pixel <-> normalised conversions, the 2 x 2 inverse and the hourglass widths."""

import numpy as np
import pytest

from helpers import run, to_numpy
from kmt.coordinates import hourglass_width, inverse_2x2, pixels_per_unit, to_normalized, to_pixels
from kmt.warping import make_coordinate_grid


def test_pixels_per_unit_is_x_then_y():
    np.testing.assert_array_equal(pixels_per_unit(33, 65), [32.0, 16.0])
    assert pixels_per_unit(33, 65).dtype == np.float64


def test_corner_pixels_are_minus_one_and_plus_one():
    height, width = 5, 8
    corners = np.array([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])
    pixels = [[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]]
    np.testing.assert_array_equal(to_pixels(corners, height, width), pixels)
    np.testing.assert_array_equal(to_normalized(np.array(pixels), height, width), corners)
    np.testing.assert_array_equal(to_pixels([0.0, 0.0], height, width), [3.5, 2.0])  # the centre


def test_the_coordinate_grid_sits_on_pixel_centres():
    """make_coordinate_grid's (x, y) at row i, column j converts to pixel (column j, row i)."""
    height, width = 4, 7
    grid = to_numpy(make_coordinate_grid((height, width))).astype("float64")
    rows, columns = np.mgrid[0:height, 0:width]
    np.testing.assert_allclose(to_pixels(grid, height, width), np.stack([columns, rows], -1), atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trips_keep_shape_and_dtype(rng, dtype):
    points = rng.uniform(-1.5, 1.5, size=(2, 3, 5, 2)).astype(dtype)
    pixels = to_pixels(points, 17, 30)
    assert pixels.shape == points.shape and pixels.dtype == np.dtype(dtype)
    back = to_normalized(pixels, 17, 30)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_allclose(back, points, rtol=1e-6, atol=1e-6)
    pixels = rng.uniform(0, 29, size=(6, 2))
    np.testing.assert_allclose(to_pixels(to_normalized(pixels, 17, 30), 17, 30), pixels, atol=1e-12)


def test_integer_pixels_become_float64():
    assert to_normalized(np.array([[1, 2]]), 3, 3).dtype == np.float64
    np.testing.assert_array_equal(to_normalized([[1, 2]], 3, 3), [[0.0, 1.0]])


def test_inverse_2x2_matches_numpy_on_well_conditioned_matrices(rng):
    rotations = rng.uniform(0, 2 * np.pi, size=(3, 4))
    cos, sin = np.cos(rotations), np.sin(rotations)
    scales = rng.uniform(0.5, 2.0, size=(3, 4, 2))
    # R diag(s): condition number at most 4.
    matrices = np.stack([np.stack([cos * scales[..., 0], -sin * scales[..., 1]], -1),
                         np.stack([sin * scales[..., 0], cos * scales[..., 1]], -1)], -2).astype("float32")
    got = run(inverse_2x2, matrices)
    assert got.shape == (3, 4, 2, 2)
    np.testing.assert_allclose(got, np.linalg.inv(matrices.astype("float64")), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got @ matrices, np.broadcast_to(np.eye(2), matrices.shape), atol=1e-5)


def test_inverse_2x2_is_the_same_function_for_motion_and_losses():
    from kmt import losses, motion

    assert motion.inverse_2x2 is inverse_2x2 and losses.inverse_2x2 is inverse_2x2


def test_hourglass_width_doubles_up_to_the_cap():
    assert [hourglass_width(32, 256, level) for level in range(6)] == [32, 64, 128, 256, 256, 256]
    assert hourglass_width(np.int64(4), 10, 2) == 10 and isinstance(hourglass_width(4, 10, 1), int)


@pytest.mark.parametrize("call,message", [
    (lambda: pixels_per_unit(1, 8), r"`height` must be a whole number of pixels >= 2; got 1"),
    (lambda: pixels_per_unit(8, 7.5), r"`width` must be a whole number of pixels >= 2; got 7.5"),
    (lambda: pixels_per_unit(True, 8), r"`height` .* got True"),
    (lambda: to_pixels(np.zeros((3, 3)), 8, 8), r"`points` must have shape \(\.\.\., 2\).* got shape \(3, 3\)"),
    (lambda: to_normalized(5.0, 8, 8), r"`pixels` must have shape \(\.\.\., 2\).* got shape \(\)"),
    (lambda: to_pixels(np.zeros(2), 0, 8), r"`height` must be .* got 0"),
    (lambda: hourglass_width(0, 256, 1), r"`block_expansion` must be a whole number >= 1; got 0"),
    (lambda: hourglass_width(32, 256, -1), r"`level` must be a whole number >= 0; got -1"),
    (lambda: hourglass_width(32, 256.0, 1), r"`max_features` must be a whole number >= 1; got 256.0"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
