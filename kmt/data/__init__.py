"""Data for training and evaluating: synthetic videos with ground truth, and real video datasets.

==============================  ==========================================================
module                          what it holds
==============================  ==========================================================
``kmt.data.synthetic``          render synthetic videos, write datasets, stream pairs
``kmt.data.faces``              the ``faces`` scene family (talking-head-like portraits)
``kmt.data.figures``            the ``figures`` scene family (articulated bodies)
``kmt.data.render``             vectorised anti-aliased rendering with distance fields
``kmt.data.video_io``           read/write videos: frame folders, mp4/mov/gif, stacked png
``kmt.data.dataset``            the official ``FramesDataset`` semantics, pairs, batches
``kmt.data.augmentation``       the official augmentations (flips, jitter, crop/resize)
``kmt.data.batching``           background prefetch and a ``keras.utils.PyDataset`` adapter
==============================  ==========================================================

Conventions: images NHWC float32 in [0, 1] in memory, uint8 on disk; keypoints ``(x, y)`` in
[-1, 1] with -1 at the centre of the top-left pixel.
"""

from kmt.data.augmentation import Augmentation
from kmt.data.batching import keras_dataset, prefetch
from kmt.data.dataset import Batches, FramesDataset, RepeatedDataset, animation_pairs
from kmt.data.synthetic import (FAMILIES, PairStream, SyntheticVideo, read_metadata, render_frames,
                                render_video, sample_identity, sample_motion, write_dataset)
from kmt.data.video_io import VideoReadError, read_video, write_video

__all__ = [
    "Augmentation", "Batches", "FAMILIES", "FramesDataset", "PairStream", "RepeatedDataset",
    "SyntheticVideo", "VideoReadError", "animation_pairs", "keras_dataset", "prefetch", "read_metadata",
    "read_video", "render_frames", "render_video", "sample_identity", "sample_motion", "write_dataset",
    "write_video",
]
