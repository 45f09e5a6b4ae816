"""A folder of your own videos turned into a FOMM dataset: ``train/`` and ``test/`` in the official layout.

:func:`prepare_dataset` finds the videos under ``input_dir``: ``.mp4``/``.mov``/``.gif`` files
and folders of ``.png``/``.jpg`` frames, at the top or nested in sub-folders (entries whose
name starts with ``.`` are hidden and ignored, as in :mod:`kmt.data.video_io`). It reads each
once to check it, optionally crops it with :mod:`kmt.crop` (``crop="face"`` or ``"whole"``, one
steady box per clip), splits the videos, and writes them as folders of png frames (the default:
a training pair then reads two small files) or as mp4 files, readable by
:class:`kmt.data.FramesDataset`.

Names: a top-level ``clip.mp4`` keeps its name (``clip``; ``person#clip.mp4`` gives
``person#clip``); a nested ``person/clip.mp4`` becomes ``person#clip`` (deeper folders are
joined with ``_``: ``person/day1/clip.mp4`` gives ``person#day1_clip``), the ``<id>#<clip>``
names that ``id_sampling`` groups by identity. A ``#`` inside a folder or file name becomes
``-`` in nested names, so the identity is always the top folder. Two videos that would get one
name are told apart by their extension (``_mp4``, ``_gif``, ``_frames``), then by a number.

Splits: ``split_by="video"`` sends a seeded random ``test_fraction`` of the videos to
``test/`` (at least one); ``split_by="identity"`` does the same with identities, so all clips
of a person land in the same split; ``split_by="folders"`` keeps the split of an input that
already has ``train/`` and ``test/`` folders (videos elsewhere are skipped, and listed). Nothing
is dropped silently: unreadable files, files that
are not videos and clips shorter than ``min_frames`` (or that cannot be cropped) are skipped and
listed with the reason in the returned summary and in ``prepare.json`` beside ``train/`` and
``test/``, which also records where every video came from and its crop box.
"""

import json
import os
import shlex
import shutil

import numpy as np

from kmt.crop import CropError, apply_box, find_box
from kmt.data.dataset import video_id
from kmt.data.video_io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoReadError, read_video, write_video

__all__ = ["find_videos", "video_names", "split_videos", "prepare_dataset", "format_summary", "train_command",
           "MANIFEST"]

MANIFEST = "prepare.json"
LAYOUTS = {"frames": "", "mp4": ".mp4"}


def find_videos(input_dir):
    """``(videos, skipped)`` under ``input_dir``: ``videos`` is a sorted list of ``(path, parts)``,
    ``parts`` the video's path relative to ``input_dir`` without extension, as a tuple of names;
    ``skipped`` lists ``(path, reason)`` for files that are not videos."""
    input_dir = os.fspath(input_dir)
    if not os.path.isdir(input_dir):
        raise ValueError(f"input_dir {input_dir!r} is not a folder.")
    videos, skipped = [], []
    for folder, subfolders, files in os.walk(input_dir):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        relative = os.path.relpath(folder, input_dir)
        parts = () if relative == "." else tuple(relative.split(os.sep))
        frames = sorted(f for f in files if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
        if frames and parts:
            videos.append((folder, parts))
        for name in sorted(f for f in files if not f.startswith(".")):
            path = os.path.join(folder, name)
            stem, ext = os.path.splitext(name)
            if ext.lower() in VIDEO_EXTENSIONS:
                videos.append((path, parts + (stem,)))
            elif ext.lower() in IMAGE_EXTENSIONS and not parts:
                skipped.append((path, "an image at the top of the input folder is not a video; put the frames "
                                      "of a clip in a folder of their own"))
            elif ext.lower() not in IMAGE_EXTENSIONS:
                skipped.append((path, f"not a video: expected {'/'.join(VIDEO_EXTENSIONS)} files or folders of "
                                      f"{'/'.join(IMAGE_EXTENSIONS)} frames"))
    return sorted(videos, key=lambda video: video[1]), skipped


def video_names(videos):
    """Unique dataset names for ``find_videos``' ``videos``, in the same order (see the module docstring)."""
    def base(parts):
        if len(parts) == 1:
            return parts[0]
        clean = [p.replace("#", "-") for p in parts]
        return clean[0] + "#" + "_".join(clean[1:])

    def kind(path):
        return "frames" if os.path.isdir(path) else os.path.splitext(path)[1].lower().lstrip(".")

    names = [base(parts) for _, parts in videos]
    groups = {}
    for index, name in enumerate(names):
        groups.setdefault(name, []).append(index)
    for name, indices in groups.items():
        if len(indices) > 1:
            kinds = [kind(videos[i][0]) for i in indices]
            distinct = len(set(kinds)) == len(kinds)
            for number, i in enumerate(indices, start=1):
                names[i] = f"{name}_{kinds[number - 1] if distinct else number}"
    taken = set()
    for index, name in enumerate(names):  # a tagged name may equal another video's own name
        unique, number = name, 1
        while unique in taken:
            number += 1
            unique = f"{name}_{number}"
        names[index] = unique
        taken.add(unique)
    return names


SPLITS = ("video", "identity", "folders")


def _check_split(split_by, test_fraction):
    if split_by not in SPLITS:
        raise ValueError(f"split_by must be one of {SPLITS}; got {split_by!r}.")
    if split_by == "folders":
        return
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1); got {test_fraction!r}.")
    if test_fraction == 0:
        raise ValueError("test_fraction 0 would leave the test split empty; FramesDataset and kmt evaluate need "
                         "videos in test/.")


