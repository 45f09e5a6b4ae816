"""kmt.metrics: L1, AKD, MKR and AED on hand-made cases."""

import numpy as np
import pytest

from kmt import metrics


# The four measures on cases with known answers ------------------------------------------------

def test_reconstruction_l1_is_the_mean_absolute_difference():
    target = np.zeros((2, 4, 4, 3), "float32")
    prediction = target.copy()
    prediction[0] = 0.5
    assert metrics.reconstruction_l1(prediction, target) == pytest.approx(0.25)
    assert metrics.reconstruction_l1(target, target) == 0.0


def test_reconstruction_l1_names_mismatched_shapes():
    with pytest.raises(ValueError, match=r"`prediction` and `target`.*\(2, 4, 4, 3\) and \(2, 4, 4, 1\)"):
        metrics.reconstruction_l1(np.zeros((2, 4, 4, 3)), np.zeros((2, 4, 4, 1)))


def test_keypoint_distance_counts_pixels_between_pixel_centres():
    # One unit of x is (W - 1) / 2 pixels and one of y (H - 1) / 2: on a 65 x 33 frame, 32 and 16.
    target = np.zeros((1, 1, 2))
    generated = np.array([[[3 / 32, 4 / 16]]])
    assert metrics.average_keypoint_distance(generated, target, (33, 65)) == pytest.approx(5.0)
    # Two pixels apart on a 64 x 64 frame: 2 / 63.5 ... exactly 2 * 2 / 63 in normalised units.
    one_pixel = np.array([[[2 / 63, 0.0]]])
    assert metrics.average_keypoint_distance(one_pixel, target, (64, 64)) == pytest.approx(1.0)
    # Corner to corner of a 64 x 64 frame: 63 * sqrt(2) pixels.
    corners = metrics.keypoint_distances(np.array([[[-1.0, -1.0]]]), np.array([[[1.0, 1.0]]]), (64, 64))
    assert corners[0, 0] == pytest.approx(63 * np.sqrt(2))


def test_average_keypoint_distance_counts_keypoints_found_in_both_frames():
    target = np.zeros((2, 3, 2))
    generated = np.zeros((2, 3, 2))
    generated[:, :, 0] = [[2 / 63, 4 / 63, 6 / 63], [8 / 63, 10 / 63, 12 / 63]]  # 1..6 pixels
    found_target = np.array([[True, True, False], [True, False, True]])
    found_generated = np.array([[True, False, True], [True, True, True]])
    # Found in both: (0, 0) 1 px, (1, 0) 4 px, (1, 2) 6 px.
    akd = metrics.average_keypoint_distance(generated, target, (64, 64), found_generated, found_target)
    assert akd == pytest.approx((1 + 4 + 6) / 3)
    assert metrics.average_keypoint_distance(generated, target, (64, 64)) == pytest.approx(3.5)
    # Probabilities count as found above 0.5.
    probabilities = np.where(found_target, 0.9, 0.1)
    assert metrics.average_keypoint_distance(generated, target, (64, 64), found_generated, probabilities) == akd
    nothing = np.zeros((2, 3), bool)
    assert np.isnan(metrics.average_keypoint_distance(generated, target, (64, 64), nothing, found_target))


def test_average_keypoint_distance_names_bad_arguments():
    with pytest.raises(ValueError, match=r"`generated` and `target`"):
        metrics.average_keypoint_distance(np.zeros((2, 3, 2)), np.zeros((2, 4, 2)), (64, 64))
    with pytest.raises(ValueError, match=r"\(\.\.\., num_kp, 2\)"):
        metrics.average_keypoint_distance(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)), (64, 64))
    with pytest.raises(ValueError, match=r"`image_size`"):
        metrics.average_keypoint_distance(np.zeros((2, 3, 2)), np.zeros((2, 3, 2)), (64,))
    with pytest.raises(ValueError, match=r"`target_detected` must have shape \(2, 3\)"):
        metrics.average_keypoint_distance(np.zeros((2, 3, 2)), np.zeros((2, 3, 2)), (64, 64), None, np.ones((2, 4)))


def test_missing_keypoint_rate_is_the_share_of_target_keypoints_lost():
    target = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    generated = np.array([[1, 0, 1, 1], [0, 1, 0, 1]], bool)
    # 5 found in the targets, 2 of them missing in the generated frames.
    assert metrics.missing_keypoint_rate(generated, target) == pytest.approx(2 / 5)
    assert metrics.missing_keypoint_rate(target, target) == 0.0
    assert metrics.missing_keypoint_rate(generated * 0.8, target * 0.7) == pytest.approx(2 / 5)
    assert np.isnan(metrics.missing_keypoint_rate(generated, np.zeros_like(target)))
    with pytest.raises(ValueError, match=r"`generated_detected` and `target_detected`"):
        metrics.missing_keypoint_rate(generated, target[:1])


def test_average_euclidean_distance_of_unit_vectors():
    a = np.eye(3)
    b = np.roll(np.eye(3), 1, axis=0)
    assert metrics.average_euclidean_distance(a, b) == pytest.approx(np.sqrt(2))
    assert metrics.average_euclidean_distance(a, a) == 0.0
    assert metrics.average_euclidean_distance(a, -a) == pytest.approx(2.0)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        metrics.average_euclidean_distance(np.zeros(3), np.zeros(3))
