"""Normalised coordinates, warping and the resizing FOMM uses (chapter 1).

Conventions kept by every function here:

* images are NHWC, ``(B, H, W, C)``, floating point;
* a sampling grid is ``(B, Ho, Wo, 2)`` holding **(x, y)** in [-1, 1]: x runs
  along the width, y along the height, and (-1, -1) is the centre of the
  top-left pixel when ``align_corners=True`` (its outer corner when ``False``);
* every function is written with ``keras.ops``, so it runs and differentiates
  on the TensorFlow, JAX and PyTorch backends (the sampling kernels of
  :mod:`kmt.sampling` use a backend's own row gather and scatter-add where
  ``kmt.backend.<name>.ops`` has them, and :func:`grid_sample` PyTorch's own op).
"""

import math

import keras
import numpy as np
from keras import ops

from kmt import backend
from kmt.sampling import sample_bilinear, sample_nearest

__all__ = [
    "make_coordinate_grid",
    "grid_sample",
    "grid_sample_keras",
    "grid_sample_implementation",
    "upsample_nearest_2x",
    "resize_bilinear",
    "gaussian_kernel_1d",
    "AntiAliasInterpolation2d",
    "ImagePyramid",
    "GRID_SAMPLE_MODES",
    "PADDING_MODES",
]

GRID_SAMPLE_MODES = ("bilinear", "nearest")
PADDING_MODES = ("zeros", "border", "reflection")


def make_coordinate_grid(spatial_size, dtype="float32"):
    """Normalised pixel-centre coordinates of an ``(h, w)`` image.

    Returns a ``(h, w, 2)`` tensor whose entry ``[i, j]`` is ``(x_j, y_i)``
    with ``x_j = 2 j / (w - 1) - 1`` and ``y_i = 2 i / (h - 1) - 1``: -1 and 1
    fall on the centres of the edge pixels, as in the reference FOMM.
    """
    if len(spatial_size) != 2:
        raise ValueError(
            f"spatial_size must be (height, width); got {tuple(spatial_size)!r}."
        )
    h, w = (int(s) for s in spatial_size)
    if h < 2 or w < 2:
        raise ValueError(
            "spatial_size must be at least (2, 2) so that -1 and 1 fall on "
            f"distinct pixel centres; got ({h}, {w})."
        )
    x = 2.0 * np.arange(w, dtype="float64") / (w - 1) - 1.0
    y = 2.0 * np.arange(h, dtype="float64") / (h - 1) - 1.0
    xx, yy = np.meshgrid(x, y)
    return ops.convert_to_tensor(np.stack([xx, yy], axis=-1), dtype=dtype)


def _check_float_image(name, image, rank=4):
    shape = tuple(image.shape)
    if len(shape) != rank:
        raise ValueError(
            f"`{name}` must be a rank-{rank} NHWC tensor (batch, height, width, "
            f"channels); got shape {shape}."
        )
    dtype = keras.backend.standardize_dtype(image.dtype)
    if not dtype.startswith(("float", "bfloat")):
        raise ValueError(
            f"`{name}` must be a floating-point tensor; got dtype {dtype} with "
            f"shape {shape}. Convert it first, e.g. `{name} / 255.0`."
        )


def _check_grid_sample_args(image, grid, mode, padding_mode):
    _check_float_image("image", image)
    grid_shape = tuple(grid.shape)
    if len(grid_shape) != 4 or grid_shape[-1] != 2:
        raise ValueError(
            "`grid` must have shape (batch, out_height, out_width, 2) holding "
            f"(x, y); got shape {grid_shape}."
        )
    grid_dtype = keras.backend.standardize_dtype(grid.dtype)
    if not grid_dtype.startswith(("float", "bfloat")):
        raise ValueError(f"`grid` must be floating point; got dtype {grid_dtype}.")
    batch, grid_batch = image.shape[0], grid_shape[0]
    if batch is not None and grid_batch is not None and batch != grid_batch:
        raise ValueError(
            f"`image` and `grid` must have the same batch size; got image "
            f"shape {tuple(image.shape)} and grid shape {grid_shape}."
        )
    if mode not in GRID_SAMPLE_MODES:
        raise ValueError(f"`mode` must be one of {GRID_SAMPLE_MODES}; got {mode!r}.")
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"`padding_mode` must be one of {PADDING_MODES}; got {padding_mode!r}."
        )


def _unnormalize(coord, size, align_corners):
    """Map normalised coordinates in [-1, 1] to pixel units along an axis of ``size``."""
    if align_corners:
        return (coord + 1.0) * (0.5 * (size - 1))
    return ((coord + 1.0) * size - 1.0) * 0.5


def _reflect(coord, twice_low, twice_high):
    """Reflect ``coord`` into [twice_low / 2, twice_high / 2], mirroring at each end."""
    if twice_low == twice_high:
        return ops.zeros_like(coord)
    low = twice_low / 2.0
    span = (twice_high - twice_low) / 2.0
    distance = ops.abs(coord - low)
    extra = ops.mod(distance, span)
    flips = ops.floor(distance / span)
    even = ops.equal(ops.mod(flips, 2.0), 0.0)
    return ops.where(even, extra + low, span - extra + low)


