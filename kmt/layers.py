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

Three rewrites make inference faster and compute the same function (the
tests compare them with PyTorch): in inference (``training=False``) a
BatchNorm that follows a convolution is folded into its kernel and bias
(:func:`fold_batch_norm`) where the feature map outweighs the kernel; :class:`UpBlock2d` convolves the low-resolution
image once per output phase instead of the upsampled one
(:func:`upsample_conv3x3`); on the PyTorch backend convolutions skip the
layout copies of ``keras.ops.conv`` (:func:`conv_nhwc`).

Inside ``with convolution_dtype("bfloat16"):`` those convolutions run in
bfloat16 (inputs and kernels cast, results cast back to float32); everything
else stays float32. It trades about three significant digits for speed where
the CPU multiplies bfloat16 in hardware (oneDNN on TensorFlow's graph mode
and on PyTorch); it is for inference, not for training or parity.
"""

import contextlib
import math

import keras
import numpy as np
from keras import ops

from kmt import backend
from kmt.warping import AntiAliasInterpolation2d, upsample_nearest_2x

__all__ = [
    "TorchUniform",
    "conv_nhwc",
    "convolution_dtype",
    "Conv2D",
    "conv2d",
    "upsample_conv3x3",
    "BatchNorm",
    "batch_norm_affine",
    "fold_batch_norm",
    "SameBlock2d",
    "DownBlock2d",
    "UpBlock2d",
    "ResBlock2d",
    "Encoder",
    "Decoder",
    "Hourglass",
    "AntiAliasInterpolation2d",
]


def _pair(value, name):
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
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def __call__(self, shape, dtype=None):
        rng = self._rng if self._rng is not None else np.random
        values = rng.uniform(-self.bound, self.bound, size=tuple(shape))
        return ops.convert_to_tensor(values, dtype=dtype or "float32")

    def get_config(self):
        return {"bound": self.bound, "seed": self.seed}


_CONVOLUTION_DTYPES = ("float32", "bfloat16")
_convolution_dtype = "float32"


@contextlib.contextmanager
def convolution_dtype(dtype):
    """Run :func:`conv_nhwc` (every stride-1 convolution of kmt's networks) in ``dtype`` inside the block.

    ``dtype`` is ``"float32"`` (the default, exact) or ``"bfloat16"``. Compiled
    functions take the setting in force when they are traced, so trace them
    inside the block.
    """
    global _convolution_dtype
    if dtype not in _CONVOLUTION_DTYPES:
        raise ValueError(f"`dtype` must be one of {_CONVOLUTION_DTYPES}; got {dtype!r}.")
    previous, _convolution_dtype = _convolution_dtype, dtype
    try:
        yield
    finally:
        _convolution_dtype = previous


def conv_nhwc(x, kernel, padding="valid"):
    """``keras.ops.conv(x, kernel, padding=padding)`` for NHWC ``x``, HWIO ``kernel``, stride 1.

    On the PyTorch backend ``keras.ops.conv`` copies the input to channels-first
    and back for every convolution; there this calls ``torch.nn.functional.conv2d``
    on channels-last views of the same memory instead (``conv_nhwc`` of
    ``kmt.backend.torch.ops``: the same numbers, tested equal). Elsewhere it is
    ``keras.ops.conv``. Under
    :func:`convolution_dtype` the product is taken in that dtype.
    """
    if _convolution_dtype != "float32":
        out_dtype = x.dtype
        low = _conv_nhwc(ops.cast(x, _convolution_dtype), ops.cast(kernel, _convolution_dtype), padding)
        return ops.cast(low, out_dtype)
    return _conv_nhwc(x, kernel, padding)


def _conv_nhwc(x, kernel, padding):
    native = backend.load("ops").conv_nhwc
    if native is not None:
        return native(x, kernel, padding)
    return ops.conv(x, kernel, padding=padding)


@keras.saving.register_keras_serializable(package="kmt")
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` whose stride-1 NHWC convolutions run through :func:`conv_nhwc`."""

    def convolution_op(self, inputs, kernel):
        plain = (
            tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and self.groups == 1
            and self.data_format == "channels_last"
        )
        if plain:
            return conv_nhwc(inputs, kernel, self.padding)
        return super().convolution_op(inputs, kernel)


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
    kh, kw = _pair(kernel_size, "kernel_size")
    ph, pw = _pair(padding, "padding")
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


def _check_channels(layer, input_shape, expected):
    if input_shape is not None and input_shape[-1] is not None and input_shape[-1] != expected:
        raise ValueError(
            f"{type(layer).__name__} '{layer.name}' expects {expected} input channels "
            f"(last axis); got input shape {tuple(input_shape)}."
        )


def _feature_shape(channels):
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


def batch_norm_affine(norm):
    """Inference BatchNorm as ``x * scale + shift``: ``scale = gamma / sqrt(var + eps)``, ``shift = beta - mean * scale``.

    Computed in float32, returned in the layer's compute dtype (16 bits under a mixed precision policy).
    """
    gamma, beta, mean, variance = (ops.cast(v, "float32") for v in
                                   (norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance))
    scale = gamma * ops.rsqrt(variance + norm.epsilon)
    return ops.cast(scale, norm.compute_dtype), ops.cast(beta - mean * scale, norm.compute_dtype)


def fold_batch_norm(conv, norm):
    """Kernel and bias of ``conv`` followed by inference-mode ``norm``, as one convolution.

    ``norm(conv(x)) = conv(x, kernel * scale) + (bias - mean) * scale + beta``
    with ``scale = gamma / sqrt(var + eps)``: one pass over the output instead of two.
    """
    scale, shift = batch_norm_affine(norm)
    return conv.kernel * scale, conv.bias * scale + shift


def _batch_statistics(norm, training):
    return bool(training) and norm.trainable


def _folding_pays(x, conv):
    # A folded kernel is a new kernel-sized tensor every call: worth it when the feature map the
    # BatchNorm would otherwise rescale is the larger of the two (not at the coarse, wide levels).
    h, w = x.shape[1:3]
    kh, kw, cin, _ = conv.kernel.shape
    return h is not None and w is not None and h * w >= kh * kw * cin


# Row (or column) weights of the two output phases of "nearest x2 then 3-tap conv": output row 2i
# reads low-resolution rows i-1 (tap 0) and i (taps 1 + 2); row 2i + 1 reads rows i (taps 0 + 1)
# and i + 1 (tap 2). Indexed [phase, low-resolution tap, kernel tap].
_PHASE_TAPS = np.array([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]], "float32")


