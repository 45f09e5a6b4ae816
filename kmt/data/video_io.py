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

mp4/mov are decoded by the ``ffmpeg`` of ``imageio-ffmpeg``: the frames of the first video
stream, in order, none duplicated or dropped to reach a constant frame rate. gif goes through
Pillow. :func:`read_frames` decodes a video file only up to the last frame it is asked for,
and :func:`num_frames` counts the frames of a video file from its container (packets, no
pixel decoding), once per version of the file: sampling a pair from a long clip costs one
short ffmpeg run, not a decode of the whole clip; :func:`read_frames_many` reads the pairs
of a batch of mp4/mov with one ffmpeg run. Were a file to decode fewer frames than its
container lists, the first read past the end finds out, corrects the count and says so.
"""

import os
import re
import subprocess
import tempfile
import threading
import warnings
from collections import OrderedDict
from fractions import Fraction

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
    """Number of frames of a video, without decoding its pixels.

    A folder counts its frames, a stacked image its width over the frame width; an mp4/mov
    counts the packets of its first video stream and a gif its frames (one ffmpeg run or one
    pass over the gif, remembered for this version of the file: same path, size and mtime).
    """
    path = os.fspath(path)
    kind = layout_of(path)
    if kind == "frames":
        return len(list_frames(path))
    _check_file(path)
    if kind == "stacked":
        from PIL import Image

        try:
            with Image.open(path) as im:
                width, height = im.size
        except Exception as err:  # noqa: BLE001
            raise VideoReadError(path, _short(err)) from err
        return width // _stacked_width(path, height, width, frame_shape)
    return _video_file_length(path)


def _check_file(path):
    if not os.path.exists(path):
        raise VideoReadError(path, "no such file or folder")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise VideoReadError(path, "the file is empty")


_MAX_REMEMBERED = 1 << 16
_frame_counts = OrderedDict()  # (absolute path, size, mtime_ns) -> number of frames
_frame_counts_lock = threading.Lock()


def _file_version(path):
    stat = os.stat(path)
    return os.path.abspath(path), stat.st_size, stat.st_mtime_ns


def _remember_length(path, count):
    with _frame_counts_lock:
        _frame_counts[_file_version(path)] = count
        while len(_frame_counts) > _MAX_REMEMBERED:
            _frame_counts.popitem(last=False)


def _video_file_length(path):
    """Frames of an mp4/mov/gif (counted once per version of the file)."""
    key = _file_version(path)
    with _frame_counts_lock:
        if key in _frame_counts:
            _frame_counts.move_to_end(key)
            return _frame_counts[key]
    if path.lower().endswith(".gif"):
        from PIL import Image

        try:
            with Image.open(path) as im:
                count = int(getattr(im, "n_frames", 1))
        except Exception as err:  # noqa: BLE001
            raise VideoReadError(path, _short(err)) from err
    else:
        count = _count_ffmpeg_frames(path)
    if count == 0:
        raise VideoReadError(path, "the video has no frames")
    _remember_length(path, count)
    return count


def _run_ffmpeg(arguments, path):
    """stdout of ``ffmpeg arguments``; a failure raises naming ``path``."""
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error"] + arguments
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    except OSError as err:
        raise VideoReadError(path, f"cannot run ffmpeg: {err}") from err
    if done.returncode != 0:
        raise VideoReadError(path, _short(done.stderr.decode(errors="replace")) or
                             f"ffmpeg exited with status {done.returncode}")
    return done.stdout


def _input(path):
    return ["-threads", "1", "-i", path]


def _frames_output(stream, wanted=None, target="-"):
    """ffmpeg output options: the frames ``wanted`` (sorted, distinct; None: all) of input
    ``stream``'s first video stream, as PPM images, which carry their size (autorotation or a
    change of resolution may alter it). With ``wanted``, ffmpeg stops after the last of them
    and converts to RGB only those."""
    arguments = ["-map", f"{stream}:v:0", "-fps_mode", "passthrough", "-filter_threads", "1"]
    if wanted is not None:
        chosen = "+".join(f"eq(n\\,{int(i)})" for i in wanted)
        arguments += ["-vf", f"select={chosen}", "-frames:v", str(len(wanted))]
    return arguments + ["-pix_fmt", "rgb24", "-c:v", "ppm", "-f", "image2pipe", target]


def _count_ffmpeg_frames(path, decode=False):
    """Packets of the first video stream (``decode=True``: frames its decoder puts out)."""
    codec = ["-fps_mode", "passthrough", "-c:v", "rawvideo"] if decode else ["-c:v", "copy"]
    lines = _run_ffmpeg(_input(path) + ["-map", "0:v:0"] + codec + ["-f", "framecrc", "-"], path).splitlines()
    return sum(1 for line in lines if line.strip() and not line.startswith(b"#"))


def _decode_ffmpeg(path, wanted=None):
    """Frames ``wanted`` (sorted, distinct; None: all) of an mp4/mov, ``(N, H, W, 3)`` uint8;
    fewer come back if the video ends before."""
    return _parse_ppm(_run_ffmpeg(_input(path) + _frames_output(0, wanted), path), path)


_PPM_HEADER = re.compile(rb"P6\s+(\d+)\s+(\d+)\s+(\d+)\s")


def _parse_ppm(data, path):
    frames, position = [], 0
    while position < len(data):
        header = _PPM_HEADER.match(data, position)
        if header is None or header.group(3) != b"255":
            raise VideoReadError(path, f"unexpected ffmpeg output at byte {position}")
        width, height = int(header.group(1)), int(header.group(2))
        position = header.end() + width * height * 3
        if position > len(data):
            raise VideoReadError(path, "ffmpeg output ends inside a frame")
        frames.append(np.frombuffer(data, np.uint8, width * height * 3, header.end()).reshape(height, width, 3))
    if len({f.shape for f in frames}) > 1:
        raise VideoReadError(path, f"the frame size changes within the video: {sorted({f.shape for f in frames})}")
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)


def read_video(path, frame_shape=None):
    """All frames of a video as ``(T, H, W, 3)`` float32 in [0, 1].

    ``frame_shape`` ``(H, W[, C])`` is needed only for stacked images (their frame width);
    without it frames are taken square.
    """
    path = os.fspath(path)
    _check_file(path)
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
    frames = _decode_file(path)
    if len(frames) == 0:
        raise VideoReadError(path, "the video has no frames")
    return np.ascontiguousarray(to_float_rgb(frames, frames.ndim == 4, path))


def _decode_file(path, wanted=None):
    """Frames of an mp4/mov/gif as decoded (all, or the sorted distinct ``wanted``)."""
    try:
        if not path.lower().endswith(".gif"):
            return _decode_ffmpeg(path, wanted)
        import imageio.v3 as iio

        if wanted is None:
            return iio.imread(path, index=None, plugin="pillow")
        with iio.imopen(path, "r", plugin="pillow") as gif:
            return np.stack([gif.read(index=int(i)) for i in wanted])
    except VideoReadError:
        raise
    except Exception as err:  # noqa: BLE001
        raise VideoReadError(path, _short(err)) from err


def _stack_frames(files):
    frames = [read_image(f) for f in files]
    shape = frames[0].shape
    for f, im in zip(files, frames):
        if im.shape != shape:
            raise VideoReadError(f, f"frame shape {im.shape} differs from the first frame's {shape}")
    return np.stack(frames)


def read_frames(path, indices, frame_shape=None):
    """The frames ``indices`` of a video, ``(len(indices), H, W, 3)`` float32 in [0, 1].

    The same frames as ``read_video(path, frame_shape)[indices]``, decoding less: a folder
    reads just those frames; an mp4/mov/gif is decoded up to the last frame asked for (an
    mp4/mov by one ffmpeg run that stops there and converts only the frames asked for).
    Indices may repeat, come in any order, and count from the end when negative; an index
    out of range raises ``IndexError``.
    """
    path = os.fspath(path)
    indices = [int(i) for i in np.asarray(indices).reshape(-1)]
    if not indices:
        raise ValueError(f"indices must name at least one frame of {path!r}, got none")
    _check_file(path)
    kind = layout_of(path)
    if kind == "frames":
        files = list_frames(path)
        if not files:
            raise VideoReadError(path, "the folder holds no frames (.png/.jpg/.jpeg)")
        return _stack_frames([files[i] for i in _in_range(path, indices, len(files))])
    if kind == "stacked":
        return read_video(path, frame_shape)[_in_range(path, indices, num_frames(path, frame_shape))]
    listed = _video_file_length(path)
    indices = _in_range(path, indices, listed)
    wanted = sorted(set(indices))
    frames = _pick(_decode_file(path, wanted), indices, wanted, path)
    if frames is None:
        decoded = _count_ffmpeg_frames(path, decode=True)
        _remember_length(path, decoded)
        raise VideoReadError(path, f"frame {wanted[-1]} is past the end: the container lists {listed} frames "
                                   f"but {decoded} decode (the count is corrected for the next read)")
    return frames


def _pick(frames, indices, wanted, path):
    """Float frames ``indices`` from the decoded ``frames`` ``wanted``; None if some are missing."""
    if len(frames) < len(wanted):
        return None
    frames = frames[np.searchsorted(wanted, indices)]
    return np.ascontiguousarray(to_float_rgb(frames, frames.ndim == 4, path))


def read_frames_many(requests, frame_shape=None, max_inputs=32):
    """``[read_frames(path, indices, frame_shape) for path, indices in requests]``, with the
    mp4/mov among them decoded together by one ffmpeg process (per ``max_inputs`` files): the
    start of ffmpeg is most of the cost of reading a pair from a short clip. Each file is
    still decoded only up to the last frame asked of it. Should the joint run fail, every
    request is read on its own, so an error names its file."""
    requests = [(os.fspath(path), indices) for path, indices in requests]
    jointly = [k for k, (path, _) in enumerate(requests)
               if path.lower().endswith((".mp4", ".mov")) and os.path.isfile(path)]
    decoded = {}
    for start in range(0, len(jointly), max_inputs):
        chunk = jointly[start:start + max_inputs]
        if len(chunk) > 1:
            try:
                decoded.update(zip(chunk, _decode_jointly([requests[k] for k in chunk])))
            except Exception:  # noqa: BLE001 - read one by one below, which names the failing file
                pass
    return [decoded[k] if decoded.get(k) is not None else read_frames(path, indices, frame_shape)
            for k, (path, indices) in enumerate(requests)]


def _decode_jointly(requests):
    """The frames of mp4/mov requests from one ffmpeg run, one output file per input (None
    where a file gave fewer frames than asked: it is read again on its own)."""
    plans = []
    for path, indices in requests:
        indices = _in_range(path, [int(i) for i in np.asarray(indices).reshape(-1)], _video_file_length(path))
        if not indices:
            raise ValueError(f"no frame asked of {path!r}")
        plans.append((path, indices, sorted(set(indices))))
    with tempfile.TemporaryDirectory(prefix="kmt-frames-") as folder:
        targets = [os.path.join(folder, f"{k}.ppm") for k in range(len(plans))]
        arguments = [a for path, _, _ in plans for a in _input(path)]
        for k, (_, _, wanted) in enumerate(plans):
            arguments += _frames_output(k, wanted, targets[k])
        _run_ffmpeg(arguments, plans[0][0])
        results = []
        for target, (path, indices, wanted) in zip(targets, plans):
            with open(target, "rb") as f:
                results.append(_pick(_parse_ppm(f.read(), path), indices, wanted, path))
    return results


def _in_range(path, indices, count):
    bad = [i for i in indices if not -count <= i < count]
    if bad:
        raise IndexError(f"frame indices {bad} out of range for {path!r} with {count} frames")
    return [i % count for i in indices]


def to_uint8(frames):
    """Float frames in [0, 1] (or uint8) as uint8, rounding to nearest."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _write_h264(path, frames, fps, quality):
    """``uint8 (T, H, W, 3)`` frames to H.264 (``quality`` 0-10: CRF ``int((1 - quality / 10) * 51)``).

    ffmpeg runs as a plain subprocess in its own session: a Ctrl-C in the terminal does not cut the
    file short, and no ``preexec_fn`` means no ``fork()`` of this (multithreaded) process, which JAX
    warns may deadlock. The command is the one imageio's FFMPEG plugin runs, so the bytes are the same.
    """
    import imageio_ffmpeg

    if not 0 <= quality <= 10:
        raise ValueError(f"`quality` must be in [0, 10]; got {quality!r}.")
    height, width = frames.shape[1:3]
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-f", "rawvideo", "-vcodec", "rawvideo",
               "-s", f"{width}x{height}", "-pix_fmt", "rgb24", "-r", str(Fraction(fps).limit_denominator()),
               "-i", "-", "-an", "-vcodec", "libx264", "-pix_fmt", "yuv420p",
               "-crf", str(int((1 - quality / 10.0) * 51)), "-v", "error", path]
    try:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   start_new_session=True)
    except OSError as err:
        raise OSError(f"cannot run ffmpeg to write {path!r}: {err}") from err
    with process:
        _, errors = process.communicate(np.ascontiguousarray(frames).tobytes())
    if process.returncode != 0:
        raise OSError(f"ffmpeg could not write {path!r}: {_short(errors.decode(errors='replace'))}")


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
        _write_h264(path, frames, fps, quality)
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
