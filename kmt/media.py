"""Images and videos in and out of the models: reading, resizing, panels, saving, playing in a page.

Frames are ``(T, H, W, 3)`` float32 in [0, 1]. Reading goes through
:mod:`kmt.data.video_io` (folders of frames, mp4, mov, gif, stacked png/jpg);
anything of another size than the model's is fitted to it (:func:`fit_frames`: by default
its centre is cropped to the model's aspect ratio, then resized), with a notice on stderr.
"""

import os
import sys

import numpy as np

from kmt.data.video_io import VideoReadError, read_video, to_uint8, write_video

FITS = ("crop", "pad", "stretch")
"""How :func:`fit_frames` meets another aspect ratio: crop the centre, pad with black, or stretch."""

__all__ = ["FITS", "resize_frames", "fit_frames", "read_image", "read_frames_for_model", "video_fps", "compose_side_by_side",
           "save_animation", "h264_round_trip", "animation_html"]


def resize_frames(frames, size):
    """Resize ``(T, H, W, C)`` (or one ``(H, W, C)``) float frames to ``size = (h, w)`` with a Lanczos filter."""
    from PIL import Image

    frames = np.asarray(frames, dtype="float32")
    single = frames.ndim == 3
    batch = frames[None] if single else frames
    if batch.shape[1:3] == tuple(size):
        return frames
    out = np.stack([
        np.asarray(Image.fromarray(to_uint8(f)).resize((size[1], size[0]), Image.LANCZOS), dtype="float32") / 255.0
        for f in batch
    ])
    return out[0] if single else out


def fit_frames(frames, size, fit="crop"):
    """``(T, H, W, C)`` (or one ``(H, W, C)``) frames brought to ``size = (h, w)``, and what was done.

    ``fit`` says what happens when ``W / H`` differs from ``w / h``: ``"crop"`` keeps the centred
    region of the target's aspect ratio, ``"pad"`` adds black bars on both sides of the short
    dimension, ``"stretch"`` resizes as it is (the picture is distorted). Then a Lanczos resize.
    Returns ``(frames, description)``; ``description`` is ``None`` when nothing changed.
    """
    if fit not in FITS:
        raise ValueError(f"`fit` must be one of {FITS}; got {fit!r}.")
    frames = np.asarray(frames, dtype="float32")
    height, width = frames.shape[-3:-1]
    if (height, width) == tuple(size):
        return frames, None
    steps = []
    if fit != "stretch" and height * size[1] != width * size[0]:
        # The largest (crop) or smallest (pad) centred region of the target's aspect ratio.
        pick = min if fit == "crop" else max
        new_h, new_w = pick(height, round(width * size[0] / size[1])), pick(width, round(height * size[1] / size[0]))
        top, left = abs(height - new_h) // 2, abs(width - new_w) // 2
        if fit == "crop":
            frames = frames[..., top:top + new_h, left:left + new_w, :]
            steps.append(f"cropped from {width}x{height} to its centre {new_w}x{new_h}")
        else:
            pad = [(0, 0)] * (frames.ndim - 3) + [(top, new_h - height - top), (left, new_w - width - left), (0, 0)]
            frames = np.pad(frames, pad)
            steps.append(f"padded with black from {width}x{height} to {new_w}x{new_h}")
        height, width = new_h, new_w
    if (height, width) != tuple(size):
        stretched = ", stretching it (its aspect ratio changes)" if fit == "stretch" and (
            height * size[1] != width * size[0]) else ""
        steps.append(f"resized from {width}x{height} to {size[1]}x{size[0]} pixels (the model's size){stretched}")
    else:
        steps[-1] += " (the model's size)"
    return resize_frames(frames, size), ", then ".join(steps)


def _fitted(frames, size, fit, label):
    frames, done = fit_frames(frames, size, fit)
    if done is not None:
        print(f"{label}: {done}.", file=sys.stderr)
    return frames


