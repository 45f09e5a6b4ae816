"""Checkers for the exercises of chapter 8, "Animation and evaluation"."""

import numpy as np

from kmt import animation, metrics
from kmt.check.core import Exercise, as_array, checker, compare_judge

__all__ = ["movement_scale", "relative_keypoints", "keypoint_metrics"]


def _number(got):
    return np.asarray(as_array(got), "float64").reshape(())


def _keypoints(rng, *shape):
    return rng.uniform(-0.8, 0.8, shape + (2,)).astype("float32")


@checker("kmt.animation.normalize_kp")
def movement_scale():
    """Check ``candidate(kp_source, kp_driving_initial)``: the adapt-movement-scale factor.

    Both are ``(K, 2)`` keypoints; the answer is ``sqrt(area_S / area_D)`` with the areas of
    their convex hulls.
    """
    rng = np.random.default_rng(7)
    cases = []
    for k in (4, 6, 10):
        source, initial = _keypoints(rng, k), 0.6 * _keypoints(rng, k)
        expected = np.sqrt(animation.convex_hull_area(source) / animation.convex_hull_area(initial))
        cases.append((f"{k} keypoints", (source, initial), np.asarray(expected)))
    square = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]], "float32")
    cases.append(("a square and the same square doubled", (square, 2 * square), np.asarray(0.5)))

    def squared(source, initial):
        return animation.convex_hull_area(source) / animation.convex_hull_area(initial)

    def inverted(source, initial):
        return np.sqrt(animation.convex_hull_area(initial) / animation.convex_hull_area(source))

    def bounding_box(source, initial):
        def box(p):
            return np.ptp(p[:, 0]) * np.ptp(p[:, 1])

        return np.sqrt(box(np.asarray(source)) / box(np.asarray(initial)))

    hints = [
        (squared, "that is the ratio of the areas; the factor scales lengths, so take its square root."),
        (inverted, "the ratio is upside down: a smaller source must move less, so source area over driving area."),
        (bounding_box, "that is the bounding box; the reference uses the convex hull of the keypoints."),
    ]
    return Exercise("movement_scale", cases, compare_judge(1e-5, hints, convert=_number, what="a number"))


@checker("kmt.animation.normalize_kp")
def relative_keypoints():
    """Check ``candidate(kp_source, kp_driving, kp_initial)``: relative keypoint values.

    ``kp_source`` and ``kp_initial`` are ``(1, K, 2)``, ``kp_driving`` ``(T, K, 2)``; the
    answer moves the source keypoints by the driving displacement since the initial frame.
    """
    rng = np.random.default_rng(8)
    cases = []
    for t, k in ((1, 4), (5, 10)):
        source, initial, driving = _keypoints(rng, 1, k), _keypoints(rng, 1, k), _keypoints(rng, t, k)
        expected = as_array(animation.normalize_kp({"value": source}, {"value": driving}, {"value": initial},
                                                   use_relative_movement=True)["value"])
        cases.append((f"{t} frames of {k} keypoints", (source, driving, initial), expected))
    hints = [
        (lambda s, d, i: d - i, "add the displacement to the source keypoints."),
        (lambda s, d, i: s - (d - i), "the displacement is driving minus initial, added (not subtracted)."),
        (lambda s, d, i: d, "that is absolute mode: the driving keypoints themselves."),
    ]
    return Exercise("relative_keypoints", cases, compare_judge(1e-6, hints))


@checker("kmt.metrics.average_keypoint_distance", "kmt.metrics.missing_keypoint_rate", "kmt.metrics.keypoint_distances")
def keypoint_metrics():
    """Check ``candidate(generated, target, generated_found, target_found, image_size)`` -> ``(akd, mkr)``.

    Keypoints ``(N, K, 2)`` in [-1, 1], found flags ``(N, K)`` booleans; AKD in pixels over
    keypoints found in both frames, MKR the fraction of keypoints found in the target and not
    in the generated frame.
    """
    rng = np.random.default_rng(9)
    cases = []
    for n, k, size in ((2, 3, (8, 8)), (4, 5, (16, 32))):
        generated, target = _keypoints(rng, n, k), _keypoints(rng, n, k)
        found_g, found_t = rng.random((n, k)) > 0.3, rng.random((n, k)) > 0.2
        akd = metrics.average_keypoint_distance(generated, target, size, found_g, found_t)
        mkr = metrics.missing_keypoint_rate(found_g, found_t)
        cases.append((f"{n} frames of {k} keypoints, {size[0]}x{size[1]} pixels",
                      (generated, target, found_g, found_t, size), np.array([akd, mkr])))

    def all_counted(g, t, fg, ft, size):
        return np.array([metrics.average_keypoint_distance(g, t, size), metrics.missing_keypoint_rate(fg, ft)])

    def normalised_units(g, t, fg, ft, size):
        both = np.asarray(fg) & np.asarray(ft)
        distance = np.linalg.norm(np.asarray(g) - np.asarray(t), axis=-1)
        return np.array([distance[both].mean(), metrics.missing_keypoint_rate(fg, ft)])

    hints = [
        (all_counted, "AKD counts only keypoints found in both frames."),
        (normalised_units, "AKD is in pixels: scale x by (W - 1) / 2 and y by (H - 1) / 2 first."),
    ]
    def pair(got):
        return np.asarray(as_array(got), "float64").reshape(2)

    return Exercise("keypoint_metrics", cases, compare_judge(1e-5, hints, convert=pair, what="a pair (akd, mkr)"))
