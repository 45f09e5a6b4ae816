"""Real video datasets with the official ``FramesDataset`` semantics, and batches for Keras.

``FramesDataset(**config["dataset_params"], is_train=...)`` accepts the ``dataset_params``
block of the official configs as it is (``root_dir``, ``frame_shape``, ``id_sampling``,
``pairs_list``, ``augmentation_params``, plus ``random_seed``), and reads every layout of
:mod:`kmt.data.video_io`. How it behaves, as in the official code:

- With ``root_dir/train`` and ``root_dir/test`` the split is predefined; otherwise the videos
  of ``root_dir`` are split at random (20 % test, seeded by ``random_seed``).
- A training item is a pair of frames of one video, drawn with replacement and sorted in
  time (``source`` first), then augmented; a test item is the whole video.
- ``id_sampling``: names ``<id>#<rest>`` are grouped by ``<id>``; an epoch visits each id
  once and takes one of its videos at random (any layout, where the official code looks
  for ``.mp4`` only).
- :class:`RepeatedDataset` (``num_repeats``) passes several times over the videos per epoch;
  :class:`Batches` with ``steps_per_epoch`` makes an epoch exactly that many batches, passing
  over the data as many times as it takes.
- :func:`animation_pairs` reads ``pairs_list`` (a CSV with ``source`` and ``driving``
  columns) or draws random pairs, for animation.

Where it differs: frames in a folder are in natural order (``2.png`` before ``10.png``), the
random split is drawn with NumPy (the same ``random_seed`` gives another split than the
official scikit-learn one), and ``id_sampling`` groups by id in every case.

Reading a pair decodes no more than it needs: a folder of frames reads the two frames, an
mp4/mov/gif is decoded up to the later of the two, with its frame count read once from the
container (:func:`~kmt.data.video_io.num_frames`), and the mp4/mov pairs of a batch are
decoded by one ffmpeg run (:meth:`FramesDataset.sample_many`). The pair is the one decoding
the whole video would give.

Two options the official code lacks: ``cache_videos=n`` keeps the ``n`` most recently read
video files (mp4/mov/gif/stacked images) in memory, decoded whole as uint8, so that later
pairs from them cost no decoding (for datasets that fit in memory); and ``skip_bad``, below.

Bad data is never dropped silently: an unreadable, empty or unsupported video raises a
:class:`~kmt.data.video_io.VideoReadError` naming the file, or with ``skip_bad=True`` is
skipped with a warning and listed in ``dataset.skipped``.
"""

import csv
import math
import os
import threading
import warnings
from collections import OrderedDict

import numpy as np

from kmt.data.augmentation import Augmentation
from kmt.data.batching import iterate
from kmt.data.video_io import (VideoReadError, layout_of, list_frames, num_frames, read_frames,
                                read_frames_many, read_video, to_uint8)

_KEYS = ("root_dir", "frame_shape", "id_sampling", "is_train", "random_seed", "pairs_list",
         "augmentation_params", "skip_bad", "cache_videos")


def video_id(name):
    """The identity a video name belongs to: the part before the first ``#``."""
    return name.split("#")[0]


