"""kmt.animation: keypoint normalisation as the reference's animate.py, best frame, batched animation."""

import sys

import numpy as np
import pytest
from keras import ops

from kmt import animation, checkpoint
from kmt.config import build_models

SIZE = 32
CONFIG = {
    "model_params": {
        "common_params": {"num_kp": 4, "num_channels": 3, "estimate_jacobian": True},
        "kp_detector_params": {"temperature": 0.1, "block_expansion": 4, "max_features": 16,
                               "scale_factor": 0.5, "num_blocks": 2},
        "generator_params": {"block_expansion": 4, "max_features": 16, "num_down_blocks": 1,
                             "num_bottleneck_blocks": 1, "estimate_occlusion_map": True,
                             "dense_motion_params": {"block_expansion": 4, "max_features": 16,
                                                     "num_blocks": 2, "scale_factor": 0.5}},
        "discriminator_params": {"scales": [1]},
    },
}


def test_convex_hull_area():
    assert animation.convex_hull_area([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5]]) == pytest.approx(1.0)
    assert animation.convex_hull_area([[0, 0], [2, 0], [0, 3]]) == pytest.approx(3.0)
    assert animation.convex_hull_area([[0, 0], [1, 1], [2, 2]]) == 0.0
    assert animation.convex_hull_area([[0, 0], [1, 1]]) == 0.0


def random_kp(rng, batch, k=4):
    jac = np.eye(2)[None, None] + rng.normal(0, 0.2, (batch, k, 2, 2))
    return {"value": rng.uniform(-0.8, 0.8, (batch, k, 2)).astype("float32"), "jacobian": jac.astype("float32")}


def test_normalize_kp_absolute_relative_and_adapted():
    rng = np.random.default_rng(0)
    source, initial, driving = random_kp(rng, 1), random_kp(rng, 1), random_kp(rng, 5)
    absolute = animation.normalize_kp(source, driving, initial)
    np.testing.assert_array_equal(ops.convert_to_numpy(absolute["value"]), driving["value"])

    relative = animation.normalize_kp(source, driving, initial, use_relative_movement=True,
                                      use_relative_jacobian=True)
    expected = source["value"] + (driving["value"] - initial["value"])
    np.testing.assert_allclose(ops.convert_to_numpy(relative["value"]), expected, atol=1e-6)
    jac = driving["jacobian"] @ np.linalg.inv(initial["jacobian"]) @ source["jacobian"]
    np.testing.assert_allclose(ops.convert_to_numpy(relative["jacobian"]), jac, atol=1e-5)

    adapted = animation.normalize_kp(source, driving, initial, adapt_movement_scale=True,
                                     use_relative_movement=True)
    scale = np.sqrt(animation.convex_hull_area(source["value"][0]) / animation.convex_hull_area(initial["value"][0]))
    expected = source["value"] + scale * (driving["value"] - initial["value"])
    np.testing.assert_allclose(ops.convert_to_numpy(adapted["value"]), expected, atol=1e-5)
    # Without relative Jacobians the driving Jacobians pass through unchanged.
    np.testing.assert_array_equal(ops.convert_to_numpy(adapted["jacobian"]), driving["jacobian"])


def test_find_best_frame_ignores_position_and_size():
    rng = np.random.default_rng(1)
    source = rng.uniform(-0.5, 0.5, (6, 2))
    frames = rng.uniform(-0.5, 0.5, (7, 6, 2))
    frames[4] = 0.5 * source + 0.2  # the same shape, smaller and moved
    assert animation.find_best_frame(source, frames) == 4


class FakeFaceAlignment:
    """Stands in for ``face_alignment.FaceAlignment``: a frame's mean grey level picks its landmarks."""

    def __init__(self, shapes):
        self.shapes = shapes  # {grey level 0..255: (68, 3) landmarks, or None for "no face"}
        self.seen = []

    def get_landmarks(self, image):
        self.seen.append((image.dtype, image.shape))
        points = self.shapes[int(round(image.mean()))]
        return None if points is None else [points]


def face_shapes():
    rng = np.random.default_rng(3)
    source = np.concatenate([rng.uniform(20, 40, (68, 2)), np.zeros((68, 1))], axis=1)
    other = lambda: np.concatenate([rng.uniform(20, 40, (68, 2)), np.zeros((68, 1))], axis=1)  # noqa: E731
    same_pose = source.copy()
    same_pose[:, :2] = 0.6 * source[:, :2] + 7.0  # smaller and moved: the same shape
    # grey level of the frame -> landmarks; 10 is the source, 50 a frame without a face
    return {10: source, 20: other(), 50: None, 30: same_pose, 40: other()}


def frames_of(levels, size=8):
    return np.stack([np.full((size, size, 3), level / 255.0, "float32") for level in levels])


