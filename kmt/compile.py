"""Compiling inference functions the same way on every backend.

:func:`compile_function` wraps a function of tensors that calls Keras models:
``tf.function(jit_compile=True)`` on TensorFlow; on JAX, ``jax.jit`` of a pure
version that receives the models' variables as arguments (through
``keras.StatelessScope``) instead of baking them into the program as
constants; on PyTorch the function runs eagerly.
"""

import keras

__all__ = ["compile_function"]


def compile_function(fn, jit=True, variables=(), xla=True):
    """``fn`` compiled for the current backend; ``variables`` are the Keras variables it reads.

    With ``xla=False`` TensorFlow builds a graph without XLA (oneDNN kernels, which
    multiply bfloat16 in hardware where the CPU can); JAX always uses XLA.
    """
    backend = keras.backend.backend()
    if not jit or backend == "torch":
        return fn
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=xla, reduce_retracing=True)
    if backend == "jax":
        import jax

        variables = list(variables)

        def pure(values, *args):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return fn(*args)

        jitted = jax.jit(pure)
        return lambda *args: jitted([v.value for v in variables], *args)
    return fn
