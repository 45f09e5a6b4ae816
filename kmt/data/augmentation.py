"""The official training augmentations, in numpy, for clips ``(T, H, W, C)`` float32 in [0, 1].

``Augmentation(**augmentation_params)`` takes the ``augmentation_params`` block of the
official configs as it is and applies, in this order (the official order):

- ``flip_param``: ``{"time_flip": bool, "horizontal_flip": bool}``. With probability 1/2
  the clip is reversed in time; otherwise, with probability 1/2 it is mirrored left-right
  (as in the official code, a clip is never flipped both ways at once).
- ``rotation_param``: ``{"degrees": d}`` or ``{"degrees": [lo, hi]}``: every frame turned
  counter-clockwise by one angle drawn in degrees, about the image centre, bilinear,
  zeros outside.
- ``resize_param``: ``{"ratio": [lo, hi], "interpolation": "nearest" | "bilinear"}``: the
  clip scaled by one factor drawn from ``ratio`` (new size ``int(size * factor)``), with a
  Gaussian anti-aliasing blur when shrinking.
- ``crop_param``: ``{"size": [h, w]}``: edge-padded (centred) up to the size if smaller,
  then one random window for the whole clip.
- ``jitter_param``: ``{"brightness", "contrast", "saturation", "hue"}``: factors drawn
  once per clip (brightness, contrast and saturation from ``[max(0, 1 - v), 1 + v]``, hue
  shift from ``[-v, v]`` turns, ``v <= 0.5``) and applied in a random order.

Differences from the official code, which works on uint8 images through PIL: colours are
jittered in float32 without rounding to 8 bits, and resizing clamps at the border instead
of blending with black. Keypoints ``(T, K, 2)`` in the project convention can be passed
along; every geometric transform moves them, and those that leave the frame are marked
not visible.
"""

import numpy as np

from kmt.coordinates import to_normalized, to_pixels

F32 = np.float32
_PARAMS = {
    "flip_param": ("time_flip", "horizontal_flip"),
    "rotation_param": ("degrees",),
    "resize_param": ("ratio", "interpolation"),
    "crop_param": ("size",),
    "jitter_param": ("brightness", "contrast", "saturation", "hue"),
}


def _check_keys(where, given, allowed):
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {list(allowed)}")


class Augmentation:
    """Random clip augmentation configured like the official ``augmentation_params``.

    Call it as ``aug(clip, rng)`` or ``aug(clip, rng, keypoints, visible)``, where ``rng`` is
    a ``numpy.random.Generator``; it returns the clip, or ``(clip, keypoints, visible)``.
    The input is not modified.
    """

    def __init__(self, flip_param=None, rotation_param=None, resize_param=None, crop_param=None,
                 jitter_param=None, **unknown):
        _check_keys("augmentation_params", unknown, _PARAMS)
        params = {"flip_param": flip_param, "rotation_param": rotation_param, "resize_param": resize_param,
                  "crop_param": crop_param, "jitter_param": jitter_param}
        for name, value in params.items():
            if value is not None:
                if not isinstance(value, dict):
                    raise ValueError(f"augmentation_params.{name} must be a mapping, got {value!r}")
                _check_keys(f"augmentation_params.{name}", value, _PARAMS[name])
        self.params = {k: v for k, v in params.items() if v is not None}
        flip = flip_param or {}
        self.time_flip = bool(flip.get("time_flip", False))
        self.horizontal_flip = bool(flip.get("horizontal_flip", False))
        self.degrees = None
        if rotation_param is not None:
            d = rotation_param.get("degrees", 0)
            if np.ndim(d) == 0:
                if d < 0:
                    raise ValueError(f"rotation_param.degrees must be >= 0 when a number, got {d}")
                d = (-d, d)
            if len(d) != 2:
                raise ValueError(f"rotation_param.degrees must be a number or [lo, hi], got {d!r}")
            self.degrees = (float(d[0]), float(d[1]))
        self.ratio = self.interpolation = None
        if resize_param is not None:
            self.ratio = tuple(float(r) for r in resize_param.get("ratio", (3 / 4, 4 / 3)))
            self.interpolation = resize_param.get("interpolation", "nearest")
            if self.interpolation not in ("nearest", "bilinear") or len(self.ratio) != 2:
                raise ValueError("resize_param needs ratio [lo, hi] and interpolation 'nearest' or "
                                 f"'bilinear', got {resize_param!r}")
        self.crop = None
        if crop_param is not None:
            size = crop_param.get("size")
            size = (size, size) if np.ndim(size) == 0 else tuple(size)
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"crop_param.size must be a positive int or [h, w], got {crop_param!r}")
            self.crop = (int(size[0]), int(size[1]))
        self.jitter = {}
        for key, value in (jitter_param or {}).items():
            if value is None or value == 0:
                continue
            if not isinstance(value, (int, float)) or value < 0 or (key == "hue" and value > 0.5):
                raise ValueError(f"jitter_param.{key} must be in [0, {0.5 if key == 'hue' else 'inf'}], got {value}")
            self.jitter[key] = float(value)

    def __call__(self, clip, rng, keypoints=None, visible=None):
        clip = np.asarray(clip, F32)
        if clip.ndim != 4:
            raise ValueError(f"clip must be (T, H, W, C), got shape {clip.shape}")
        kp = None if keypoints is None else to_pixels(np.asarray(keypoints, np.float64), *clip.shape[1:3])
        vis = None if keypoints is None else (np.ones(kp.shape[:2], bool) if visible is None
                                              else np.asarray(visible, bool).copy())
        if self.time_flip and rng.random() < 0.5:
            clip = clip[::-1]
            if kp is not None:
                kp, vis = kp[::-1], vis[::-1]
        elif self.horizontal_flip and rng.random() < 0.5:
            clip = clip[:, :, ::-1]
            if kp is not None:
                kp = kp.copy()
                kp[..., 0] = clip.shape[2] - 1 - kp[..., 0]
        if self.degrees is not None:
            clip, kp = rotate(clip, rng.uniform(*self.degrees), kp)
        if self.ratio is not None:
            f = rng.uniform(*self.ratio)
            size = (int(clip.shape[1] * f), int(clip.shape[2] * f))
            clip, kp = resize(clip, size, self.interpolation, kp)
        if self.crop is not None:
            clip, kp = random_crop(clip, self.crop, rng, kp)
        if self.jitter:
            clip = color_jitter(clip, rng, **self.jitter)
        clip = np.ascontiguousarray(clip, F32)
        if keypoints is None:
            return clip
        h, w = clip.shape[1:3]
        vis &= (kp[..., 0] >= -0.5) & (kp[..., 0] <= w - 0.5) & (kp[..., 1] >= -0.5) & (kp[..., 1] <= h - 0.5)
        return clip, to_normalized(kp, h, w).astype(F32), vis


