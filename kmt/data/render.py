"""Vectorised 2-D rendering with signed distance fields, for the synthetic videos.

A frame is a stack of layers painted back to front. Each layer is an analytic shape
(ellipse, capsule, rounded box, or an intersection of shapes) given by its signed distance
field, and a paint (two colours mixed by a seeded texture that lives in the layer's own
coordinate frame, so the texture moves with the part). Everything works on a batch of
``N`` frames at once: every shape parameter is an array of shape ``(N,)``, and one numpy
expression renders the whole batch; nothing loops over pixels.

World coordinates: ``y`` runs from -1 (centre of the top pixel row) to 1 (centre of the
bottom row), ``x`` from ``-aspect`` to ``aspect`` with ``aspect = (W - 1) / (H - 1)``, so
one world unit is the same length along both axes. Keypoints leave the renderer in the
project convention, ``(x, y)`` in [-1, 1] with ``x = 2 * col / (W - 1) - 1``.

Edges are anti-aliased: a layer covers a pixel by ``clip(0.5 - d, 0, 1)`` where ``d`` is the
signed distance from the pixel centre to the shape, in pixels. The label map names the
front-most layer whose shape contains the pixel centre (``d <= 0``), and a keypoint is
visible when the front-most shape containing it belongs to one of its owner parts and it
lies inside the frame, which is the same rule evaluated at the keypoint itself.
"""

from dataclasses import dataclass

import numpy as np

F32 = np.float32


def _col(p, ndim):
    """``p`` of shape ``(N,)`` (or ``(N, c)``) reshaped to broadcast against ``(N, ...)``."""
    p = np.asarray(p, dtype=F32)
    return p.reshape(p.shape[:1] + (1,) * (ndim - 1))


def _rgb(c, ndim):
    """Colours ``(N, 3)`` reshaped to broadcast against ``(N, ..., 3)`` with ``ndim`` axes."""
    c = np.asarray(c, dtype=F32)
    return c.reshape(c.shape[:1] + (1,) * (ndim - 2) + (3,))


def _rotate_into(x, y, cx, cy, angle):
    """Coordinates of the points ``(x, y)`` in a frame centred on ``(cx, cy)`` turned by ``angle``."""
    nd = np.ndim(x)
    c, s = _col(np.cos(angle), nd), _col(np.sin(angle), nd)
    dx, dy = x - _col(cx, nd), y - _col(cy, nd)
    return c * dx + s * dy, c * dy - s * dx


class Ellipse:
    """Ellipse with centre ``(cx, cy)``, semi-axes ``(rx, ry)``, turned by ``angle`` (radians)."""

    def __init__(self, cx, cy, rx, ry, angle=0.0):
        n = np.shape(cx)[0]
        self.cx, self.cy = np.asarray(cx, F32), np.asarray(cy, F32)
        self.rx = np.maximum(np.asarray(rx, F32), 1e-4)
        self.ry = np.maximum(np.asarray(ry, F32), 1e-4)
        self.angle = np.broadcast_to(np.asarray(angle, F32), (n,))

    def sdf(self, x, y):
        # Inigo Quilez's first-order distance: exact on the boundary, smooth around it.
        # The tiny offset keeps the centre (where k0 = k1 = 0) at the limit -min(rx, ry).
        u, v = _rotate_into(x, y, self.cx, self.cy, self.angle)
        nd = np.ndim(x)
        rx, ry = _col(self.rx, nd), _col(self.ry, nd)
        u = u + F32(1e-6)
        k0 = np.sqrt((u / rx) ** 2 + (v / ry) ** 2)
        k1 = np.sqrt((u / (rx * rx)) ** 2 + (v / (ry * ry)) ** 2)
        return k0 * (k0 - 1.0) / np.maximum(k1, F32(1e-30))

    def bounds(self):
        r = np.maximum(self.rx, self.ry)
        return np.stack([self.cx - r, self.cy - r, self.cx + r, self.cy + r], axis=-1)


class Capsule:
    """Segment from ``(ax, ay)`` to ``(bx, by)`` thickened by a radius going from ``ra`` to ``rb``."""

    def __init__(self, ax, ay, bx, by, ra, rb=None):
        self.ax, self.ay = np.asarray(ax, F32), np.asarray(ay, F32)
        self.bx, self.by = np.asarray(bx, F32), np.asarray(by, F32)
        self.ra = np.asarray(ra, F32)
        self.rb = self.ra if rb is None else np.asarray(rb, F32)

    def sdf(self, x, y):
        nd = np.ndim(x)
        ax, ay = _col(self.ax, nd), _col(self.ay, nd)
        ex, ey = _col(self.bx - self.ax, nd), _col(self.by - self.ay, nd)
        px, py = x - ax, y - ay
        h = np.clip((px * ex + py * ey) / (ex * ex + ey * ey + F32(1e-8)), 0.0, 1.0)
        r = _col(self.ra, nd) + h * _col(self.rb - self.ra, nd)
        return np.sqrt((px - h * ex) ** 2 + (py - h * ey) ** 2) - r

    def bounds(self):
        r = np.maximum(self.ra, self.rb)
        return np.stack([np.minimum(self.ax, self.bx) - r, np.minimum(self.ay, self.by) - r,
                         np.maximum(self.ax, self.bx) + r, np.maximum(self.ay, self.by) + r], axis=-1)


