"""Square crops of real footage around a face (or the moving subject), one steady box per clip.

FOMM models are trained on square frames centred on the face (VoxCeleb) or the body (TaiChi).
This module turns a user's clip or photo into such frames, offline:

- **Face mode** (default) finds faces with dlib's HOG frontal-face detector, whose weights are
  compiled into dlib (``pip install "keras-motion-transfer[faces]"`` brings the ``dlib-bin``
  wheel; nothing is downloaded). In each frame it keeps one face: in the frame with the most
  confident detection the best-scoring one, and from there, forwards and backwards in time, the
  candidate that overlaps the face kept in the neighbouring frame most.
- **Whole mode** (``whole=True``) needs no detector: in a clip the subject is what moves, the
  pixels that differ from the clip's median frame by more than ``motion_threshold``; its bounds
  are percentiles of their coordinates, so a few speckles of noise do not stretch the box. For
  a single image, whole mode takes the centre square of the image.

The clip gets ONE box, the union of the per-frame boxes, so the crop does not jitter. Like the
official ``crop-video.py`` it grows by ``increase`` of its size on each side, the shorter side
more so that it becomes square (side ``(1 + 2 * increase) * max(width, height)``), and it is then
shifted to lie inside the frame. dlib's boxes are tight (brows to chin), tighter than the face
detector of the official tool: in a clip the head's motion widens the union, but a photo cropped
with the default ``increase`` shows little more than the face; ``increase=0.5`` frames a head
about as VoxCeleb does. A bad crop is never returned silently: :class:`CropError`
names the clip and the frames when no face is found, when the face is missing in more than
``max_missing`` of the frames, when it touches the frame border (it leaves the picture), when the
square box does not fit in the frame, and when the box is smaller than the output (the crop
would be upscaled, unless ``allow_upscale``).

Frames are ``(T, H, W, 3)`` float32 in [0, 1]; boxes are integer pixel bounds
``(left, top, right, bottom)`` with ``right`` and ``bottom`` excluded, so a box is
``frames[:, top:bottom, left:right]``.
"""

import functools
import math

import numpy as np

from kmt.data.video_io import to_float_rgb, to_uint8

__all__ = ["CropError", "auto_upsample", "face_candidates", "track_face", "detect_faces", "motion_box", "clip_box",
           "apply_box", "find_box", "crop_video", "crop_image", "preview"]

FACES_EXTRA = 'pip install "keras-motion-transfer[faces]"'


class CropError(ValueError):
    """The clip or image cannot be cropped as asked; the message names it and says why."""


@functools.lru_cache(maxsize=1)
def _detector():
    try:
        import dlib
    except ImportError as error:
        raise ImportError(f"Face detection needs dlib: {FACES_EXTRA} (the prebuilt dlib-bin wheel), or crop "
                          "without a face detector with whole=True (kmt crop --whole).", name="dlib") from error
    return dlib.get_frontal_face_detector()


def auto_upsample(height, width):
    """How many times dlib doubles a ``height x width`` frame before looking for faces.

    dlib's HOG detector finds faces of about 80 pixels and more; frames whose shorter side is
    under 256 pixels are doubled until it reaches 256 (a 176 x 144 clip: once, so its 45-pixel
    faces are found), at most three times.
    """
    short = min(height, width)
    return 0 if short >= 256 else min(3, math.ceil(math.log2(256 / short)))


def _check_frames(frames, name):
    """``frames`` as a float ``(T, H, W, 3)`` array in [0, 1] (8- and 16-bit pixels are scaled)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape) == 0:
        raise ValueError(f"{name}: frames must be (T, H, W, 3) with T, H, W >= 1; got shape {frames.shape}.")
    if not np.issubdtype(frames.dtype, np.floating):
        frames = to_float_rgb(frames, where=name)
    return frames


def face_candidates(frames, upsample=None):
    """Every face dlib finds in every frame: a list (one per frame) of ``[(box, score), ...]``,
    most confident first. ``upsample`` defaults to :func:`auto_upsample` of the frame size."""
    frames = _check_frames(frames, "frames")
    detector = _detector()
    upsample = auto_upsample(*frames.shape[1:3]) if upsample is None else int(upsample)
    if upsample < 0:
        raise ValueError(f"upsample must be >= 0 (times a frame is doubled); got {upsample}.")
    found = []
    for frame in frames:
        rects, scores, _ = detector.run(to_uint8(frame), upsample, 0.0)
        faces = [((r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(s)) for r, s in zip(rects, scores)]
        found.append(sorted(faces, key=lambda face: -face[1]))
    return found


def _overlap(a, b):
    """Intersection over union of two boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def track_face(candidates):
    """One face per frame from :func:`face_candidates`: ``(box, score)`` or ``None`` (no face).

    Starts at the most confident detection of the clip and walks forwards and backwards,
    taking in each frame the candidate overlapping the last kept face most (the most
    confident one when none overlaps).
    """
    chosen = [None] * len(candidates)
    scored = [(faces[0][1], t) for t, faces in enumerate(candidates) if faces]
    if not scored:
        return chosen
    anchor = max(scored)[1]
    chosen[anchor] = candidates[anchor][0]
    for order in (range(anchor + 1, len(candidates)), range(anchor - 1, -1, -1)):
        last = chosen[anchor][0]
        for t in order:
            if not candidates[t]:
                continue
            best = max(candidates[t], key=lambda face: (_overlap(face[0], last), face[1]))
            chosen[t], last = best, best[0]
    return chosen