def _apply_padding(coord, size, padding_mode, align_corners):
    """Source coordinates in pixel units after the ``border`` or ``reflection`` rule."""
    if padding_mode == "border":
        return ops.clip(coord, 0.0, size - 1.0)
    if padding_mode == "reflection":
        if align_corners:
            coord = _reflect(coord, 0, 2 * (size - 1))
        else:
            coord = _reflect(coord, -1, 2 * size - 1)
        return ops.clip(coord, 0.0, size - 1.0)
    return coord


def grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True):
    """Sample ``image`` at the normalised positions in ``grid``.

    The NHWC counterpart of ``torch.nn.functional.grid_sample``:
    ``grid_sample(image, grid)[b, i, j]`` is ``image[b]`` read at
    ``grid[b, i, j] = (x, y)``, with (-1, -1) the top-left and (1, 1) the
    bottom-right of the image.

    Args:
        image: ``(B, H, W, C)`` floating-point tensor.
        grid: ``(B, Ho, Wo, 2)`` tensor of (x, y) positions; values outside
            [-1, 1] are handled by ``padding_mode``.
        mode: ``"bilinear"`` (differentiable in ``image`` and ``grid``) or
            ``"nearest"`` (differentiable in ``image`` only).
        padding_mode: what lies outside the image: ``"zeros"``, ``"border"``
            (the nearest edge pixel) or ``"reflection"`` (the image mirrored).
        align_corners: ``True`` puts -1 and 1 on the centres of the edge pixels
            (matching ``make_coordinate_grid`` and the PyTorch 1.0 behaviour the
            official FOMM checkpoints were trained with); ``False`` puts them
            on the outer edges of the edge pixels (PyTorch >= 1.3).

    Returns:
        ``(B, Ho, Wo, C)`` tensor, the dtype of ``image``.

    On the PyTorch backend this calls PyTorch's own op (tested equal); everywhere
    else it is :func:`grid_sample_keras`. :func:`grid_sample_implementation`
    says which one runs.
    """
    image = ops.convert_to_tensor(image)
    grid = ops.convert_to_tensor(grid)
    _check_grid_sample_args(image, grid, mode, padding_mode)
    native = backend.load("ops").native_grid_sample
    if native is not None:
        return native(image, grid, mode, padding_mode, align_corners)
    return _grid_sample_keras(image, grid, mode, padding_mode, align_corners)


def grid_sample_keras(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True):
    """:func:`grid_sample` written with ``keras.ops`` (and each backend's row gather/scatter):
    the same arguments and results.

    It is what :func:`grid_sample` runs on TensorFlow and JAX, and the portable
    version the tests compare with PyTorch on every backend.
    """
    image = ops.convert_to_tensor(image)
    grid = ops.convert_to_tensor(grid)
    _check_grid_sample_args(image, grid, mode, padding_mode)
    return _grid_sample_keras(image, grid, mode, padding_mode, align_corners)


def grid_sample_implementation():
    """Which implementation :func:`grid_sample` uses on the current Keras backend."""
    if _native_grid_sample_available():
        return "torch.nn.functional.grid_sample"
    return "kmt.warping.grid_sample_keras"


def _native_grid_sample_available():
    """Whether the backend has its own ``grid_sample`` (``native_grid_sample`` of its ops module)."""
    return backend.load("ops").native_grid_sample is not None


def _grid_sample_keras(image, grid, mode, padding_mode, align_corners):
    h, w = image.shape[1], image.shape[2]
    grid = ops.cast(grid, image.dtype)
    ix = _unnormalize(grid[..., 0], w, align_corners)
    iy = _unnormalize(grid[..., 1], h, align_corners)
    ix = _apply_padding(ix, w, padding_mode, align_corners)
    iy = _apply_padding(iy, h, padding_mode, align_corners)
    if mode == "nearest":
        return sample_nearest(image, ix, iy)
    return sample_bilinear(image, ix, iy)


def upsample_nearest_2x(x):
    """Nearest-neighbour x2 upsampling of ``(B, H, W, C)``, as ``F.interpolate(scale_factor=2)``."""
    _check_float_image("x", x)
    return ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)


def _bilinear_resize_matrix(in_size, out_size):
    """``(out_size, in_size)`` matrix of 1-D linear interpolation weights.

    Half-pixel centres (``align_corners=False``): output pixel ``i`` reads the
    input at ``(i + 0.5) * in_size / out_size - 0.5``, clamped below at 0, the
    rule ``F.interpolate(mode="bilinear", align_corners=False)`` follows.
    """
    scale = in_size / out_size
    src = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)
    low = np.minimum(np.floor(src).astype(int), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    frac = src - low
    matrix = np.zeros((out_size, in_size), dtype="float64")
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, low), 1.0 - frac)
    np.add.at(matrix, (rows, high), frac)
    return matrix


