"""The chapter 5 checkers accept right answers, reject wrong ones and explain why in words."""

import numpy as np
from keras import ops

from helpers import compiled
from kmt import check
from kmt.generator import deform_input
from kmt.warping import grid_sample, resize_bilinear


def unguarded(checker, candidate):
    """Run a checker without disabling the kmt functions its exercise re-implements: kmt itself is the right answer."""
    return check.check_candidate(checker.exercise(), candidate)


def right_shapes(params, num_channels, image_size):
    (h, w), expansion = image_size, params["block_expansion"]
    shapes = [(h, w, expansion)]
    for i in range(params["num_down_blocks"]):
        h, w = h // 2, w // 2
        shapes.append((h, w, min(params["max_features"], expansion * 2 ** (i + 1))))
    return shapes


def test_feature_warp_accepts_deform_input_and_explains_mistakes():
    report = unguarded(check.feature_warp, compiled(deform_input))
    assert report and str(report) == "feature_warp: all 4 cases pass."
    report = unguarded(check.feature_warp, compiled(lambda f, d: deform_input(f, d, align_corners=False)))
    assert not report and "align_corners=True" in str(report)
    report = check.feature_warp(compiled(lambda f, d: grid_sample(f, d)))
    assert report.passed == 1 and "resize the deformation to (H, W) first" in str(report)


def test_feature_warp_hints_that_positions_are_not_rescaled():
    def scaled(features, deformation):
        factor = np.array([features.shape[2] / deformation.shape[2], features.shape[1] / deformation.shape[1]])
        factor = ops.convert_to_tensor(factor.astype("float32"))
        return grid_sample(features, resize_bilinear(deformation, features.shape[1:3]) * factor)

    report = check.feature_warp(compiled(scaled))
    assert not report and "without multiplying its values by the scale factor" in str(report)


def test_encoder_shapes():
    report = check.encoder_shapes(right_shapes)
    assert report and report.score == 1.0
    report = check.encoder_shapes(lambda p, c, s: right_shapes(dict(p, max_features=10**6), c, s))
    assert report.passed == 3 and "capped at max_features" in str(report)
    assert "expected [(48, 80, 16), (24, 40, 32), (12, 20, 32), (6, 10, 32)]" in str(report)
    report = check.encoder_shapes(lambda p, c, s: [(w, h, ch) for h, w, ch in right_shapes(p, c, s)])
    assert "(height, width, channels), NHWC order" in str(report)
    report = check.encoder_shapes(lambda p, c, s: 3)
    assert report.score == 0.0 and "expected a list of (height, width, channels) tuples" in str(report)
    report = check.encoder_shapes(lambda p, c, s: p["missing"])
    assert "your function raised KeyError" in str(report)
