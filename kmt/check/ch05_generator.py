"""Checkers for the exercises of chapter 5, "The occlusion-aware generator"."""

import functools

import keras
import numpy as np

from kmt import generator, warping
from kmt.check.core import Exercise, as_array, checker, compare_judge
from kmt.compile import compile_where_eager_compiles

__all__ = ["feature_warp", "encoder_shapes"]


def _compiled(fn):
    """``fn`` compiled on JAX, whose op-by-op mode would compile every primitive for every shape."""
    return compile_where_eager_compiles(fn)


_deform = _compiled(generator.deform_input)
_sample_aligned = _compiled(lambda f, g: warping.grid_sample(f, g, align_corners=True))
_sample_unaligned = _compiled(lambda f, g: warping.grid_sample(f, g, align_corners=False))
_sample_border = _compiled(lambda f, g: warping.grid_sample(f, g, padding_mode="border", align_corners=True))
_resize_like = _compiled(lambda features, deformation: warping.resize_bilinear(deformation, features.shape[1:3]))


def _grid_resize(deformation, size):
    """A bilinear resize with align_corners=True: sample the field at the aligned grid of ``size``."""
    grid = as_array(warping.make_coordinate_grid(size))[None]
    grid = np.repeat(grid, deformation.shape[0], axis=0).astype("float32")
    return as_array(_sample_border(deformation, grid))


def _nearest_resize(deformation, size):
    h, w = deformation.shape[1:3]
    rows = np.floor(np.arange(size[0]) * h / size[0]).astype(int)
    cols = np.floor(np.arange(size[1]) * w / size[1]).astype(int)
    return deformation[:, rows][:, :, cols]


def _sample(features, grid, align_corners=True):
    grid = np.asarray(grid, "float32")
    return as_array((_sample_aligned if align_corners else _sample_unaligned)(features, grid))


@functools.lru_cache(maxsize=None)
def _warp_cases():
    rng = np.random.default_rng(6)
    cases = []
    for batch, size, motion_size, channels in [
        (1, (8, 8), (8, 8), 3),
        (2, (8, 8), (16, 16), 4),
        (1, (12, 10), (6, 5), 2),
        (2, (6, 9), (12, 6), 1),
    ]:
        features = rng.random((batch,) + size + (channels,), dtype="float32")
        identity = as_array(warping.make_coordinate_grid(motion_size))[None]
        deformation = (identity + rng.normal(0, 0.25, (batch,) + motion_size + (2,))).astype("float32")
        expected = as_array(_deform(features, deformation)).astype("float64")
        label = f"features {features.shape}, deformation {deformation.shape}"
        cases.append((label, (features, deformation), expected))
    return cases


@checker("kmt.generator.deform_input")
def feature_warp():
    """Check ``candidate(features, deformation)``: warp a feature map by a dense motion of another size.

    ``features`` is ``(B, H, W, C)``, ``deformation`` ``(B, h, w, 2)`` of (x, y)
    in [-1, 1]; the answer is ``(B, H, W, C)``: the deformation resized to
    ``(H, W)`` bilinearly with half-pixel centres (``align_corners=False``, as
    ``kmt.warping.resize_bilinear``), then ``kmt.warping.grid_sample`` with its
    defaults (bilinear, zero padding, ``align_corners=True``), like
    :func:`kmt.generator.deform_input`.
    """
    cases = list(_warp_cases())  # the candidate gets copies of the arguments

    def resized(features, deformation):
        return as_array(_resize_like(features, deformation))

    hints = [
        (lambda f, d: _sample(f, _grid_resize(d, f.shape[1:3])),
         "resize the deformation with half-pixel centres (align_corners=False, kmt.warping.resize_bilinear), "
         "not with the corners aligned."),
        (lambda f, d: _sample(f, _nearest_resize(d, f.shape[1:3])),
         "resize the deformation bilinearly, not by taking the nearest row and column."),
        (lambda f, d: _sample(f, resized(f, d) * np.array([f.shape[2] / d.shape[2], f.shape[1] / d.shape[1]])),
         "the deformation holds normalised coordinates in [-1, 1], which do not depend on the resolution: "
         "resize it without multiplying its values by the scale factor (that is for flows in pixels)."),
        (lambda f, d: _sample(f, resized(f, d), align_corners=False),
         "sample with grid_sample's default align_corners=True, the convention of kmt's models."),
        (lambda f, d: _sample(f, resized(f, d)[..., ::-1]),
         "the last axis of the deformation holds (x, y), the order grid_sample expects: do not swap it."),
        (lambda f, d: _sample(f, d),
         "the warped features must have the features' size (H, W): resize the deformation to (H, W) first."),
    ]
    return Exercise("feature_warp", cases, compare_judge(1e-5, hints))


