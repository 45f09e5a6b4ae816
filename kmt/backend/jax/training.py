"""Training on JAX: the step as one pure ``jax.jit`` function, and ``keras.distribution.DataParallel`` for several devices.

The step is ``jax.value_and_grad`` of a pure function of every variable
(``keras.StatelessScope`` maps the models' weights, BatchNorm statistics,
spectral-norm vectors and the frozen perceptual network to the values passed
in), followed by the three optimizers' ``stateless_apply``; the new values of
all of them come back and are assigned. Under ``precision="mixed_float16"`` the
losses are multiplied by the loss scale read from the optimizers' variable values
passed in, so the scale is state of the pure function like everything else.

Several devices (:class:`DataParallel`): the models and optimizers are built
inside a ``keras.distribution.DataParallel`` scope, which places one copy of
every variable on each device; each step's batch is sharded along its first
axis (``B / count`` consecutive samples per device). ``jax.jit`` then compiles
one program over all devices: the means over the batch (losses, BatchNorm
statistics) become sums across devices, so a step computes what one device
computes on the global batch, without code of kmt's own for it: ``batch_moments``
is the plain two-pass moments of :func:`kmt.backend.devices.local_moments`.
"""

import jax
import keras
from keras import ops

from kmt.backend.devices import Placement, local_moments as batch_moments, resolve_count

__all__ = ["compile_train_step", "placement", "available_devices", "split_cpu", "batch_moments", "DataParallel"]


def available_devices():
    """The devices of JAX's default platform (GPUs or TPUs when present, otherwise the CPU devices)."""
    return [f"{d.platform}:{d.id}" for d in jax.devices()]


def split_cpu(count):
    """Split the host CPU into ``count`` devices (``jax_num_cpu_devices``; before JAX has run anything)."""
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError as error:
        current = len(jax.devices("cpu"))
        if current == count:
            return
        raise RuntimeError(f"JAX has already started with {current} CPU device(s), so the CPU cannot be split "
                           f"into {count} now: split it first thing in the process (or set "
                           f"XLA_FLAGS=--xla_force_host_platform_device_count={count}).") from error


class DataParallel(Placement):
    """``count`` devices under one ``keras.distribution.DataParallel``."""

    def __init__(self, devices):
        super().__init__([f"{d.platform}:{d.id}" for d in devices])
        self.distribution = keras.distribution.DataParallel(devices=devices)
        self._mesh = self.distribution.device_mesh

    def scope(self):
        return self.distribution.scope()

    def place(self, array, batch_size):
        """``array`` sharded along axis 0 if it holds one row per sample, otherwise a copy on every device."""
        array = ops.convert_to_numpy(array).astype("float32")
        if array.shape[0] == batch_size:
            layout = self.distribution.get_data_layout(array.shape)
        else:
            layout = keras.distribution.TensorLayout([None] * array.ndim, self._mesh)
        return keras.distribution.distribute_tensor(array, layout)


def placement(devices):
    """JAX's default device, or a :class:`DataParallel` over ``devices`` of them."""
    available = available_devices()
    count = resolve_count(devices, available, "jax")
    return DataParallel(jax.devices()[:count]) if count > 1 else Placement(available[:1])


def _pure_step(step):
    """``(values, constants, source, driving, transform_params) -> (new values, losses)``, a pure function."""
    kp_opt, gen_opt, disc_opt = (step.optimizers[n] for n in ("kp_detector", "generator", "discriminator"))
    gen_side = step.kp_vars + step.gen_vars

    def generator_part(trainable, frozen, constants, source, driving, transform_params, scale):
        mapping = list(zip(gen_side, trainable)) + list(zip(step.disc_vars + step.state_vars, frozen))
        mapping += list(zip(step.const_vars, constants))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            total, values, generated = step.generator_total(source, driving, transform_params)
        state = [scope.get_current_value(v) for v in step.state_vars]
        kept = {"prediction": generated["prediction"], "kp_driving": generated["kp_driving"]}
        return total * scale, (values, kept, state)

    def discriminator_part(trainable, frozen, driving, generated, scale):
        mapping = list(zip(step.disc_vars, trainable)) + list(zip(gen_side + step.state_vars, frozen))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            total, values = step.discriminator_total(driving, generated)
        state = [scope.get_current_value(v) for v in step.state_vars]
        return total * scale, (values, state)

    def pure(values, constants, source, driving, transform_params):
        kp_w, gen_w, disc_w, state, kp_o, gen_o, disc_o = values
        (_, (losses, generated, state)), grads = jax.value_and_grad(generator_part, has_aux=True)(
            kp_w + gen_w, disc_w + state, constants, source, driving, transform_params,
            step.loss_scale("kp_detector", kp_o),
        )
        grads = step.skip_together(grads)
        kp_w, kp_o = kp_opt.stateless_apply(kp_o, grads[: len(kp_w)], kp_w)
        gen_w, gen_o = gen_opt.stateless_apply(gen_o, grads[len(kp_w):], gen_w)
        if step.use_gan:
            (_, (disc_losses, state)), grads = jax.value_and_grad(discriminator_part, has_aux=True)(
                disc_w, kp_w + gen_w + state, driving, generated, step.loss_scale("discriminator", disc_o)
            )
            disc_w, disc_o = disc_opt.stateless_apply(disc_o, grads, disc_w)
            losses = {**losses, **disc_losses}
        return (kp_w, gen_w, disc_w, state, kp_o, gen_o, disc_o), losses

    return pure


def compile_train_step(step, placement, jit=True):
    """``fn(source, driving, transform_params) -> {loss name: scalar}`` running ``step`` on ``placement``.

    Each call reads every variable's value, runs the pure step and assigns the new values.
    """
    pure = _pure_step(step)
    compiled = jax.jit(pure) if jit else pure
    groups = (
        step.kp_vars, step.gen_vars, step.disc_vars, step.state_vars,
        step.optimizers["kp_detector"].variables,
        step.optimizers["generator"].variables,
        step.optimizers["discriminator"].variables,
    )
    sharded = isinstance(placement, DataParallel)

    def call(source, driving, transform_params):
        batch = len(source)
        if sharded:
            source, driving = placement.place(source, batch), placement.place(driving, batch)
            transform_params = {k: placement.place(v, batch) for k, v in transform_params.items()}
        else:
            source, driving = ops.convert_to_tensor(source, "float32"), ops.convert_to_tensor(driving, "float32")
            transform_params = {k: ops.convert_to_tensor(v, "float32") for k, v in transform_params.items()}
        values = tuple([v.value for v in group] for group in groups)
        constants = [v.value for v in step.const_vars]
        if sharded:  # a perceptual network built outside the placement's scope is copied to every device
            constants = [c if len(c.sharding.device_set) == placement.count else placement.place(c, None)
                         for c in constants]
        new_values, losses = compiled(values, constants, source, driving, transform_params)
        for group, new in zip(groups, new_values):
            for variable, value in zip(group, new):
                variable.assign(value)
        return losses

    return call
