"""Chapter 8's checkers accept right answers and explain typical wrong ones."""

import numpy as np

from kmt import animation, check, metrics


def unguarded(checker, candidate):
    """Run a checker without disabling the kmt functions its exercise re-implements: kmt itself is the right answer."""
    return check.check_candidate(checker.exercise(), candidate)


def test_movement_scale():
    def right(source, initial):
        return np.sqrt(animation.convex_hull_area(source) / animation.convex_hull_area(initial))

    assert check.movement_scale(right)
    report = check.movement_scale(lambda s, i: right(s, i) ** 2)
    assert not report and "take its square root" in str(report)
    report = check.movement_scale(lambda s, i: 1 / right(s, i))
    assert "upside down" in str(report)


def test_relative_keypoints():
    assert check.relative_keypoints(lambda s, d, i: s + (d - i))
    report = check.relative_keypoints(lambda s, d, i: d)
    assert not report and "absolute mode" in str(report)
    assert "raised" in str(check.relative_keypoints(lambda s, d, i: undefined_name))  # noqa: F821


def test_keypoint_metrics():
    def right(g, t, fg, ft, size):
        return (metrics.average_keypoint_distance(g, t, size, fg, ft), metrics.missing_keypoint_rate(fg, ft))

    assert unguarded(check.keypoint_metrics, right)
    report = unguarded(check.keypoint_metrics, lambda g, t, fg, ft, size: (metrics.average_keypoint_distance(g, t, size),
                                                                metrics.missing_keypoint_rate(fg, ft)))
    assert not report and "found in both frames" in str(report)
