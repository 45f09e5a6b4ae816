"""Checkers for the exercises of chapter 9, "Real videos, your data, the official weights"."""

import math

import numpy as np

from kmt.check.core import Exercise, as_array, checker, compare_judge
from kmt.crop import clip_box
from kmt.data.dataset import video_id

__all__ = ["square_box", "pixels_to_normalized", "identity_split"]


def _floats(got):
    return np.asarray(as_array(got), "float64")


@checker("kmt.crop.clip_box")
def square_box():
    """Check ``candidate(box, frame_shape, increase)``: a face box made square, grown and kept in the frame.

    ``box`` is ``(left, top, right, bottom)`` in pixels (right and bottom excluded),
    ``frame_shape`` is ``(height, width)``; the answer is the square of side
    ``ceil((1 + 2 * increase) * max(width, height))`` centred on the box, shifted to lie
    inside the frame, as :func:`kmt.crop.clip_box` computes it.
    """
    inputs = [
        ("a tall box in the middle of a 176x144 frame", (40, 30, 80, 90), (144, 176), 0.1),
        ("a box at the top-left corner", (2, 3, 42, 43), (100, 120), 0.25),
        ("a box at the bottom-right corner", (90, 60, 118, 98), (100, 120), 0.1),
        ("a wide box, no increase", (10, 20, 50, 30), (64, 64), 0.0),
        ("a large increase", (60, 40, 100, 96), (144, 176), 0.5),
        ("a box at the left edge", (5, 50, 45, 80), (144, 176), 0.2),
    ]
    cases = [(text, (box, shape, increase), np.asarray(clip_box([box], shape, increase), "float64"))
             for text, box, shape, increase in inputs]

    def centred(box, shape, increase, grow=2, longer=max, shift=True):
        left, top, right, bottom = box
        side = math.ceil((1 + grow * increase) * longer(right - left, bottom - top))
        x0, y0 = round((left + right - side) / 2), round((top + bottom - side) / 2)
        if shift:
            x0 = min(max(x0, 0), shape[1] - side)
            y0 = min(max(y0, 0), shape[0] - side)
        return np.array([x0, y0, x0 + side, y0 + side], "float64")

    def not_square(box, shape, increase):
        left, top, right, bottom = box
        dx, dy = increase * (right - left), increase * (bottom - top)
        return np.array([left - dx, top - dy, right + dx, bottom + dy])

    hints = [
        (lambda b, s, i: centred(b, s, i, shift=False),
         "the square leaves the frame: shift it (without resizing) so that 0 <= left, top and right <= width, "
         "bottom <= height."),
        (lambda b, s, i: centred(b, s, i, grow=1),
         "the box grows by `increase` of its size on EACH side: the side is (1 + 2 * increase) * max(w, h)."),
        (lambda b, s, i: centred(b, s, i, longer=min),
         "the square must hold the whole box: take the longer of its width and height."),
        (not_square, "the box grew but is not square: both sides must be (1 + 2 * increase) * max(w, h)."),
    ]
    return Exercise("square_box", cases, compare_judge(0.5, hints, convert=_floats, what="four numbers"))


def _normalized(points, size):
    """Pixel (x, y) -> kmt's [-1, 1], the mapping of :class:`kmt.face_evaluators.FaceEvaluators`."""
    height, width = size
    return 2.0 * np.asarray(points, "float64") / np.array([width - 1, height - 1]) - 1.0


@checker()
def pixels_to_normalized():
    """Check ``candidate(points, size)``: landmarks in pixels -> kmt's normalised coordinates.

    ``points`` is ``(..., 2)`` as (x, y) in pixels, 0 at the centre of the first pixel;
    ``size`` is ``(height, width)``; the answer is ``2 * x / (W - 1) - 1`` and
    ``2 * y / (H - 1) - 1`` (-1 and 1 on the centres of the edge pixels), what
    :meth:`kmt.face_evaluators.FaceEvaluators.detect` returns for dlib's 68 landmarks.
    """
    rng = np.random.default_rng(8)
    corners = np.array([[0, 0], [175, 0], [0, 143], [175, 143], [87.5, 71.5]], "float64")
    inputs = [
        ("68 landmarks in a 64x64 crop", rng.uniform(5, 58, (68, 2)), (64, 64)),
        ("3 frames of 68 landmarks in a 176x144 frame (wider than high)", rng.uniform(0, 143, (3, 68, 2)), (144, 176)),
        ("the corner pixels and the centre of a 176x144 frame", corners, (144, 176)),
    ]
    cases = [(text, (points, size), _normalized(points, size)) for text, points, size in inputs]

    def scale(points, size, denominator, offset=0.0):
        height, width = size
        return 2.0 * (np.asarray(points) + offset) / np.array(denominator(width, height)) - 1.0

    hints = [
        (lambda p, s: scale(p, s, lambda w, h: [w, h]),
         "divide by W - 1 and H - 1: -1 and 1 are the centres of the first and last pixels, W - 1 apart."),
        (lambda p, s: scale(p, s, lambda w, h: [w, h], offset=0.5),
         "that is the pixel-edge convention (align_corners=False); kmt puts -1 and 1 on the centres of the "
         "edge pixels."),
        (lambda p, s: scale(p, s, lambda w, h: [h - 1, w - 1]),
         "x and y are swapped in the scale: x runs along the width (W - 1), y along the height (H - 1); "
         "`size` is (height, width)."),
        (lambda p, s: 2.0 * np.asarray(p) / np.array([s[1] - 1, s[0] - 1]),
         "subtract 1 at the end: 0 pixels must map to -1."),
    ]
    return Exercise("pixels_to_normalized", cases, compare_judge(1e-6, hints, convert=_floats))


