"""The sampling kernels behind :func:`kmt.warping.grid_sample` (chapter 1).

Positions arrive in pixel units, already mapped by the padding rule:
``ix``, ``iy`` are ``(B, Ho, Wo)`` and ``image`` is NHWC ``(B, H, W, C)``.
:func:`sample_bilinear` blends the four pixels around each position (zero
outside the image) and :func:`sample_nearest` reads the nearest one.

Everything is ``keras.ops``. Two row-level helpers, ``_take_rows`` (a gather)
and ``_scatter_add_rows`` (its transpose), use the backend's faster equivalent
where ``kmt.backend.<name>.ops`` has one; the tests compare every path with
PyTorch. Where that module says so (TensorFlow and JAX), the bilinear gradient
is written by hand (:func:`_bilinear_backward`): XLA compiles it into a faster
program than the one it derives itself (``benchmarks/warp.py`` measures it).
"""

import math

from keras import ops

from kmt import backend

__all__ = ["sample_bilinear", "sample_nearest"]


def _batch_offsets(image, rows_per_image):
    """``(B, 1, 1)`` int32 offsets of each image's first row in a flattened table."""
    batch = ops.arange(ops.shape(image)[0], dtype="int32")
    return ops.reshape(batch * rows_per_image, (-1, 1, 1))


def sample_nearest(image, ix, iy):
    h, w, c = image.shape[1:]
    xr = ops.round(ix)  # half to even, like std::nearbyint in PyTorch
    yr = ops.round(iy)
    inside = (xr >= 0) & (xr <= w - 1) & (yr >= 0) & (yr <= h - 1)
    xi = ops.cast(ops.clip(xr, 0.0, w - 1.0), "int32")
    yi = ops.cast(ops.clip(yr, 0.0, h - 1.0), "int32")
    flat_index = _batch_offsets(image, h * w) + yi * w + xi
    pixels = _take_rows(ops.reshape(image, (-1, c)), ops.reshape(flat_index, (-1,)))
    pixels = ops.reshape(pixels, (-1, ix.shape[1], ix.shape[2], c))
    return pixels * ops.cast(inside, image.dtype)[..., None]


def _bilinear_corners(image, ix, iy):
    """The four pixels around every position, as rows of the image flattened to ``(B H W, C)``.

    ``ix``, ``iy`` are ``(B, Ho, Wo)`` positions in pixel units. Returns ``(rows, inside, fx, fy)``:
    for the corners (y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1) in that order, ``rows``
    holds four ``(B Ho Wo,)`` int32 row numbers (clipped into the image, so every read is valid)
    and ``inside`` four masks, 1 where the corner is a pixel of the image and 0 where it lies in
    the zero padding; ``fx = ix - x0`` and ``fy = iy - y0`` are ``(B Ho Wo,)``.
    """
    h, w = image.shape[1], image.shape[2]
    # A corner two or more pixels outside is outside whatever the position: clipping there keeps
    # the integers small without changing any mask.
    x0 = ops.clip(ops.floor(ix), -2.0, float(w))
    y0 = ops.clip(ops.floor(iy), -2.0, float(h))
    fx = ops.reshape(ix - x0, (-1,))
    fy = ops.reshape(iy - y0, (-1,))
    xi = ops.cast(x0, "int32")
    yi = ops.cast(y0, "int32")
    first_row = _batch_offsets(image, h * w)
    cols = (ops.clip(xi, 0, w - 1), ops.clip(xi + 1, 0, w - 1))
    lines = (first_row + ops.clip(yi, 0, h - 1) * w, first_row + ops.clip(yi + 1, 0, h - 1) * w)
    in_x = ((xi >= 0) & (xi <= w - 1), (xi >= -1) & (xi <= w - 2))
    in_y = ((yi >= 0) & (yi <= h - 1), (yi >= -1) & (yi <= h - 2))
    rows, inside = [], []
    for dy in (0, 1):
        for dx in (0, 1):
            rows.append(ops.reshape(lines[dy] + cols[dx], (-1,)))
            inside.append(ops.reshape(ops.cast(in_y[dy] & in_x[dx], image.dtype), (-1,)))
    return rows, inside, fx, fy


