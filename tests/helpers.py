"""Backend-neutral helpers for the unit tests: gradients and compilation on the current backend."""

import functools

import numpy as np
import keras
from keras import ops

BACKEND = keras.backend.backend()

TINY_MODEL_PARAMS = {
    "common_params": {"num_kp": 3, "num_channels": 3, "estimate_jacobian": True},
    "kp_detector_params": {"temperature": 0.1, "block_expansion": 4, "max_features": 16,
                           "scale_factor": 0.5, "num_blocks": 2},
    "generator_params": {"block_expansion": 4, "max_features": 16, "num_down_blocks": 1,
                         "num_bottleneck_blocks": 1, "estimate_occlusion_map": True,
                         "dense_motion_params": {"block_expansion": 4, "max_features": 16,
                                                 "num_blocks": 2, "scale_factor": 0.5}},
    "discriminator_params": {"scales": [1], "block_expansion": 4, "max_features": 16, "num_blocks": 2},
}
"""``model_params`` of a FOMM small enough for command-line tests (3 keypoints, 32 x 32 frames and up)."""


def to_numpy(x):
    return None if x is None else np.asarray(ops.convert_to_numpy(x))


def value_and_grads(fn, *args):
    """``fn(*args)`` and the gradients of ``sum(fn(*args))`` w.r.t. every arg, as numpy.

    A gradient the backend reports as disconnected (``None``) comes back as zeros,
    which is what PyTorch's autograd reports for the same input.
    """
    args = [np.asarray(a, dtype="float32") for a in args]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in args]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            out = fn(*tensors)
            loss = tf.reduce_sum(out)
        grads = tape.gradient(loss, tensors)
    elif BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        grads, out = _jax_grad_fn(fn, len(args))(*[jnp.asarray(a) for a in args])
    elif BACKEND == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in args]
        out = fn(*tensors)
        out.sum().backward()
        grads = [t.grad for t in tensors]
        out = out.detach()
    else:  # pragma: no cover - the suite runs on the three backends above
        raise RuntimeError(f"unsupported backend {BACKEND}")
    grads = [np.zeros_like(a) if g is None else to_numpy(g) for a, g in zip(args, grads)]
    return to_numpy(out), grads


@functools.lru_cache(maxsize=64)
def _jax_grad_fn(fn, num_args):
    """``jit(grad(sum(fn)))``, built once per function: JAX's op-by-op mode compiles
    every primitive for every new shape, far slower for the many small shapes here."""
    import jax
    import jax.numpy as jnp

    def loss(*t):
        out = fn(*t)
        return jnp.sum(out), out

    return jax.jit(jax.grad(loss, argnums=tuple(range(num_args)), has_aux=True))


def run(fn, *args):
    """``fn(*args)`` as numpy; compiled on JAX, whose op-by-op mode compiles every new shape."""
    if BACKEND == "jax":
        import jax

        return to_numpy(jax.jit(fn)(*args))
    return to_numpy(fn(*args))


def compiled(fn):
    """``fn`` compiled the way kmt compiles on this backend (XLA on TensorFlow and JAX).

    On PyTorch the function is returned as it is: kmt runs eager there.
    """
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    return fn
