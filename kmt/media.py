"""Images and videos in and out of the models: reading, resizing, panels, saving, playing in a page.

Frames are ``(T, H, W, 3)`` float32 in [0, 1]. Reading goes through
:mod:`kmt.data.video_io` (folders of frames, mp4, mov, gif, stacked png/jpg);
anything of another size than the model's is resized, with a notice on stderr.
"""

import os
import sys

import numpy as np

from kmt.data.video_io import VideoReadError, read_video, to_uint8, write_video

__all__ = ["resize_frames", "read_image", "read_frames_for_model", "video_fps", "compose_side_by_side",
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


def _notice(label, shape, size):
    print(f"{label}: resized from {shape[1]}x{shape[0]} to {size[1]}x{size[0]} pixels (the model's size).", file=sys.stderr)


def read_image(path, size, label="image"):
    """An RGB image as ``(h, w, 3)`` float32 in [0, 1], resized to ``size`` if needed."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{label}: no image file at {path!r}.")
    try:
        with Image.open(path) as handle:
            image = np.asarray(handle.convert("RGB"), dtype="float32") / 255.0
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{label}: {path!r} is not a readable image ({error}).") from None
    if image.shape[:2] != tuple(size):
        _notice(label, image.shape, size)
        image = resize_frames(image, size)
    return image


def video_fps(path, default=25.0):
    """Frames per second stored in an mp4/mov/gif, or ``default`` (folders and stacked images have none)."""
    lower = str(path).lower()
    try:
        if lower.endswith((".mp4", ".mov")):
            import imageio_ffmpeg

            reader = imageio_ffmpeg.read_frames(path)
            meta = next(reader)
            reader.close()
            return float(meta.get("fps") or default)
        if lower.endswith(".gif"):
            from PIL import Image

            with Image.open(path) as handle:
                duration = handle.info.get("duration")
            return 1000.0 / duration if duration else default
    except Exception:  # noqa: BLE001 - an unreadable file is reported by read_video
        return default
    return default


def read_frames_for_model(path, size, label="video", max_frames=None):
    """``(frames (T, h, w, 3), fps)`` of a video, resized to ``size`` if needed; errors name the file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{label}: no video at {path!r}.")
    try:
        frames = read_video(path)
    except VideoReadError as error:
        raise ValueError(f"{label}: {error}") from None
    if max_frames is not None:
        frames = frames[: int(max_frames)]
    if frames.shape[1:3] != tuple(size):
        _notice(label, frames.shape[1:], size)
        frames = resize_frames(frames, size)
    return frames, video_fps(path)


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