def detect_faces(frames, upsample=None):
    """The face of each frame as ``(box, score)``, or ``None`` where no face is found."""
    return track_face(face_candidates(frames, upsample))


def motion_box(frames, motion_threshold=0.1, trim=0.005):
    """Bounds ``(left, top, right, bottom)`` of what moves in a clip, or ``None`` if nothing does.

    A pixel moves in a frame when one of its channels differs from the clip's median frame by
    more than ``motion_threshold``; the bounds are the ``trim`` and ``1 - trim`` quantiles of
    the moving pixels' columns and rows over all frames.
    """
    frames = _check_frames(frames, "frames")
    moving = np.abs(frames - np.median(frames, axis=0)).max(axis=-1) > motion_threshold
    counts_x, counts_y = moving.sum(axis=(0, 1)), moving.sum(axis=(0, 2))
    total = counts_x.sum()
    if total == 0:
        return None

    def bounds(counts):
        cumulative = np.cumsum(counts)
        low = int(np.searchsorted(cumulative, trim * total, side="right"))
        high = int(np.searchsorted(cumulative, (1 - trim) * total, side="left"))
        return low, high + 1

    (left, right), (top, bottom) = bounds(counts_x), bounds(counts_y)
    return left, top, right, bottom


def _union(boxes):
    boxes = np.array(boxes)
    return int(boxes[:, 0].min()), int(boxes[:, 1].min()), int(boxes[:, 2].max()), int(boxes[:, 3].max())


def clip_box(boxes, frame_shape, increase=0.1, fit="error", name="video"):
    """One square box holding every box of ``boxes`` (``None`` entries are skipped), grown by
    ``increase`` and shifted inside a frame of ``frame_shape`` ``(H, W)``.

    When the square is larger than the frame's shorter side, ``fit="error"`` raises
    :class:`CropError` and ``fit="shrink"`` takes that side instead (whole mode).
    """
    height, width = int(frame_shape[0]), int(frame_shape[1])
    if increase < 0:
        raise ValueError(f"increase must be >= 0; got {increase}.")
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        raise CropError(f"{name}: no box to crop to.")
    left, top, right, bottom = _union(boxes)
    side = int(math.ceil((1 + 2 * increase) * max(right - left, bottom - top) - 1e-9))
    if side > min(height, width):
        if fit != "shrink":
            raise CropError(f"{name}: the square crop box ({side} px: the faces span {right - left}x{bottom - top} "
                            f"px, plus increase {increase}) does not fit in the {width}x{height} frame; the face "
                            "is too close to the camera or leaves the picture (a smaller increase may help).")
        side = min(height, width)
    x0 = int(round((left + right - side) / 2))
    y0 = int(round((top + bottom - side) / 2))
    x0 = min(max(x0, 0), width - side)
    y0 = min(max(y0, 0), height - side)
    return x0, y0, x0 + side, y0 + side


def apply_box(frames, box, size):
    """``frames (T, H, W, 3)`` (or one ``(H, W, 3)`` image) cut to ``box`` and resized to ``size x size``."""
    from kmt.media import resize_frames

    left, top, right, bottom = box
    cut = np.asarray(frames, dtype="float32")[..., top:bottom, left:right, :]
    return cut if cut.shape[-3:-1] == (size, size) else resize_frames(cut, (size, size))


def _check_options(size, increase, max_missing):
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer (the output side in pixels); got {size!r}.")
    if not increase >= 0:
        raise ValueError(f"increase must be >= 0; got {increase!r}.")
    if not 0 <= max_missing <= 1:
        raise ValueError(f"max_missing must be a fraction in [0, 1]; got {max_missing!r}.")