class FramesDataset:
    """Videos under ``root_dir``, sampled as training pairs or read whole for testing.

    Items are dicts. Training (``is_train=True``): ``source``, ``driving`` ``(H, W, 3)``
    float32 in [0, 1], ``name`` (file or folder name) and ``video_id``. Testing: ``video``
    ``(T, H, W, 3)``, ``name`` and ``video_id``. ``dataset[i]`` draws from an internal
    generator; :meth:`sample` takes an explicit ``numpy.random.Generator``, and
    :meth:`sample_many` one per item, reading their pairs together (what :class:`Batches`
    uses, so batches are reproducible and thread-safe).
    """

    def __init__(self, root_dir, frame_shape=(256, 256, 3), id_sampling=False, is_train=True, random_seed=0,
                 pairs_list=None, augmentation_params=None, skip_bad=False, cache_videos=0, **unknown):
        if unknown:
            raise ValueError(f"dataset_params: unknown key(s) {sorted(unknown)}; expected some of {list(_KEYS)}")
        root_dir = os.fspath(root_dir)
        if not os.path.isdir(root_dir):
            raise ValueError(f"root_dir {root_dir!r} is not a folder")
        frame_shape = tuple(int(s) for s in frame_shape)
        if len(frame_shape) not in (2, 3) or min(frame_shape[:2]) < 1 or frame_shape[2:] not in ((), (3,)):
            raise ValueError(f"frame_shape must be [H, W, 3], got {list(frame_shape)}")
        self.frame_shape = frame_shape[:2] + (3,)
        self.id_sampling, self.is_train, self.random_seed = bool(id_sampling), bool(is_train), random_seed
        self.pairs_list, self.skip_bad = pairs_list, skip_bad
        self.transform = Augmentation(**(augmentation_params or {}))
        self.skipped = []
        self.cache_videos = int(cache_videos)
        self._cache = OrderedDict()
        self._unreadable = set()
        self._lock = threading.Lock()
        train_dir, test_dir = os.path.join(root_dir, "train"), os.path.join(root_dir, "test")
        if os.path.isdir(train_dir) or os.path.isdir(test_dir):
            if not os.path.isdir(test_dir):
                raise ValueError(f"{root_dir!r} has a train/ folder but no test/ folder")
            if is_train and not os.path.isdir(train_dir):
                raise ValueError(f"{root_dir!r} has a test/ folder but no train/ folder to train on")
            self.root_dir = train_dir if is_train else test_dir
            names = self._scan(self.root_dir)
        else:
            self.root_dir = root_dir
            names = self._scan(root_dir)
            order = np.random.default_rng(random_seed).permutation(len(names))
            n_test = math.ceil(0.2 * len(names))
            chosen = order[n_test:] if is_train else order[:n_test]
            names = sorted(names[i] for i in chosen)
        self.names = names
        if not names:
            raise ValueError(f"no readable video in {self.root_dir!r}" + (" for training" if is_train else ""))
        self._groups = {}
        if self.is_train and self.id_sampling:
            for n in names:
                self._groups.setdefault(video_id(n), []).append(n)
            self.videos = sorted(self._groups)
        else:
            self.videos = list(names)
        self._rng = np.random.default_rng(random_seed)

    def _scan(self, folder):
        """Video names in ``folder``; empty or unsupported entries are bad (raised or skipped)."""
        entries = sorted(n for n in os.listdir(folder) if not n.startswith("."))
        if not entries:
            raise ValueError(f"{folder!r} holds no videos")
        names = []
        for name in entries:
            path = os.path.join(folder, name)
            try:
                kind = layout_of(path)
                if kind == "frames" and not list_frames(path):
                    raise VideoReadError(path, "the folder holds no frames (.png/.jpg/.jpeg)")
                if kind != "frames" and os.path.getsize(path) == 0:
                    raise VideoReadError(path, "the file is empty")
            except VideoReadError as err:
                self._bad(err)
                continue
            names.append(name)
        return names

    def _bad(self, err):
        if not self.skip_bad:
            raise err
        warnings.warn(f"skipping {err}", stacklevel=3)
        with self._lock:
            self.skipped.append((err.path, err.reason))

    def __len__(self):
        return len(self.videos)

    def __getitem__(self, index):
        return self.sample(index, self._rng)

    def path(self, name):
        return os.path.join(self.root_dir, name)

    def _check_shape(self, frames, path):
        if frames.shape[1:3] != self.frame_shape[:2]:
            raise VideoReadError(path, f"frames are {frames.shape[1]}x{frames.shape[2]}, frame_shape expects "
                                       f"{self.frame_shape[0]}x{self.frame_shape[1]}")

    def video(self, name):
        """All frames of the video ``name`` (or index into :attr:`names`), ``(T, H, W, 3)``."""
        name = self.names[name] if isinstance(name, (int, np.integer)) else name
        frames = read_video(self.path(name), self.frame_shape)
        self._check_shape(frames, self.path(name))
        return frames

    def _read_pair(self, name, rng):
        """Two frames of ``name`` drawn with replacement, in time order, ``(2, H, W, 3)``."""
        path = self.path(name)
        if self.cache_videos > 0 and not os.path.isdir(path):
            video = self._decoded(path)
            frames = video[np.sort(rng.choice(len(video), size=2, replace=True))]
            frames = frames.astype(np.float32) / 255.0 if frames.dtype == np.uint8 else frames
        else:
            count = num_frames(path, self.frame_shape)
            try:
                frames = read_frames(path, _draw_pair(count, rng), self.frame_shape)
            except VideoReadError:
                if os.path.isdir(path) or num_frames(path, self.frame_shape) == count:
                    raise
                # The file decodes fewer frames than its container lists; the count is now right.
                frames = read_frames(path, _draw_pair(num_frames(path, self.frame_shape), rng), self.frame_shape)
        self._check_shape(frames, path)
        return frames

    def _decoded(self, path):
        """A whole video file, kept as uint8 among the ``cache_videos`` most recently used."""
        with self._lock:
            if path in self._cache:
                self._cache.move_to_end(path)
                return self._cache[path]
        video = to_uint8(read_video(path, self.frame_shape))
        with self._lock:
            self._cache[path] = video
            while len(self._cache) > self.cache_videos:
                self._cache.popitem(last=False)
        return video

    def sample(self, index, rng):
        """Item ``index`` drawn with ``rng`` (see the class docstring). A bad video raises naming
        it, or with ``skip_bad`` is reported once and replaced by another video drawn at random
        (the length of the dataset, hence of an epoch, does not change)."""
        for _ in range(len(self.names) + 1):
            name = self._choose(index, rng)
            if name is None:
                index = int(rng.integers(len(self.videos)))
                continue
            try:
                if self.is_train:
                    return self._pair_item(name, self._read_pair(name, rng), rng)
                return {"video": self.video(name), "name": name, "video_id": video_id(name)}
            except VideoReadError as err:
                with self._lock:
                    known = name in self._unreadable
                    self._unreadable.add(name)
                if not known:
                    self._bad(err)
                index = int(rng.integers(len(self.videos)))
        raise ValueError(f"no readable video left in {self.root_dir!r}; skipped: {self.skipped}")

    def _choose(self, index, rng):
        """The video item ``index`` reads (with ``id_sampling``, one of its id's drawn with ``rng``);
        None if it is known to be unreadable."""
        if self.is_train and self.id_sampling:
            group = [n for n in self._groups[self.videos[index]] if n not in self._unreadable]
            return group[int(rng.integers(len(group)))] if group else None
        name = self.videos[index]
        return None if name in self._unreadable else name

    def _pair_item(self, name, frames, rng):
        frames = self.transform(frames, rng)
        if frames.shape[1:3] != self.frame_shape[:2]:
            raise ValueError(f"augmentation_params turn {name!r} into {frames.shape[1:3]} frames, "
                             f"not frame_shape {self.frame_shape[:2]}; add a matching crop_param")
        return {"source": frames[0], "driving": frames[1], "name": name, "video_id": video_id(name)}

    def sample_many(self, indices, rngs):
        """``[self.sample(i, rng) for i, rng in zip(indices, rngs)]``, reading the training pairs
        together: the mp4/mov among them are decoded by one ffmpeg process
        (:func:`~kmt.data.video_io.read_frames_many`). Items that need more (cached videos, a
        bad or skipped video) go through :meth:`sample` with their ``rng`` as it was given, so
        the result is the same."""
        indices, rngs = [int(i) for i in indices], list(rngs)
        if not self.is_train or self.cache_videos > 0:
            return [self.sample(i, rng) for i, rng in zip(indices, rngs)]
        states, plans = [], []
        for index, rng in zip(indices, rngs):
            states.append(rng.bit_generator.state)
            name = self._choose(index, rng)
            try:
                pair = None if name is None else _draw_pair(num_frames(self.path(name), self.frame_shape), rng)
            except VideoReadError:
                pair = None
            plans.append(None if pair is None else (name, pair))
        try:
            read = iter(read_frames_many([(self.path(p[0]), p[1]) for p in plans if p], self.frame_shape))
            pairs = [next(read) if p else None for p in plans]
        except VideoReadError:
            pairs = [None] * len(plans)
        items = []
        for index, rng, state, plan, frames in zip(indices, rngs, states, plans, pairs):
            if frames is None or frames.shape[1:3] != self.frame_shape[:2]:
                rng.bit_generator.state = state
                items.append(self.sample(index, rng))
            else:
                items.append(self._pair_item(plan[0], frames, rng))
        return items


