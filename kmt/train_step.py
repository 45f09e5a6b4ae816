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

Those three live in ``kmt/backend/<name>/training.py``, beside each backend's
data-parallel training on several devices (``devices=N``): the global batch is
split evenly over the devices and every step computes what one device computes
on the whole batch (BatchNorm statistics are taken over the global batch).

Batches are NHWC float32 in [0, 1]; the random equivariance transform is
sampled outside the step (:func:`kmt.losses.sample_transform_parameters`) so
the step is a pure function of its inputs on every backend.
"""

import keras
from keras import ops

from kmt import backend
from kmt import losses as L
from kmt.warping import ImagePyramid

__all__ = ["generator_losses", "discriminator_losses", "TrainStep", "apply_gradients"]


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
        placement: the devices the step runs on, from
            ``kmt.backend.load("training").placement(devices)``; the models,
            optimizers and ``vgg`` must have been built inside its ``scope()``.
            ``None``: one device.
    """

    def __init__(self, kp_detector, generator, discriminator, optimizers, train_params, num_channels,
                 vgg=None, align_corners=True, jit=True, placement=None):
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
        self.loss_scaled = isinstance(optimizers["kp_detector"], keras.optimizers.LossScaleOptimizer)
        training = backend.load("training")
        self.placement = placement if placement is not None else training.placement(1)
        self._compiled = training.compile_train_step(self, self.placement, jit=jit)

    def transform(self, transform_params):
        """The step's :class:`~kmt.losses.EquivarianceTransform` (``None`` when equivariance is off)."""
        return L.EquivarianceTransform.from_parameters(transform_params) if self.use_transform else None

    def generator_total(self, source, driving, transform_params):
        """``(sum of the weighted generator losses, the losses, the generator's outputs)``."""
        values, generated = generator_losses(
            self.models, self.train_params, source, driving, self.transform(transform_params), self.align_corners
        )
        return _total(values), values, generated

    def discriminator_total(self, driving, generated):
        """``(weighted discriminator loss, {"disc_gan": it})`` on the real and generated frames."""
        values = discriminator_losses(
            self.models, self.train_params, driving, generated["prediction"], generated["kp_driving"]
        )
        return _total(values), values

    def loss_scale(self, name, optimizer_values=None):
        """What the loss of optimizer ``name`` is multiplied by before its gradients are taken.

        Under ``mixed_float16`` the optimizers are ``keras.optimizers.LossScaleOptimizer``:
        their dynamic scale (a variable; in a pure step, the entry of ``optimizer_values``,
        the optimizer's variable values); otherwise 1.
        """
        optimizer = self.optimizers[name]
        if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            return 1.0
        if optimizer_values is None:
            return optimizer.dynamic_scale
        index = next(i for i, v in enumerate(optimizer.variables) if v is optimizer.dynamic_scale)
        return optimizer_values[index]

    def skip_together(self, grads):
        """Under loss scaling, a non-finite gradient anywhere on the generator side makes both of its optimizers
        skip the step (and halve their scales): one scaled loss feeds both, so their scales must stay equal."""
        if not self.loss_scaled:
            return grads
        finite = ops.all(ops.stack([ops.all(ops.isfinite(g)) for g in grads if g is not None]))
        return [None if g is None else ops.where(finite, g, float("nan")) for g in grads]

    def apply_generator_side(self, grads):
        """Apply the gradients of ``kp_vars + gen_vars`` with their two optimizers."""
        split = len(self.kp_vars)
        apply_gradients(self.optimizers["kp_detector"], grads[:split], self.kp_vars)
        apply_gradients(self.optimizers["generator"], grads[split:], self.gen_vars)

    def __call__(self, source, driving, transform_params):
        """Run one step on NHWC float32 arrays (the global batch); returns ``{loss name: float}``."""
        batch = len(source)
        if len(driving) != batch:
            raise ValueError(f"`source` and `driving` must hold the same number of frames; got {batch} and "
                             f"{len(driving)}.")
        self.placement.check_batch(batch)
        losses = self._compiled(source, driving, dict(transform_params or {}))
        return {name: float(ops.convert_to_numpy(value)) for name, value in losses.items()}


def apply_gradients(optimizer, grads, variables):
    """``optimizer.apply`` on the variables that received a gradient (as ``torch.optim`` skips the others)."""
    pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
    if pairs:
        optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