def _frame_list(indices, limit=12):
    shown = ", ".join(str(i) for i in indices[:limit])
    return f"[{shown}{', ...' if len(indices) > limit else ''}]"


def _check_upscale(box, size, allow_upscale, name):
    side = box[2] - box[0]
    if side < size and not allow_upscale:
        raise CropError(f"{name}: the crop box is {side}x{side} px, smaller than the {size}x{size} output, so the "
                        f"crop would be upscaled; choose a size of at most {side} or allow upscaling "
                        "(--allow-upscale).")


def _face_box(frames, increase, max_missing, upsample, name):
    """The clip's box in face mode, and what was detected (see :func:`crop_video`)."""
    height, width = frames.shape[1:3]
    upsample = auto_upsample(height, width) if upsample is None else int(upsample)
    candidates = face_candidates(frames, upsample)
    chosen = track_face(candidates)
    count = len(frames)
    missing = [t for t, face in enumerate(chosen) if face is None]
    what = "the image" if count == 1 else f"any of the {count} frames"
    if len(missing) == count:
        raise CropError(f"{name}: no face found in {what} (dlib's frontal-face detector, upsample "
                        f"{upsample}); crop the whole subject instead with --whole (whole=True).")
    touching = [t for t, face in enumerate(chosen)
                if face is not None and (face[0][0] <= 0 or face[0][1] <= 0
                                         or face[0][2] >= width or face[0][3] >= height)]
    if touching:
        if count == 1:
            raise CropError(f"{name}: the face touches the border of the image, which cuts it; use a photo that "
                            "shows the whole face, or crop the centre square with --whole (whole=True).")
        raise CropError(f"{name}: the face touches the frame border in {len(touching)} of {count} frames "
                        f"{_frame_list(touching)}: it leaves the picture, and a crop would cut it; trim the clip to "
                        "the frames where the face is fully visible.")
    if len(missing) > max_missing * count:
        raise CropError(f"{name}: no face in {len(missing)} of {count} frames {_frame_list(missing)} "
                        f"({len(missing) / count:.0%}, more than max_missing {max_missing:.0%}); the face turns "
                        "away, is hidden or leaves the picture: trim the clip, or raise --max-missing.")
    box = clip_box([face[0] for face in chosen if face is not None], (height, width), increase, name=name)
    info = {"mode": "face", "upsample": upsample, "detections": chosen, "candidates": candidates,
            "missing": missing, "clamped": False}
    return box, info


def find_box(frames, size=256, increase=0.1, whole=False, allow_upscale=False, max_missing=0.2, upsample=None,
             motion_threshold=0.1, name="video"):
    """The square box of a clip ``(T, H, W, 3)`` and what was found, without cropping: the
    ``info`` of :func:`crop_video`. Raises :class:`CropError` as :func:`crop_video` does."""
    frames = _check_frames(frames, name)
    _check_options(size, increase, max_missing)
    height, width = frames.shape[1:3]
    if whole:
        if len(frames) < 2:
            raise CropError(f"{name}: whole mode finds the subject by its motion and needs at least 2 frames; "
                            f"got {len(frames)} (for a photo, crop the centre square with crop_image).")
        moving = motion_box(frames, motion_threshold)
        if moving is None:
            raise CropError(f"{name}: nothing moves in the {len(frames)} frames (no pixel differs from the median "
                            f"frame by more than motion_threshold {motion_threshold}); crop around the face instead "
                            "(without --whole) or lower the threshold.")
        box = clip_box([moving], (height, width), increase, fit="shrink", name=name)
        side = int(math.ceil((1 + 2 * increase) * max(moving[2] - moving[0], moving[3] - moving[1]) - 1e-9))
        info = {"mode": "whole", "motion_box": moving, "missing": [], "detections": None, "candidates": None,
                "upsample": None, "clamped": side > box[2] - box[0]}
    else:
        box, info = _face_box(frames, increase, max_missing, upsample, name)
    _check_upscale(box, size, allow_upscale, name)
    info.update(box=box, frame_shape=(height, width), size=size)
    return info