def split_videos(names, split_by="video", test_fraction=0.2, seed=0):
    """``{"train": [...], "test": [...]}``: a seeded random ``test_fraction`` of the videos (or of
    the identities, ``split_by="identity"``) goes to test, at least one; raises when a split
    would be empty."""
    _check_split(split_by, test_fraction)
    units = sorted({video_id(n) for n in names}) if split_by == "identity" else sorted(names)
    what = "identities" if split_by == "identity" else "videos"
    if len(units) < 2:
        detail = f" ({units[0]!r}) among {len(names)} videos" if split_by == "identity" and units else ""
        raise ValueError(f"the test split would be empty: splitting by {split_by} needs at least 2 {what}, one for "
                         f"train and one for test; got {len(units)}{detail}.")
    order = np.random.default_rng(seed).permutation(len(units))
    num_test = min(len(units) - 1, max(1, round(test_fraction * len(units))))
    test_units = {units[i] for i in order[:num_test]}
    key = video_id if split_by == "identity" else (lambda n: n)
    return {"train": sorted(n for n in names if key(n) not in test_units),
            "test": sorted(n for n in names if key(n) in test_units)}


def _given_split(input_dir, found, skipped):
    """``split_by="folders"``: videos under ``train/`` and ``test/`` keep their split, named as if
    those folders were the top; ``(found, skipped, {source path: split})``."""
    absent = [split for split in ("train", "test") if not os.path.isdir(os.path.join(input_dir, split))]
    if absent:
        raise ValueError(f"split_by 'folders' needs {input_dir!r} to hold train/ and test/ folders; it has no "
                         f"{' and no '.join(s + '/' for s in absent)}.")
    kept, split_of = [], {}
    for path, parts in found:
        if len(parts) > 1 and parts[0] in ("train", "test"):
            kept.append((path, parts[1:]))
            split_of[path] = parts[0]
        else:
            skipped.append((path, "outside train/ and test/ (split_by 'folders' keeps the input's own split)"))
    return kept, skipped, split_of


def _shape_text(shape):
    return f"{shape[1]}x{shape[0]}"


def _target_size(size, crop):
    if size is None:
        return (256, 256) if crop else None
    shape = (int(size), int(size)) if np.ndim(size) == 0 else tuple(int(s) for s in size)[:2]
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"size must be a positive integer or (height, width); got {size!r}.")
    if crop and shape[0] != shape[1]:
        raise ValueError(f"a crop is square, so size must be square; got {_shape_text(shape)} (width x height).")
    return shape


def _prepare_output(out_dir, input_dir, overwrite):
    real_out, real_in = os.path.realpath(out_dir), os.path.realpath(input_dir)
    if real_out == real_in or real_out.startswith(real_in + os.sep) or real_in.startswith(real_out + os.sep):
        raise ValueError(f"out_dir {out_dir!r} and input_dir {input_dir!r} must not contain one another.")
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not overwrite:
            raise ValueError(f"out_dir {out_dir!r} exists and is not empty; choose another folder or overwrite "
                             "(--overwrite replaces its train/, test/ and prepare.json).")
    elif os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"out_dir {out_dir!r} is a file, not a folder.")


def _clear_output(out_dir):
    for entry in ("train", "test"):
        shutil.rmtree(os.path.join(out_dir, entry), ignore_errors=True)
    if os.path.exists(os.path.join(out_dir, MANIFEST)):
        os.remove(os.path.join(out_dir, MANIFEST))