def _bilinear(clip, rows, cols, fill):
    """Sample ``clip (T, H, W, C)`` at float pixel positions ``rows, cols (h, w)``.

    Out-of-range taps take ``fill`` (``None`` clamps to the border)."""
    t, h, w, c = clip.shape
    r0, c0 = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    fr, fc = (rows - r0).astype(F32)[..., None], (cols - c0).astype(F32)[..., None]
    out = 0
    for dr, wr in ((0, 1 - fr), (1, fr)):
        for dc, wc in ((0, 1 - fc), (1, fc)):
            rr, cc = r0 + dr, c0 + dc
            tap = clip[:, np.clip(rr, 0, h - 1), np.clip(cc, 0, w - 1)]
            if fill is not None:
                inside = ((rr >= 0) & (rr < h) & (cc >= 0) & (cc < w))[None, ..., None]
                tap = np.where(inside, tap, F32(fill))
            out = out + wr * wc * tap
    return out


def rotate(clip, degrees, keypoints=None):
    """Turn every frame counter-clockwise by ``degrees`` about the centre; zeros outside.

    ``keypoints`` ``(T, K, 2)`` are in pixels ``(col, row)``; returns ``(clip, keypoints)``."""
    h, w = clip.shape[1:3]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    a = np.deg2rad(degrees)
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64) - cy, np.arange(w, dtype=np.float64) - cx,
                             indexing="ij")
    src_c = np.cos(a) * cols - np.sin(a) * rows + cx
    src_r = np.sin(a) * cols + np.cos(a) * rows + cy
    out = _bilinear(clip, src_r, src_c, 0.0)
    if keypoints is not None:
        dc, dr = keypoints[..., 0] - cx, keypoints[..., 1] - cy
        keypoints = np.stack([np.cos(a) * dc + np.sin(a) * dr + cx, -np.sin(a) * dc + np.cos(a) * dr + cy], -1)
    return out, keypoints


def _gaussian_blur(clip, sigma):
    """Separable Gaussian blur along H and W with zero padding (``sigma`` per axis)."""
    for axis, s in zip((1, 2), sigma):
        radius = int(4.0 * s + 0.5)
        if radius == 0:
            continue
        x = np.arange(-radius, radius + 1)
        k = np.exp(-0.5 * (x / s) ** 2)
        k /= k.sum()
        pad = [(0, 0)] * 4
        pad[axis] = (radius, radius)
        padded = np.pad(clip, pad)
        n = clip.shape[axis]
        clip = sum(F32(k[i]) * np.take(padded, np.arange(i, i + n), axis=axis) for i in range(len(k)))
    return clip


