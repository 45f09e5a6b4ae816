"""One FOMM training step: the generator and discriminator losses, and their gradient updates.

:func:`generator_losses` and :func:`discriminator_losses` are written once, with
``keras.ops`` and layer calls, exactly in the order of the reference's
``GeneratorFullModel`` and ``DiscriminatorFullModel``. :class:`TrainStep` turns
them into an update of the three networks on the current backend:

* TensorFlow: ``tf.GradientTape`` inside ``tf.function(jit_compile=True)``;
* JAX: ``jax.value_and_grad`` of a pure function (``keras.StatelessScope``
  threads every variable, BatchNorm statistics and spectral-norm vectors
  included) inside ``jax.jit``;
* PyTorch: autograd, eagerly.

Batches are NHWC float32 in [0, 1]; the random equivariance transform is
sampled outside the step (:func:`kmt.losses.sample_transform_parameters`) so
the step is a pure function of its inputs on every backend.
"""

import keras
from keras import ops

from kmt import losses as L
from kmt.warping import ImagePyramid

__all__ = ["generator_losses", "discriminator_losses", "TrainStep"]


def _detach(kp):
    return {key: ops.stop_gradient(value) for key, value in kp.items()}


def generator_losses(models, train_params, source, driving, transform, align_corners=True, training=True):
    """The weighted generator losses of one batch, and what the generator produced.

    Args:
        models: dict with ``kp_detector``, ``generator``, ``discriminator``,
            ``pyramid`` (an :class:`~kmt.warping.ImagePyramid` at the training
            scales) and ``vgg`` (a :class:`~kmt.losses.VGG19Features`, needed when
            the perceptual weights are not all zero).
        train_params: the config's ``train_params``.
        source, driving: ``(B, H, W, C)`` frames of the same videos.
        transform: the :class:`~kmt.losses.EquivarianceTransform` of this step,
            or ``None`` when both equivariance weights are zero.

    Returns:
        ``(losses, generated)``: losses keyed like the reference (``perceptual``,
        ``gen_gan``, ``feature_matching``, ``equivariance_value``,
        ``equivariance_jacobian``), each already multiplied by its weight; and the
        generator's outputs plus ``kp_source`` and ``kp_driving``.
    """
    weights = train_params["loss_weights"]
    kp_detector, generator = models["kp_detector"], models["generator"]
    kp_source = kp_detector(source, training=training)
    kp_driving = kp_detector(driving, training=training)
    generated = dict(generator(source, kp_driving=kp_driving, kp_source=kp_source, training=training))
    generated.update(kp_source=kp_source, kp_driving=kp_driving)

    values = {}
    real_pyramid = models["pyramid"](driving)
    generated_pyramid = models["pyramid"](generated["prediction"])
    if sum(weights["perceptual"]) != 0:
        values["perceptual"] = L.perceptual_loss(models["vgg"], generated_pyramid, real_pyramid, weights["perceptual"])

    if weights["generator_gan"] != 0:
        discriminator = models["discriminator"]
        kp = _detach(kp_driving)
        maps_generated = discriminator(generated_pyramid, kp=kp, training=training)
        maps_real = discriminator(real_pyramid, kp=kp, training=training)
        values["gen_gan"] = weights["generator_gan"] * L.generator_gan_loss(maps_generated)
        if sum(weights["feature_matching"]) != 0:
            per_layer = L.feature_matching_losses(maps_real, maps_generated)
            values["feature_matching"] = sum(w * v for w, v in zip(weights["feature_matching"], per_layer) if w)

    if weights["equivariance_value"] + weights["equivariance_jacobian"] != 0:
        transformed_frame = transform.transform_frame(driving, align_corners=align_corners)
        transformed_kp = kp_detector(transformed_frame, training=training)
        generated.update(transformed_frame=transformed_frame, transformed_kp=transformed_kp)
        if weights["equivariance_value"] != 0:
            value = L.equivariance_value_loss(kp_driving, transformed_kp, transform)
            values["equivariance_value"] = weights["equivariance_value"] * value
        if weights["equivariance_jacobian"] != 0:
            value = L.equivariance_jacobian_loss(kp_driving, transformed_kp, transform)
            values["equivariance_jacobian"] = weights["equivariance_jacobian"] * value
    return values, generated


def discriminator_losses(models, train_params, driving, prediction, kp_driving, training=True):
    """``{"disc_gan": weight * LSGAN loss}`` of the discriminator on real and generated frames."""
    discriminator = models["discriminator"]
    pyramid = models["disc_pyramid"]
    kp = _detach(kp_driving)
    maps_generated = discriminator(pyramid(ops.stop_gradient(prediction)), kp=kp, training=training)
    maps_real = discriminator(pyramid(driving), kp=kp, training=training)
    weight = train_params["loss_weights"]["discriminator_gan"]
    return {"disc_gan": weight * L.discriminator_gan_loss(maps_real, maps_generated)}