def upsample_conv3x3(x, kernel):
    """``conv(upsample_nearest_2x(x), kernel)`` ("same" 3 x 3, no bias) without the upsampled image.

    Every output pixel of a 3 x 3 convolution of a nearest-upsampled image
    reads only a 2 x 2 block of ``x``: which block, and which kernel taps add
    up, depends on the pixel's phase (its row and column parity). So the four
    phases are one 2 x 2 convolution of ``x`` with ``4 * out`` channels,
    interleaved afterwards: 16 instead of 36 multiply-adds per input pixel and
    channel pair, and no 4x larger intermediate image. ``x`` is
    ``(B, H, W, in)``, ``kernel`` ``(3, 3, in, out)``; returns ``(B, 2H, 2W, out)``.
    """
    h, w, cin = x.shape[1:]
    cout = kernel.shape[-1]
    taps = ops.convert_to_tensor(_PHASE_TAPS, dtype=kernel.dtype)
    phase_kernels = ops.einsum("aph,bqw,hwio->pqiabo", taps, taps, kernel)
    phase_kernels = ops.reshape(phase_kernels, (2, 2, cin, 4 * cout))
    padded = ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    phases = conv_nhwc(padded, phase_kernels, padding="valid")  # (B, H + 1, W + 1, 4 * out)
    phases = ops.reshape(phases, (-1, h + 1, w + 1, 2, 2, cout))
    rows = [ops.stack([phases[:, a:a + h, b:b + w, a, b] for b in (0, 1)], axis=3) for a in (0, 1)]
    return ops.reshape(ops.stack(rows, axis=2), (-1, 2 * h, 2 * w, cout))


def _worth_phases(x):
    # Below ~32 x 32 inputs the kernels outweigh the pixels, and the 16/9 larger phase kernels cost
    # more than the multiply-adds they save.
    h, w = x.shape[1:3]
    return h is not None and w is not None and h * w >= 1024


