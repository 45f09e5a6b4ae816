"""Animate with ONNX Runtime: the graphs written by :func:`kmt.export`, on a CPU.

:class:`OnnxAnimator` is a :class:`kmt.animation.Animator` whose three steps (detect
keypoints, encode the source once, generate a frame) run the exported graphs in ONNX Runtime
instead of the Keras models; the relative keypoint normalisation, the best-frame search and
the batching are the Animator's own, so both produce the same frames (to the export's
tolerance, measured in tests/unit/test_onnx_export.py).
"""

import os

import numpy as np

from kmt.animation import Animator
from kmt.onnx_export import METADATA_FILE, read_export

__all__ = ["OnnxAnimator", "RUNTIMES", "is_export_folder"]

RUNTIMES = ("keras", "onnxruntime")


def is_export_folder(path):
    """Whether ``path`` is a folder written by ``kmt export`` (it holds ``kmt-export.json``)."""
    return isinstance(path, (str, os.PathLike)) and os.path.isfile(os.path.join(os.fspath(path), METADATA_FILE))


class OnnxAnimator(Animator):
    """:class:`kmt.animation.Animator` on the ONNX graphs in ``folder`` (from ``kmt export``).

    Args:
        folder: the folder ``kmt export --out`` wrote.
        batch_size: driving frames per call of the keypoint detector (the generator's graph
            takes one frame, so a batch goes through it frame by frame).
        threads: ONNX Runtime's intra-op threads (default: its own choice, one per core).
        cache_source: encode the source once (default); ``False`` runs the encoder's graph
            again for every frame, as the official demo does (for like-for-like timings).

    ``image_size`` is the model's ``(H, W)``; ``config["model_params"]`` its architecture.
    """

    def __init__(self, folder, batch_size=8, threads=None, cache_source=True):
        try:
            import onnxruntime
        except ImportError:
            raise ImportError("the onnxruntime runtime needs the onnxruntime package: `pip install onnxruntime`.") \
                from None
        self.metadata = read_export(folder)
        self.image_size = tuple(self.metadata["image_size"])
        self.config = {"model_params": self.metadata["model_params"]}
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"`batch_size` must be a whole number of frames, at least 1; got {batch_size!r}.")
        self.batch_size = int(batch_size)
        self.cache_source = bool(cache_source)
        self.convolutions = "float32"
        options = onnxruntime.SessionOptions()
        if threads is not None:
            if int(threads) != threads or threads < 1:
                raise ValueError(f"`threads` must be a whole number of at least 1; got {threads!r}.")
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3
        self.sessions = {
            name: onnxruntime.InferenceSession(os.path.join(os.fspath(folder), graph["file"]), options,
                                               providers=["CPUExecutionProvider"])
            for name, graph in self.metadata["graphs"].items()
        }
        self._keypoint_names = [spec["name"] for spec in self.metadata["graphs"]["kp_detector"]["outputs"]]

    def _detect(self, frames):
        values = self.sessions["kp_detector"].run(None, {"image": np.asarray(frames, dtype="float32")})
        return dict(zip(self._keypoint_names, values))

    def _encode(self, source):
        return self.sessions["source_encoder"].run(None, {"source": np.asarray(source, dtype="float32")})[0]

    def _generate(self, source, source_features, kp_source, kp_driving):
        feeds = {"source": np.asarray(source, dtype="float32"), "source_features": source_features}
        every_frame = source_features is None
        for key in self._keypoint_names:
            feeds[f"kp_source_{key}"] = np.asarray(kp_source[key], dtype="float32")
        frames = []
        for index in range(len(kp_driving["value"])):
            for key in self._keypoint_names:
                feeds[f"kp_driving_{key}"] = np.asarray(kp_driving[key][index:index + 1], dtype="float32")
            if every_frame:
                feeds["source_features"] = self._encode(source)
            frames.append(self.sessions["generator"].run(None, feeds)[0])
        return np.concatenate(frames)
