"""What differs between Keras backends, in one place per backend (as Keras arranges its own).

``kmt/backend/<name>/`` holds, for the backend ``<name>`` (``tensorflow``, ``jax``
or ``torch``):

* ``ops.py``: the fast paths of model code (row gathers and scatters of the
  bilinear sampler, native convolutions and ``grid_sample``, compilation of
  inference functions); every backend's ``ops.py`` defines the same names, a
  function, a flag, or ``None`` where the calling module's portable
  ``keras.ops`` code is used (``tests/unit/test_backend.py`` checks both);
* ``training.py``: the compiled training step and, where the backend has an
  engine for it, data-parallel training on several devices.

Model code above this package uses only ``keras.ops`` and calls :func:`load` for
the rest, so it stays free of backend names.
"""

import importlib

import keras

__all__ = ["SUPPORTED_BACKENDS", "OPS_NAMES", "load", "name", "split_cpu"]

SUPPORTED_BACKENDS = ("tensorflow", "jax", "torch")
# What every ``kmt.backend.<name>.ops`` defines: a function, a flag, or ``None`` where the model
# module's own ``keras.ops`` code is used.
OPS_NAMES = ("take_rows", "scatter_add_rows", "custom_sampler_gradient", "native_grid_sample", "conv_nhwc",
             "compile_function", "fused_adam_update", "eager_compiles_each_op")


def name():
    """The Keras backend in use (``keras.backend.backend()``)."""
    return keras.backend.backend()


def load(kind, backend=None):
    """The module ``kmt.backend.<backend>.<kind>`` (``kind`` is ``"ops"`` or ``"training"``).

    ``backend`` defaults to the Keras backend in use; one kmt does not support
    raises a ``RuntimeError`` that names the ones it does.
    """
    backend = backend or name()
    if backend not in SUPPORTED_BACKENDS:
        raise RuntimeError(f"kmt runs on the Keras backends {', '.join(SUPPORTED_BACKENDS)}; the Keras backend in "
                           f"use is {backend!r} (set KERAS_BACKEND to one of them).")
    return importlib.import_module(f"kmt.backend.{backend}.{kind}")


def split_cpu(count):
    """Split the host CPU into ``count`` virtual devices, to try training on several devices without accelerators.

    Call it first thing in the process, before the backend has run anything
    (``kmt train --cpu-devices N`` does). The jax and tensorflow backends can; the torch
    backend trains on one device and refuses ``count > 1``.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"`count` must be a whole number >= 1; got {count!r}.")
    load("training").split_cpu(count)
