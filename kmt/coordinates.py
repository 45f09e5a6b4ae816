"""The coordinate conventions every kmt module keeps, and the conversions between them.

Images are NHWC: ``(B, H, W, C)``, row index along the height ``H``, column
index along the width ``W``.

Positions are normalised: a point ``z = (x, y)`` has ``x`` along the width and
``y`` along the height, both in ``[-1, 1]``, with ``-1`` and ``+1`` on the
*centres* of the edge pixels (the grid of :func:`kmt.warping.make_coordinate_grid`).
The pixel in row ``i`` and column ``j`` (``0 <= i < H``, ``0 <= j < W``) has its
centre at::

    x = 2 j / (W - 1) - 1,        y = 2 i / (H - 1) - 1

and the other way round, a normalised point lies at::

    column = (x + 1) (W - 1) / 2,   row = (y + 1) (H - 1) / 2

(fractional values fall between pixel centres). One normalised unit is thus
``(W - 1) / 2`` pixels along x and ``(H - 1) / 2`` along y
(:func:`pixels_per_unit`): a distance in pixels scales each axis by its own
factor before taking the norm.

Keypoints are ``(B, K, 2)`` arrays of such ``(x, y)`` points (``kp["value"]``);
their Jacobians are ``(B, K, 2, 2)`` (``kp["jacobian"]``), row ``i`` holding the
derivatives of output coordinate ``i`` (0: x, 1: y) with respect to ``x`` and ``y``.

Pixel coordinates here are ``(column, row)`` pairs in that order, like the
``(x, y)`` they come from (not the ``(row, column)`` order of array indexing).
"""

import numbers

import numpy as np

__all__ = ["pixels_per_unit", "to_pixels", "to_normalized", "inverse_2x2", "hourglass_width"]


def pixels_per_unit(height, width):
    """Pixels per normalised unit, x then y: ``np.array([(W - 1) / 2, (H - 1) / 2])`` (float64).

    ``height`` and ``width`` are the image size in pixels, whole numbers >= 2
    (with one pixel, -1 and +1 would be the same point).
    """
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 2:
            raise ValueError(f"`{name}` must be a whole number of pixels >= 2; got {value!r}.")
    return np.array([(width - 1) / 2.0, (height - 1) / 2.0])


def to_pixels(points, height, width):
    """Normalised ``(x, y)`` points ``(..., 2)`` -> pixel ``(column, row)``, same shape.

    ``points`` is array-like (NumPy); a floating array keeps its dtype, other
    input becomes float64. ``-1`` maps to pixel 0 and ``+1`` to ``W - 1``
    (columns) or ``H - 1`` (rows).
    """
    points, scale = _pairs_and_scale(points, "points", "(x, y)", height, width)
    return (points + 1) * scale


def to_normalized(pixels, height, width):
    """Pixel ``(column, row)`` positions ``(..., 2)`` -> normalised ``(x, y)``, same shape.

    The inverse of :func:`to_pixels`: ``x = column / ((W - 1) / 2) - 1`` and
    likewise for ``y``. A floating array keeps its dtype, other input becomes float64.
    """
    pixels, scale = _pairs_and_scale(pixels, "pixels", "(column, row)", height, width)
    return pixels / scale - 1


def _pairs_and_scale(values, name, holding, height, width):
    """``values`` as a floating ``(..., 2)`` array, and :func:`pixels_per_unit` in its dtype."""
    values = np.asarray(values)
    if values.ndim == 0 or values.shape[-1] != 2:
        raise ValueError(f"`{name}` must have shape (..., 2) holding {holding}; got shape {values.shape}.")
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype("float64")
    return values, pixels_per_unit(height, width).astype(values.dtype)


def inverse_2x2(matrix):
    """Inverse of each 2 x 2 matrix in ``(..., 2, 2)``, in closed form (no epsilon, like ``torch.inverse``).

    A singular matrix gives infinities or NaNs, as the reference's would.
    """
    from keras import ops  # imported here: the NumPy conversions of this module do not need Keras

    matrix = ops.convert_to_tensor(matrix)
    a, b = matrix[..., 0, 0], matrix[..., 0, 1]
    c, d = matrix[..., 1, 0], matrix[..., 1, 1]
    det = a * d - b * c
    adjugate = ops.stack([ops.stack([d, -b], axis=-1), ops.stack([-c, a], axis=-1)], axis=-2)
    return adjugate / det[..., None, None]


def hourglass_width(block_expansion, max_features, level):
    """Channels of an encoder level: ``min(max_features, block_expansion * 2**level)``.

    Level 0 is the input resolution; each level down halves the resolution and
    doubles the channels until ``max_features`` caps them. The hourglass
    (:class:`kmt.layers.Hourglass`), the generator's encoder and the
    discriminator all grow their channels this way.
    """
    for name, value, low in (("block_expansion", block_expansion, 1), ("max_features", max_features, 1),
                             ("level", level, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"`{name}` must be a whole number >= {low}; got {value!r}.")
    return min(int(max_features), int(block_expansion) * 2 ** int(level))
