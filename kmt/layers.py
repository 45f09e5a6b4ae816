"""Building blocks of every FOMM network, and the hourglass (chapter 2).

All layers take and return NHWC tensors ``(B, H, W, C)``. Each one mirrors a
block of the reference implementation (same arguments, same order of
operations, same parameters), so an official checkpoint maps onto it one
tensor at a time (see :mod:`kmt.convert`):

=====================  ==============================================  ==============
layer                  computes                                        resolution
=====================  ==============================================  ==============
:class:`SameBlock2d`   conv, BatchNorm, ReLU                           kept
:class:`DownBlock2d`   conv, BatchNorm, ReLU, 2 x 2 average pool       halved
:class:`UpBlock2d`     nearest x2, conv, BatchNorm, ReLU               doubled
:class:`ResBlock2d`    (BatchNorm, ReLU, conv) twice, plus the input   kept
:class:`Hourglass`     a U-Net of down and up blocks                   kept
=====================  ==============================================  ==============

Convolutions are initialised as PyTorch initialises ``nn.Conv2d`` (kernel and
bias uniform in ``+-1/sqrt(fan_in)``, :class:`TorchUniform`) and
:class:`BatchNorm` follows ``nn.BatchNorm2d`` (``eps = 1e-5``, running averages
with PyTorch's momentum 0.1, i.e. Keras ``momentum = 0.9``, and the unbiased
batch variance), so a model trained from scratch starts where the reference
starts. The anti-aliased downsampling used before the keypoint detector and
the dense motion network is :class:`kmt.warping.AntiAliasInterpolation2d`.

The blocks state what they compute; the faster ways to compute the same
function (BatchNorm folded into the convolution in inference, the upsampling
and convolution of :class:`UpBlock2d` as one phase convolution, PyTorch's
native channels-last convolution, bfloat16 convolutions) live in
:mod:`kmt.fast_layers`, and the blocks call them: :func:`~kmt.fast_layers.conv_norm_relu`
is ``relu(norm(conv(x)))``, whichever way it is computed.
"""

import math

import keras
import numpy as np
from keras import ops

from kmt import backend
from kmt.coordinates import hourglass_width
from kmt.fast_layers import (
    Conv2D,
    batch_norm_affine,
    batch_norm_relu,
    conv_nhwc,
    conv_norm_relu,
    convolution_dtype,
    fold_batch_norm,
    residual_conv_norm_relu,
    upsample_conv3x3,
    upsample_conv_norm_relu,
)
from kmt.warping import AntiAliasInterpolation2d

__all__ = [
    "TorchUniform",
    "conv2d",
    "int_pair",
    "check_channels",
    "feature_shape",
    "BatchNorm",
    "ConvNormBlock",
    "SameBlock2d",
    "DownBlock2d",
    "UpBlock2d",
    "ResBlock2d",
    "HourglassPart",
    "Encoder",
    "Decoder",
    "Hourglass",
    "AntiAliasInterpolation2d",
    # Computed in kmt.fast_layers, importable from here too.
    "Conv2D",
    "conv_nhwc",
    "convolution_dtype",
    "upsample_conv3x3",
    "batch_norm_affine",
    "fold_batch_norm",
]


def int_pair(value, name):
    """``(value, value)`` for an int, else ``value`` as a pair of ints; ``name`` is the argument named in errors."""
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise ValueError(f"`{name}` must be an int or a pair of ints; got {value!r}.")
    return value


@keras.saving.register_keras_serializable(package="kmt")
class TorchUniform(keras.initializers.Initializer):
    """Uniform values in ``[-bound, bound]``, drawn with NumPy.

    With ``bound = 1 / sqrt(fan_in)`` it is PyTorch's default initialisation of
    ``nn.Conv2d`` kernels and biases. Values come from NumPy (seeded by
    ``seed``, or by the global NumPy state that ``keras.utils.set_random_seed``
    sets), which costs nothing on any backend, where a backend random op
    would be compiled once per variable shape on JAX.
    """

    def __init__(self, bound, seed=None):
        self.bound = float(bound)
        self.seed = seed
        self.rng = np.random.default_rng(seed) if seed is not None else None

    def __call__(self, shape, dtype=None):
        rng = self.rng if self.rng is not None else np.random
        values = rng.uniform(-self.bound, self.bound, size=tuple(shape))
        return ops.convert_to_tensor(values, dtype=dtype or "float32")

    def get_config(self):
        return {"bound": self.bound, "seed": self.seed}


