"""Evaluating a model on a dataset the way the paper does (chapter 8): the protocol around the measures.

Every test video is reconstructed from its own first frame with *absolute* keypoints (as
the reference's ``reconstruction.py``), so the result should be the video itself; the
measures of :mod:`kmt.metrics` (L1, AKD, MKR, AED) then compare the two. Their external
networks come from :mod:`kmt.evaluators` (trained on the synthetic ground truth, chosen by
the dataset's family) or :mod:`kmt.face_evaluators` (dlib's face landmarks and descriptor,
for real faces). Their own error bounds what a metric can resolve, so :func:`evaluate`
reports it beside the model: the detector against the true landmarks of the same frames
(synthetic data) or against itself after video compression (real faces) as the floor of
AKD and MKR, and AED between identities as its scale, with "copy the source frame" as the
baseline a model must beat.
"""

import os
import textwrap

import numpy as np

from kmt.metrics import (average_euclidean_distance, average_keypoint_distance, missing_keypoint_rate,
                         reconstruction_l1)

__all__ = ["read_test_set", "reconstruct_dataset", "evaluate", "format_table"]


def _metadata(data_root):
    if not os.path.exists(os.path.join(data_root, "metadata.json")):
        return None
    from kmt.data.synthetic import read_metadata

    return read_metadata(data_root)


def read_test_set(data_root, metadata=None):
    """The test videos of ``data_root`` (its ``test/`` folder, or the folder itself) as a
    :class:`~kmt.data.FramesDataset`, at the frame size its ``metadata.json`` or first video has."""
    from kmt.data.dataset import FramesDataset
    from kmt.data.video_io import read_video

    data_root = os.fspath(data_root)
    if not os.path.isdir(data_root):
        raise ValueError(f"`data_root` {data_root!r} is not a folder.")
    if metadata is not None:
        shape = metadata["frame_shape"]
    else:
        folder = os.path.join(data_root, "test") if os.path.isdir(os.path.join(data_root, "test")) else data_root
        names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
        if not names:
            raise ValueError(f"`data_root` {data_root!r} holds no test videos.")
        shape = read_video(os.path.join(folder, names[0])).shape[1:]
    return FramesDataset(data_root, frame_shape=shape, is_train=False)


def _load(checkpoint):
    from kmt.checkpoint import load

    return load(checkpoint, networks=("kp_detector", "generator"))


def _resized(frames, size):
    if frames.shape[1:3] == tuple(size):
        return frames
    from kmt.media import resize_frames

    return resize_frames(frames, size)


def _reconstructions(checkpoint, dataset, num_videos, batch_size, progress):
    """``(name, ground truth, reconstruction)`` per test video, both at the dataset's size."""
    from kmt.animation import Animator

    if num_videos is not None and int(num_videos) < 1:
        raise ValueError(f"`num_videos` must be at least 1 (or None for all); got {num_videos!r}.")
    checkpoint = _load(checkpoint)
    animator = Animator(checkpoint.kp_detector, checkpoint.generator, batch_size=batch_size)
    names = dataset.names[:num_videos]
    for index, name in enumerate(names):
        video = dataset.video(name)
        size = tuple(getattr(checkpoint, "image_size", None) or video.shape[1:3])
        frames = _resized(video, size)
        prediction = animator.animate(frames[0], frames, relative=False, adapt_movement_scale=False)
        yield name, video, _resized(prediction, video.shape[1:3])
        if progress:
            progress(index + 1, len(names))


def reconstruct_dataset(checkpoint, data_root, out_dir=None, num_videos=None, progress=None, batch_size=8):
    """Reconstruct the test videos of ``data_root`` from their first frames; return the L1.

    Args:
        checkpoint: a ``.kmt`` path or a loaded :class:`kmt.checkpoint.Checkpoint`.
        data_root: a dataset in the official layout (``test/`` is used when present).
        out_dir: where to write each reconstruction, under the video's own name and
            layout (a folder of frames, ``.mp4``, ...), so ``out_dir`` reads as a dataset.
        num_videos: the first ``num_videos`` test videos (default: all).
        progress: an optional ``progress(done, total)`` callable, per video.
        batch_size: frames per compiled call.

    Frames are resized to the model's size for animation and back for comparison.

    Returns:
        ``{"l1", "videos", "frames", "per_video": {name: l1}, "out_dir"}``.
    """
    from kmt.data.video_io import write_video

    dataset = read_test_set(data_root, _metadata(data_root))
    per_video, total, frames = {}, 0.0, 0
    for name, video, prediction in _reconstructions(checkpoint, dataset, num_videos, batch_size, progress):
        per_video[name] = reconstruction_l1(prediction, video)
        total += per_video[name] * len(video)
        frames += len(video)
        if out_dir is not None:
            os.makedirs(out_dir, exist_ok=True)
            write_video(os.path.join(out_dir, name), prediction)
    return {"l1": total / frames, "videos": len(per_video), "frames": frames, "per_video": per_video,
            "out_dir": out_dir}