def resize(clip, size, interpolation="bilinear", keypoints=None):
    """Resize frames to ``size = (h, w)``, pixel centres aligned like ``skimage.transform.resize``."""
    h, w = clip.shape[1:3]
    oh, ow = int(size[0]), int(size[1])
    if oh < 1 or ow < 1:
        raise ValueError(f"resize size must be positive, got {size}")
    sh, sw = h / oh, w / ow
    if sh > 1 or sw > 1:
        clip = _gaussian_blur(clip, (max(0.0, (sh - 1) / 2), max(0.0, (sw - 1) / 2)))
    rows = (np.arange(oh) + 0.5) * sh - 0.5
    cols = (np.arange(ow) + 0.5) * sw - 0.5
    if interpolation == "nearest":
        r = np.clip(np.round(rows).astype(np.int64), 0, h - 1)
        c = np.clip(np.round(cols).astype(np.int64), 0, w - 1)
        out = clip[:, r][:, :, c]
    else:
        rr, cc = np.meshgrid(np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1), indexing="ij")
        out = _bilinear(clip, rr, cc, None)
    if keypoints is not None:
        keypoints = np.stack([(keypoints[..., 0] + 0.5) / sw - 0.5, (keypoints[..., 1] + 0.5) / sh - 0.5], -1)
    return out.astype(F32), keypoints


def random_crop(clip, size, rng, keypoints=None):
    """Edge-pad (centred) to at least ``size = (h, w)``, then cut one random window."""
    h, w = clip.shape[1:3]
    ch, cw = size
    ph, pw = max(ch - h, 0), max(cw - w, 0)
    if ph or pw:
        clip = np.pad(clip, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="edge")
        if keypoints is not None:
            keypoints = keypoints + np.array([pw // 2, ph // 2], F32)
    h, w = clip.shape[1:3]
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    if keypoints is not None:
        keypoints = keypoints - np.array([left, top], F32)
    return clip[:, top:top + ch, left:left + cw], keypoints


def _gray(clip):
    return (0.299 * clip[..., 0] + 0.587 * clip[..., 1] + 0.114 * clip[..., 2])[..., None]


def shift_hue(clip, turns):
    """Rotate the hue (of HSV) of RGB images ``(..., 3)`` in [0, 1] by ``turns`` of the colour wheel."""
    r, g, b = (np.array(clip[..., i], dtype=F32) for i in range(3))
    v = np.maximum(np.maximum(r, g), b)
    c = v - np.minimum(np.minimum(r, g), b)
    d = np.where(c > 0, c, F32(1))
    h = np.where(v == r, (g - b) / d, np.where(v == g, (b - r) / d + F32(2), (r - g) / d + F32(4)))
    h = h * F32(1 / 6) + F32(turns)
    h6 = (h - np.floor(h)) * F32(6)
    out = np.empty(r.shape + (3,), F32)
    for i, n in enumerate((5.0, 3.0, 1.0)):
        k = h6 + F32(n)
        k = np.where(k >= 6, k - F32(6), k)
        out[..., i] = v - c * np.clip(np.minimum(k, F32(4) - k), F32(0), F32(1))
    return out


def color_jitter(clip, rng, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0):
    """Colour jitter with one set of factors for the whole clip, steps in a random order.

    brightness scales the image; contrast blends each frame with its mean grey level;
    saturation blends with the grey image; hue rotates the hue by up to ``hue`` turns.
    """
    steps = []
    if brightness > 0:
        f = rng.uniform(max(0.0, 1 - brightness), 1 + brightness)
        steps.append(lambda x, f=f: x * F32(f))
    if saturation > 0:
        f = rng.uniform(max(0.0, 1 - saturation), 1 + saturation)
        steps.append(lambda x, f=f: F32(f) * x + F32(1 - f) * _gray(x))
    if hue > 0:
        f = rng.uniform(-hue, hue)
        steps.append(lambda x, f=f: shift_hue(x, f))
    if contrast > 0:
        f = rng.uniform(max(0.0, 1 - contrast), 1 + contrast)
        steps.append(lambda x, f=f: F32(f) * x + F32(1 - f) * _gray(x).mean(axis=(1, 2, 3), keepdims=True))
    order = rng.permutation(len(steps))
    for i in order:
        clip = np.clip(steps[i](clip), 0.0, 1.0).astype(F32)
    return clip
