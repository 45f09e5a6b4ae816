"""Training on PyTorch: the step runs eagerly with autograd, on one device.

Under ``precision="mixed_float16"`` each loss is multiplied by its optimizer's
dynamic loss scale before ``backward()``.

Several devices are not offered on this backend: Keras has no engine for them
on PyTorch (``keras.distribution`` is JAX-only), and kmt does not write one.
``placement(N)`` with ``N > 1`` says so and names the backends that do
(JAX: ``keras.distribution.DataParallel``; TensorFlow: ``MirroredStrategy``).
"""

import torch
from keras import ops

from kmt.backend.devices import Placement, check_devices_argument, local_moments as batch_moments
from kmt.train_step import apply_gradients

__all__ = ["compile_train_step", "placement", "available_devices", "split_cpu", "batch_moments"]

_SEVERAL_DEVICES = ("kmt trains on several devices on the jax backend (keras.distribution.DataParallel) and the "
                    "tensorflow backend (tf.distribute.MirroredStrategy); the torch backend trains on one device. "
                    "Set KERAS_BACKEND=jax or KERAS_BACKEND=tensorflow to use {count} devices.")


def available_devices():
    """The device Keras places tensors on (``cuda:0`` when a GPU is visible, otherwise ``cpu``)."""
    return [str(ops.convert_to_tensor(0.0).device)]


def split_cpu(count):
    """Refused: the torch backend trains on one device (see the module docstring)."""
    if count != 1:
        raise RuntimeError(_SEVERAL_DEVICES.format(count=count))


def placement(devices):
    """The one device Keras uses; ``devices`` other than 1 (or ``"all"`` with one device) is refused."""
    if check_devices_argument(devices) not in (1, "all"):
        raise ValueError(_SEVERAL_DEVICES.format(count=devices))
    return Placement(available_devices())


def _update(total, variables, apply):
    for variable in variables:
        variable.value.grad = None
    total.backward()
    grads = [variable.value.grad for variable in variables]
    with torch.no_grad():
        apply(grads)


def compile_train_step(step, placement, jit=True):
    """``fn(source, driving, transform_params) -> {loss name: scalar tensor}``, eager (``jit`` is ignored)."""

    def call(source, driving, transform_params):
        source, driving = ops.convert_to_tensor(source, "float32"), ops.convert_to_tensor(driving, "float32")
        transform_params = {k: ops.convert_to_tensor(v, "float32") for k, v in transform_params.items()}
        total, values, generated = step.generator_total(source, driving, transform_params)
        _update(total * step.loss_scale("kp_detector"), step.kp_vars + step.gen_vars,
                lambda grads: step.apply_generator_side(step.skip_together(grads)))
        if step.use_gan:
            # The generator's graph is spent; the discriminator reads its outputs as constants.
            total, disc_values = step.discriminator_total(driving, generated)
            optimizer = step.optimizers["discriminator"]
            _update(total * step.loss_scale("discriminator"), step.disc_vars, lambda grads: apply_gradients(optimizer, grads, step.disc_vars))
            values.update(disc_values)
        return values

    return call
