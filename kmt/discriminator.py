"""The multi-scale patch discriminator, with spectral and instance normalisation (chapter 6).

A Pix2Pix-style discriminator per scale of an image pyramid: ``num_blocks``
blocks of a 4 x 4 convolution without padding, instance normalisation (not on
the first block), LeakyReLU(0.2) and a 2 x 2 average pool (not on the last
block), then a 1 x 1 convolution giving a map of real/fake scores. With
``use_kp``, Gaussians at the keypoints are stacked onto the image channels.
With ``sn``, every convolution is spectrally normalised.

:class:`SpectralConv2D` reproduces ``torch.nn.utils.spectral_norm`` exactly,
vectors included, so official weights load with their ``weight_u`` and
``weight_v``; :class:`InstanceNorm` is ``nn.InstanceNorm2d(affine=True)``.
"""

import math

import keras
import numpy as np
from keras import ops

from kmt.coordinates import hourglass_width
from kmt.keypoints import KP_VARIANCE, kp2gaussian
from kmt.layers import Conv2D, TorchUniform, conv2d

__all__ = [
    "RandomUnitVector",
    "SpectralConv2D",
    "InstanceNorm",
    "DiscriminatorBlock",
    "Discriminator",
    "MultiScaleDiscriminator",
    "scale_key",
]

SN_EPSILON = 1e-12


@keras.saving.register_keras_serializable(package="kmt")
class RandomUnitVector(keras.initializers.Initializer):
    """A random direction: a standard normal sample divided by its norm (over all axes), drawn with NumPy."""

    def __init__(self, seed=None):
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def __call__(self, shape, dtype=None):
        rng = self._rng if self._rng is not None else np.random
        sample = rng.standard_normal(size=tuple(shape))
        sample = sample / max(float(np.sqrt(np.sum(sample**2))), SN_EPSILON)
        return ops.convert_to_tensor(sample, dtype=dtype or "float32")

    def get_config(self):
        return {"seed": self.seed}


def _normalize(vector):
    return vector / ops.maximum(ops.sqrt(ops.sum(ops.square(vector))), SN_EPSILON)


@keras.saving.register_keras_serializable(package="kmt")
class SpectralConv2D(Conv2D):
    """:class:`~kmt.fast_layers.Conv2D` whose kernel is divided by its largest singular value, as ``nn.utils.spectral_norm``.

    The kernel ``W`` (HWIO, ``kh x kw x I x O``) is seen as the matrix mapping
    ``(kh, kw, I)`` inputs to ``O`` outputs. Two non-trainable vectors track
    its top singular pair: ``u`` ``(O,)`` and ``v`` ``(kh, kw, I)``. Then
    ``sigma = u . (W v)`` and the convolution uses ``W / sigma``.

    With ``training=True`` one power iteration runs first and updates the
    vectors, ``v <- normalise(W^T u)`` then ``u <- normalise(W v)``, as
    PyTorch does in training mode; otherwise the stored vectors are used as
    they are. No gradient flows through ``u`` and ``v``.
    """

    def build(self, input_shape):
        super().build(input_shape)
        kh, kw = self.kernel_size
        in_channels = self.kernel.shape[2]
        self.u = self.add_weight(
            name="u", shape=(self.filters,), initializer=RandomUnitVector(), trainable=False, autocast=False
        )
        self.v = self.add_weight(
            name="v", shape=(kh, kw, in_channels), initializer=RandomUnitVector(), trainable=False, autocast=False
        )

    def normalized_kernel(self, training=False):
        """``W / sigma`` (HWIO); with ``training``, after one power iteration that updates ``u`` and ``v``."""
        kernel = ops.cast(self.kernel, "float32")  # the power iteration runs in float32 under mixed precision
        u, v = self.u, self.v
        if training:
            frozen = ops.stop_gradient(kernel)
            v = _normalize(ops.einsum("hwio,o->hwi", frozen, u))
            u = _normalize(ops.einsum("hwio,hwi->o", frozen, v))
            self.u.assign(u)
            self.v.assign(v)
            u, v = ops.stop_gradient(u), ops.stop_gradient(v)
        sigma = ops.sum(u * ops.einsum("hwio,hwi->o", kernel, v))
        return kernel / sigma

    # Conv2D saves only its kernel and bias; u and v are state too.
    def save_own_variables(self, store):
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store):
        keras.layers.Layer.load_own_variables(self, store)

    def call(self, inputs, training=None):
        kernel = ops.cast(self.normalized_kernel(bool(training)), self.compute_dtype)  # 16 bits under mixed precision
        outputs = self.convolution_op(inputs, kernel)
        if self.use_bias:
            outputs = outputs + self.bias
        return outputs