def conv2d(in_features, out_features, kernel_size, padding=0, name=None, dtype=None):
    """A :class:`Conv2D` equivalent to ``nn.Conv2d(in, out, kernel_size, padding=padding)``.

    ``padding`` is the number of zeros added on each side, as in PyTorch; it
    must be 0 (``"valid"``) or ``kernel_size // 2`` for an odd kernel
    (``"same"``). Kernel and bias are drawn uniformly from
    ``+-1/sqrt(in_features * kh * kw)``, PyTorch's default. ``dtype``: the
    layer's Keras dtype policy (default: the global one); the output heads of
    kmt's networks pass ``"float32"`` so that under a mixed policy keypoints,
    Jacobians, masks and predictions are still computed in float32.
    """
    kh, kw = int_pair(kernel_size, "kernel_size")
    ph, pw = int_pair(padding, "padding")
    if (ph, pw) == (0, 0):
        mode = "valid"
    elif (ph, pw) == (kh // 2, kw // 2) and kh % 2 == 1 and kw % 2 == 1:
        mode = "same"
    else:
        raise ValueError(
            f"`padding` must be 0 or kernel_size // 2 with an odd kernel; got padding "
            f"{(ph, pw)} for kernel_size {(kh, kw)}."
        )
    bound = 1.0 / math.sqrt(in_features * kh * kw)
    return Conv2D(
        out_features,
        (kh, kw),
        padding=mode,
        kernel_initializer=TorchUniform(bound),
        bias_initializer=TorchUniform(bound),
        name=name,
        dtype=dtype,
    )


def check_channels(layer, input_shape, expected):
    """Raise a ``ValueError`` naming ``layer`` if ``input_shape`` does not end with ``expected`` channels."""
    if input_shape is not None and input_shape[-1] is not None and input_shape[-1] != expected:
        raise ValueError(
            f"{type(layer).__name__} '{layer.name}' expects {expected} input channels "
            f"(last axis); got input shape {tuple(input_shape)}."
        )


def feature_shape(channels):
    """``(None, None, None, channels)``: the shape a block builds for, any batch and image size."""
    return (None, None, None, channels)


@keras.saving.register_keras_serializable(package="kmt")
class BatchNorm(keras.layers.BatchNormalization):
    """``nn.BatchNorm2d`` in Keras: ``eps = 1e-5``, Keras ``momentum = 0.9`` (PyTorch's 0.1).

    In training the batch is normalised with its biased variance and the
    running variance is updated with the unbiased one, as PyTorch does; the
    moments are computed in two passes (mean, then mean squared deviation),
    over the global batch when training on several devices, as the
    reference's ``SynchronizedBatchNorm2d`` does (``batch_moments`` of
    ``kmt/backend/<name>/training.py``). In inference it is ``keras.layers.BatchNormalization``.
    """

    def __init__(self, momentum=0.9, epsilon=1e-5, **kwargs):
        super().__init__(momentum=momentum, epsilon=epsilon, **kwargs)

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None:
            return super().call(inputs, training=training, mask=mask)
        x = ops.cast(inputs, "float32")
        # Over the global batch when training on several devices (SynchronizedBatchNorm2d in the reference).
        mean, variance, count = backend.load("training").batch_moments(x, self._reduction_axes)
        unbiased = variance * count / ops.maximum(count - 1.0, 1.0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + unbiased * (1.0 - self.momentum)
        )
        outputs = ops.batch_normalization(
            x, mean, variance, axis=self.axis, offset=self.beta, scale=self.gamma, epsilon=self.epsilon
        )
        return ops.cast(outputs, self.compute_dtype)


class ConvNormBlock(keras.layers.Layer):
    """What the conv + BatchNorm + ReLU blocks share: arguments, sublayers ``conv`` and ``norm``, config."""

    def __init__(self, in_features, out_features, kernel_size=3, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.kernel_size = int_pair(kernel_size, "kernel_size")
        self.padding = int_pair(padding, "padding")
        self.conv = conv2d(self.in_features, self.out_features, self.kernel_size, self.padding, name="conv")
        self.norm = BatchNorm(name="norm")

    def build(self, input_shape=None):
        check_channels(self, input_shape, self.in_features)
        self.conv.build(feature_shape(self.in_features))
        self.norm.build(feature_shape(self.out_features))

    def get_config(self):
        return {
            **super().get_config(),
            "in_features": self.in_features,
            "out_features": self.out_features,
            "kernel_size": self.kernel_size,
            "padding": self.padding,
        }


@keras.saving.register_keras_serializable(package="kmt")
class SameBlock2d(ConvNormBlock):
    """Conv, BatchNorm, ReLU: ``(B, H, W, in_features) -> (B, H, W, out_features)``."""

    def call(self, x, training=None):
        return conv_norm_relu(self.conv, self.norm, x, training)  # relu(norm(conv(x)))


@keras.saving.register_keras_serializable(package="kmt")
class DownBlock2d(ConvNormBlock):
    """Conv, BatchNorm, ReLU, 2 x 2 average pool: ``(B, H, W, in) -> (B, H//2, W//2, out)``."""

    def call(self, x, training=None):
        out = conv_norm_relu(self.conv, self.norm, x, training)  # relu(norm(conv(x)))
        return ops.average_pool(out, pool_size=2, strides=2, padding="valid")


@keras.saving.register_keras_serializable(package="kmt")
class UpBlock2d(ConvNormBlock):
    """Nearest x2 upsampling, conv, BatchNorm, ReLU: ``(B, H, W, in) -> (B, 2H, 2W, out)``.

    From 32 x 32 inputs up, the upsampling and the 3 x 3 convolution run as one
    :func:`~kmt.fast_layers.upsample_conv3x3` (the same numbers, about half the work).
    """

    def call(self, x, training=None):
        return upsample_conv_norm_relu(self.conv, self.norm, x, training)  # relu(norm(conv(upsample(x))))


@keras.saving.register_keras_serializable(package="kmt")
class ResBlock2d(keras.layers.Layer):
    """Pre-activation residual block: ``x + conv2(relu(bn2(conv1(relu(bn1(x))))))``.

    Keeps the shape ``(B, H, W, in_features)``.
    """

    def __init__(self, in_features, kernel_size=3, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.in_features = int(in_features)
        self.kernel_size = int_pair(kernel_size, "kernel_size")
        self.padding = int_pair(padding, "padding")
        n = self.in_features
        self.norm1 = BatchNorm(name="norm1")
        self.conv1 = conv2d(n, n, self.kernel_size, self.padding, name="conv1")
        self.norm2 = BatchNorm(name="norm2")
        self.conv2 = conv2d(n, n, self.kernel_size, self.padding, name="conv2")

    def build(self, input_shape=None):
        check_channels(self, input_shape, self.in_features)
        shape = feature_shape(self.in_features)
        for layer in (self.norm1, self.conv1, self.norm2, self.conv2):
            layer.build(shape)

    def call(self, x, training=None):
        out = batch_norm_relu(self.norm1, x, training)  # relu(norm1(x))
        out = residual_conv_norm_relu(self.conv1, self.norm2, out, training)  # relu(norm2(conv1(out)))
        return self.conv2(out) + x

    def get_config(self):
        return {
            **super().get_config(),
            "in_features": self.in_features,
            "kernel_size": self.kernel_size,
            "padding": self.padding,
        }


class HourglassPart(keras.layers.Layer):
    """The arguments and config shared by :class:`Encoder`, :class:`Decoder` and :class:`Hourglass`."""

    def __init__(self, block_expansion, in_features, num_blocks=3, max_features=256, **kwargs):
        super().__init__(**kwargs)
        self.block_expansion = int(block_expansion)
        self.in_features = int(in_features)
        self.num_blocks = int(num_blocks)
        self.max_features = int(max_features)

    def width(self, level):
        """Channels at ``level`` (0: the input resolution): ``min(max_features, block_expansion * 2**level)``."""
        return hourglass_width(self.block_expansion, self.max_features, level)

    def get_config(self):
        return {
            **super().get_config(),
            "block_expansion": self.block_expansion,
            "in_features": self.in_features,
            "num_blocks": self.num_blocks,
            "max_features": self.max_features,
        }


@keras.saving.register_keras_serializable(package="kmt")
class Encoder(HourglassPart):
    """The hourglass encoder: ``num_blocks`` :class:`DownBlock2d`, block ``i`` with ``width(i + 1)`` channels.

    ``call(x)`` returns the list ``[x, down_1, ..., down_n]`` of every
    resolution, input first; the decoder consumes it from the end.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        widths = [self.in_features] + [self.width(i + 1) for i in range(self.num_blocks)]
        self.down_blocks = [
            DownBlock2d(widths[i], widths[i + 1], 3, 1, name=f"down_block_{i}") for i in range(self.num_blocks)
        ]

    def build(self, input_shape=None):
        check_channels(self, input_shape, self.in_features)
        for block in self.down_blocks:
            block.build(feature_shape(block.in_features))

    def call(self, x, training=None):
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1], training=training))
        return outs


@keras.saving.register_keras_serializable(package="kmt")
class Decoder(HourglassPart):
    """The hourglass decoder: :class:`UpBlock2d` from the coarsest level up.

    Each step upsamples and concatenates ``[upsampled, skip]`` along channels,
    so the output has ``block_expansion + in_features`` channels
    (:attr:`out_filters`) at the input resolution.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.up_blocks = []
        for j, i in enumerate(reversed(range(self.num_blocks))):
            in_filters = (1 if i == self.num_blocks - 1 else 2) * self.width(i + 1)
            self.up_blocks.append(UpBlock2d(in_filters, self.width(i), 3, 1, name=f"up_block_{j}"))
        self.out_filters = self.block_expansion + self.in_features

    def build(self, input_shape=None):
        for block in self.up_blocks:
            block.build(feature_shape(block.in_features))

    def call(self, features, training=None):
        features = list(features)
        out = features.pop()
        for block in self.up_blocks:
            out = block(out, training=training)
            out = ops.concatenate([out, features.pop()], axis=-1)
        return out


@keras.saving.register_keras_serializable(package="kmt")
class Hourglass(HourglassPart):
    """U-Net of :class:`Encoder` and :class:`Decoder`: ``(B, H, W, in_features) -> (B, H, W, out_filters)``.

    ``out_filters = block_expansion + in_features``. ``H`` and ``W`` must be
    divisible by ``2**num_blocks``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        config = (self.block_expansion, self.in_features, self.num_blocks, self.max_features)
        self.encoder = Encoder(*config, name="encoder")
        self.decoder = Decoder(*config, name="decoder")
        self.out_filters = self.decoder.out_filters

    def build(self, input_shape=None):
        check_channels(self, input_shape, self.in_features)
        self.encoder.build(feature_shape(self.in_features))
        self.decoder.build()

    def call(self, x, training=None):
        factor = 2**self.num_blocks
        h, w = x.shape[1], x.shape[2]
        if (h is not None and h % factor) or (w is not None and w % factor):
            raise ValueError(
                f"Hourglass '{self.name}' with num_blocks={self.num_blocks} needs a height and "
                f"width divisible by {factor}; got input shape {tuple(x.shape)}."
            )
        return self.decoder(self.encoder(x, training=training), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.out_filters,)
