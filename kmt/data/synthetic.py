"""Synthetic videos with ground truth: render them, write datasets, stream training pairs.

Two scene families (:mod:`kmt.data.faces`, :mod:`kmt.data.figures`) keep identity apart
from motion. An *identity* (colours, textures, background, and a ``build`` of proportions)
and a *motion* (coefficients of periodic trajectories, evaluated at any frame time) are
each drawn from their own seeded generator, so any motion drives any identity, and every
frame is a pure function of ``(family, seed, identity id, motion id, frame time, size)``.
Geometry lives in resolution-free coordinates: the same video rendered at 64 or 256 pixels
has the same keypoints.

Every frame comes with keypoints ``(K, 2)`` in the project convention ((x, y) in [-1, 1],
-1 at the centre of the top-left pixel, ``x = 2 * col / (W - 1) - 1``), their visibility
``(K,)`` (hidden behind another part, or outside the frame, is not visible) and, on
request, the map of which part each pixel shows. Images are NHWC float32 in [0, 1].

>>> video = render_video("faces", identity=3, motion=7, num_frames=16, size=64)
>>> video.frames.shape, video.keypoints.shape, video.visible.shape
((16, 64, 64, 3), (16, 12, 2), (16, 12))
"""

import csv
import itertools
import json
import os
import shutil
import zlib
from dataclasses import dataclass

import numpy as np

from kmt.data import faces, figures
from kmt.data.render import render, stack_tree

FAMILIES = {"faces": faces, "figures": figures}
TEST_OFFSET = 1_000_000
"""Identity and motion ids of test videos start here, so test identities are never seen in training."""


def get_family(name):
    """The module of a scene family, by name."""
    if name not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {name!r}")
    return FAMILIES[name]


def _rng(seed, family, stream, index):
    return np.random.default_rng([int(seed), zlib.crc32(family.encode()), stream, int(index)])


def sample_identity(family, identity, seed=0):
    """The identity ``identity`` (an int) of ``family``: a nested dict of float32 arrays."""
    return get_family(family).sample_identity(_rng(seed, family, 0, identity))


def sample_motion(family, motion, seed=0):
    """The motion ``motion`` (an int) of ``family``, as coefficients of its trajectories."""
    return get_family(family).sample_motion(_rng(seed, family, 1, motion))


def video_name(identity, motion):
    """``id<identity>#<motion>``: the part before ``#`` is what ``id_sampling`` groups by."""
    return f"id{int(identity):07d}#{int(motion):07d}"


def _size(size):
    h, w = (size, size) if np.ndim(size) == 0 else (int(size[0]), int(size[1]))
    if h < 2 or w < 2:
        raise ValueError(f"size must be at least 2 pixels per side, got {size!r}")
    return int(h), int(w)


def render_frames(family, identities, motions, times, size, with_labels=False):
    """Render ``N`` frames, each with its own identity, motion and time, in one vectorised pass.

    Args:
        family: ``"faces"`` or ``"figures"``.
        identities, motions: lists of ``N`` dicts from :func:`sample_identity` /
            :func:`sample_motion` (or the same dicts already stacked with a leading ``N``).
        times: ``(N,)`` frame times (floats allowed: motion is continuous).
        size: ``int`` or ``(H, W)``.

    Returns:
        ``frames (N, H, W, 3)`` float32, ``keypoints (N, K, 2)`` float32, ``visible (N, K)``
        bool, and ``labels (N, H, W)`` uint8 (index into the family's ``PART_NAMES``) or ``None``.
    """
    fam = get_family(family)
    h, w = _size(size)
    ids = stack_tree(identities) if isinstance(identities, (list, tuple)) else identities
    mos = stack_tree(motions) if isinstance(motions, (list, tuple)) else motions
    layers, background, kp = fam.scene(ids, fam.pose(mos, np.asarray(times, np.float64)))
    frames, labels, keypoints, visible = render(layers, background, kp, fam.OWNERS, h, w, with_labels)
    return frames, keypoints, visible, labels


@dataclass
class SyntheticVideo:
    """One rendered video and its ground truth (see the module docstring for conventions)."""

    frames: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    family: str
    identity: int
    motion: int
    labels: np.ndarray = None

    @property
    def name(self):
        return video_name(self.identity, self.motion)

    @property
    def keypoint_names(self):
        return get_family(self.family).KEYPOINT_NAMES