def _expected_split(names, test_ids):
    test_ids = set(test_ids)
    return {"train": sorted(n for n in names if video_id(n) not in test_ids),
            "test": sorted(n for n in names if video_id(n) in test_ids)}


def _split_problem(got, expected, names, test_ids):
    """``None`` when ``got`` is the expected split, else what is wrong, in words."""
    if not isinstance(got, dict) or set(got) != {"train", "test"}:
        kind = f"a dict with keys {sorted(got)}" if isinstance(got, dict) else f"a {type(got).__name__}"
        return f"expected a dict with the keys 'train' and 'test', got {kind}"
    for split in ("train", "test"):
        if not all(isinstance(name, str) for name in got[split]):
            return f"the {split!r} list must hold video names (strings)"
    train, test = list(got["train"]), list(got["test"])
    both = sorted(set(train) & set(test))
    if both:
        return f"{both} are in both splits; a video belongs to one"
    lost = sorted(set(names) - set(train) - set(test))
    if lost:
        return f"{lost} are in neither split; every video must land in one"
    extra = sorted((set(train) | set(test)) - set(names))
    if extra:
        return f"{extra} are not among the names given"
    for split in ("train", "test"):
        wrong = sorted(set(got[split]) - set(expected[split]))
        if wrong:
            other = "test" if split == "train" else "train"
            shown = ", ".join(f"{n!r} (identity {video_id(n)!r})" for n in wrong)
            return f"{shown} should be in {other}, not {split}: the test identities are {sorted(test_ids)}"
    if train != expected["train"] or test != expected["test"]:
        return "the right videos, in another order: sort each list"
    return None


@checker()
def identity_split():
    """Check ``candidate(names, test_ids)`` -> ``{"train": [...], "test": [...]}``: a split by identity.

    Video names follow ``<id>#<clip>`` (the identity is the part before the first ``#``;
    a name without ``#`` is its own identity). Every video of an identity in ``test_ids``
    goes to ``test``, the others to ``train``; each list sorted.
    """
    inputs = [
        ("three people", ["bob#x", "alice#b", "carol#y", "alice#a"], ["bob"]),
        ("two identities, one a prefix of the other", ["alice#1", "al#1", "alice#2", "bob#1"], ["al"]),
        ("names with several '#'", ["dan#day1#clip", "dan#day2", "eve#c", "eve#d#e"], ["dan"]),
        ("a name without '#'", ["solo", "solo#2", "x#1", "y#1"], ["solo", "y"]),
    ]
    variants = [
        (lambda names, ids: {"train": sorted(n for n in names if not any(n.startswith(i) for i in ids)),
                             "test": sorted(n for n in names if any(n.startswith(i) for i in ids))},
         "a name that starts with a test identity is not necessarily of that identity ('alice#1' is not "
         "'al'): compare the whole part before the '#'."),
        (lambda names, ids: {"train": sorted(n for n in names if n.rsplit("#", 1)[0] not in ids),
                             "test": sorted(n for n in names if n.rsplit("#", 1)[0] in ids)},
         "the identity is the part before the FIRST '#' (split('#')[0]), not the last."),
    ]
    cases = [(text, (list(names), list(test_ids)), _expected_split(names, test_ids)) for text, names, test_ids in inputs]

    def judge(args, expected, got):
        names, test_ids = args
        problem = _split_problem(got, expected, names, test_ids)
        if problem is None:
            return None
        for variant, advice in variants:
            if _split_problem(got, variant(names, test_ids), names, test_ids) is None:
                return f"{problem}. Hint: {advice}"
        return problem

    return Exercise("identity_split", cases, judge)
