"""The fast paths of kmt's model code on the TensorFlow backend.

Every ``kmt.backend.<name>.ops`` module defines the same names; ``None`` means
"no special path here, use the portable ``keras.ops`` code of the calling module".

* ``take_rows``: ``None`` (``keras.ops.take`` is TensorFlow's gather already).
* :func:`scatter_add_rows`: ``tf.tensor_scatter_nd_add``, one call per corner.
* ``custom_sampler_gradient = True``: the bilinear sampler's hand-written
  gradient is used (XLA compiles it into a faster program than the gradient it
  derives itself; ``benchmarks/warp.py`` measures it).
* ``native_grid_sample``: ``None`` (TensorFlow has no ``grid_sample`` op).
* ``conv_nhwc``: ``None`` (``keras.ops.conv`` is TensorFlow's NHWC convolution).
* :func:`compile_function`: ``tf.function``, with XLA or without.
* ``fused_adam_update``: ``None`` (the per-variable update compiles with the step).
* ``eager_compiles_each_op = False``: eager TensorFlow runs precompiled kernels.
"""

import tensorflow as tf

from kmt.backend import OPS_NAMES

__all__ = list(OPS_NAMES)  # every backend's ops module defines the same names

take_rows = None
native_grid_sample = None
conv_nhwc = None
fused_adam_update = None
custom_sampler_gradient = True
eager_compiles_each_op = False


def scatter_add_rows(num_rows, rows, updates):
    """``(num_rows, C)`` zeros with row ``updates[k][i]`` added at ``rows[k][i]``, for every k and i.

    ``rows`` are K int32 ``(N_k,)`` vectors of valid row numbers and ``updates`` K
    ``(N_k, C)`` tensors; one ``tf.tensor_scatter_nd_add`` per pair, without the
    concatenation that ``keras.ops.segment_sum`` would need.
    """
    out = tf.zeros((num_rows, updates[0].shape[1]), updates[0].dtype)
    for index, update in zip(rows, updates):
        out = tf.tensor_scatter_nd_add(out, index[:, None], update)
    return out


def compile_function(fn, variables=(), xla=True):
    """``tf.function(fn)``, compiled by XLA when ``xla`` (else a graph of oneDNN kernels).

    ``variables`` is unused: ``tf.function`` reads the Keras variables where they live.
    ``reduce_retracing`` keeps one graph for calls that differ only in shapes.
    """
    del variables
    return tf.function(fn, jit_compile=xla, reduce_retracing=True)