class _ConvNormBlock(keras.layers.Layer):
    """Shared plumbing of the conv + BatchNorm + ReLU blocks."""

    def __init__(self, in_features, out_features, kernel_size=3, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.padding = _pair(padding, "padding")
        self.conv = conv2d(self.in_features, self.out_features, self.kernel_size, self.padding, name="conv")
        self.norm = BatchNorm(name="norm")

    def build(self, input_shape=None):
        _check_channels(self, input_shape, self.in_features)
        self.conv.build(_feature_shape(self.in_features))
        self.norm.build(_feature_shape(self.out_features))

    def _conv_norm_relu(self, x, training, convolution=None):
        """``relu(norm(convolution(x, kernel) + bias))``; in inference BatchNorm is folded into the kernel."""
        convolution = convolution or self.conv.convolution_op
        if _batch_statistics(self.norm, training):
            out = convolution(x, self.conv.kernel) + self.conv.bias
            return ops.relu(self.norm(out, training=training))
        if not _folding_pays(x, self.conv):
            scale, shift = batch_norm_affine(self.norm)
            return ops.relu((convolution(x, self.conv.kernel) + self.conv.bias) * scale + shift)
        kernel, bias = fold_batch_norm(self.conv, self.norm)
        return ops.relu(convolution(x, kernel) + bias)

    def get_config(self):
        return {
            **super().get_config(),
            "in_features": self.in_features,
            "out_features": self.out_features,
            "kernel_size": self.kernel_size,
            "padding": self.padding,
        }


@keras.saving.register_keras_serializable(package="kmt")
class SameBlock2d(_ConvNormBlock):
    """Conv, BatchNorm, ReLU: ``(B, H, W, in_features) -> (B, H, W, out_features)``."""

    def call(self, x, training=None):
        return self._conv_norm_relu(x, training)


@keras.saving.register_keras_serializable(package="kmt")
class DownBlock2d(_ConvNormBlock):
    """Conv, BatchNorm, ReLU, 2 x 2 average pool: ``(B, H, W, in) -> (B, H//2, W//2, out)``."""

    def call(self, x, training=None):
        out = self._conv_norm_relu(x, training)
        return ops.average_pool(out, pool_size=2, strides=2, padding="valid")


@keras.saving.register_keras_serializable(package="kmt")
class UpBlock2d(_ConvNormBlock):
    """Nearest x2 upsampling, conv, BatchNorm, ReLU: ``(B, H, W, in) -> (B, 2H, 2W, out)``.

    From 32 x 32 inputs up, the upsampling and the 3 x 3 convolution run as one
    :func:`upsample_conv3x3` (the same numbers, about half the work).
    """

    def call(self, x, training=None):
        if self.kernel_size == (3, 3) and self.padding == (1, 1) and _worth_phases(x):
            return self._conv_norm_relu(x, training, upsample_conv3x3)
        return self._conv_norm_relu(upsample_nearest_2x(x), training)


@keras.saving.register_keras_serializable(package="kmt")
class ResBlock2d(keras.layers.Layer):
    """Pre-activation residual block: ``x + conv2(relu(bn2(conv1(relu(bn1(x))))))``.

    Keeps the shape ``(B, H, W, in_features)``.
    """

    def __init__(self, in_features, kernel_size=3, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.in_features = int(in_features)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.padding = _pair(padding, "padding")
        n = self.in_features
        self.norm1 = BatchNorm(name="norm1")
        self.conv1 = conv2d(n, n, self.kernel_size, self.padding, name="conv1")
        self.norm2 = BatchNorm(name="norm2")
        self.conv2 = conv2d(n, n, self.kernel_size, self.padding, name="conv2")

    def build(self, input_shape=None):
        _check_channels(self, input_shape, self.in_features)
        shape = _feature_shape(self.in_features)
        for layer in (self.norm1, self.conv1, self.norm2, self.conv2):
            layer.build(shape)

    def call(self, x, training=None):
        if _batch_statistics(self.norm1, training):
            out = self.norm1(x, training=training)
        else:
            scale, shift = batch_norm_affine(self.norm1)
            out = x * scale + shift
        out = ops.relu(out)
        if _batch_statistics(self.norm2, training) or not _folding_pays(out, self.conv1):
            out = ops.relu(self.norm2(self.conv1(out), training=training))
        else:  # BatchNorm folded into conv1 (see fold_batch_norm)
            kernel, bias = fold_batch_norm(self.conv1, self.norm2)
            out = ops.relu(self.conv1.convolution_op(out, kernel) + bias)
        return self.conv2(out) + x

    def get_config(self):
        return {
            **super().get_config(),
            "in_features": self.in_features,
            "kernel_size": self.kernel_size,
            "padding": self.padding,
        }


class _HourglassPart(keras.layers.Layer):
    """The arguments and config shared by :class:`Encoder`, :class:`Decoder` and :class:`Hourglass`."""

    def __init__(self, block_expansion, in_features, num_blocks=3, max_features=256, **kwargs):
        super().__init__(**kwargs)
        self.block_expansion = int(block_expansion)
        self.in_features = int(in_features)
        self.num_blocks = int(num_blocks)
        self.max_features = int(max_features)

    def width(self, level):
        """Channels at ``level`` (0: the input resolution): ``min(max_features, block_expansion * 2**level)``."""
        return min(self.max_features, self.block_expansion * 2**level)

    def get_config(self):
        return {
            **super().get_config(),
            "block_expansion": self.block_expansion,
            "in_features": self.in_features,
            "num_blocks": self.num_blocks,
            "max_features": self.max_features,
        }


@keras.saving.register_keras_serializable(package="kmt")
class Encoder(_HourglassPart):
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
        _check_channels(self, input_shape, self.in_features)
        for block in self.down_blocks:
            block.build(_feature_shape(block.in_features))

    def call(self, x, training=None):
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1], training=training))
        return outs


@keras.saving.register_keras_serializable(package="kmt")
class Decoder(_HourglassPart):
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
            block.build(_feature_shape(block.in_features))

    def call(self, features, training=None):
        features = list(features)
        out = features.pop()
        for block in self.up_blocks:
            out = block(out, training=training)
            out = ops.concatenate([out, features.pop()], axis=-1)
        return out


@keras.saving.register_keras_serializable(package="kmt")
class Hourglass(_HourglassPart):
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
        _check_channels(self, input_shape, self.in_features)
        self.encoder.build(_feature_shape(self.in_features))
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