@keras.saving.register_keras_serializable(package="kmt")
class InstanceNorm(keras.layers.Layer):
    """Normalises each channel of each image over its pixels, then scales and shifts.

    ``(x - mean) / sqrt(var + epsilon) * gamma + beta`` with the biased
    variance over ``(H, W)``: ``nn.InstanceNorm2d(affine=True)`` (no running
    statistics, so training and inference compute the same thing).
    """

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = (input_shape[-1],)
        self.gamma = self.add_weight(name="gamma", shape=channels, initializer="ones")
        self.beta = self.add_weight(name="beta", shape=channels, initializer="zeros")

    def call(self, x):
        mean = ops.mean(x, axis=(1, 2), keepdims=True)
        variance = ops.mean(ops.square(x - mean), axis=(1, 2), keepdims=True)
        return (x - mean) * ops.rsqrt(variance + self.epsilon) * self.gamma + self.beta

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def _discriminator_conv(in_features, out_features, kernel_size, sn, name):
    if not sn:
        return conv2d(in_features, out_features, kernel_size, 0, name=name)
    bound = 1.0 / math.sqrt(in_features * kernel_size * kernel_size)
    return SpectralConv2D(
        out_features,
        kernel_size,
        padding="valid",
        kernel_initializer=TorchUniform(bound),
        bias_initializer=TorchUniform(bound),
        name=name,
    )


@keras.saving.register_keras_serializable(package="kmt")
class DiscriminatorBlock(keras.layers.Layer):
    """4 x 4 valid conv (spectral-normalised with ``sn``), optional instance norm, LeakyReLU(0.2), optional 2 x 2 pool.

    ``(B, H, W, in_features) -> (B, (H - 3) // p, (W - 3) // p, out_features)`` with ``p = 2`` when ``pool``.
    """

    def __init__(self, in_features, out_features, norm=False, kernel_size=4, pool=False, sn=False, **kwargs):
        super().__init__(**kwargs)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.norm_enabled = bool(norm)
        self.kernel_size = int(kernel_size)
        self.pool = bool(pool)
        self.sn = bool(sn)
        self.conv = _discriminator_conv(self.in_features, self.out_features, self.kernel_size, self.sn, "conv")
        self.norm = InstanceNorm(name="norm") if self.norm_enabled else None

    def build(self, input_shape=None):
        self.conv.build((None, None, None, self.in_features))
        if self.norm is not None:
            self.norm.build((None, None, None, self.out_features))

    def call(self, x, training=None):
        out = self.conv(x, training=training) if self.sn else self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        out = ops.leaky_relu(out, 0.2)
        if self.pool:
            out = ops.average_pool(out, pool_size=2, strides=2, padding="valid")
        return out

    def get_config(self):
        return {
            **super().get_config(),
            "in_features": self.in_features,
            "out_features": self.out_features,
            "norm": self.norm_enabled,
            "kernel_size": self.kernel_size,
            "pool": self.pool,
            "sn": self.sn,
        }


