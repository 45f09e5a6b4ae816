"""Training on TensorFlow: the step as one ``tf.function``, and ``tf.distribute.MirroredStrategy`` for several devices.

One device: ``tf.GradientTape`` inside ``tf.function(jit_compile=True)``.

Several devices (:class:`Mirrored`): the models and optimizers are built inside
``MirroredStrategy.scope()`` (one copy of every variable per device); each step
splits the global batch ``(B, H, W, C)`` into ``count`` slices of ``B / count``
consecutive samples, runs the same step function on each device, and

* scales every device's loss by ``1 / count`` before taking gradients: each
  device's losses are means over its slice, and the optimizers sum gradients
  across devices, so the update is that of the mean over the global batch;
* takes BatchNorm statistics over the global batch (:func:`batch_moments`, the
  official code's ``SynchronizedBatchNorm2d``);
* reports each loss as the mean of the devices' means (equal slices: the
  global mean).

Under ``precision="mixed_float16"`` each loss is also multiplied by its
optimizer's dynamic loss scale (:meth:`kmt.train_step.TrainStep.loss_scale`).

The replicated step runs as a graph without XLA: the cross-device sums of the
strategy do not compile into one XLA program on every device kind.
"""

import tensorflow as tf

from kmt.backend.devices import Placement, local_moments, resolve_count
from kmt.train_step import apply_gradients

__all__ = ["compile_train_step", "placement", "available_devices", "split_cpu", "batch_moments", "Mirrored"]


def available_devices():
    """The GPUs TensorFlow sees, or its (logical) CPU devices when there is no GPU."""
    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]


def split_cpu(count):
    """Split the host CPU into ``count`` logical devices (before TensorFlow has run anything)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:
        current = len(tf.config.list_logical_devices("CPU"))
        if current == count:
            return
        raise RuntimeError(f"TensorFlow has already started with {current} CPU device(s), so the CPU cannot be "
                           f"split into {count} now: split it first thing in the process.") from error


class Mirrored(Placement):
    """``count`` devices under one ``tf.distribute.MirroredStrategy``."""

    def __init__(self, names):
        super().__init__(names)
        self.strategy = _strategy(tuple(self.names))

    def scope(self):
        return self.strategy.scope()

    def distribute(self, array, batch_size):
        """Per-device slices of ``array`` along axis 0 if it holds one row per sample, otherwise copies."""
        array = _float32(array)
        share = batch_size // self.count
        if array.shape[0] != batch_size:
            return self.strategy.experimental_distribute_values_from_function(lambda context: array)

        def piece(context):
            start = context.replica_id_in_sync_group * share
            return array[start:start + share]

        return self.strategy.experimental_distribute_values_from_function(piece)


_STRATEGIES = {}


def _strategy(names):
    """The process's ``MirroredStrategy`` over ``names``, made once.

    A second strategy over other devices in the same process breaks TensorFlow's
    collective operations (their group keys restart at 1 for every strategy, and a
    group of 4 devices then collides with the group of 2 made first), so that is refused.
    """
    if names not in _STRATEGIES:
        if _STRATEGIES:
            (existing,) = _STRATEGIES
            raise RuntimeError(f"This process already trains on {len(existing)} devices ({', '.join(existing)}); "
                               f"TensorFlow serves one set of devices per process with MirroredStrategy. Train on "
                               f"{len(names)} devices in a new process.")
        _STRATEGIES[names] = tf.distribute.MirroredStrategy(list(names))
    return _STRATEGIES[names]


def placement(devices):
    """One device (TensorFlow's default placement) or a :class:`Mirrored` strategy over ``devices`` of them."""
    available = available_devices()
    count = resolve_count(devices, available, "tensorflow")
    return Mirrored(available[:count]) if count > 1 else Placement(available[:1])


def batch_moments(x, axes):
    """``(mean, biased variance, count)`` of ``x`` over ``axes``, and over every device of a running strategy.

    Two passes (the mean, then the mean squared deviation from it), each summed
    across devices when called inside ``MirroredStrategy.run``; otherwise
    :func:`~kmt.backend.devices.local_moments` of ``x`` alone. ``count`` is the
    number of values each statistic averages (float32 scalar).
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return local_moments(x, axes)
    count = tf.cast(tf.reduce_prod([tf.shape(x)[axis] for axis in axes]), x.dtype)
    total, count = context.all_reduce("SUM", [tf.reduce_sum(x, axis=axes), count])
    mean = total / count
    squares = context.all_reduce("SUM", tf.reduce_sum(tf.square(x - mean), axis=axes))
    return mean, squares / count, count


def _step_on_one_device(step):
    """The step of one device: its share of the gradients of the global mean losses, then the updates."""

    def run(source, driving, transform_params):
        share = 1.0 / tf.distribute.get_replica_context().num_replicas_in_sync
        with tf.GradientTape() as tape:
            total, values, generated = step.generator_total(source, driving, transform_params)
            scaled = total * share * step.loss_scale("kp_detector")
        grads = tape.gradient(scaled, step.kp_vars + step.gen_vars)
        step.apply_generator_side(step.skip_together(grads))
        if step.use_gan:
            with tf.GradientTape() as tape:
                total, disc_values = step.discriminator_total(driving, generated)
                scaled = total * share * step.loss_scale("discriminator")
            apply_gradients(step.optimizers["discriminator"], tape.gradient(scaled, step.disc_vars), step.disc_vars)
            values.update(disc_values)
        return values

    return run


def compile_train_step(step, placement, jit=True):
    """``fn(source, driving, transform_params) -> {loss name: scalar tensor}`` running ``step`` on ``placement``."""
    run = _step_on_one_device(step)
    if not isinstance(placement, Mirrored):
        compiled = tf.function(run, jit_compile=bool(jit))

        def call_one(source, driving, transform_params):
            return compiled(_float32(source), _float32(driving), {k: _float32(v) for k, v in transform_params.items()})

        return call_one
    strategy = placement.strategy

    @tf.function
    def replicated(source, driving, transform_params):
        per_device = strategy.run(run, args=(source, driving, transform_params))
        return {name: strategy.reduce("MEAN", value, axis=None) for name, value in per_device.items()}

    def call(source, driving, transform_params):
        batch = len(source)
        return replicated(
            placement.distribute(source, batch), placement.distribute(driving, batch),
            {key: placement.distribute(value, batch) for key, value in transform_params.items()},
        )

    return call


def _float32(array):
    return tf.convert_to_tensor(array, "float32")