def _inspect(path, label, crop, target, min_frames, crop_options):
    """Read one video; a dict describing it, or a string saying why it is skipped."""
    try:
        frames = read_video(path)
    except VideoReadError as error:
        return f"unreadable: {error.reason}"
    record = {"frames": len(frames), "shape": tuple(frames.shape[1:3]), "box": None, "missing": []}
    if len(frames) < min_frames:
        return f"too short: {len(frames)} frame(s), fewer than min_frames {min_frames}"
    if crop:
        try:
            info = find_box(frames, target[0], whole=crop == "whole", name=label, **crop_options)
        except CropError as error:
            return str(error).removeprefix(f"{label}: ")
        record.update(box=tuple(int(v) for v in info["box"]), missing=info["missing"])
    return record


def prepare_dataset(input_dir, out_dir, layout="frames", crop=None, size=None, increase=0.1, allow_upscale=False,
                    max_missing=0.2, split_by="video", test_fraction=0.2, seed=0, min_frames=8, overwrite=False,
                    log=None):
    """Write the videos under ``input_dir`` as a dataset in ``out_dir`` (``train/``, ``test/``, ``prepare.json``).

    ``layout``: ``"frames"`` (folders of png) or ``"mp4"``. ``crop``: ``None``, ``"face"`` or
    ``"whole"`` (see :mod:`kmt.crop`; ``increase``, ``allow_upscale`` and ``max_missing`` go to
    it). ``size``: the output frame size, an int ``N`` (``N x N``) or ``(height, width)``;
    with a crop it must be square (default 256); without, videos are resized to it, and
    without ``size`` they must all have one frame size. ``min_frames``: shorter clips are
    skipped (a training pair needs two distinct frames, and very short clips barely move).
    ``log``: an optional callable given a line of progress per video.

    Returns the summary (also written to ``prepare.json``): ``frame_shape`` ``[H, W, 3]``,
    ``splits`` ``{"train": [names], "test": [names]}``, ``frames`` per split, ``videos`` (one
    record per written video: ``name``, ``split``, ``source``, ``frames``, ``source_shape``,
    ``box``, ``missing``) and ``skipped`` (``[source, reason]`` pairs).
    """
    input_dir, out_dir = os.fspath(input_dir), os.fspath(out_dir)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(LAYOUTS)}; got {layout!r}.")
    if crop not in (None, "face", "whole"):
        raise ValueError(f"crop must be None, 'face' or 'whole'; got {crop!r}.")
    if int(min_frames) < 1:
        raise ValueError(f"min_frames must be >= 1; got {min_frames!r}.")
    _check_split(split_by, test_fraction)
    target = _target_size(size, crop)
    if layout == "mp4" and target is not None and (target[0] % 2 or target[1] % 2):
        raise ValueError(f"layout 'mp4' (H.264) needs an even frame height and width; size is {_shape_text(target)}.")
    _prepare_output(out_dir, input_dir, overwrite)
    found, skipped = find_videos(input_dir)
    given_split = None
    if split_by == "folders":
        found, skipped, given_split = _given_split(input_dir, found, skipped)
    if not found and not skipped:
        raise ValueError(f"input_dir {input_dir!r} is empty: no videos (.mp4/.mov/.gif files or folders of frames).")
    crop_options = {"increase": increase, "allow_upscale": allow_upscale, "max_missing": max_missing}
    kept = []
    for index, ((path, parts), name) in enumerate(zip(found, video_names(found))):
        label = os.path.relpath(path, input_dir)
        result = _inspect(path, label, crop, target, int(min_frames), crop_options)
        if isinstance(result, str):
            skipped.append((path, result))
        else:
            kept.append(dict(result, name=name, source=path, label=label))
        if log is not None:
            log(f"[{index + 1}/{len(found)}] {label}: " + (f"skipped, {result}" if isinstance(result, str) else
                                                           f"{result['frames']} frames"))
    skipped.sort()
    skipped_text = "".join(f"\n  {os.path.relpath(p, input_dir)}: {r}" for p, r in skipped)
    if not kept:
        raise ValueError(f"no usable video in {input_dir!r}; skipped {len(skipped)}:{skipped_text}")
    shapes = {}
    for video in kept:
        shapes.setdefault(video["shape"], []).append(video["label"])
    if target is None and len(shapes) > 1:
        listing = "; ".join(f"{_shape_text(s)}: {', '.join(labels)}" for s, labels in sorted(shapes.items()))
        raise ValueError(f"the videos differ in frame size (width x height) - {listing}. Give a size to resize them "
                         "all (--size N) or crop them (--crop face|whole).")
    frame_shape = target or next(iter(shapes))
    if given_split is None:
        splits = split_videos([v["name"] for v in kept], split_by, test_fraction, seed)
    else:
        splits = {split: sorted(v["name"] for v in kept if given_split[v["source"]] == split)
                  for split in ("train", "test")}
        for split, names in splits.items():
            if not names:
                raise ValueError(f"the {split} split would be empty: no usable video in {input_dir!r}'s {split}/ "
                                 f"folder (split_by 'folders' keeps the input's own train/ and test/).")
    split_of = {name: split for split, names in splits.items() for name in names}
    _clear_output(out_dir)
    from kmt.media import resize_frames, video_fps

    for video in kept:
        frames = read_video(video["source"])
        if video["box"] is not None:
            frames = apply_box(frames, video["box"], frame_shape[0])
        elif frames.shape[1:3] != frame_shape:
            frames = resize_frames(frames, frame_shape)
        video["split"] = split_of[video["name"]]
        target_path = os.path.join(out_dir, video["split"], video["name"] + LAYOUTS[layout])
        os.makedirs(os.path.dirname(target_path), exist_ok=True)
        write_video(target_path, frames, fps=video_fps(video["source"]))
    summary = {
        "input_dir": os.path.abspath(input_dir), "layout": layout, "crop": crop, "split_by": split_by,
        "test_fraction": test_fraction, "seed": seed, "min_frames": int(min_frames),
        "frame_shape": [int(frame_shape[0]), int(frame_shape[1]), 3], "splits": splits,
        "frames": {split: sum(v["frames"] for v in kept if v["split"] == split) for split in ("train", "test")},
        "videos": [{"name": v["name"], "split": v["split"], "source": os.path.abspath(v["source"]),
                    "frames": v["frames"], "source_shape": list(v["shape"]),
                    "box": list(v["box"]) if v["box"] else None, "missing": v["missing"]} for v in kept],
        "skipped": [[os.path.abspath(p), r] for p, r in skipped],
    }
    with open(os.path.join(out_dir, MANIFEST), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=1)
    return summary