class Box:
    """Rectangle of half sizes ``(hx, hy)`` with corners rounded by ``radius``, turned by ``angle``."""

    def __init__(self, cx, cy, hx, hy, angle=0.0, radius=0.0):
        n = np.shape(cx)[0]
        self.cx, self.cy = np.asarray(cx, F32), np.asarray(cy, F32)
        self.hx, self.hy = np.asarray(hx, F32), np.asarray(hy, F32)
        self.angle = np.broadcast_to(np.asarray(angle, F32), (n,))
        self.radius = np.broadcast_to(np.asarray(radius, F32), (n,))

    def sdf(self, x, y):
        nd = np.ndim(x)
        u, v = _rotate_into(x, y, self.cx, self.cy, self.angle)
        r = _col(self.radius, nd)
        qx = np.abs(u) - _col(self.hx, nd) + r
        qy = np.abs(v) - _col(self.hy, nd) + r
        outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
        return outside + np.minimum(np.maximum(qx, qy), 0.0) - r

    def bounds(self):
        r = np.sqrt(self.hx ** 2 + self.hy ** 2)
        return np.stack([self.cx - r, self.cy - r, self.cx + r, self.cy + r], axis=-1)


class HalfPlane:
    """Points on the side of the line through ``(px, py)`` opposite to the unit normal ``angle``."""

    def __init__(self, px, py, angle):
        self.px, self.py = np.asarray(px, F32), np.asarray(py, F32)
        self.angle = np.asarray(angle, F32)

    def sdf(self, x, y):
        nd = np.ndim(x)
        return (x - _col(self.px, nd)) * _col(np.cos(self.angle), nd) + \
               (y - _col(self.py, nd)) * _col(np.sin(self.angle), nd)


class Intersect:
    """The part of ``shape`` that also lies inside every one of ``clips``; bounded by ``shape``."""

    def __init__(self, shape, *clips):
        self.shape, self.clips = shape, clips

    def sdf(self, x, y):
        d = self.shape.sdf(x, y)
        for c in self.clips:
            d = np.maximum(d, c.sdf(x, y))
        return d

    def bounds(self):
        return self.shape.bounds()


def sample_texture(rng, kind=None, frequency=(2.0, 6.0), gain=None):
    """Parameters of a seeded texture: ``{"k": (4, 2), "phase": (4,), "amp": (4,), "gain": ()}``.

    The texture is ``0.5 + 0.5 * tanh(gain * sum_i amp_i * sin(k_i . (u, v) + phase_i))`` in
    the layer's local coordinates; ``kind`` picks ``"noise"`` (four random waves), ``"stripes"``
    (one wave, sharpened) or ``"checker"`` (the two waves whose sum is a product of sines).
    ``frequency`` is a range of angular frequencies in radians per local unit.
    """
    kind = kind or ("noise", "stripes", "checker")[rng.integers(3)]
    k = np.zeros((4, 2), F32)
    phase = rng.uniform(0, 2 * np.pi, 4).astype(F32)
    amp = np.zeros(4, F32)
    if kind == "noise":
        theta = rng.uniform(0, 2 * np.pi, 4)
        f = rng.uniform(*frequency, 4)
        k[:] = np.stack([f * np.cos(theta), f * np.sin(theta)], -1)
        amp[:] = rng.uniform(0.3, 1.0, 4) / 2
        g = 1.5
    elif kind == "stripes":
        theta, f = rng.uniform(0, np.pi), rng.uniform(*frequency)
        k[0] = f * np.cos(theta), f * np.sin(theta)
        amp[0] = 1.0
        g = 3.0
    elif kind == "checker":
        theta, f = rng.uniform(0, np.pi), rng.uniform(*frequency)
        a = np.array([np.cos(theta), np.sin(theta)]) * f
        b = np.array([-np.sin(theta), np.cos(theta)]) * f
        k[0], k[1] = a - b, a + b
        phase[1] = phase[0] + np.pi
        amp[:2] = 0.5
        g = 6.0
    else:
        raise ValueError(f"texture kind must be 'noise', 'stripes' or 'checker', got {kind!r}")
    return {"k": k, "phase": phase, "amp": amp, "gain": F32(g if gain is None else gain)}


