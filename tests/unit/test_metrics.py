"""kmt.metrics: L1, AKD, MKR and AED on hand-made cases, and the evaluation of a model on a dataset."""

import os
import shutil
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from keras import ops

from kmt import metrics
from kmt.data import read_video, write_dataset
from kmt.evaluators import pretrained_path


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


# Evaluating a model on a dataset ----------------------------------------------------------------

class StillKeypoints(keras.Model):
    """Two keypoints at the centre with identity Jacobians, whatever the image."""

    def call(self, images, training=False):
        value = ops.zeros_like(images[:, :2, 0, :2])
        return {"value": value, "jacobian": ops.zeros_like(value)[..., None] + ops.eye(2)}


class CopySource(keras.Model):
    """A generator that returns its source image: reconstruction is then the copy baseline."""

    def encode_source(self, source, training=False):
        return source

    def call(self, source, kp_driving=None, kp_source=None, source_features=None, training=False):
        return {"prediction": source}


def still_checkpoint(size=(64, 64)):
    return SimpleNamespace(kp_detector=StillKeypoints(), generator=CopySource(), image_size=size, path="still.kmt")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("faces"))
    write_dataset(root, "faces", num_train=1, num_test=3, num_frames=6, size=64, videos_per_identity=1)
    return root


def test_reconstruction_from_the_first_frame_writes_the_videos(dataset, tmp_path):
    result = metrics.reconstruct_dataset(still_checkpoint(), dataset, out_dir=str(tmp_path), num_videos=2)
    names = sorted(os.listdir(os.path.join(dataset, "test")))[:2]
    assert result["videos"] == 2 and result["frames"] == 12 and sorted(result["per_video"]) == names
    expected = []
    for name in names:
        video = read_video(os.path.join(dataset, "test", name))
        written = read_video(os.path.join(str(tmp_path), name))
        np.testing.assert_allclose(written, np.repeat(video[:1], len(video), axis=0), atol=1 / 255)
        expected.append(np.abs(video - video[:1]).mean())
    assert result["l1"] == pytest.approx(np.mean(expected), rel=1e-5)


def test_reconstruction_resizes_to_the_model_size_and_back(dataset):
    full = metrics.reconstruct_dataset(still_checkpoint(), dataset, num_videos=1)
    resized = metrics.reconstruct_dataset(still_checkpoint((32, 32)), dataset, num_videos=1)
    assert resized["frames"] == full["frames"]
    assert resized["l1"] == pytest.approx(full["l1"], abs=0.02) and resized["l1"] > full["l1"]


@pytest.mark.skipif(not os.path.exists(pretrained_path("faces", 64)), reason="faces evaluators not trained")
def test_evaluate_a_copying_model_equals_the_copy_baseline(dataset):
    table = metrics.evaluate(still_checkpoint(), dataset)
    model, copy, floor, identities = table["rows"]
    assert model["name"] == "model (still.kmt)" and "baseline" in copy["name"]
    for key in ("l1", "akd", "mkr", "aed"):
        assert model[key] == pytest.approx(copy[key], rel=1e-4, abs=1e-6), key
        assert table[key] == model[key]
    assert model["l1"] > 0 and model["aed"] > 0
    # The detector's own error on ground-truth frames is a few pixels at most.
    assert "floor" in floor["name"] and floor["akd"] < 3.0 and floor["visibility_error"] < 0.2
    assert floor["l1"] is None and floor["aed"] is None
    # Frames of one identity are closer than first frames of different identities.
    assert identities["aed"] > model["aed"]
    assert table["videos"] == 3 and table["frames"] == 18 and table["family"] == "faces"
    text = metrics.format_table(table)
    assert "AKD (px)" in text and "copy the source frame (baseline)" in text and "64x64" in text


def test_evaluate_without_metadata_gives_l1_and_says_why(dataset, tmp_path):
    root = tmp_path / "plain"
    shutil.copytree(dataset, root, ignore=shutil.ignore_patterns("metadata.json"))
    table = metrics.evaluate(still_checkpoint(), str(root), num_videos=1)
    assert table["l1"] > 0 and table["akd"] is None and table["aed"] is None
    assert len(table["rows"]) == 2 and any("metadata.json" in note for note in table["notes"])
    assert "-" in metrics.format_table(table)


def test_evaluate_names_bad_arguments(dataset, tmp_path):
    with pytest.raises(ValueError, match=r"`checkpoint`"):
        metrics.evaluate(object(), dataset)
    with pytest.raises(ValueError, match=r"`data_root`"):
        metrics.reconstruct_dataset(still_checkpoint(), str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"`num_videos` must be at least 1"):
        metrics.reconstruct_dataset(still_checkpoint(), dataset, num_videos=0)
