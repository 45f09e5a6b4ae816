"""kmt.evaluators and kmt.evaluator_training: the networks, their file, the shipped ones and their accuracy."""

import json
import os
import zipfile

import keras
import numpy as np
import pytest

from kmt import evaluator_training as training
from kmt.data.synthetic import TEST_OFFSET
from kmt.evaluators import (Evaluators, IdentityEmbedding, LandmarkDetector, load_evaluators, pretrained_path,
                            save_evaluators)


def small_evaluators(family="faces", num_kp=12):
    keras.utils.set_random_seed(0)
    return Evaluators(LandmarkDetector(num_kp, width=4), IdentityEmbedding(8, width=4), family, (32, 32))


def test_landmark_detector_outputs_keypoints_visibility_and_part_maps():
    detector = LandmarkDetector(5, width=4)
    out = detector(np.random.default_rng(0).random((2, 32, 48, 3)).astype("float32"))
    keypoints, visibility, parts = (np.asarray(keras.ops.convert_to_numpy(out[k]))
                                    for k in ("keypoints", "visibility", "parts"))
    assert keypoints.shape == (2, 5, 2) and visibility.shape == (2, 5) and parts.shape == (2, 16, 24, 5)
    assert np.all(np.abs(keypoints) <= 1) and np.all((visibility >= 0) & (visibility <= 1))
    heatmaps = np.asarray(keras.ops.convert_to_numpy(detector.heatmaps(np.zeros((1, 32, 48, 3), "float32"))))
    np.testing.assert_allclose(heatmaps.sum(axis=(1, 2)), 1.0, rtol=1e-5)


def test_identity_embedding_gives_unit_vectors():
    embedding = IdentityEmbedding(16, width=4)
    out = np.asarray(keras.ops.convert_to_numpy(embedding(np.random.default_rng(0).random((3, 32, 32, 3)))))
    assert out.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("cls, args", [(LandmarkDetector, (5,)), (IdentityEmbedding, (16,))])
def test_networks_name_bad_images_and_round_trip_their_config(cls, args):
    model = cls(*args, width=4)
    with pytest.raises(ValueError, match=r"`images`.*multiples of 8.*\(1, 30, 32, 3\)"):
        model(np.zeros((1, 30, 32, 3), "float32"))
    with pytest.raises(ValueError, match=r"`images`.*\(1, 32, 32, 1\)"):
        model(np.zeros((1, 32, 32, 1), "float32"))
    config = model.get_config()
    assert cls.from_config(config).get_config() == config
    assert keras.saving.get_registered_object(f"kmt>{cls.__name__}") is cls


def test_evaluators_file_round_trip(tmp_path):
    evaluators = small_evaluators()
    evaluators.info["accuracy"] = {"landmarks": {"pixel_error": 1.0}}
    path = save_evaluators(str(tmp_path / "small.kmt-eval"), evaluators)
    frames = np.random.default_rng(1).random((5, 32, 32, 3)).astype("float32")
    loaded = load_evaluators("faces", path=path)
    assert loaded.family == "faces" and loaded.image_size == (32, 32) and loaded.path == path
    assert loaded.info["accuracy"] == {"landmarks": {"pixel_error": 1.0}}
    for before, after in zip(evaluators.detect(frames), loaded.detect(frames)):
        np.testing.assert_allclose(before, after, atol=1e-6)
    np.testing.assert_allclose(evaluators.embed(frames), loaded.embed(frames), atol=1e-6)
    # Frames of another size are resized to the networks' size.
    keypoints, visibility = loaded.detect(np.zeros((3, 64, 64, 3), "float32"))
    assert keypoints.shape == (3, 12, 2) and visibility.shape == (3, 12)
    assert loaded.embed(np.zeros((0, 32, 32, 3))).shape == (0, 8)


def test_load_evaluators_names_what_is_missing_and_how_to_train_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"evaluators-faces-48\.kmt-eval.*"
                                                r"`python tools/train_evaluators\.py --family faces --size 48`"):
        load_evaluators("faces", 48)
    with pytest.raises(ValueError, match=r"`family` must be one of \['faces', 'figures'\]; got 'cats'"):
        load_evaluators("cats")
    with pytest.raises(FileNotFoundError, match=r"No evaluators file"):
        load_evaluators(path=str(tmp_path / "absent.kmt-eval"))
    not_zip = tmp_path / "plain.kmt-eval"
    not_zip.write_text("hello")
    with pytest.raises(ValueError, match=r"not a kmt evaluators file"):
        load_evaluators(path=str(not_zip))
    other = save_evaluators(str(tmp_path / "figures.kmt-eval"), small_evaluators("figures", 14))
    with pytest.raises(ValueError, match=r"family 'figures', not 'faces'"):
        load_evaluators("faces", path=other)
    with zipfile.ZipFile(other) as archive:
        description = json.loads(archive.read("evaluators.json"))
    assert description["format"] == "kmt-evaluators" and description["landmarks"]["num_kp"] == 14


