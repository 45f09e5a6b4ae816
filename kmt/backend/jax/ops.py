"""The fast paths of kmt's model code on the JAX backend.

Every ``kmt.backend.<name>.ops`` module defines the same names; ``None`` means
"no special path here, use the portable ``keras.ops`` code of the calling module".

* :func:`take_rows`: ``table.at[rows].get(mode="promise_in_bounds")``, a gather
  without the bounds handling of ``keras.ops.take``.
* :func:`scatter_add_rows`: ``.at[rows].add`` with the same promise.
* ``custom_sampler_gradient = True``: the bilinear sampler's hand-written
  gradient is used (XLA compiles it into a faster program than the gradient it
  derives itself; ``benchmarks/warp.py`` measures it).
* ``native_grid_sample``: ``None`` (JAX has no ``grid_sample`` op).
* ``conv_nhwc``: ``None`` (``keras.ops.conv`` is XLA's NHWC convolution).
* :func:`compile_function`: ``jax.jit`` of a pure function of the variables.
* ``fused_adam_update``: ``None`` (the per-variable update compiles with the step).
* ``eager_compiles_each_op = True``: JAX's op-by-op mode compiles every
  primitive for every new shape, so even a function called once is faster jitted.
"""

import jax
import jax.numpy as jnp
import keras

from kmt.backend import OPS_NAMES

__all__ = list(OPS_NAMES)  # every backend's ops module defines the same names

native_grid_sample = None
conv_nhwc = None
fused_adam_update = None
custom_sampler_gradient = True
eager_compiles_each_op = True


def take_rows(table, rows):
    """``table[rows]``: ``(N, C)`` rows of the ``(R, C)`` ``table`` for int32 ``(N,)`` ``rows``, all valid."""
    return table.at[rows].get(mode="promise_in_bounds")  # no bounds handling needed


def scatter_add_rows(num_rows, rows, updates):
    """``(num_rows, C)`` zeros with row ``updates[k][i]`` added at ``rows[k][i]``, for every k and i.

    ``rows`` are K int32 ``(N_k,)`` vectors of valid row numbers and ``updates`` K
    ``(N_k, C)`` arrays; one ``.at[].add`` per pair, without bounds handling.
    """
    out = jnp.zeros((num_rows, updates[0].shape[1]), updates[0].dtype)
    for index, update in zip(rows, updates):
        out = out.at[index].add(update, mode="promise_in_bounds")
    return out


def compile_function(fn, variables=(), xla=True):
    """``jax.jit`` of ``fn`` made pure: the values of ``variables`` (the Keras variables ``fn``
    reads) are passed as arguments, through ``keras.StatelessScope``, instead of being baked
    into the program as constants. JAX always compiles with XLA (``xla`` is unused).
    """
    del xla
    variables = list(variables)

    def pure(values, *args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return fn(*args)

    jitted = jax.jit(pure)
    return lambda *args: jitted([v.value for v in variables], *args)