def _total(values):
    return sum(values.values())


def _apply(optimizer, grads, variables):
    """``optimizer.apply`` on the variables that received a gradient (as ``torch.optim`` skips the others)."""
    pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
    if pairs:
        optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])


class TrainStep:
    """A compiled update of the keypoint detector and generator, then of the discriminator.

    ``step(source, driving, transform_params)`` runs one training step, updates
    every variable (weights, optimizer slots, BatchNorm statistics, spectral-norm
    vectors) in place and returns the losses as Python floats. The discriminator
    is updated only when ``loss_weights["generator_gan"] != 0``, as in the reference.

    Args:
        kp_detector, generator, discriminator: the three models.
        optimizers: ``{"kp_detector": ..., "generator": ..., "discriminator": ...}``.
        train_params: the config's ``train_params``.
        num_channels: image channels (for the pyramids).
        vgg: the perceptual network, or ``None`` if the perceptual weights are zero.
        align_corners: the ``grid_sample`` convention of the equivariance warp.
        jit: compile the step (``True`` by default; ignored on PyTorch, which runs eagerly).
    """

    def __init__(self, kp_detector, generator, discriminator, optimizers, train_params, num_channels,
                 vgg=None, align_corners=True, jit=True):
        self.train_params = train_params
        self.align_corners = align_corners
        self.use_gan = train_params["loss_weights"]["generator_gan"] != 0
        self.use_transform = (
            train_params["loss_weights"]["equivariance_value"] + train_params["loss_weights"]["equivariance_jacobian"]
        ) != 0
        if sum(train_params["loss_weights"]["perceptual"]) != 0 and vgg is None:
            raise ValueError("The perceptual loss weights are not all zero, so `vgg` must be given.")
        self.models = {
            "kp_detector": kp_detector,
            "generator": generator,
            "discriminator": discriminator,
            "vgg": vgg,
            "pyramid": ImagePyramid(train_params["scales"], num_channels, name="pyramid"),
            "disc_pyramid": ImagePyramid(discriminator.scales, num_channels, name="disc_pyramid"),
        }
        self.optimizers = optimizers
        self.kp_vars = list(kp_detector.trainable_variables)
        self.gen_vars = list(generator.trainable_variables)
        self.disc_vars = list(discriminator.trainable_variables)
        optimizers["kp_detector"].build(self.kp_vars)
        optimizers["generator"].build(self.gen_vars)
        optimizers["discriminator"].build(self.disc_vars)
        trainable_ids = {id(v) for v in self.kp_vars + self.gen_vars + self.disc_vars}
        networks = [kp_detector, generator, discriminator]
        # BatchNorm statistics and spectral-norm vectors: updated by the forward passes.
        self.state_vars = [v for m in networks for v in m.variables if id(v) not in trainable_ids]
        # The frozen perceptual network: read, never written.
        self.const_vars = list(vgg.variables) if vgg is not None else []
        self.backend = keras.backend.backend()
        self._compiled = self._build(jit)

    def _transform(self, transform_params):
        return L.EquivarianceTransform.from_parameters(transform_params) if self.use_transform else None

    def _generator_total(self, source, driving, transform_params):
        values, generated = generator_losses(
            self.models, self.train_params, source, driving, self._transform(transform_params), self.align_corners
        )
        return _total(values), values, generated

    def _discriminator_total(self, driving, generated):
        values = discriminator_losses(
            self.models, self.train_params, driving, generated["prediction"], generated["kp_driving"]
        )
        return _total(values), values

    # TensorFlow ---------------------------------------------------------------------------
    def _tf_step(self, source, driving, transform_params):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            total, values, generated = self._generator_total(source, driving, transform_params)
        grads = tape.gradient(total, self.kp_vars + self.gen_vars)
        _apply(self.optimizers["kp_detector"], grads[: len(self.kp_vars)], self.kp_vars)
        _apply(self.optimizers["generator"], grads[len(self.kp_vars):], self.gen_vars)
        if self.use_gan:
            with tf.GradientTape() as tape:
                total, disc_values = self._discriminator_total(driving, generated)
            _apply(self.optimizers["discriminator"], tape.gradient(total, self.disc_vars), self.disc_vars)
            values.update(disc_values)
        return values

    # JAX ------------------------------------------------------------------------------------
    def _jax_pure(self):
        import jax

        kp_opt, gen_opt, disc_opt = (self.optimizers[n] for n in ("kp_detector", "generator", "discriminator"))
        gen_side = self.kp_vars + self.gen_vars

        def generator_part(trainable, frozen, constants, source, driving, transform_params):
            mapping = list(zip(gen_side, trainable)) + list(zip(self.disc_vars + self.state_vars, frozen))
            mapping += list(zip(self.const_vars, constants))
            with keras.StatelessScope(state_mapping=mapping) as scope:
                total, values, generated = self._generator_total(source, driving, transform_params)
            state = [scope.get_current_value(v) for v in self.state_vars]
            kept = {"prediction": generated["prediction"], "kp_driving": generated["kp_driving"]}
            return total, (values, kept, state)

        def discriminator_part(trainable, frozen, driving, generated):
            mapping = list(zip(self.disc_vars, trainable)) + list(zip(gen_side + self.state_vars, frozen))
            with keras.StatelessScope(state_mapping=mapping) as scope:
                total, values = self._discriminator_total(driving, generated)
            state = [scope.get_current_value(v) for v in self.state_vars]
            return total, (values, state)

        def step(values, constants, source, driving, transform_params):
            kp_w, gen_w, disc_w, state, kp_o, gen_o, disc_o = values
            (_, (losses, generated, state)), grads = jax.value_and_grad(generator_part, has_aux=True)(
                kp_w + gen_w, disc_w + state, constants, source, driving, transform_params
            )
            kp_w, kp_o = kp_opt.stateless_apply(kp_o, grads[: len(kp_w)], kp_w)
            gen_w, gen_o = gen_opt.stateless_apply(gen_o, grads[len(kp_w):], gen_w)
            if self.use_gan:
                (_, (disc_losses, state)), grads = jax.value_and_grad(discriminator_part, has_aux=True)(
                    disc_w, kp_w + gen_w + state, driving, generated
                )
                disc_w, disc_o = disc_opt.stateless_apply(disc_o, grads, disc_w)
                losses = {**losses, **disc_losses}
            return (kp_w, gen_w, disc_w, state, kp_o, gen_o, disc_o), losses

        return step

    def _jax_variable_groups(self):
        return (
            self.kp_vars, self.gen_vars, self.disc_vars, self.state_vars,
            self.optimizers["kp_detector"].variables,
            self.optimizers["generator"].variables,
            self.optimizers["discriminator"].variables,
        )

    # PyTorch --------------------------------------------------------------------------------
    def _torch_update(self, total, variables, optimizer):
        import torch

        for variable in variables:
            variable.value.grad = None
        total.backward()
        grads = [variable.value.grad for variable in variables]
        with torch.no_grad():
            if isinstance(optimizer, _Joint):
                optimizer.apply(grads, variables)
            else:
                _apply(optimizer, grads, variables)

    def _torch_step(self, source, driving, transform_params):
        total, values, generated = self._generator_total(source, driving, transform_params)
        self._torch_update(total, self.kp_vars + self.gen_vars, _Joint(self.optimizers, len(self.kp_vars)))
        if self.use_gan:
            # The generator's graph is spent; the discriminator reads its outputs as constants.
            total, disc_values = self._discriminator_total(driving, generated)
            self._torch_update(total, self.disc_vars, self.optimizers["discriminator"])
            values.update(disc_values)
        return values

    def _build(self, jit):
        if self.backend == "tensorflow":
            import tensorflow as tf

            return tf.function(self._tf_step, jit_compile=bool(jit))
        if self.backend == "jax":
            import jax

            step = self._jax_pure()
            return jax.jit(step) if jit else step
        if self.backend == "torch":
            return self._torch_step
        raise RuntimeError(f"kmt trains on tensorflow, jax and torch; the Keras backend is {self.backend!r}.")

    def __call__(self, source, driving, transform_params):
        """Run one step on NHWC float32 arrays; returns ``{loss name: float}``."""
        source = ops.convert_to_tensor(source, "float32")
        driving = ops.convert_to_tensor(driving, "float32")
        transform_params = {k: ops.convert_to_tensor(v, "float32") for k, v in (transform_params or {}).items()}
        if self.backend == "jax":
            groups = self._jax_variable_groups()
            values = tuple([v.value for v in group] for group in groups)
            constants = [v.value for v in self.const_vars]
            new_values, losses = self._compiled(values, constants, source, driving, transform_params)
            for group, new in zip(groups, new_values):
                for variable, value in zip(group, new):
                    variable.assign(value)
        else:
            losses = self._compiled(source, driving, transform_params)
        return {name: float(ops.convert_to_numpy(value)) for name, value in losses.items()}


class _Joint:
    """Applies one gradient list to the keypoint detector's and the generator's optimizers."""

    def __init__(self, optimizers, split):
        self.optimizers, self.split = optimizers, split

    def apply(self, grads, variables):
        _apply(self.optimizers["kp_detector"], grads[: self.split], variables[: self.split])
        _apply(self.optimizers["generator"], grads[self.split:], variables[self.split:])