def texture_value(texture, u, v):
    """Evaluate stacked texture parameters (each with a leading ``N``) at local points ``(N, ...)``."""
    nd = np.ndim(u)
    s = np.zeros(np.broadcast_shapes(np.shape(u), np.shape(v)), F32)
    for i in range(texture["k"].shape[1]):
        amp = texture["amp"][:, i]
        if not np.any(amp):
            continue
        arg = _col(texture["k"][:, i, 0], nd) * u + _col(texture["k"][:, i, 1], nd) * v
        s += _col(amp, nd) * np.sin(arg + _col(texture["phase"][:, i], nd))
    return F32(0.5) + F32(0.5) * np.tanh(_col(texture["gain"], nd) * s)


@dataclass
class Paint:
    """How a layer is coloured; every array has a leading ``N``.

    ``colour`` (N, 3) alone paints flat. With ``colour2`` and ``texture`` the two colours are
    mixed by the texture evaluated at ``frame = (cx, cy, angle, scale)``-local coordinates.
    ``shade`` (N,) darkens towards the edge of the shape over ``shade_width`` world units,
    a cheap cue of roundness.
    """

    colour: np.ndarray
    colour2: np.ndarray = None
    texture: dict = None
    frame: tuple = None
    shade: np.ndarray = None
    shade_width: np.ndarray = None

    def evaluate(self, x, y, sdf=None):
        nd = np.ndim(x) + 1
        c1 = _rgb(self.colour, nd)
        if self.texture is None:
            out = c1
        else:
            cx, cy, angle, scale = self.frame
            u, v = _rotate_into(x, y, cx, cy, angle)
            s = _col(scale, nd - 1)
            m = texture_value(self.texture, u / s, v / s)
            out = c1 + m[..., None] * (_rgb(self.colour2, nd) - c1)
        if self.shade is not None and sdf is not None:
            depth = np.clip(1.0 + sdf / _col(self.shade_width, nd - 1), 0.0, 1.0)
            out = out * (1.0 - _col(self.shade, nd - 1) * depth * depth)[..., None]
        return out


@dataclass
class Layer:
    """A shape, its paint, and its part label (an int, or ``(N,)`` ints when it varies per frame).

    ``present`` ``(N,)`` bools leave the layer out of the frames where it is false.
    """

    shape: object
    paint: Paint
    label: object
    present: np.ndarray = None

    def sdf(self, x, y):
        d = self.shape.sdf(x, y)
        if self.present is None:
            return d
        return np.where(_col(self.present, np.ndim(x)), d, F32(1e9))


def world_grid(height, width):
    """Pixel-centre coordinates: ``xs (W,)``, ``ys (H,)`` in world units, and pixels per unit."""
    unit = (height - 1) / 2.0
    aspect = (width - 1) / (height - 1)
    xs = (np.arange(width, dtype=F32) / F32(unit) - F32(aspect)).astype(F32)
    ys = (np.arange(height, dtype=F32) / F32(unit) - 1.0).astype(F32)
    return xs, ys, F32(unit)


def _pixel_range(lo, hi, offset, unit, size):
    start = int(np.floor((lo + offset) * unit - 1.0))
    stop = int(np.ceil((hi + offset) * unit + 1.0)) + 1
    return max(start, 0), min(stop, size)


def _unique_rows(paint, n):
    """Indices of the distinct backgrounds among ``n`` frames, and the inverse map."""
    parts = [np.asarray(paint.colour).reshape(n, -1)]
    if paint.texture is not None:
        parts += [np.asarray(paint.colour2).reshape(n, -1)]
        parts += [np.asarray(t).reshape(n, -1) for t in paint.texture.values()]
        parts += [np.broadcast_to(np.asarray(f, F32), (n,))[:, None] for f in paint.frame]
    rows = np.concatenate(parts, axis=1)
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def _take_paint(paint, idx):
    texture = None if paint.texture is None else {k: v[idx] for k, v in paint.texture.items()}
    frame = None if paint.frame is None else tuple(np.asarray(f)[idx] for f in paint.frame)
    pick = (lambda a: None if a is None else np.asarray(a)[idx])
    return Paint(pick(paint.colour), pick(paint.colour2), texture, frame, pick(paint.shade),
                 pick(paint.shade_width))