def _evaluators_for(evaluators, family):
    """``(Evaluators or None, reason when None)``."""
    from kmt.evaluators import load_evaluators

    if evaluators == "faces":
        from kmt.face_evaluators import FaceEvaluators

        return FaceEvaluators(), None
    if hasattr(evaluators, "detect") and hasattr(evaluators, "embed"):
        return evaluators, None
    if evaluators is not None:
        return load_evaluators(family, path=os.fspath(evaluators)), None
    if family is None:
        return None, ("AKD, MKR and AED need evaluator networks of the dataset's family, and this dataset has no "
                      "metadata.json naming one (datasets written by kmt.data.write_dataset or `kmt synth` do); "
                      "pass `evaluators` (a .kmt-eval file) to measure them.")
    try:
        return load_evaluators(family), None
    except FileNotFoundError as error:
        return None, f"AKD, MKR and AED not measured: {error}"


def _row(name, **values):
    values = {"l1": None, "akd": None, "mkr": None, "aed": None, **values}
    return {"name": name, **{k: (None if v is None or np.isnan(v) else float(v)) for k, v in values.items()}}


class _Totals:
    """What :func:`evaluate` gathers video by video: frames' L1, and the evaluators' outputs."""

    def __init__(self, judges, metadata):
        self.judges, self.metadata = judges, metadata
        self.l1 = {"model": 0.0, "copy": 0.0}
        self.frames, self.videos, self.size = 0, 0, None
        self.parts = {}

    def _keep(self, **arrays):
        for key, value in arrays.items():
            self.parts.setdefault(key, []).append(value)

    def add(self, name, video, prediction):
        count = len(video)
        self.size = video.shape[1:3]
        self.l1["model"] += reconstruction_l1(prediction, video) * count
        self.l1["copy"] += reconstruction_l1(np.broadcast_to(video[:1], video.shape), video) * count
        self.frames, self.videos = self.frames + count, self.videos + 1
        if self.judges is None:
            return
        kp_true, seen_true = self.judges.detect(video)
        kp_model, seen_model = self.judges.detect(prediction)
        embedding_true, embedding_model = self.judges.embed(video), self.judges.embed(prediction)
        first = np.zeros(count, int)
        self._keep(kp_true=kp_true, seen_true=seen_true > 0.5, kp_model=kp_model, seen_model=seen_model > 0.5,
                   kp_copy=kp_true[first], seen_copy=seen_true[first] > 0.5, embedding_true=embedding_true,
                   embedding_model=embedding_model, embedding_copy=embedding_true[first],
                   first=embedding_true[:1])
        known = (self.metadata or {}).get("videos", {}).get(name)
        self._keep(identity=[known["identity"] if known else name.split("#")[0]])
        if known is not None and len(known["keypoints"]) == count:
            self._keep(kp_ground=known["keypoints"], visible_ground=known["visible"], kp_found=kp_true,
                       seen_found=seen_true > 0.5)
        elif known is None and video.shape[1] % 2 == 0 and video.shape[2] % 2 == 0:
            # No true landmarks: the detector's floor is its own drift after an H.264 round trip.
            from kmt.media import h264_round_trip

            decoded = h264_round_trip(video)
            kp_decoded, seen_decoded = self.judges.detect(decoded)
            self._keep(kp_decoded=kp_decoded, seen_decoded=seen_decoded > 0.5,
                       embedding_decoded=self.judges.embed(decoded))

    def _joined(self, key):
        return np.concatenate(self.parts[key]) if key in self.parts else None

    def _measures(self, kind):
        kp, seen, embedding = (self._joined(f"{key}_{kind}") for key in ("kp", "seen", "embedding"))
        true, seen_true = self._joined("kp_true"), self._joined("seen_true")
        return {"akd": average_keypoint_distance(kp, true, self.size, seen, seen_true),
                "mkr": missing_keypoint_rate(seen, seen_true),
                "aed": average_euclidean_distance(embedding, self._joined("embedding_true"))}

    def _between_identities(self):
        first = self._joined("first")
        identity = np.array([str(i) for part in self.parts["identity"] for i in part])
        other = identity[:, None] != identity[None, :]
        if not other.any():
            return float("nan")
        distances = np.linalg.norm(first[:, None] - first[None, :], axis=-1)
        return float(distances[other].mean())

    def table(self, title, family, reason):
        frames = max(self.frames, 1)
        model = {"l1": self.l1["model"] / frames}
        copy = {"l1": self.l1["copy"] / frames}
        notes = []
        rows = []
        if self.judges is not None and self.frames:
            model.update(self._measures("model"))
            copy.update(self._measures("copy"))
        rows += [_row(f"model ({title})", **model), _row("copy the source frame (baseline)", **copy)]
        if self.judges is not None and self.frames:
            if "kp_ground" in self.parts:
                ground, visible = self._joined("kp_ground"), self._joined("visible_ground")
                found, seen = self._joined("kp_found"), self._joined("seen_found")
                rows.append(_row("landmark detector vs true landmarks (floor)",
                                 akd=average_keypoint_distance(found, ground, self.size, None, visible),
                                 mkr=missing_keypoint_rate(seen, visible),
                                 visibility_error=float(np.mean(seen != visible))))
                notes.append(f"floor: on the ground-truth frames the detector misjudges visibility for "
                             f"{rows[-1]['visibility_error']:.2%} of the landmarks")
            elif "kp_decoded" in self.parts:
                rows.append(_row("landmarks vs themselves after H.264 (floor)", **self._measures("decoded")))
                notes.append("floor: the evaluators on the ground-truth frames against the same frames written to an "
                             "H.264 mp4 (quality 8) and read back; no true landmarks are known for these videos")
            else:
                notes.append("no true landmarks for these videos (metadata.json): the detector's floor is not shown")
            rows.append(_row("different identities (AED scale)", aed=self._between_identities()))
            if rows[-1]["aed"] is None:
                identities = {str(i) for part in self.parts["identity"] for i in part}
                notes.append("different identities: AED between identities needs test videos of at least two "
                             f"identities; all {self.videos} share one (identity {identities.pop()})")
            if rows[0]["akd"] is None:
                notes.append("AKD of the model: no landmark was found in both a generated and a ground-truth frame")
            source = os.path.basename(self.judges.path) if self.judges.path else "given"
            notes.append(f"AKD, MKR and AED from the {self.judges.family} evaluators ({source}); "
                         f"AKD in pixels of the {self.size[1]}x{self.size[0]} frames; the baseline's AED is that of "
                         "two frames of one video")
        if reason:
            notes.append(reason)
        return {"rows": rows, **{key: rows[0].get(key) for key in ("l1", "akd", "mkr", "aed")},
                "videos": self.videos, "frames": self.frames, "family": family,
                "frame_size": list(self.size) if self.size else None,
                "evaluators": self.judges.path if self.judges is not None else None, "notes": notes}