def _bilinear_weights(inside, fx, fy):
    """The four corners' weights, zero for corners outside the image."""
    wx = (1.0 - fx, fx)
    wy = (1.0 - fy, fy)
    return [inside[k] * wy[k // 2] * wx[k % 2] for k in range(4)]


def _bilinear_forward(image, ix, iy):
    c = image.shape[3]
    rows, inside, fx, fy = _bilinear_corners(image, ix, iy)
    table = ops.reshape(image, (-1, c))
    out = 0.0
    for row, weight in zip(rows, _bilinear_weights(inside, fx, fy)):
        out = out + _take_rows(table, row) * weight[:, None]
    return ops.reshape(out, tuple(ops.shape(ix)) + (c,))


def _bilinear_backward(image, ix, iy, upstream):
    """Gradients of ``sum(upstream * _bilinear_forward(image, ix, iy))``: ``(B, H, W, C)`` for the
    image and ``(B, Ho, Wo, 2)`` for the positions (d/dix, d/diy stacked on the last axis).

    With ``a_k = <upstream, corner k>`` (zero for corners outside the image), the position
    gradients are ``d/dix = (1 - fy)(a_1 - a_0) + fy (a_3 - a_2)`` and
    ``d/diy = (1 - fx)(a_2 - a_0) + fx (a_3 - a_1)``; the image gradient adds
    ``weight_k * upstream`` into each corner's pixel (a scatter-add).
    """
    c = image.shape[3]
    rows, inside, fx, fy = _bilinear_corners(image, ix, iy)
    table = ops.reshape(image, (-1, c))
    g = ops.reshape(upstream, (-1, c))
    a = []
    for row, mask in zip(rows, inside):
        corner = _take_rows(table, row)
        if c <= 4:  # a few channels: plain products, which fuse better than a reduction
            dot = corner[:, 0] * g[:, 0]
            for channel in range(1, c):
                dot = dot + corner[:, channel] * g[:, channel]
        else:
            dot = ops.sum(corner * g, axis=1)
        a.append(dot * mask)
    grad_ix = (1.0 - fy) * (a[1] - a[0]) + fy * (a[3] - a[2])
    grad_iy = (1.0 - fx) * (a[2] - a[0]) + fx * (a[3] - a[1])
    updates = [g * weight[:, None] for weight in _bilinear_weights(inside, fx, fy)]
    grad_image = _scatter_add_rows(ops.shape(table)[0], rows, updates)
    # One array for both position gradients: one loop then reads the four corners for both.
    grad_position = ops.reshape(ops.stack([grad_ix, grad_iy], axis=1), tuple(ops.shape(ix)) + (2,))
    return ops.reshape(grad_image, ops.shape(image)), grad_position


def _take_rows(table, rows):
    """``table[rows]`` for int32 ``rows`` that are all valid row numbers of ``table``."""
    fast = backend.load("ops").take_rows
    if fast is not None:
        return fast(table, rows)
    return ops.take(table, rows, axis=0)


def _scatter_add_rows(num_rows, rows, updates):
    """``(num_rows, C)`` zeros with row ``updates[k][i]`` added at ``rows[k][i]``, for every k and i."""
    fast = backend.load("ops").scatter_add_rows
    if fast is not None:
        return fast(num_rows, rows, updates)
    return ops.segment_sum(ops.concatenate(updates, axis=0), ops.concatenate(rows, axis=0), num_segments=num_rows)


_CHUNK_ELEMENTS = 1 << 19


def _in_batch_chunks(fn, *tensors):
    """``fn(*tensors)`` computed on consecutive groups of images, results concatenated on axis 0.

    Each group holds about ``_CHUNK_ELEMENTS`` output values: the scatter-add of the backward
    pass then works on a small table that stays in the CPU caches, and the compiled program's
    temporary buffers stay small.
    """
    batch = tensors[0].shape[0]
    if batch is None:  # unknown until run time: one group
        return fn(*tensors)
    per_image = math.prod(tensors[-1].shape[1:])
    size = max(
        d for d in range(1, batch + 1) if batch % d == 0 and (d == 1 or d * per_image <= _CHUNK_ELEMENTS)
    )
    if size == batch:
        return fn(*tensors)
    groups = tuple(ops.reshape(t, (batch // size, size) + tuple(t.shape[1:])) for t in tensors)
    results = ops.map(lambda group: fn(*group), groups)
    return tuple(ops.reshape(r, (batch,) + tuple(r.shape[2:])) for r in results)


def sample_bilinear(image, ix, iy):
    """Bilinear sampling of ``image`` at pixel positions ``(ix, iy)``, zero outside the image.

    Where the backend's ``custom_sampler_gradient`` says so (TensorFlow and JAX), the gradient
    is written by hand (``_bilinear_backward``): it reads the four corners again instead of
    keeping them from the forward pass and runs group by group of images, which XLA compiles
    into a faster program than the gradient it derives itself (``benchmarks/warp.py``).
    PyTorch's eager autograd is faster with its own.
    """
    if not backend.load("ops").custom_sampler_gradient:
        return _bilinear_forward(image, ix, iy)

    @ops.custom_gradient
    def sample(image, ix, iy):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            grad_image, grad_position = _in_batch_chunks(_bilinear_backward, image, ix, iy, upstream)
            return grad_image, grad_position[..., 0], grad_position[..., 1]

        return _bilinear_forward(image, ix, iy), grad

    return sample(image, ix, iy)