@keras.saving.register_keras_serializable(package="kmt")
class Discriminator(keras.layers.Layer):
    """One patch discriminator: ``call(x, kp=None)`` returns ``(feature_maps, prediction_map)``.

    ``x`` is ``(B, H, W, num_channels)``; with ``use_kp``, ``kp`` (``(B, K, 2)`` or a
    keypoint dict) is drawn as :func:`kmt.keypoints.kp2gaussian` maps at ``(H, W)``
    and concatenated after the image channels. ``feature_maps`` is the list of
    every block's output; ``prediction_map`` is ``(B, h, w, 1)``.
    """

    def __init__(
        self,
        num_channels=3,
        block_expansion=64,
        num_blocks=4,
        max_features=512,
        sn=False,
        use_kp=False,
        num_kp=10,
        kp_variance=KP_VARIANCE,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")  # float32 interface under a mixed policy; the blocks inside follow it
        super().__init__(**kwargs)
        self.num_channels = int(num_channels)
        self.block_expansion = int(block_expansion)
        self.num_blocks = int(num_blocks)
        self.max_features = int(max_features)
        self.sn = bool(sn)
        self.use_kp = bool(use_kp)
        self.num_kp = int(num_kp)
        self.kp_variance = float(kp_variance)
        self.in_features = self.num_channels + self.num_kp * self.use_kp
        widths = [self.in_features] + [
            hourglass_width(self.block_expansion, self.max_features, i + 1) for i in range(self.num_blocks)
        ]
        self.down_blocks = [
            DiscriminatorBlock(
                widths[i],
                widths[i + 1],
                norm=i != 0,
                kernel_size=4,
                pool=i != self.num_blocks - 1,
                sn=self.sn,
                name=f"down_block_{i}",
            )
            for i in range(self.num_blocks)
        ]
        self.conv = _discriminator_conv(widths[-1], 1, 1, self.sn, "conv")

    def build(self, input_shape=None):
        for block in self.down_blocks:
            block.build()
        self.conv.build((None, None, None, self.down_blocks[-1].out_features))

    def call(self, x, kp=None, training=None):
        if len(x.shape) != 4 or x.shape[-1] != self.num_channels:
            raise ValueError(
                f"Discriminator expects images of shape (batch, height, width, {self.num_channels}); "
                f"got {tuple(x.shape)}."
            )
        out = x
        if self.use_kp:
            if kp is None:
                raise ValueError("Discriminator with use_kp=True needs `kp` (keypoints of the frame).")
            heatmap = kp2gaussian(kp, x.shape[1:3], self.kp_variance)
            out = ops.concatenate([out, ops.cast(heatmap, out.dtype)], axis=-1)
        feature_maps = []
        for block in self.down_blocks:
            out = block(out, training=training)
            feature_maps.append(out)
        prediction_map = self.conv(out, training=training) if self.sn else self.conv(out)
        return feature_maps, prediction_map

    def get_config(self):
        return {
            **super().get_config(),
            "num_channels": self.num_channels,
            "block_expansion": self.block_expansion,
            "num_blocks": self.num_blocks,
            "max_features": self.max_features,
            "sn": self.sn,
            "use_kp": self.use_kp,
            "num_kp": self.num_kp,
            "kp_variance": self.kp_variance,
        }


def scale_key(scale):
    """The reference's name of a scale: ``1 -> "1"``, ``0.5 -> "0.5"`` (``str`` of the YAML number)."""
    return str(scale)


@keras.saving.register_keras_serializable(package="kmt")
class MultiScaleDiscriminator(keras.Model):
    """One :class:`Discriminator` per scale of an image pyramid.

    The arguments are those of the reference's ``MultiScaleDiscriminator``
    (``MultiScaleDiscriminator(**discriminator_params, **common_params)``);
    ``estimate_jacobian`` is accepted for that reason and ignored.

    ``call(pyramid, kp=None)`` takes the dict of :class:`kmt.warping.ImagePyramid`
    (``{"prediction_<scale>": (B, H_s, W_s, C)}``) and returns, for each scale
    ``s`` of ``scales``, ``"feature_maps_<s>"`` (a list of ``num_blocks`` maps)
    and ``"prediction_map_<s>"`` ``(B, h_s, w_s, 1)``.
    """

    def __init__(
        self,
        scales=(),
        num_channels=3,
        block_expansion=64,
        num_blocks=4,
        max_features=512,
        sn=False,
        use_kp=False,
        num_kp=10,
        kp_variance=KP_VARIANCE,
        estimate_jacobian=False,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")  # float32 interface under a mixed policy; the blocks inside follow it
        super().__init__(**kwargs)
        self.scales = [int(s) if float(s) == int(s) else float(s) for s in scales]
        self.disc_params = {
            "num_channels": int(num_channels),
            "block_expansion": int(block_expansion),
            "num_blocks": int(num_blocks),
            "max_features": int(max_features),
            "sn": bool(sn),
            "use_kp": bool(use_kp),
            "num_kp": int(num_kp),
            "kp_variance": float(kp_variance),
        }
        self.estimate_jacobian = bool(estimate_jacobian)
        self.discs = {
            scale_key(s): Discriminator(name=f"disc_{scale_key(s).replace('.', '-')}", **self.disc_params)
            for s in self.scales
        }

    def build(self, input_shape=None):
        for disc in self.discs.values():
            disc.build()

    def call(self, pyramid, kp=None, training=None):
        out = {}
        for key, disc in self.discs.items():
            name = f"prediction_{key}"
            if name not in pyramid:
                raise ValueError(
                    f"MultiScaleDiscriminator expects the pyramid key '{name}' for scale {key}; got "
                    f"keys {sorted(pyramid)}."
                )
            feature_maps, prediction_map = disc(pyramid[name], kp, training=training)
            out[f"feature_maps_{key}"] = feature_maps
            out[f"prediction_map_{key}"] = prediction_map
        return out

    def get_config(self):
        return {
            **super().get_config(),
            "scales": self.scales,
            **self.disc_params,
            "estimate_jacobian": self.estimate_jacobian,
        }