def test_evaluators_name_frames_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"`frames` must be frames \(N, height, width, 3\); got shape \(32, 32, 3\)"):
        small_evaluators().detect(np.zeros((32, 32, 3)))


def test_frame_sampler_is_deterministic_and_keeps_test_identities_apart():
    sampler = training.FrameSampler("faces", 32, seed=3, with_labels=True)
    a, b = sampler.batch(5, 4), training.FrameSampler("faces", 32, seed=3, with_labels=True).batch(5, 4)
    for key in ("frames", "keypoints", "visible", "labels", "identity"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["frames"].shape == (4, 32, 32, 3) and a["labels"].shape == (4, 32, 32)
    assert np.all(a["identity"] < TEST_OFFSET)
    assert np.all(training.FrameSampler("faces", 32, split="test").batch(0, 4)["identity"] >= TEST_OFFSET)


def test_part_targets_mark_the_pixels_of_each_landmarks_parts():
    labels = np.zeros((1, 4, 4), np.uint8)
    labels[0, 3, 3] = 2  # the heatmap cell (1, 1) reads pixel (3, 3)
    owners = np.array([[False, False, True], [True, False, False]])  # landmark 0 on part 2, landmark 1 on part 0
    targets = training._part_targets(labels, owners)
    assert targets.shape == (1, 2, 2, 2)
    np.testing.assert_array_equal(targets[0, :, :, 0], [[0, 0], [0, 1]])
    np.testing.assert_array_equal(targets[0, :, :, 1], [[1, 1], [1, 0]])


def test_degrade_blurs_and_stays_in_range():
    images = np.zeros((8, 16, 16, 3), "float32")
    images[:, 8, 8] = 1.0
    out = training.degrade(images, np.random.default_rng(0))
    again = training.degrade(images, np.random.default_rng(0))
    np.testing.assert_array_equal(out, again)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    assert np.any(out[:, 8, 8] < 0.9) and np.all(np.abs(out.mean(axis=(1, 2, 3)) - images.mean()) < 0.02)


def test_a_few_training_steps_run_on_this_backend():
    detector = training.train_landmark_detector("figures", 32, steps=2, batch_size=4, width=4, verbose=0)
    out = detector(np.zeros((1, 32, 32, 3), "float32"))
    assert tuple(out["keypoints"].shape) == (1, 14, 2)
    embedding = training.train_identity_embedding("figures", 32, steps=2, batch_size=4, num_identities=4, width=4,
                                                  embedding_dim=8, verbose=0)
    assert tuple(embedding(np.zeros((1, 32, 32, 3), "float32")).shape) == (1, 8)


# The shipped evaluators ------------------------------------------------------------------------------
# Tolerances: the reported accuracy was measured on 512 frames / 64 identities; here a smaller
# held-out set of the same test split gives the same figures within sampling noise.

@pytest.mark.parametrize("family", ["faces", "figures"])
def test_shipped_evaluators_reproduce_their_reported_accuracy(family):
    path = pretrained_path(family, 64)
    assert os.path.exists(path), f"{path} is missing: `python tools/train_evaluators.py --family {family}` trains it"
    assert os.path.getsize(path) < 1_000_000
    evaluators = load_evaluators(family, 64)
    reported = evaluators.info["accuracy"]
    landmarks = training.landmark_accuracy(evaluators, num_frames=96, seed=1)
    assert abs(landmarks["pixel_error"] - reported["landmarks"]["pixel_error"]) < 0.3
    assert landmarks["pixel_error"] < 2.0
    assert abs(landmarks["visibility_accuracy"] - reported["landmarks"]["visibility_accuracy"]) < 0.04
    identity = training.identity_accuracy(evaluators, num_identities=16, frames_per_identity=3, seed=1)
    assert identity["nearest_neighbour_rate"] >= reported["identity"]["nearest_neighbour_rate"] - 0.1
    assert identity["distance_ratio"] < reported["identity"]["distance_ratio"] + 0.1
    assert identity["distance_ratio"] < 0.6
