"""kmt: the First Order Motion Model (Siarohin et al., NeurIPS 2019) in Keras 3.

Every module is built, and explained, by one chapter of the book:

=========================================  ======================================
module                                     chapter
=========================================  ======================================
``kmt.coordinates``, ``kmt.warping``,      1. Coordinates and warping
``kmt.sampling``
``kmt.layers``, ``kmt.fast_layers``,       2. Keypoints as heatmaps
``kmt.keypoints``
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
``kmt.archive`` (the zip files kmt writes), ``kmt.onnx_export`` (:func:`kmt.export`, the
model as ONNX graphs) and ``kmt.onnx_runtime`` (animating with them in ONNX Runtime), ``kmt.cli`` (the ``kmt`` command), ``kmt.compile``, ``kmt.media``, ``kmt.visualize``, ``kmt.book``
(notebook sizes, the sample photograph), ``kmt.check`` (the exercise checkers).

Submodules are imported on first use, so ``import kmt`` (and ``kmt --help``) is
quick; Keras and its backend load when a module that needs them is touched.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = {
    "animation", "archive", "book", "check", "checkpoint", "cli", "compile", "config", "convert", "coordinates", "crop", "data", "dense_motion",
    "discriminator", "evaluation", "evaluator_training", "evaluators", "face_evaluators", "fast_layers", "generator", "keypoints", "layers", "losses", "media",
    "metrics", "motion", "onnx_export", "onnx_runtime", "prepare", "pretrained", "sampling", "train_step", "training", "training_data", "visualize", "warping",
}
_SHORTCUTS = {"grid_sample": "warping", "make_coordinate_grid": "warping", "export": "onnx_export"}

__all__ = sorted(_SUBMODULES | set(_SHORTCUTS))


# Optional packages that Keras and TensorFlow import at start-up when they are installed, for features
# a one-shot command never uses: notebook display (IPython), plotting (matplotlib), pandas and
# scikit-learn adapters, SciPy sparse inputs, and TensorFlow Lite's JAX interop (jax). In a book's
# environment they are all installed, and cost seconds and hundreds of MB before the first frame.
_OPTIONAL_AT_IMPORT = ("IPython", "matplotlib", "pandas", "sklearn", "scipy", "jax", "jaxlib", "torch")


def import_keras_lean():
    """Import Keras and its backend without the optional packages it does not need here; the backend's name.

    For commands (``kmt animate``): Keras' and TensorFlow's own imports of the packages in
    ``_OPTIONAL_AT_IMPORT`` (except the backend itself) are made to fail, which they handle (the
    features that need them are then off in this process); later imports of those packages work
    as usual. Does nothing when Keras is already imported.
    """
    import os
    import sys

    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    backend = os.environ.get("KERAS_BACKEND") or _configured_backend()
    if backend not in ("tensorflow", "jax", "torch"):  # other backends may need any of them
        import keras

        return keras.backend.backend()
    keep = {"jax": {"jax", "jaxlib", "scipy"}, "torch": {"torch"}}.get(backend, set())
    blocked = [name for name in _OPTIONAL_AT_IMPORT if name not in keep and name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # `import name` raises ImportError while this holds
    try:
        import keras
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
    return keras.backend.backend()


def _configured_backend():
    """The backend in Keras' ``keras.json`` (where Keras looks for it), else its default, ``"tensorflow"``."""
    import json
    import os

    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    for folder in (home, os.path.join("/tmp", ".keras")):
        try:
            with open(os.path.join(folder, "keras.json")) as handle:
                return json.load(handle).get("backend", "tensorflow")
        except (OSError, ValueError, AttributeError):
            continue
    return "tensorflow"


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"kmt.{name}")
    if name in _SHORTCUTS:
        return getattr(importlib.import_module(f"kmt.{_SHORTCUTS[name]}"), name)
    raise AttributeError(f"module 'kmt' has no attribute {name!r}")


def __dir__():
    return __all__