def _draw_pair(count, rng):
    """Two frame numbers below ``count``, drawn with replacement, in time order."""
    return np.sort(rng.choice(count, size=2, replace=True))


class RepeatedDataset:
    """``num_repeats`` passes over ``dataset`` per epoch (the official ``DatasetRepeater``)."""

    def __init__(self, dataset, num_repeats=100):
        if int(num_repeats) < 1:
            raise ValueError(f"num_repeats must be >= 1, got {num_repeats}")
        self.dataset, self.num_repeats = dataset, int(num_repeats)

    def __len__(self):
        return self.num_repeats * len(self.dataset)

    def __getitem__(self, index):
        return self.dataset[index % len(self.dataset)]

    def sample(self, index, rng):
        return self.dataset.sample(index % len(self.dataset), rng)

    def sample_many(self, indices, rngs):
        return _sample_many(self.dataset, [int(i) % len(self.dataset) for i in indices], rngs)


def _sample_many(dataset, indices, rngs):
    if hasattr(dataset, "sample_many"):
        return dataset.sample_many(indices, rngs)
    return [dataset.sample(int(i), rng) for i, rng in zip(indices, rngs)]


class Batches:
    """Shuffled batches of training pairs from a dataset, NHWC float32, loaded ahead in threads.

    One pass over the data is ``len(dataset) * num_repeats // batch_size`` batches (the last
    partial batch is dropped, as in the official loader, unless ``drop_last=False``), and an
    epoch is one pass, or exactly ``steps_per_epoch`` batches when that is given: fewer than a
    pass stop early, more go on into further passes, each shuffled anew. ``batch(i, epoch)``
    is a pure function of its arguments and ``seed`` (pass ``p`` of epoch ``e`` is shuffled by
    ``SeedSequence([seed, e], spawn_key=(p,))``, the first pass by ``[seed, e]``); iterating
    over ``Batches`` runs the next epoch with ``prefetch`` batches loaded ahead by ``workers``
    threads. A batch is ``{"source": (B, H, W, 3), "driving": (B, H, W, 3), "name": [B],
    "video_id": [B]}``.
    """

    def __init__(self, dataset, batch_size, num_repeats=1, shuffle=True, drop_last=True, seed=0,
                 prefetch=2, workers=1, steps_per_epoch=None):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if steps_per_epoch is not None and int(steps_per_epoch) < 1:
            raise ValueError(f"steps_per_epoch must be >= 1 (or None for one pass over the data), "
                             f"got {steps_per_epoch}")
        if not getattr(dataset, "is_train", True):
            raise ValueError("Batches needs a training dataset (is_train=True): test items are whole videos")
        self.dataset = dataset if num_repeats == 1 else RepeatedDataset(dataset, num_repeats)
        self.batch_size, self.shuffle, self.drop_last, self.seed = int(batch_size), shuffle, drop_last, seed
        self.prefetch, self.workers = prefetch, workers
        self._epoch = 0
        n = len(self.dataset)
        self.batches_per_pass = n // self.batch_size if drop_last else math.ceil(n / self.batch_size)
        if self.batches_per_pass == 0:
            raise ValueError(f"{n} items make no batch of {batch_size} with drop_last=True")
        self.steps_per_epoch = self.batches_per_pass if steps_per_epoch is None else int(steps_per_epoch)

    def __len__(self):
        """Batches per epoch."""
        return self.steps_per_epoch

    def _order(self, epoch, data_pass=0):
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        key = [self.seed, epoch] if data_pass == 0 else np.random.SeedSequence([self.seed, epoch],
                                                                              spawn_key=(data_pass,))
        return np.random.default_rng(key).permutation(n)

    def batch(self, index, epoch=0):
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        data_pass, start = divmod(index, self.batches_per_pass)
        order = self._order(epoch, data_pass)[start * self.batch_size:(start + 1) * self.batch_size]
        items = _sample_many(self.dataset, order,
                             [np.random.default_rng([self.seed, epoch, index, k]) for k in range(len(order))])
        return {"source": np.stack([it["source"] for it in items]),
                "driving": np.stack([it["driving"] for it in items]),
                "name": [it["name"] for it in items], "video_id": [it["video_id"] for it in items]}

    def epoch(self, epoch):
        """Iterate over the batches of epoch ``epoch``."""
        return iterate(self, epoch, self.prefetch, self.workers)

    def __iter__(self):
        epoch, self._epoch = self._epoch, self._epoch + 1
        return self.epoch(epoch)