def render(layers, background, keypoints, owners, height, width, with_labels=False):
    """Paint ``layers`` over ``background`` for a batch of ``N`` frames.

    Args:
        layers: list of :class:`Layer`, back to front, parameters with a leading ``N``.
        background: :class:`Paint` of the whole frame (textured in world coordinates).
        keypoints: ``(N, K, 2)`` world coordinates.
        owners: ``(K, L)`` booleans, ``owners[k, l]`` when label ``l`` may show keypoint ``k``.
        height, width: frame size in pixels.
        with_labels: also return the ``(N, H, W)`` uint8 map of front-most labels (0 = background).

    Returns:
        ``frames (N, H, W, 3)`` float32 in [0, 1], ``labels`` or ``None``,
        ``keypoints (N, K, 2)`` in [-1, 1] (x, y), ``visible (N, K)`` bool.
    """
    xs, ys, unit = world_grid(height, width)
    aspect = F32((width - 1) / (height - 1))
    n = keypoints.shape[0]
    first, inverse = _unique_rows(background, n)
    bg = _take_paint(background, first)
    canvas = bg.evaluate(xs[None, None, :], ys[None, :, None])
    canvas = np.broadcast_to(canvas, (len(first), height, width, 3))[inverse].astype(F32)
    labels = np.zeros((n, height, width), np.uint8) if with_labels else None
    kx, ky = keypoints[..., 0].astype(F32), keypoints[..., 1].astype(F32)
    top = np.zeros(kx.shape, np.int64)
    for layer in layers:
        label = np.broadcast_to(np.asarray(layer.label, np.int64), (n,))
        top = np.where(layer.sdf(kx, ky) <= 0.0, label[:, None], top)
        b = layer.shape.bounds()
        if layer.present is not None:
            if not np.any(layer.present):
                continue
            b = b[np.asarray(layer.present, bool)]
        c0, c1 = _pixel_range(b[:, 0].min(), b[:, 2].max(), aspect, unit, width)
        r0, r1 = _pixel_range(b[:, 1].min(), b[:, 3].max(), 1.0, unit, height)
        if c1 <= c0 or r1 <= r0:
            continue
        x, y = xs[None, None, c0:c1], ys[None, r0:r1, None]
        d = layer.sdf(x, y)
        alpha = np.clip(F32(0.5) - d * unit, 0.0, 1.0)
        if not alpha.any():
            continue
        colour = layer.paint.evaluate(x, y, d)
        region = canvas[:, r0:r1, c0:c1]
        region += alpha[..., None] * (colour - region)
        if with_labels:
            np.copyto(labels[:, r0:r1, c0:c1], label.astype(np.uint8)[:, None, None], where=d <= 0.0)
    np.clip(canvas, 0.0, 1.0, out=canvas)
    inside = (np.abs(kx) <= aspect) & (np.abs(ky) <= 1.0)
    visible = inside & owners[np.arange(owners.shape[0])[None, :], top]
    norm = np.stack([kx / aspect, ky], axis=-1).astype(F32)
    return canvas, labels, norm, visible


def oscillate(coef, t):
    """Channels ``base + a1 sin(w1 t + p1) + a2 sin(w2 t + p2)``.

    ``coef`` is ``(N, C, 7)`` holding ``[base, a1, w1, p1, a2, w2, p2]`` per channel (``w`` in
    radians per frame), ``t`` is ``(N,)`` frame times; returns ``(N, C)`` float32.
    """
    coef = np.asarray(coef, np.float64)
    t = np.asarray(t, np.float64)[:, None]
    out = coef[..., 0] + coef[..., 1] * np.sin(coef[..., 2] * t + coef[..., 3]) \
        + coef[..., 4] * np.sin(coef[..., 5] * t + coef[..., 6])
    return out.astype(F32)


def channel(rng, base, amp=0.0, period=(12.0, 60.0), amp2=0.0, period2=None):
    """One row of :func:`oscillate` coefficients: base and amplitudes drawn from ranges
    (a number is a fixed value), periods in frames drawn from ranges, random phases."""
    draw = (lambda r: float(rng.uniform(*r)) if isinstance(r, tuple) else float(r))
    w1 = 2 * np.pi / draw(period)
    w2 = 2 * np.pi / draw(period2 or period)
    return [draw(base), draw(amp), w1, rng.uniform(0, 2 * np.pi),
            draw(amp2), w2, rng.uniform(0, 2 * np.pi)]


def hsv_to_rgb(h, s, v):
    """One colour from hue, saturation and value in [0, 1], as a float32 ``(3,)`` array."""
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return (v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)).astype(F32)


def random_colour(rng, s=(0.3, 0.9), v=(0.3, 0.95)):
    """A colour of random hue with saturation and value drawn from the given ranges."""
    return hsv_to_rgb(rng.uniform(), rng.uniform(*s), rng.uniform(*v))


def stack_tree(trees):
    """Stack a list of equally shaped nested dicts of arrays along a new first axis."""
    first = trees[0]
    if isinstance(first, dict):
        return {k: stack_tree([t[k] for t in trees]) for k in first}
    return np.stack([np.asarray(t) for t in trees])


def take_tree(tree, idx):
    """Index every array of a nested dict along its first axis."""
    if isinstance(tree, dict):
        return {k: take_tree(v, idx) for k, v in tree.items()}
    return tree[idx]
