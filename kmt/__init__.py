"""kmt: the First Order Motion Model (Siarohin et al., NeurIPS 2019) in Keras 3.

Every module is built, and explained, by one chapter of the book:

=========================================  ======================================
module                                     chapter
=========================================  ======================================
``kmt.warping``, ``kmt.sampling``          1. Coordinates and warping
``kmt.layers``, ``kmt.keypoints``          2. Keypoints as heatmaps
``kmt.motion``                             3. First-order motion
``kmt.dense_motion``                       4. Dense motion
``kmt.generator``                          5. The occlusion-aware generator
``kmt.losses``, ``kmt.discriminator``,     6. Training
``kmt.training``, ``kmt.train_step``,
``kmt.data``
``kmt.animation``, ``kmt.metrics``,        7. Animation and evaluation
``kmt.evaluation``, ``kmt.evaluators``
``kmt.crop``, ``kmt.prepare``,             8. Real videos, your data, the official weights
``kmt.face_evaluators``, ``kmt.convert``
=========================================  ======================================

Shared pieces: ``kmt.config`` (official YAML configs), ``kmt.checkpoint`` (the one
checkpoint format, and :func:`kmt.checkpoint.load`, the one way to load a model),
``kmt.archive`` (the zip files kmt writes), ``kmt.cli`` (the ``kmt`` command), ``kmt.compile``, ``kmt.media``, ``kmt.visualize``, ``kmt.book``
(notebook sizes, the sample photograph), ``kmt.check`` (the exercise checkers).

Submodules are imported on first use, so ``import kmt`` (and ``kmt --help``) is
quick; Keras and its backend load when a module that needs them is touched.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = {
    "animation", "archive", "book", "check", "checkpoint", "cli", "compile", "config", "convert", "crop", "data", "dense_motion",
    "discriminator", "evaluation", "evaluator_training", "evaluators", "face_evaluators", "generator", "keypoints", "layers", "losses", "media",
    "metrics", "motion", "prepare", "pretrained", "sampling", "train_step", "training", "training_data", "visualize", "warping",
}
_SHORTCUTS = {"grid_sample": "warping", "make_coordinate_grid": "warping"}

__all__ = sorted(_SUBMODULES | set(_SHORTCUTS))


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"kmt.{name}")
    if name in _SHORTCUTS:
        return getattr(importlib.import_module(f"kmt.{_SHORTCUTS[name]}"), name)
    raise AttributeError(f"module 'kmt' has no attribute {name!r}")


def __dir__():
    return __all__