def animation_pairs(dataset, number_of_pairs, seed=0):
    """``[(source name, driving name)]`` for animation, like the official ``PairedDataset``.

    With ``dataset.pairs_list`` (a CSV with ``source`` and ``driving`` columns) the first
    ``number_of_pairs`` rows whose two videos are both in the dataset; otherwise distinct
    random pairs drawn (seeded) among the first ``number_of_pairs`` videos.
    """
    names = dataset.names
    if dataset.pairs_list is None:
        m = min(number_of_pairs, len(names))
        grid = np.stack(np.meshgrid(np.arange(m), np.arange(m), indexing="ij"), -1).reshape(-1, 2)
        pick = np.random.default_rng(seed).choice(len(grid), min(len(grid), number_of_pairs), replace=False)
        return [(names[int(grid[k, 1])], names[int(grid[k, 0])]) for k in pick]
    if not os.path.isfile(dataset.pairs_list):
        raise ValueError(f"pairs_list {dataset.pairs_list!r} is not a file")
    with open(dataset.pairs_list, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"source", "driving"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"pairs_list {dataset.pairs_list!r} lacks the column(s) {sorted(missing)}")
        known = set(names)
        rows = [(r["source"], r["driving"]) for r in reader if r["source"] in known and r["driving"] in known]
    return rows[:number_of_pairs]
