"""Compiling inference functions the same way on every backend.

:func:`compile_function` wraps a function of tensors that calls Keras models:
``tf.function(jit_compile=True)`` on TensorFlow; on JAX, ``jax.jit`` of a pure
version that receives the models' variables as arguments (through
``keras.StatelessScope``) instead of baking them into the program as
constants; on PyTorch the function runs eagerly. Each backend's version is
``compile_function`` of ``kmt.backend.<name>.ops``.
"""

from kmt import backend

__all__ = ["compile_function", "compile_where_eager_compiles"]


def compile_function(fn, jit=True, variables=(), xla=True):
    """``fn`` compiled for the current backend; ``variables`` are the Keras variables it reads.

    With ``jit=False`` it is ``fn`` itself. With ``xla=False`` TensorFlow builds a graph
    without XLA (oneDNN kernels, which multiply bfloat16 in hardware where the CPU can);
    JAX always uses XLA.
    """
    if not jit:
        return fn
    return backend.load("ops").compile_function(fn, variables=variables, xla=xla)


def compile_where_eager_compiles(fn, variables=()):
    """``fn`` compiled only where running it eagerly would compile anyway, else ``fn`` itself.

    JAX's op-by-op mode compiles every primitive for every new shape, so even a function
    called once or twice is faster jitted; eager TensorFlow and PyTorch run precompiled
    kernels, and tracing a whole program for a few calls costs more than it saves. For
    functions called a few times on small inputs, such as the exercise checkers.
    """
    return compile_function(fn, jit=backend.load("ops").eager_compiles_each_op, variables=variables)
