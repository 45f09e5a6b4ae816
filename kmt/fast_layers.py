"""Faster ways to compute the blocks of :mod:`kmt.layers`: the same functions, less work.

:mod:`kmt.layers` states what each block computes (conv, BatchNorm, ReLU, ...);
this module holds the rewrites that make them faster without changing the
result (the tests compare both with PyTorch):

* :func:`conv_norm_relu` and :func:`residual_conv_norm_relu`: in inference
  (``training=False``) a BatchNorm that follows a convolution is folded into its
  kernel and bias (:func:`fold_batch_norm`) where the feature map outweighs the
  kernel (:func:`folding_pays`), and applied as ``x * scale + shift``
  (:func:`batch_norm_affine`) elsewhere;
* :func:`upsample_conv_norm_relu`: nearest x2 upsampling followed by a 3 x 3
  convolution is one convolution of the low-resolution image per output phase
  (:func:`upsample_conv3x3`), from 32 x 32 inputs up (:func:`phases_pay`);
* :class:`Conv2D` and :func:`conv_nhwc`: on the PyTorch backend convolutions skip
  the layout copies of ``keras.ops.conv`` (the ``conv_nhwc`` of ``kmt/backend/torch/ops.py``).

Inside ``with convolution_dtype("bfloat16"):`` those convolutions run in
bfloat16 (inputs and kernels cast, results cast back to float32); everything
else stays float32. It trades about three significant digits for speed where
the CPU multiplies bfloat16 in hardware (oneDNN on TensorFlow's graph mode and
on PyTorch); it is for inference, not for training or parity.

All tensors are NHWC ``(B, H, W, C)``; kernels are HWIO ``(kh, kw, in, out)``.
"""

import contextlib

import keras
import numpy as np
from keras import ops

from kmt import backend
from kmt.warping import upsample_nearest_2x

__all__ = [
    "CONVOLUTION_DTYPES",
    "convolution_dtype",
    "current_convolution_dtype",
    "conv_nhwc",
    "Conv2D",
    "batch_norm_affine",
    "fold_batch_norm",
    "batch_statistics",
    "folding_pays",
    "phases_pay",
    "upsample_conv3x3",
    "batch_norm_relu",
    "conv_norm_relu",
    "residual_conv_norm_relu",
    "upsample_conv_norm_relu",
]

CONVOLUTION_DTYPES = ("float32", "bfloat16")
_state = {"convolution_dtype": "float32"}


@contextlib.contextmanager
def convolution_dtype(dtype):
    """Run :func:`conv_nhwc` (every stride-1 convolution of kmt's networks) in ``dtype`` inside the block.

    ``dtype`` is ``"float32"`` (the default, exact) or ``"bfloat16"``. Compiled
    functions take the setting in force when they are traced, so trace them
    inside the block.
    """
    if dtype not in CONVOLUTION_DTYPES:
        raise ValueError(f"`dtype` must be one of {CONVOLUTION_DTYPES}; got {dtype!r}.")
    previous, _state["convolution_dtype"] = _state["convolution_dtype"], dtype
    try:
        yield
    finally:
        _state["convolution_dtype"] = previous


def current_convolution_dtype():
    """The dtype :func:`conv_nhwc` multiplies in now: ``"float32"`` unless inside :func:`convolution_dtype`."""
    return _state["convolution_dtype"]


def conv_nhwc(x, kernel, padding="valid"):
    """``keras.ops.conv(x, kernel, padding=padding)`` for NHWC ``x``, HWIO ``kernel``, stride 1.

    On the PyTorch backend ``keras.ops.conv`` copies the input to channels-first
    and back for every convolution; there this calls ``torch.nn.functional.conv2d``
    on channels-last views of the same memory instead (``conv_nhwc`` of
    ``kmt.backend.torch.ops``: the same numbers, tested equal). Elsewhere it is
    ``keras.ops.conv``. Under
    :func:`convolution_dtype` the product is taken in that dtype.
    """
    dtype = current_convolution_dtype()
    if dtype != "float32":
        out_dtype = x.dtype
        low = _native_conv(ops.cast(x, dtype), ops.cast(kernel, dtype), padding)
        return ops.cast(low, out_dtype)
    return _native_conv(x, kernel, padding)


def _native_conv(x, kernel, padding):
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


def batch_statistics(norm, training):
    """Whether BatchNorm ``norm`` normalises with the batch's statistics (training a trainable layer)."""
    return bool(training) and norm.trainable