@functools.lru_cache(maxsize=None)
def _encoder_shapes_kmt(params, num_channels, image_size):
    """The shapes kmt's encoder produces, from a symbolic call of its blocks (nothing is computed)."""
    params = dict(params)
    model = generator.OcclusionAwareGenerator(
        num_channels=num_channels,
        num_kp=1,
        block_expansion=params["block_expansion"],
        max_features=params["max_features"],
        num_down_blocks=params["num_down_blocks"],
        num_bottleneck_blocks=0,
    )
    out = model.first(keras.KerasTensor((1,) + tuple(image_size) + (num_channels,)))
    shapes = [tuple(int(s) for s in out.shape[1:])]
    for block in model.down_blocks:
        out = block(out)
        shapes.append(tuple(int(s) for s in out.shape[1:]))
    return shapes


def _shapes_formula(params, num_channels, image_size, cap=True, shift=1, rounding=np.floor, swap=False):
    expansion, n = params["block_expansion"], params["num_down_blocks"]
    h, w = image_size
    shapes = [(h, w, expansion)]
    for i in range(n):
        h, w = int(rounding(h / 2)), int(rounding(w / 2))
        width = expansion * 2 ** (i + shift)
        shapes.append((h, w, min(params["max_features"], width) if cap else width))
    return [(s[1], s[0], s[2]) for s in shapes] if swap else shapes


def _as_shapes(value):
    shapes = [tuple(int(v) for v in shape) for shape in value]
    if any(len(shape) != 3 for shape in shapes):
        raise ValueError("each shape must be (height, width, channels)")
    return shapes


@checker()
def encoder_shapes():
    """Check ``candidate(generator_params, num_channels, image_size)``: the encoder's output shapes.

    ``generator_params`` is a config's ``generator_params`` dict (the keys
    ``block_expansion``, ``max_features``, ``num_down_blocks`` matter),
    ``image_size`` is ``(H, W)``; the answer is a list of ``(h, w, channels)``
    tuples, one after the first 7 x 7 block and one after each down block
    (the last is the shape the dense motion warps).
    """
    inputs = [
        ("synthetic-faces-64, 64 x 64", dict(block_expansion=32, max_features=256, num_down_blocks=2), 3, (64, 64)),
        ("vox-256, 256 x 256", dict(block_expansion=64, max_features=512, num_down_blocks=2), 3, (256, 256)),
        ("a capped config, 48 x 80", dict(block_expansion=16, max_features=32, num_down_blocks=3), 1, (48, 80)),
        ("odd sizes, 30 x 50", dict(block_expansion=8, max_features=64, num_down_blocks=2), 3, (30, 50)),
    ]
    hints = [
        (dict(cap=False), "the number of channels is capped at max_features: min(max_features, "
                          "block_expansion * 2**(i + 1)) after down block i."),
        (dict(shift=0), "down block i (counting from 0) outputs block_expansion * 2**(i + 1) channels: it "
                        "doubles the channels it receives."),
        (dict(rounding=np.ceil), "the 2 x 2 average pooling drops an odd last row or column: sizes are "
                                 "rounded down (h // 2)."),
        (dict(swap=True), "give each shape as (height, width, channels), NHWC order."),
    ]
    cases = [(label, (dict(params, num_bottleneck_blocks=3), channels, size),
              _encoder_shapes_kmt(tuple(sorted(params.items())), channels, size))
             for label, params, channels, size in inputs]

    def judge(args, expected, got):
        try:
            got = _as_shapes(got)
        except (TypeError, ValueError) as error:
            return f"expected a list of (height, width, channels) tuples, got {got!r} ({error})"
        if got == expected:
            return None
        params = {k: v for k, v in args[0].items() if k != "num_bottleneck_blocks"}
        problem = f"expected {expected}, got {got}"
        for variant, advice in hints:
            if got == _shapes_formula(params, args[1], args[2], **variant):
                return f"{problem}. Hint: {advice}"
        return problem

    return Exercise("encoder_shapes", cases, judge)