def evaluate(checkpoint, data_root, num_videos=None, evaluators=None, progress=None, batch_size=8):
    """L1, AKD, MKR and AED of video reconstruction on ``data_root``, with their baseline and floor.

    Args:
        checkpoint: a ``.kmt`` path or a loaded checkpoint.
        data_root: a dataset in the official layout. L1 works on any; AKD, MKR and AED need
            evaluator networks of its family (named by its ``metadata.json``).
        num_videos: the first ``num_videos`` test videos (default: all).
        evaluators: an :class:`kmt.evaluators.Evaluators`, a ``.kmt-eval`` path, or ``None``
            for the ones kmt ships for the dataset's family.
        progress: an optional ``progress(done, total)`` callable, per video.
        batch_size: frames per compiled call.

    Returns:
        a dict: ``rows``, one per line of the table (``name``, ``l1``, ``akd`` in pixels of
        the dataset's frames, ``mkr``, ``aed``; ``None`` where it does not apply): the model,
        copying the source frame (the baseline), the landmark detector on the ground-truth
        frames against the true landmarks (the floor, with its ``visibility_error``) and
        first frames of different identities (the scale of AED); the model's four numbers
        again as ``l1``, ``akd``, ``mkr``, ``aed``; and ``videos``, ``frames``, ``family``,
        ``frame_size``, ``evaluators`` (the file used) and ``notes``.
    """
    metadata = _metadata(data_root)
    family = metadata["family"] if metadata else None
    judges, reason = _evaluators_for(evaluators, family)
    dataset = read_test_set(data_root, metadata)
    checkpoint = _load(checkpoint)
    path = getattr(checkpoint, "path", None)
    totals = _Totals(judges, metadata)
    for name, video, prediction in _reconstructions(checkpoint, dataset, num_videos, batch_size, progress):
        totals.add(name, video, prediction)
    return totals.table(os.path.basename(path) if path else "checkpoint", family, reason)


def _cell(value, digits):
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(table):
    """The table :func:`evaluate` returns, as aligned text."""
    columns = (("l1", "L1", 4), ("akd", "AKD (px)", 3), ("mkr", "MKR", 4), ("aed", "AED", 4))
    width = max(len(row["name"]) for row in table["rows"])
    lines = [f"{'':<{width}}  " + "  ".join(f"{title:>8}" for _, title, _ in columns)]
    for row in table["rows"]:
        lines.append(f"{row['name']:<{width}}  " + "  ".join(f"{_cell(row.get(key), d):>8}" for key, _, d in columns))
    lines.append(f"{table['videos']} videos, {table['frames']} frames of {table['frame_size'][1]}x"
                 f"{table['frame_size'][0]} pixels" + (f", family {table['family']}" if table["family"] else ""))
    lines += [textwrap.fill(f"note: {note}", width=max(len(lines[0]), 72), subsequent_indent="      ")
              for note in table["notes"]]
    return "\n".join(lines)