def read_image(path, size, label="image", fit="crop"):
    """An RGB image as ``(h, w, 3)`` float32 in [0, 1], fitted to ``size`` if needed (:func:`fit_frames`)."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{label}: no image file at {path!r}.")
    try:
        with Image.open(path) as handle:
            image = np.asarray(handle.convert("RGB"), dtype="float32") / 255.0
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{label}: {path!r} is not a readable image ({error}).") from None
    return _fitted(image, size, fit, label)


def video_fps(path, default=25.0):
    """Frames per second stored in an mp4/mov/gif, or ``default`` (folders and stacked images have none)."""
    lower = str(path).lower()
    try:
        if lower.endswith((".mp4", ".mov")):
            import re
            import subprocess

            import imageio_ffmpeg

            # The stream line ffmpeg prints (``Stream #0:0...: Video: ..., 25 fps, ...``), read as imageio
            # does, from a plain subprocess: no fork() of this process (see kmt.data.video_io._write_h264).
            info = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(path)],
                                  stdin=subprocess.DEVNULL, capture_output=True, check=False).stderr.decode(errors="replace")
            stream = next(line for line in info.splitlines() if line.lstrip().startswith("Stream ") and " Video: " in line)
            match = re.search(r" ([0-9]+\.?[0-9]*) fps", stream)
            return float(match.group(1)) if match and float(match.group(1)) else default
        if lower.endswith(".gif"):
            from PIL import Image

            with Image.open(path) as handle:
                duration = handle.info.get("duration")
            return 1000.0 / duration if duration else default
    except Exception:  # noqa: BLE001 - an unreadable file is reported by read_video
        return default
    return default


def read_frames_for_model(path, size, label="video", max_frames=None, fit="crop"):
    """``(frames (T, h, w, 3), fps)`` of a video, fitted to ``size`` if needed (:func:`fit_frames`); errors name the file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{label}: no video at {path!r}.")
    try:
        frames = read_video(path)
    except VideoReadError as error:
        raise ValueError(f"{label}: {error}") from None
    if max_frames is not None:
        frames = frames[: int(max_frames)]
    return _fitted(frames, size, fit, label), video_fps(path)


def compose_side_by_side(source, driving, result, kp_driving=None, kp_result=None, panels=True):
    """Frames showing source | driving | result (``panels``), keypoints drawn when given.

    ``kp_driving`` / ``kp_result`` are ``{"value": (T, K, 2)}`` dicts (or arrays).
    With ``panels=False`` only the result is returned (with its keypoints if given).
    """
    from kmt.visualize import overlay_keypoints

    source = np.asarray(source, dtype="float32")
    frames = []

    def values(kp):
        return None if kp is None else np.asarray(kp["value"] if isinstance(kp, dict) else kp)

    kp_driving, kp_result = values(kp_driving), values(kp_result)
    for t, (drive, out) in enumerate(zip(driving, result)):
        if kp_result is not None:
            out = overlay_keypoints(out, kp_result[t])
        if not panels:
            frames.append(out)
            continue
        if kp_driving is not None:
            drive = overlay_keypoints(drive, kp_driving[t])
        frames.append(np.concatenate([source, drive, out], axis=1))
    return np.stack(frames)


def save_animation(path, frames, fps=25.0):
    """Write frames as ``.mp4`` (H.264, imageio's bundled ffmpeg) or ``.gif``."""
    if not str(path).lower().endswith((".mp4", ".gif", ".mov")):
        raise ValueError(f"`path` must end in .mp4, .mov or .gif; got {path!r}.")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    write_video(path, frames, fps=fps)
    return path


def h264_round_trip(frames, quality=8, fps=25.0):
    """``(T, H, W, 3)`` frames after writing them to an H.264 ``.mp4`` (``quality`` 0-10) and reading it back.

    What a video loses to compression; ``H`` and ``W`` must be even.
    """
    import tempfile

    frames = np.asarray(frames)
    with tempfile.TemporaryDirectory() as folder:
        decoded = read_video(write_video(os.path.join(folder, "round_trip.mp4"), frames, fps=fps, quality=quality))
    if decoded.shape[:4] != frames.shape[:4]:
        raise RuntimeError(f"the H.264 round trip gave frames of shape {decoded.shape}, not {frames.shape}.")
    return decoded


def animation_html(frames, fps=12.0, size=3.0, titles=None):
    """An HTML animation (``matplotlib`` ``to_jshtml``) that plays in a static page, no kernel needed.

    ``frames`` is ``(T, H, W, 3)`` or a list of such arrays shown side by side with ``titles``.
    """
    import matplotlib.pyplot as plt
    from matplotlib import animation as mpl_animation

    videos = frames if isinstance(frames, (list, tuple)) else [frames]
    videos = [np.clip(np.asarray(v, dtype="float32"), 0, 1) for v in videos]
    figure, axes = plt.subplots(1, len(videos), figsize=(size * len(videos), size), squeeze=False)
    images = []
    for index, (ax, video) in enumerate(zip(axes[0], videos)):
        images.append(ax.imshow(video[0]))
        ax.axis("off")
        if titles:
            ax.set_title(titles[index], fontsize=10)
    figure.tight_layout()

    def update(t):
        for image, video in zip(images, videos):
            image.set_data(video[min(t, len(video) - 1)])
        return images

    movie = mpl_animation.FuncAnimation(figure, update, frames=max(len(v) for v in videos), interval=1000.0 / fps)
    html = movie.to_jshtml(default_mode="loop")
    plt.close(figure)
    return html