def crop_video(frames, size=256, increase=0.1, whole=False, allow_upscale=False, max_missing=0.2, upsample=None,
               motion_threshold=0.1, name="video"):
    """Crop a clip ``(T, H, W, 3)`` to one square box around its face (or moving subject).

    Returns ``(cropped (T, size, size, 3), info)``; ``info`` holds ``box`` ``(left, top, right,
    bottom)`` in pixels, ``frame_shape`` ``(H, W)``, ``size``, ``mode`` (``"face"`` or
    ``"whole"``), ``missing`` (frames without a face), ``detections`` (per frame ``(box, score)``
    or ``None``), ``candidates`` (every face found per frame), ``upsample``, ``clamped`` (whole
    mode: the subject spans more than the frame's shorter side, which the box was limited to)
    and ``motion_box`` (whole mode). Raises :class:`CropError` naming ``name`` when the crop
    would be bad (see the module docstring).
    """
    frames = _check_frames(frames, name)
    info = find_box(frames, size, increase, whole, allow_upscale, max_missing, upsample, motion_threshold, name)
    return apply_box(frames, info["box"], size), info


def crop_image(image, size=256, increase=0.1, whole=False, allow_upscale=False, upsample=None, name="image"):
    """Crop one photo ``(H, W, 3)`` to a square around its most confident face (``whole=True``:
    the centre square of the image). Returns ``(cropped (size, size, 3), info)`` as
    :func:`crop_video` does; several faces are all listed in ``info["candidates"][0]``."""
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"{name}: an image must be (H, W, 3); got shape {image.shape}.")
    image = _check_frames(image[None], name)[0]
    _check_options(size, increase, 0.0)
    height, width = image.shape[:2]
    if whole:
        side = min(height, width)
        left, top = (width - side) // 2, (height - side) // 2
        box = (left, top, left + side, top + side)
        info = {"mode": "whole", "missing": [], "detections": None, "candidates": None, "upsample": None,
                "clamped": False}
    else:
        box, info = _face_box(image[None], increase, 0.0, upsample, name)
    _check_upscale(box, size, allow_upscale, name)
    info.update(box=box, frame_shape=(height, width), size=size)
    return apply_box(image, box, size), info


def _label(draw, text, color, height):
    from PIL import ImageFont

    try:
        font = ImageFont.load_default(size=max(10, height // 18))
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    left, top, right, bottom = draw.textbbox((4, 4), text, font=font)
    draw.rectangle([0, 0, right + 4, bottom + 4], fill=(0, 0, 0))
    draw.text((4, 4), text, fill=color, font=font)


def _draw_box(draw, box, scale, color, width):
    left, top, right, bottom = (v * scale for v in box)
    draw.rectangle([left, top, right - 1, bottom - 1], outline=color, width=width)


def preview(frames, info, num_frames=4, min_height=256):
    """A row of ``num_frames`` evenly spaced frames showing what the crop did, ``(h, w, 3)`` float32.

    Each frame is enlarged by a whole factor to at least ``min_height`` rows and shows the face
    kept in it (green), other faces found (yellow), "no face" where none was found, and the
    clip's crop box (red). ``frames`` and ``info`` are the input and the info of
    :func:`crop_video` (or one image and the info of :func:`crop_image`).
    """
    from PIL import Image, ImageDraw

    frames = np.asarray(frames)
    frames = frames[None] if frames.ndim == 3 else _check_frames(frames, "frames")
    count = len(frames)
    picks = sorted(set(np.linspace(0, count - 1, min(num_frames, count)).round().astype(int).tolist()))
    scale = max(1, math.ceil(min_height / frames.shape[1]))
    line = max(1, scale)
    panels = []
    for t in picks:
        image = Image.fromarray(to_uint8(frames[t])).resize((frames.shape[2] * scale, frames.shape[1] * scale),
                                                            Image.NEAREST)
        draw = ImageDraw.Draw(image)
        kept = info["detections"][t] if info.get("detections") else None
        for box, _ in (info.get("candidates") or [[]] * count)[t]:
            if kept is None or box != kept[0]:
                _draw_box(draw, box, scale, (255, 220, 0), line)
        green = kept[0] if kept is not None else info.get("motion_box")
        if green is not None:
            _draw_box(draw, green, scale, (0, 220, 0), line)
        _draw_box(draw, info["box"], scale, (230, 0, 0), line + 1)
        prefix = f"frame {t}  " if count > 1 else ""
        if kept is not None:
            _label(draw, f"{prefix}score {kept[1]:.2f}", (0, 220, 0), image.height)
        elif info["mode"] == "face":
            _label(draw, f"{prefix}no face", (255, 60, 60), image.height)
        else:
            _label(draw, prefix + ("moving" if green is not None else "centre square"), (0, 220, 0), image.height)
        panels.append(np.asarray(image, dtype="float32") / 255.0)
    gap = np.ones((panels[0].shape[0], 4, 3), dtype="float32")
    row = [panels[0]]
    for panel in panels[1:]:
        row += [gap, panel]
    return np.concatenate(row, axis=1)
