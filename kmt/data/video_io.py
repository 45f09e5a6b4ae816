"""Reading and writing videos in the layouts of the official FOMM datasets.

A video on disk is one of:

- a folder of frames (``.png``/``.jpg``/``.jpeg``), in natural order of their names
  (``2.png`` before ``10.png``; zero-padded names sort the same either way);
- an ``.mp4``, ``.mov`` or ``.gif`` file;
- one ``.png``/``.jpg``/``.jpeg`` image holding the frames side by side (horizontally
  stacked), each ``frame_shape[1]`` pixels wide.

Frames come back as ``(T, H, W, 3)`` float32 in [0, 1] (grey images are repeated to RGB,
an alpha channel is dropped); on disk they are 8-bit. A file that cannot be decoded, or
holds no frame, raises :class:`VideoReadError` (a ``ValueError``) naming the file.
mp4/mov/gif go through imageio (ffmpeg from ``imageio-ffmpeg``, gif through Pillow).
"""

import os
import re
import warnings

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".mov", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class VideoReadError(ValueError):
    """A video (or one of its frames) could not be read; ``path`` names the file."""

    def __init__(self, path, reason):
        self.path, self.reason = str(path), reason
        super().__init__(f"cannot read video {self.path!r}: {reason}")


def _short(err):
    """The last informative line of an exception (ffmpeg errors carry a long banner)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    text = lines[-1] if lines else type(err).__name__
    return (text[:200] + "...") if len(text) > 200 else text


def layout_of(path):
    """``"frames"`` (a folder), ``"video"`` (mp4/mov/gif) or ``"stacked"`` (one image); else raises."""
    if os.path.isdir(path):
        return "frames"
    ext = os.path.splitext(path)[1].lower()
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if ext in IMAGE_EXTENSIONS:
        return "stacked"
    raise VideoReadError(path, f"unknown extension {ext!r}; expected a folder of frames or one of "
                               f"{VIDEO_EXTENSIONS + IMAGE_EXTENSIONS}")


def _natural_key(name):
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def list_frames(folder):
    """Sorted paths of the frames in a folder. Other files are named in a warning; hidden
    files (starting with ``.``) are ignored."""
    names = [n for n in os.listdir(folder) if not n.startswith(".")]
    frames = sorted((n for n in names if n.lower().endswith(IMAGE_EXTENSIONS)), key=_natural_key)
    others = sorted(set(names) - set(frames))
    if others:
        warnings.warn(f"{folder!r}: ignoring {len(others)} file(s) that are not frames: {others[:5]}",
                      stacklevel=2)
    return [os.path.join(folder, n) for n in frames]


def to_float_rgb(pixels, channels_last=True, where="image"):
    """8/16-bit or float pixels as float32 RGB in [0, 1]; ``channels_last=False`` for grey
    arrays without a channel axis. Grey (and grey + alpha) is repeated, alpha dropped."""
    pixels = np.asarray(pixels)
    if pixels.dtype == np.uint8:
        out = pixels.astype(np.float32) / 255.0
    elif pixels.dtype == np.uint16:
        out = pixels.astype(np.float32) / 65535.0
    elif pixels.dtype == bool or np.issubdtype(pixels.dtype, np.floating):
        out = pixels.astype(np.float32)
    else:
        raise VideoReadError(where, f"unsupported pixel type {pixels.dtype}")
    if not channels_last:
        out = out[..., None]
    channels = out.shape[-1]
    if channels in (1, 2):
        return np.repeat(out[..., :1], 3, axis=-1)
    if channels in (3, 4):
        return out[..., :3]
    raise VideoReadError(where, f"expected 1 to 4 colour channels, got shape {pixels.shape}")


def read_image(path):
    """One image file as ``(H, W, 3)`` float32 in [0, 1]."""
    import imageio.v3 as iio

    try:
        image = iio.imread(path, plugin="pillow")
    except Exception as err:  # noqa: BLE001 - every decoder failure becomes one error type
        raise VideoReadError(path, _short(err)) from err
    return to_float_rgb(image, image.ndim == 3, path)


def _stacked_width(path, height, width, frame_shape):
    frame_w = int(frame_shape[1]) if frame_shape is not None else height
    if frame_w < 1 or width % frame_w:
        raise VideoReadError(path, f"image width {width} is not a multiple of the frame width {frame_w} "
                                   "(frame_shape[1]; frames are stacked horizontally)")
    return frame_w


def num_frames(path, frame_shape=None):
    """Number of frames of a video, reading as little as the layout allows."""
    kind = layout_of(path)
    if kind == "frames":
        return len(list_frames(path))
    if kind == "stacked":
        from PIL import Image

        try:
            with Image.open(path) as im:
                width, height = im.size
        except Exception as err:  # noqa: BLE001
            raise VideoReadError(path, _short(err)) from err
        return width // _stacked_width(path, height, width, frame_shape)
    return len(read_video(path))


def read_video(path, frame_shape=None):
    """All frames of a video as ``(T, H, W, 3)`` float32 in [0, 1].

    ``frame_shape`` ``(H, W[, C])`` is needed only for stacked images (their frame width);
    without it frames are taken square.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoReadError(path, "no such file or folder")
    kind = layout_of(path)
    if kind == "frames":
        files = list_frames(path)
        if not files:
            raise VideoReadError(path, "the folder holds no frames (.png/.jpg/.jpeg)")
        return _stack_frames(files)
    if kind == "stacked":
        image = read_image(path)
        h, w = image.shape[:2]
        fw = _stacked_width(path, h, w, frame_shape)
        return np.ascontiguousarray(image.reshape(h, w // fw, fw, 3).transpose(1, 0, 2, 3))
    if os.path.getsize(path) == 0:
        raise VideoReadError(path, "the file is empty")
    import imageio.v3 as iio

    try:
        if path.lower().endswith(".gif"):
            frames = iio.imread(path, index=None, plugin="pillow")
        else:
            frames = _read_ffmpeg(path)
    except Exception as err:  # noqa: BLE001
        raise VideoReadError(path, _short(err)) from err
    if len(frames) == 0:
        raise VideoReadError(path, "the video has no frames")
    return np.ascontiguousarray(to_float_rgb(frames, frames.ndim == 4, path))


def _read_ffmpeg(path):
    """Decode an mp4/mov to ``(T, H, W, 3)`` uint8 with one ffmpeg process."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(path, pix_fmt="rgb24")
    try:
        meta = next(reader)
        width, height = meta["size"]
        frames = [np.frombuffer(buf, np.uint8).reshape(height, width, 3) for buf in reader]
    finally:
        reader.close()
    return np.stack(frames) if frames else np.zeros((0, height, width, 3), np.uint8)


def _stack_frames(files):
    frames = [read_image(f) for f in files]
    shape = frames[0].shape
    for f, im in zip(files, frames):
        if im.shape != shape:
            raise VideoReadError(f, f"frame shape {im.shape} differs from the first frame's {shape}")
    return np.stack(frames)


def read_frames(path, indices, frame_shape=None):
    """The frames ``indices`` of a video, ``(len(indices), H, W, 3)``; decodes only those
    frames from a folder of frames."""
    indices = [int(i) for i in indices]
    if os.path.isdir(path):
        files = list_frames(path)
        if not files:
            raise VideoReadError(path, "the folder holds no frames (.png/.jpg/.jpeg)")
        bad = [i for i in indices if not -len(files) <= i < len(files)]
        if bad:
            raise IndexError(f"frame indices {bad} out of range for {path!r} with {len(files)} frames")
        return _stack_frames([files[i] for i in indices])
    return read_video(path, frame_shape)[indices]


def to_uint8(frames):
    """Float frames in [0, 1] (or uint8) as uint8, rounding to nearest."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_video(path, frames, fps=25, quality=8):
    """Write ``frames (T, H, W, 3)`` (float in [0, 1] or uint8) in the layout ``path`` names.

    A path without an extension becomes a folder of ``0000000.png``, ``0000001.png``, ...;
    ``.mp4``/``.mov`` are H.264 (``quality`` 0-10, even ``H`` and ``W``); ``.gif`` loops at
    ``fps``; ``.png``/``.jpg`` stack the frames side by side in one image.
    """
    import imageio.v3 as iio

    path = os.fspath(path)
    frames = to_uint8(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be (T, H, W, 3) with T >= 1, got shape {frames.shape}")
    ext = os.path.splitext(path)[1].lower()
    if ext == "":
        os.makedirs(path, exist_ok=True)
        for i, frame in enumerate(frames):
            iio.imwrite(os.path.join(path, f"{i:07d}.png"), frame, plugin="pillow", compress_level=1)
    elif ext in (".mp4", ".mov"):
        if frames.shape[1] % 2 or frames.shape[2] % 2:
            raise ValueError(f"{path!r}: H.264 needs an even frame height and width, got {frames.shape[1:3]}")
        iio.imwrite(path, frames, fps=fps, codec="libx264", quality=quality, macro_block_size=1,
                    plugin="FFMPEG")
    elif ext == ".gif":
        iio.imwrite(path, frames, duration=1000.0 / fps, loop=0, plugin="pillow")
        from PIL import Image

        with Image.open(path) as im:
            written = getattr(im, "n_frames", 1)
        if written != len(frames):
            warnings.warn(f"{path!r}: the GIF holds {written} frames, not {len(frames)}: GIF merges "
                          "consecutive frames that are identical after colour quantisation", stacklevel=2)
    elif ext in IMAGE_EXTENSIONS:
        iio.imwrite(path, np.concatenate(list(frames), axis=1), plugin="pillow")
    else:
        raise ValueError(f"cannot write {path!r}: expected no extension (a folder of frames) or one of "
                         f"{VIDEO_EXTENSIONS + IMAGE_EXTENSIONS}")
    return path