def format_summary(summary):
    """The summary of :func:`prepare_dataset` as a table: videos and frames per split, frame size,
    resized videos and every skipped file with its reason."""
    height, width = summary["frame_shape"][:2]
    lines = [f"{'split':<6} {'videos':>6} {'frames':>7}  frame size"]
    for split in ("train", "test"):
        lines.append(f"{split:<6} {len(summary['splits'][split]):>6} {summary['frames'][split]:>7}  {width}x{height}")
    resized = {}
    for video in summary["videos"]:
        if video["box"] is None and video["source_shape"] != [height, width]:
            resized.setdefault(_shape_text(video["source_shape"]), []).append(video["name"])
    if resized:
        groups = "; ".join(f"from {shape}: {', '.join(names)}" for shape, names in sorted(resized.items()))
        lines.append(f"resized to {width}x{height} {groups}")
    missing = [f"{v['name']} ({len(v['missing'])} of {v['frames']})" for v in summary["videos"] if v["missing"]]
    if missing:
        lines.append(f"frames without a face, within max_missing: {', '.join(missing)}")
    root = summary["input_dir"]
    lines.append(f"skipped {len(summary['skipped'])} file(s)" + (":" if summary["skipped"] else "."))
    lines += [f"  {os.path.relpath(path, root)}: {reason}" for path, reason in summary["skipped"]]
    return "\n".join(lines)


def train_command(out_dir, frame_shape, config="vox-256", log_dir=None):
    """The ``kmt train`` command line that trains ``config`` on a prepared dataset (a string).

    ``--data`` points training at the folder (and drops a config's synthetic stream); the frame
    size is set to the dataset's, which must be the size the model is built for.
    """
    shape = "[" + ",".join(str(int(s)) for s in frame_shape) + "]"
    log_dir = log_dir or os.path.join("log", os.path.basename(os.path.normpath(out_dir)) or "dataset")
    words = ["kmt", "train", "--config", str(config), "--data", str(out_dir), "--set",
             f"dataset_params.frame_shape={shape}", "--log-dir", log_dir]
    return " ".join(shlex.quote(w) for w in words)
