"""Chapter 9's checkers accept right answers and explain typical wrong ones."""

import math

import numpy as np

from kmt import check, crop
from kmt.data.dataset import video_id


def unguarded(checker, candidate):
    """Run a checker without disabling the kmt functions its exercise re-implements: kmt itself is the right answer."""
    return check.check_candidate(checker.exercise(), candidate)



def right_square_box(box, frame_shape, increase):
    left, top, right, bottom = box
    side = math.ceil((1 + 2 * increase) * max(right - left, bottom - top))
    x0 = min(max(round((left + right - side) / 2), 0), frame_shape[1] - side)
    y0 = min(max(round((top + bottom - side) / 2), 0), frame_shape[0] - side)
    return x0, y0, x0 + side, y0 + side


def test_square_box_accepts_a_right_answer_and_kmt_itself():
    report = check.square_box(right_square_box)
    assert report and str(report) == "square_box: all 6 cases pass."
    assert unguarded(check.square_box, lambda box, shape, increase: crop.clip_box([box], shape, increase))


def test_square_box_explains_an_unshifted_box_a_single_increase_and_a_box_that_is_not_square():
    def unshifted(box, shape, increase):
        left, top, right, bottom = box
        side = math.ceil((1 + 2 * increase) * max(right - left, bottom - top))
        x0, y0 = round((left + right - side) / 2), round((top + bottom - side) / 2)
        return x0, y0, x0 + side, y0 + side

    report = check.square_box(unshifted)
    assert not report and report.passed == 3
    assert "the square leaves the frame" in str(report)
    report = check.square_box(lambda b, s, i: right_square_box(b, s, i / 2))
    assert "on EACH side" in str(report)
    report = check.square_box(lambda b, s, i: (b[0] - i * (b[2] - b[0]), b[1] - i * (b[3] - b[1]),
                                               b[2] + i * (b[2] - b[0]), b[3] + i * (b[3] - b[1])))
    assert "is not square" in str(report)
    report = check.square_box(lambda b, s, i: (0, 0, 1))
    assert "expected shape (4,), got (3,)" in str(report)


def right_normalized(points, size):
    height, width = size
    return 2 * np.asarray(points) / np.array([width - 1, height - 1]) - 1


def test_pixels_to_normalized_accepts_a_right_answer():
    report = check.pixels_to_normalized(right_normalized)
    assert report and str(report) == "pixels_to_normalized: all 3 cases pass."


def test_pixels_to_normalized_explains_pixel_edges_swapped_axes_and_a_missing_minus_one():
    report = check.pixels_to_normalized(lambda p, s: 2 * np.asarray(p) / np.array([s[1], s[0]]) - 1)
    assert not report and "divide by W - 1 and H - 1" in str(report)
    report = check.pixels_to_normalized(lambda p, s: 2 * (np.asarray(p) + 0.5) / np.array([s[1], s[0]]) - 1)
    assert "pixel-edge convention" in str(report)
    report = check.pixels_to_normalized(lambda p, s: 2 * np.asarray(p) / np.array([s[0] - 1, s[1] - 1]) - 1)
    assert report.passed == 1 and "x and y are swapped" in str(report)
    report = check.pixels_to_normalized(lambda p, s: 2 * np.asarray(p) / np.array([s[1] - 1, s[0] - 1]))
    assert "subtract 1" in str(report)


def test_the_checked_convention_is_the_one_of_the_face_evaluators():
    """dlib's landmarks in pixels, mapped by the checker's answer, are what FaceEvaluators.detect returns."""
    import skimage.data

    from kmt.face_evaluators import FaceEvaluators

    face = skimage.data.astronaut()[20:240, 120:340][::2, ::2].astype("float32") / 255.0  # 110 x 110
    face = face[:, 5:101]  # 110 high, 96 wide: x and y scale differently
    evaluators = FaceEvaluators()
    (pixels,) = evaluators.landmarks(face[None])
    keypoints, visibility = evaluators.detect(face[None])
    assert pixels is not None and visibility[0].all()
    np.testing.assert_allclose(right_normalized(pixels, face.shape[:2]), keypoints[0], atol=1e-5)


def right_split(names, test_ids):
    return {"train": sorted(n for n in names if n.split("#")[0] not in test_ids),
            "test": sorted(n for n in names if n.split("#")[0] in test_ids)}


def test_identity_split_accepts_a_right_answer_and_kmt_video_id():
    assert check.identity_split(right_split)
    report = check.identity_split(lambda names, ids: {
        "test": sorted(n for n in names if video_id(n) in ids),
        "train": sorted(n for n in names if video_id(n) not in ids)})
    assert report and str(report) == "identity_split: all 4 cases pass."


def test_identity_split_explains_prefixes_the_last_hash_order_and_lost_videos():
    report = check.identity_split(lambda names, ids: {
        "train": sorted(n for n in names if not any(n.startswith(i) for i in ids)),
        "test": sorted(n for n in names if any(n.startswith(i) for i in ids))})
    assert not report and "compare the whole part before the '#'" in str(report)
    assert "'alice#1' (identity 'alice'), 'alice#2' (identity 'alice') should be in train, not test" in str(report)
    report = check.identity_split(lambda names, ids: {
        "train": sorted(n for n in names if n.rsplit("#", 1)[0] not in ids),
        "test": sorted(n for n in names if n.rsplit("#", 1)[0] in ids)})
    assert "before the FIRST '#'" in str(report)
    report = check.identity_split(lambda names, ids: {k: v[::-1] for k, v in right_split(names, ids).items()})
    assert "sort each list" in str(report)
    report = check.identity_split(lambda names, ids: {"train": right_split(names, ids)["train"], "test": []})
    assert "in neither split" in str(report)
    report = check.identity_split(lambda names, ids: (names, []))
    assert report.passed == 0 and "expected a dict with the keys 'train' and 'test', got a tuple" in str(report)
    report = check.identity_split(lambda names, ids: undefined_name)  # noqa: F821
    assert "raised NameError" in str(report)