def render_video(family="faces", identity=0, motion=None, num_frames=32, size=64, seed=0, start=0,
                 with_labels=False):
    """Render ``num_frames`` consecutive frames from ``start`` of one identity and one motion.

    ``identity`` and ``motion`` are ids (``motion`` defaults to the identity id) or dicts from
    :func:`sample_identity` / :func:`sample_motion` (then reported as id -1).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    motion = identity if motion is None else motion
    idn = identity if isinstance(identity, dict) else sample_identity(family, identity, seed)
    mo = motion if isinstance(motion, dict) else sample_motion(family, motion, seed)
    times = start + np.arange(num_frames, dtype=np.float64)
    frames, kp, vis, labels = render_frames(family, [idn] * num_frames, [mo] * num_frames, times, size,
                                            with_labels)
    return SyntheticVideo(frames, kp, vis, family, -1 if isinstance(identity, dict) else int(identity),
                          -1 if isinstance(motion, dict) else int(motion), labels)


def dataset_videos(num_train, num_test, videos_per_identity=4):
    """``[(split, identity id, motion id)]`` of a synthetic dataset: ``videos_per_identity``
    videos (distinct motions) per identity; test ids start at :data:`TEST_OFFSET`."""
    if videos_per_identity < 1:
        raise ValueError(f"videos_per_identity must be >= 1, got {videos_per_identity}")
    out = [("train", i // videos_per_identity, i) for i in range(num_train)]
    out += [("test", TEST_OFFSET + j // videos_per_identity, TEST_OFFSET + j) for j in range(num_test)]
    return out


_EXTENSIONS = {"frames": "", "mp4": ".mp4", "gif": ".gif", "png": ".png", "mov": ".mov"}


def write_dataset(root, family="faces", num_train=64, num_test=16, num_frames=32, size=64, seed=0,
                  videos_per_identity=4, layout="frames", fps=25, num_pairs=None, overwrite=False):
    """Write a synthetic dataset in the official on-disk layout and return its metadata.

    ``root/train/`` and ``root/test/`` hold one video each per name ``id<identity>#<motion>``
    as a folder of png frames (``layout="frames"``, the default, lossless), or ``.mp4``,
    ``.mov``, ``.gif``, or a horizontally stacked ``.png``. ``root/metadata.json`` records the
    family, keypoint names and, for every video, its split, identity, motion, file, keypoints
    ``(T, K, 2)`` and visibility ``(T, K)``; :func:`read_metadata` loads it. ``root/pairs.csv``
    (columns ``source,driving``) pairs each test video with one of another identity, the
    official ``pairs_list`` format. Everything is a pure function of the arguments. A ``root``
    that already holds a dataset is refused unless ``overwrite=True``, which first deletes its
    ``train/``, ``test/``, ``metadata.json`` and ``pairs.csv``.
    """
    from kmt.data.video_io import write_video

    if layout not in _EXTENSIONS:
        raise ValueError(f"layout must be one of {sorted(_EXTENSIONS)}, got {layout!r}")
    fam = get_family(family)
    h, w = _size(size)
    existing = [n for n in ("train", "test", "metadata.json", "pairs.csv")
                if os.path.exists(os.path.join(root, n))]
    if existing and not overwrite:
        raise ValueError(f"{root!r} already holds {existing}; pass overwrite=True to replace the dataset")
    for name in existing:
        path = os.path.join(root, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    meta = {"format": "kmt-synthetic/1", "family": family, "seed": int(seed), "layout": layout,
            "frame_shape": [h, w, 3], "num_frames": int(num_frames), "fps": fps,
            "keypoint_names": list(fam.KEYPOINT_NAMES), "part_names": list(fam.PART_NAMES), "videos": {}}
    for split, identity, motion in dataset_videos(num_train, num_test, videos_per_identity):
        video = render_video(family, identity, motion, num_frames, (h, w), seed)
        file = video.name + _EXTENSIONS[layout]
        os.makedirs(os.path.join(root, split), exist_ok=True)
        write_video(os.path.join(root, split, file), video.frames, fps=fps)
        meta["videos"][file] = {"split": split, "family": family, "identity": identity, "motion": motion,
                                "keypoints": np.round(video.keypoints, 5).tolist(),
                                "visible": video.visible.astype(int).tolist()}
    with open(os.path.join(root, "metadata.json"), "w") as f:
        json.dump(meta, f)
    test = [n for n, v in meta["videos"].items() if v["split"] == "test"]
    rng = _rng(seed, family, 3, 0)
    rows = []
    for driving in test[:num_pairs]:
        others = [n for n in test if meta["videos"][n]["identity"] != meta["videos"][driving]["identity"]]
        if others:
            rows.append((others[int(rng.integers(len(others)))], driving))
    with open(os.path.join(root, "pairs.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["source", "driving"])
        writer.writerows(rows)
    return meta


def read_metadata(root):
    """``metadata.json`` of a synthetic dataset, keypoints as float32 and visibility as bool arrays."""
    with open(os.path.join(root, "metadata.json")) as f:
        meta = json.load(f)
    for v in meta["videos"].values():
        v["keypoints"] = np.asarray(v["keypoints"], np.float32)
        v["visible"] = np.asarray(v["visible"], bool)
    return meta


class PairStream:
    """Endless (source, driving) pairs of synthetic frames, rendered on demand.

    Each example draws an identity id from ``num_identities`` and, independently, a motion id
    from ``num_motions`` (any motion drives any identity), then two frame times in
    ``[0, num_frames)``, sorted, drawn with replacement (the official pair sampling); only
    those two frames are rendered. ``split="test"`` draws from identities and motions never
    used by ``"train"``. ``augmentation_params`` (the official block) are applied to each pair
    with its keypoints. ``batch(i, epoch)`` is a pure function of the arguments, so a run
    can be reproduced and resumed; iterating prefetches in a background thread.

    Batches are dicts: ``source``, ``driving`` ``(B, H, W, 3)`` float32; ``source_keypoints``,
    ``driving_keypoints`` ``(B, K, 2)``; ``source_visible``, ``driving_visible`` ``(B, K)``;
    ``identity``, ``motion`` ``(B,)`` int64; ``times`` ``(B, 2)`` the two frame times; ``name``
    and ``video_id`` lists of ``B`` strings.
    """

    def __init__(self, family="faces", size=64, batch_size=8, num_identities=64, num_motions=256,
                 num_frames=64, seed=0, split="train", steps_per_epoch=1000, augmentation_params=None,
                 prefetch=2, workers=1):
        from kmt.data.augmentation import Augmentation

        get_family(family)
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        for name, value in (("batch_size", batch_size), ("num_identities", num_identities),
                            ("num_motions", num_motions), ("num_frames", num_frames),
                            ("steps_per_epoch", steps_per_epoch)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.family, self.size, self.batch_size = family, _size(size), int(batch_size)
        self.num_identities, self.num_motions, self.num_frames = num_identities, num_motions, num_frames
        self.seed, self.split, self.steps_per_epoch = seed, split, steps_per_epoch
        self.transform = Augmentation(**augmentation_params) if augmentation_params else None
        self.prefetch, self.workers = prefetch, workers
        self._identities, self._motions = {}, {}

    def __len__(self):
        return self.steps_per_epoch

    def _identity(self, i):
        if i not in self._identities:
            self._identities[i] = sample_identity(self.family, i, self.seed)
        return self._identities[i]

    def _motion(self, i):
        if i not in self._motions:
            self._motions[i] = sample_motion(self.family, i, self.seed)
        return self._motions[i]

    def batch(self, index, epoch=0):
        """Batch ``index`` of epoch ``epoch`` (a pure function of both and the settings)."""
        step = int(epoch) * self.steps_per_epoch + int(index)
        rng = _rng(self.seed, self.family, 2 if self.split == "train" else 4, step)
        b = self.batch_size
        offset = TEST_OFFSET if self.split == "test" else 0
        ids = offset + rng.integers(self.num_identities, size=b)
        mos = offset + rng.integers(self.num_motions, size=b)
        times = np.sort(rng.integers(self.num_frames, size=(b, 2)), axis=1)
        # A layer is drawn over the union of its boxes in all frames of a call: several small
        # frames per call amortise the per-layer overhead, large frames go one example at a time.
        chunk = max(1, 32768 // (self.size[0] * self.size[1]))
        parts = []
        for start in range(0, b, chunk):
            sel = range(start, min(start + chunk, b))
            parts.append(render_frames(self.family, [self._identity(int(ids[j])) for j in sel for _ in (0, 1)],
                                       [self._motion(int(mos[j])) for j in sel for _ in (0, 1)],
                                       times[sel.start:sel.stop].reshape(-1), self.size))
        frames, kp, vis = (np.concatenate([p[i] for p in parts]) for i in range(3))
        frames = frames.reshape((b, 2) + frames.shape[1:])
        kp, vis = kp.reshape((b, 2) + kp.shape[1:]), vis.reshape((b, 2) + vis.shape[1:])
        if self.transform is not None:
            out = [self.transform(frames[j], rng, kp[j], vis[j]) for j in range(b)]
            if any(o[0].shape != frames.shape[1:] for o in out):
                raise ValueError(f"augmentation_params change the frame size {frames.shape[2:4]} to "
                                 f"{[o[0].shape[1:3] for o in out][:3]}; add a crop_param of the frame size")
            frames, kp, vis = (np.stack([o[i] for o in out]) for i in range(3))
        names = [video_name(i, m) for i, m in zip(ids, mos)]
        return {"source": frames[:, 0], "driving": frames[:, 1],
                "source_keypoints": kp[:, 0], "driving_keypoints": kp[:, 1],
                "source_visible": vis[:, 0], "driving_visible": vis[:, 1],
                "identity": ids.astype(np.int64), "motion": mos.astype(np.int64), "times": times.astype(np.int64),
                "name": names, "video_id": [n.split("#")[0] for n in names]}

    def epoch(self, epoch=0):
        """Iterate over the ``steps_per_epoch`` batches of one epoch, prefetched."""
        from kmt.data.batching import iterate

        return iterate(self, epoch, self.prefetch, self.workers)

    def __iter__(self):
        """All batches, epoch after epoch, without end."""
        from kmt.data.batching import prefetch

        def make(step):
            return self.batch(step % self.steps_per_epoch, step // self.steps_per_epoch)

        return prefetch(make, itertools.count(), self.prefetch, self.workers)