def folding_pays(x, conv):
    """Whether folding a BatchNorm into ``conv`` is cheaper for input ``x`` than rescaling its output.

    A folded kernel is a new kernel-sized tensor every call: worth it when the
    feature map the BatchNorm would otherwise rescale is the larger of the two
    (not at the coarse, wide levels): ``H * W >= kh * kw * in``.
    """
    h, w = x.shape[1:3]
    kh, kw, cin, _ = conv.kernel.shape
    return h is not None and w is not None and h * w >= kh * kw * cin


def phases_pay(x):
    """Whether :func:`upsample_conv3x3` is faster than upsampling then convolving ``x``: from 32 x 32 pixels up.

    Below about 32 x 32 inputs the kernels outweigh the pixels, and the 16/9
    larger phase kernels cost more than the multiply-adds they save.
    """
    h, w = x.shape[1:3]
    return h is not None and w is not None and h * w >= 1024


# Row (or column) weights of the two output phases of "nearest x2 then 3-tap conv": output row 2i
# reads low-resolution rows i-1 (tap 0) and i (taps 1 + 2); row 2i + 1 reads rows i (taps 0 + 1)
# and i + 1 (tap 2). Indexed [phase, low-resolution tap, kernel tap].
PHASE_TAPS = np.array([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]], "float32")


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
    taps = ops.convert_to_tensor(PHASE_TAPS, dtype=kernel.dtype)
    phase_kernels = ops.einsum("aph,bqw,hwio->pqiabo", taps, taps, kernel)
    phase_kernels = ops.reshape(phase_kernels, (2, 2, cin, 4 * cout))
    padded = ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    phases = conv_nhwc(padded, phase_kernels, padding="valid")  # (B, H + 1, W + 1, 4 * out)
    phases = ops.reshape(phases, (-1, h + 1, w + 1, 2, 2, cout))
    rows = [ops.stack([phases[:, a:a + h, b:b + w, a, b] for b in (0, 1)], axis=3) for a in (0, 1)]
    return ops.reshape(ops.stack(rows, axis=2), (-1, 2 * h, 2 * w, cout))


def batch_norm_relu(norm, x, training=None):
    """``relu(norm(x))``; in inference the BatchNorm is applied as ``x * scale + shift`` (:func:`batch_norm_affine`)."""
    if batch_statistics(norm, training):
        out = norm(x, training=training)
    else:
        scale, shift = batch_norm_affine(norm)
        out = x * scale + shift
    return ops.relu(out)


def conv_norm_relu(conv, norm, x, training=None, convolution=None):
    """``relu(norm(convolution(x, kernel) + bias))`` for a convolution layer ``conv`` and a BatchNorm ``norm``.

    ``convolution(x, kernel)`` defaults to ``conv.convolution_op``; another
    function of the same kernel (:func:`upsample_conv3x3`) may replace it. In
    training with batch statistics this is literally the formula; in inference
    the BatchNorm is folded into the kernel and bias (:func:`fold_batch_norm`)
    where that pays (:func:`folding_pays`), else applied as an affine map.
    """
    convolution = convolution or conv.convolution_op
    if batch_statistics(norm, training):
        out = convolution(x, conv.kernel) + conv.bias
        return ops.relu(norm(out, training=training))
    if not folding_pays(x, conv):
        scale, shift = batch_norm_affine(norm)
        return ops.relu((convolution(x, conv.kernel) + conv.bias) * scale + shift)
    kernel, bias = fold_batch_norm(conv, norm)
    return ops.relu(convolution(x, kernel) + bias)


def residual_conv_norm_relu(conv, norm, x, training=None):
    """``relu(norm(conv(x)))`` as the residual block computes it: the layers called, or BatchNorm folded.

    Unlike :func:`conv_norm_relu`, where folding does not pay the two layers are
    simply called (``keras.layers.BatchNormalization`` in inference).
    """
    if batch_statistics(norm, training) or not folding_pays(x, conv):
        return ops.relu(norm(conv(x), training=training))
    kernel, bias = fold_batch_norm(conv, norm)
    return ops.relu(conv.convolution_op(x, kernel) + bias)


def upsample_conv_norm_relu(conv, norm, x, training=None):
    """``relu(norm(conv(upsample_nearest_2x(x))))``: ``(B, H, W, in) -> (B, 2H, 2W, out)``.

    For a 3 x 3 "same" convolution on inputs of 32 x 32 pixels and more
    (:func:`phases_pay`), the upsampling and the convolution run as one
    :func:`upsample_conv3x3` (the same numbers, about half the work).
    """
    same_3x3 = tuple(conv.kernel_size) == (3, 3) and conv.padding == "same"
    if same_3x3 and phases_pay(x):
        return conv_norm_relu(conv, norm, x, training, upsample_conv3x3)
    return conv_norm_relu(conv, norm, upsample_nearest_2x(x), training)