def test_best_driving_frame_with_face_alignment_skips_frames_without_a_face():
    detector = FakeFaceAlignment(face_shapes())
    source = frames_of([10])[0]
    driving = frames_of([20, 50, 40, 30, 20])
    assert animation.best_driving_frame(None, source, driving, landmarks="face-alignment", detector=detector) == 3
    assert all(dtype == np.uint8 and shape == (8, 8, 3) for dtype, shape in detector.seen)


def test_best_driving_frame_names_what_face_alignment_did_not_find(monkeypatch):
    detector = FakeFaceAlignment(face_shapes())
    with pytest.raises(ValueError, match=r"`source`: face-alignment finds no face"):
        animation.best_driving_frame(None, frames_of([50])[0], frames_of([20, 30]), "face-alignment", detector)
    with pytest.raises(ValueError, match=r"`driving`: face-alignment finds no face in any of its 2 frames"):
        animation.best_driving_frame(None, frames_of([10])[0], frames_of([50, 50]), "face-alignment", detector)
    with pytest.raises(ValueError, match=r"`landmarks` must be one of \('kmt', 'dlib', 'face-alignment'\); got 'mediapipe'"):
        animation.best_driving_frame(None, frames_of([10])[0], frames_of([20]), "mediapipe")
    with pytest.raises(ValueError, match=r"`best_frame_landmarks` only applies with `find_best=True`"):
        animation.animate(frames_of([10])[0], frames_of([20]), best_frame_landmarks="face-alignment")
    with pytest.raises(ValueError, match=r"`best_frame_landmarks` must be one of"):
        animation.animate(frames_of([10])[0], frames_of([20]), find_best=True, best_frame_landmarks="mediapipe")
    monkeypatch.setitem(sys.modules, "face_alignment", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install face-alignment"):
        animation.face_alignment_landmarks(frames_of([10]))


@pytest.fixture(scope="module")
def models():
    return build_models(CONFIG, networks=("kp_detector", "generator"))


def test_batched_animation_equals_the_generator_frame_by_frame(models):
    rng = np.random.default_rng(2)
    source = rng.random((SIZE, SIZE, 3), dtype="float32")
    driving = rng.random((5, SIZE, SIZE, 3), dtype="float32")
    frames = animation.Animator(models["kp_detector"], models["generator"], batch_size=2).animate(
        source, driving, relative=False)
    assert frames.shape == (5, SIZE, SIZE, 3)
    kp_source = models["kp_detector"](source[None], training=False)
    for t in (0, 4):
        kp_driving = models["kp_detector"](driving[t:t + 1], training=False)
        out = models["generator"](source[None], kp_driving=kp_driving, kp_source=kp_source, training=False)
        np.testing.assert_allclose(frames[t], np.clip(ops.convert_to_numpy(out["prediction"])[0], 0, 1), atol=2e-5)


def test_relative_animation_moves_the_source_by_the_driving_motion(models):
    """Relative mode: the source's keypoints move by the driving keypoints' displacement from frame 0.

    Frame t is the generator driven by ``kp_source + s (kp_t - kp_0)`` with Jacobians
    ``J_t J_0^-1 J_source``, where ``s = sqrt(area(source hull) / area(frame-0 hull))``
    (``adapt_movement_scale``). So frame 0 (and frame 2, the same picture again) is the source's
    reconstruction whatever the driving frame looks like, and frame 1 moves. Every frame is checked
    against the generator called directly.
    """
    rng = np.random.default_rng(3)
    source, first, other = rng.random((3, SIZE, SIZE, 3), dtype="float32")
    frames = animation.Animator(models["kp_detector"], models["generator"], batch_size=2).animate(
        source, np.stack([first, other, first]), relative=True, adapt_movement_scale=True)
    assert frames.shape == (3, SIZE, SIZE, 3)

    def keypoints(image):
        return {k: ops.convert_to_numpy(v) for k, v in models["kp_detector"](image[None], training=False).items()}

    def generate(kp_driving, kp_source):
        out = models["generator"](source[None], kp_driving=kp_driving, kp_source=kp_source, training=False)
        return np.clip(ops.convert_to_numpy(out["prediction"])[0], 0, 1)

    kp_source, kp_first, kp_other = keypoints(source), keypoints(first), keypoints(other)
    scale = np.sqrt(animation.convex_hull_area(kp_source["value"][0]) / animation.convex_hull_area(kp_first["value"][0]))
    assert abs(scale - 1) > 1e-3, "pick frames whose keypoint hulls differ, so the scale is exercised"
    moved = {
        "value": kp_source["value"] + scale * (kp_other["value"] - kp_first["value"]),
        "jacobian": kp_other["jacobian"] @ np.linalg.inv(kp_first["jacobian"]) @ kp_source["jacobian"],
    }
    reconstruction = generate(kp_source, kp_source)
    np.testing.assert_allclose(frames[0], reconstruction, atol=2e-5)
    np.testing.assert_allclose(frames[2], reconstruction, atol=2e-5)
    np.testing.assert_allclose(frames[1], generate(moved, kp_source), atol=2e-5)
    assert np.abs(frames[1] - frames[0]).max() > 1e-3, "the second driving frame must move the source"


def test_animate_reads_files_and_resizes(models, tmp_path, capsys):
    from PIL import Image

    from kmt.data import write_video

    path = checkpoint.save(str(tmp_path / "m.kmt"), CONFIG, models, image_size=(SIZE, SIZE))
    rng = np.random.default_rng(4)
    Image.fromarray((rng.random((40, 40, 3)) * 255).astype("uint8")).save(tmp_path / "s.png")
    write_video(str(tmp_path / "d.gif"), rng.random((3, 40, 40, 3), dtype="float32"), fps=5)
    frames = animation.animate(str(tmp_path / "s.png"), str(tmp_path / "d.gif"), checkpoint=path, find_best=True)
    assert frames.shape == (3, SIZE, SIZE, 3)
    assert "resized from 40x40 to 32x32" in capsys.readouterr().err


def test_animate_rejects_bad_input(models):
    animator = animation.Animator(models["kp_detector"], models["generator"])
    source = np.zeros((SIZE, SIZE, 3), "float32")
    with pytest.raises(ValueError, match="at least one frame"):
        animator.animate(source, np.zeros((0, SIZE, SIZE, 3), "float32"))
    with pytest.raises(ValueError, match="must have the same size"):
        animator.animate(source, np.zeros((2, SIZE + 1, SIZE, 3), "float32"))
    with pytest.raises(ValueError, match="`best_frame` must be an index"):
        animator.animate(source, np.zeros((2, SIZE, SIZE, 3), "float32"), best_frame=5)


def test_bfloat16_convolutions_stay_close_to_float32(models):
    """The fast path changes the numbers (bfloat16 products) but only slightly; float32 stays exact."""
    rng = np.random.default_rng(5)
    source = rng.random((SIZE, SIZE, 3), dtype="float32")
    driving = rng.random((3, SIZE, SIZE, 3), dtype="float32")
    exact = animation.Animator(models["kp_detector"], models["generator"], batch_size=2).animate(source, driving)
    fast = animation.Animator(models["kp_detector"], models["generator"], batch_size=2,
                              convolutions="bfloat16").animate(source, driving)
    again = animation.Animator(models["kp_detector"], models["generator"], batch_size=2).animate(source, driving)
    difference = np.abs(fast - exact).max()
    assert fast.dtype == np.float32 and fast.shape == exact.shape
    assert 0 < difference < 5e-2, difference
    np.testing.assert_array_equal(again, exact)  # the setting does not outlive its animator's calls
    with pytest.raises(ValueError, match="`convolutions` must be 'float32' or 'bfloat16'; got 'float16'"):
        animation.Animator(models["kp_detector"], models["generator"], convolutions="float16")


def test_animator_names_a_bad_batch_size_and_picks_xla_for_single_frames(models):
    for bad in (0, -2, 2.5):
        with pytest.raises(ValueError, match=r"`batch_size` must be a whole number of frames, at least 1; got"):
            animation.Animator(models["kp_detector"], models["generator"], batch_size=bad)
    single = animation.Animator(models["kp_detector"], models["generator"], batch_size=1)
    batched = animation.Animator(models["kp_detector"], models["generator"], batch_size=8)
    low = animation.Animator(models["kp_detector"], models["generator"], batch_size=1, convolutions="bfloat16")
    assert (single.uses_xla, batched.uses_xla, low.uses_xla) == (True, False, False)


def test_recomputing_the_source_encoder_gives_the_same_frames(models):
    """``cache_source=False`` (the official demo's work per frame) computes the frames the cached path does."""
    rng = np.random.default_rng(7)
    source = rng.random((SIZE, SIZE, 3), dtype="float32")
    driving = rng.random((3, SIZE, SIZE, 3), dtype="float32")
    cached = animation.Animator(models["kp_detector"], models["generator"], batch_size=2)
    every = animation.Animator(models["kp_detector"], models["generator"], batch_size=2, cache_source=False)
    assert (cached.cache_source, every.cache_source) == (True, False)
    np.testing.assert_allclose(every.animate(source, driving), cached.animate(source, driving), atol=1e-5)


def test_lean_keras_import_skips_optional_packages_and_leaves_them_importable():
    """``kmt.import_keras_lean`` (what ``kmt animate`` runs first) keeps Keras from importing matplotlib."""
    import subprocess

    code = ("import sys, kmt; backend = kmt.import_keras_lean(); assert 'keras' in sys.modules; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'; import matplotlib; "
            "assert sys.modules['matplotlib'] is not None; print(backend)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import keras

    assert proc.stdout.split()[-1] == keras.backend.backend()  # the backend this process runs (KERAS_BACKEND)