def resize_bilinear(x, size):
    """Bilinear resize of ``(B, H, W, C)`` to ``size = (h, w)``, without anti-aliasing.

    Matches ``F.interpolate(mode="bilinear", align_corners=False)``, the resize
    the reference applies to the deformation field. Bilinear interpolation is
    separable, so it is two small matrix products.
    """
    _check_float_image("x", x)
    if len(size) != 2 or min(int(s) for s in size) < 1:
        raise ValueError(f"`size` must be (height, width) of positive ints; got {size!r}.")
    out_h, out_w = (int(s) for s in size)
    in_h, in_w = x.shape[1], x.shape[2]
    if (in_h, in_w) == (out_h, out_w):
        return x
    rows = ops.convert_to_tensor(_bilinear_resize_matrix(in_h, out_h), dtype=x.dtype)
    cols = ops.convert_to_tensor(_bilinear_resize_matrix(in_w, out_w), dtype=x.dtype)
    return ops.einsum("ih,bhwc,jw->bijc", rows, x, cols)


def gaussian_kernel_1d(scale):
    """The 1-D factor of the reference's anti-aliasing Gaussian for ``scale`` < 1.

    ``sigma = (1 / scale - 1) / 2`` and ``2 * round(4 sigma) + 1`` taps
    (Python's round, half to even), normalised to sum to one. The 2-D kernel
    of the reference is the outer product of this vector with itself.
    """
    sigma = (1.0 / scale - 1.0) / 2.0
    size = 2 * round(sigma * 4) + 1
    taps = np.exp(-((np.arange(size, dtype="float64") - (size - 1) / 2.0) ** 2) / (2.0 * sigma**2))
    return taps / taps.sum()


@keras.saving.register_keras_serializable(package="kmt")
class AntiAliasInterpolation2d(keras.layers.Layer):
    """Band-limited downsampling by ``scale`` (the reference's ``AntiAliasInterpolation2d``).

    Blurs each channel with a Gaussian (zero padding), then keeps every
    ``int(1 / scale)``-th pixel starting from the first. Input ``(B, H, W, C)``,
    output ``(B, ceil(H * scale), ceil(W * scale), C)`` for ``1 / scale`` an
    integer. ``scale == 1`` returns the input unchanged.

    The Gaussian is separable, so the blur runs as two 1-D depthwise
    convolutions with the stride folded in, which computes the same numbers as
    the reference's 2-D convolution followed by slicing.
    """

    def __init__(self, channels, scale, **kwargs):
        kwargs.setdefault("dtype", "float32")  # images are resampled in float32, also under a mixed policy
        super().__init__(**kwargs)
        if not 0 < scale <= 1:
            raise ValueError(f"`scale` must be in (0, 1]; got {scale!r}.")
        if int(channels) < 1:
            raise ValueError(f"`channels` must be a positive int; got {channels!r}.")
        self.channels = int(channels)
        self.scale = float(scale)
        self.stride = int(1 / self.scale)
        if self.scale < 1:
            self._taps = gaussian_kernel_1d(self.scale)
            self.padding = len(self._taps) // 2  # the kernel size is always odd

    def call(self, x):
        if self.scale == 1:
            return x
        if x.shape[-1] != self.channels:
            raise ValueError(
                f"`x` must have {self.channels} channels (last axis); got shape {tuple(x.shape)}."
            )
        p = self.padding
        x = ops.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        taps = ops.convert_to_tensor(self._taps, dtype=x.dtype)
        vertical = ops.tile(ops.reshape(taps, (-1, 1, 1, 1)), (1, 1, self.channels, 1))
        horizontal = ops.tile(ops.reshape(taps, (1, -1, 1, 1)), (1, 1, self.channels, 1))
        x = ops.depthwise_conv(x, vertical, strides=(self.stride, 1), padding="valid")
        return ops.depthwise_conv(x, horizontal, strides=(1, self.stride), padding="valid")

    def compute_output_shape(self, input_shape):
        if self.scale == 1:
            return tuple(input_shape)
        b, h, w, c = input_shape

        def out(n):
            return None if n is None else math.ceil(n / self.stride)

        return (b, out(h), out(w), c)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "scale": self.scale}


@keras.saving.register_keras_serializable(package="kmt")
class ImagePyramid(keras.layers.Layer):
    """Anti-aliased copies of an image at several scales (the reference's ``ImagePyramide``).

    ``call(x)`` returns a dict ``{"prediction_<scale>": (B, H*s, W*s, C)}``,
    keyed like the reference (``prediction_1``, ``prediction_0.5``, ...).
    """

    def __init__(self, scales, channels, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.scales = [float(s) if float(s) != int(s) else int(s) for s in scales]
        self.channels = int(channels)
        self.downsamplers = {
            self.key(s): AntiAliasInterpolation2d(channels, s, name=f"down_{str(s).replace('.', '_')}")
            for s in self.scales
        }

    @staticmethod
    def key(scale):
        """The reference's dictionary key for ``scale``, e.g. ``prediction_0.25``."""
        return f"prediction_{scale}"

    def call(self, x):
        return {key: down(x) for key, down in self.downsamplers.items()}

    def get_config(self):
        return {**super().get_config(), "scales": self.scales, "channels": self.channels}
