"""kmt.data.synthetic: determinism, ground truth that matches the pixels, identity apart from motion."""

import csv
import json
import os

import numpy as np
import pytest

from kmt.data import faces, figures, render, synthetic
from kmt.data.synthetic import PairStream, render_frames, render_video

FAMILIES = ["faces", "figures"]


def pixel(kp, h, w):
    """Nearest pixel (row, col) of keypoints in the project convention."""
    col = np.rint((kp[..., 0] + 1) * (w - 1) / 2).astype(int)
    row = np.rint((kp[..., 1] + 1) * (h - 1) / 2).astype(int)
    return row, col


def hand_motion():
    """A faces motion id whose hand passes in front of the face."""
    return next(m for m in range(100) if synthetic.sample_motion("faces", m)["hand"][0] > 0.5)


@pytest.mark.parametrize("family", FAMILIES)
def test_video_shapes_types_and_ranges(family):
    fam = synthetic.get_family(family)
    video = render_video(family, identity=2, motion=5, num_frames=6, size=(40, 56), with_labels=True)
    k = len(fam.KEYPOINT_NAMES)
    assert video.frames.shape == (6, 40, 56, 3) and video.frames.dtype == np.float32
    assert 0.0 <= video.frames.min() and video.frames.max() <= 1.0
    assert video.keypoints.shape == (6, k, 2) and video.keypoints.dtype == np.float32
    assert video.visible.shape == (6, k) and video.visible.dtype == bool
    assert video.labels.shape == (6, 40, 56) and video.labels.max() < len(fam.PART_NAMES)
    assert fam.OWNERS.shape == (k, len(fam.PART_NAMES)) and fam.OWNERS.any(axis=1).all()
    assert video.name == "id0000002#0000005" and video.keypoint_names == fam.KEYPOINT_NAMES


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_video_other_seed_other_video(family):
    a = render_video(family, 1, 4, num_frames=4, size=32, seed=0)
    b = render_video(family, 1, 4, num_frames=4, size=32, seed=0)
    c = render_video(family, 1, 4, num_frames=4, size=32, seed=1)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    np.testing.assert_array_equal(a.visible, b.visible)
    assert np.abs(a.frames - c.frames).mean() > 0.02
    assert np.abs(a.keypoints - c.keypoints).max() > 0.02
    moving = np.abs(a.keypoints[1:] - a.keypoints[:-1]).max()
    assert moving > 1e-3, "consecutive frames should move"


@pytest.mark.parametrize("family", FAMILIES)
def test_keypoints_do_not_depend_on_resolution(family):
    small = render_video(family, 3, 9, num_frames=3, size=32)
    large = render_video(family, 3, 9, num_frames=3, size=96)
    np.testing.assert_allclose(small.keypoints, large.keypoints, atol=1e-5)
    np.testing.assert_array_equal(small.visible, large.visible)


def test_render_puts_keypoints_in_the_project_convention():
    """One disc at world (0.5, -0.25) on a 65 x 97 frame: its centre pixel is col 72, row 24."""
    n = 1
    disc = render.Ellipse(np.full(n, 0.75), np.full(n, -0.25), np.full(n, 0.1), np.full(n, 0.1))
    layer = render.Layer(disc, render.Paint(np.array([[1.0, 0.0, 0.0]], np.float32)), 1)
    background = render.Paint(np.zeros((n, 3), np.float32))
    owners = np.array([[False, True]])
    frames, labels, kp, vis = render.render([layer], background, np.array([[[0.75, -0.25]]], np.float32),
                                            owners, 65, 97, with_labels=True)
    # aspect = 96 / 64 = 1.5, so x = 0.75 / 1.5 = 0.5 -> col = (0.5 + 1) * 96 / 2 = 72.
    np.testing.assert_allclose(kp[0, 0], [0.5, -0.25], atol=1e-6)
    assert vis[0, 0] and labels[0, 24, 72] == 1
    np.testing.assert_allclose(frames[0, 24, 72], [1.0, 0.0, 0.0])
    # radius 0.1 world = 3.2 pixels: anti-aliased rim, background beyond it
    assert 0.0 < frames[0, 24, 72 + 3, 0] < 1.0 and frames[0, 24, 72 + 5, 0] == 0.0
    assert labels[0, 24, 72 + 5] == 0


@pytest.mark.parametrize("family,motion", [("faces", None), ("figures", 2), ("figures", 3)])
def test_keypoints_sit_on_their_parts(family, motion):
    """At 128 px (and a non-square frame) the pixel under a visible keypoint shows one of its
    owner parts, and the pixel under a hidden in-frame keypoint shows another part."""
    fam = synthetic.get_family(family)
    motion = hand_motion() if motion is None else motion
    hits, hidden_ok, hidden = [], [], 0
    for size in [(128, 128), (96, 128)]:
        video = render_video(family, identity=motion, motion=motion, num_frames=40, size=size,
                             with_labels=True)
        h, w = size
        row, col = pixel(video.keypoints, h, w)
        inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)
        t, k = np.nonzero(inside)
        label = video.labels[t, row[t, k], col[t, k]]
        owned = fam.OWNERS[k, label]
        hits.append(owned[video.visible[t, k]])
        hidden_ok.append(~owned[~video.visible[t, k]])
        hidden += int((~video.visible[t, k]).sum())
    assert np.concatenate(hits).mean() > 0.97
    assert hidden > 5, "the test videos should contain self-occlusion"
    assert np.concatenate(hidden_ok).mean() > 0.9


def test_brow_keypoints_show_the_brow_colour():
    """Brows are painted flat; the colour under a visible brow keypoint is the brow colour."""
    idn = synthetic.sample_identity("faces", 4)
    video = render_video("faces", idn, synthetic.sample_motion("faces", 4), num_frames=12, size=128)
    row, col = pixel(video.keypoints[:, :2], 128, 128)
    colours = video.frames[np.arange(12)[:, None], row, col]
    expected = idn["hair"] * 0.6
    close = np.abs(colours - expected).max(-1) < 0.06
    assert close[video.visible[:, :2]].mean() > 0.9


def test_a_passing_hand_hides_face_keypoints():
    video = render_video("faces", 0, hand_motion(), num_frames=90, size=64, with_labels=True)
    row, col = pixel(video.keypoints, 64, 64)
    inside = (row >= 0) & (row < 64) & (col >= 0) & (col < 64)
    t, k = np.nonzero(inside & ~video.visible)
    assert len(t) > 0
    labels = video.labels[t, row[t, k], col[t, k]]
    assert (labels == faces.PART_NAMES.index("hand")).any()


def test_keypoints_outside_the_frame_are_not_visible():
    motion = synthetic.sample_motion("figures", 0)
    motion["coef"][0, :] = [1.6, 0, 1, 0, 0, 1, 0]  # pelvis x far to the right of the frame
    video = render_video("figures", 0, motion, num_frames=2, size=32)
    assert (video.keypoints[..., 0] > 1).all() and not video.visible.any()


@pytest.mark.parametrize("family", FAMILIES)
def test_identity_is_independent_of_motion(family):
    """One identity under two motions: same static background wherever neither frame has a
    part nearby, and the same flat-painted parts."""
    a = render_video(family, 6, 1, num_frames=2, size=64, with_labels=True)
    b = render_video(family, 6, 2, num_frames=2, size=64, with_labels=True)
    assert np.abs(a.keypoints - b.keypoints).max() > 0.05
    free = (a.labels == 0) & (b.labels == 0)
    for axis in (1, 2):
        free = free & np.roll(free, 1, axis) & np.roll(free, -1, axis)
    assert free.mean() > 0.2
    np.testing.assert_allclose(a.frames[free], b.frames[free], atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_motion_is_independent_of_appearance(family):
    """One motion on two identities that share a build: identical keypoints, visibility and
    part map, different pixels. Any motion drives any identity."""
    first = synthetic.sample_identity(family, 10)
    second = dict(synthetic.sample_identity(family, 11), build=first["build"])
    motion = synthetic.sample_motion(family, 3)
    a = render_video(family, first, motion, num_frames=5, size=48, with_labels=True)
    b = render_video(family, second, motion, num_frames=5, size=48, with_labels=True)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    np.testing.assert_array_equal(a.visible, b.visible)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert np.abs(a.frames - b.frames).mean() > 0.05
    other = render_video(family, 11, motion, num_frames=5, size=48)
    assert np.abs(other.keypoints - a.keypoints).max() > 1e-3, "builds should differ between identities"


@pytest.mark.parametrize("family", FAMILIES)
def test_a_frame_does_not_depend_on_its_batch(family):
    video = render_video(family, 2, 3, num_frames=6, size=48)
    idn, mo = synthetic.sample_identity(family, 2), synthetic.sample_motion(family, 3)
    others = [synthetic.sample_identity(family, 7), synthetic.sample_motion(family, 8)]
    frames, kp, vis, _ = render_frames(family, [others[0], idn], [others[1], mo], [0.0, 4.0], 48)
    np.testing.assert_allclose(frames[1], video.frames[4], atol=1e-5)
    np.testing.assert_allclose(kp[1], video.keypoints[4], atol=1e-6)
    np.testing.assert_array_equal(vis[1], video.visible[4])


@pytest.mark.parametrize("family", FAMILIES)
def test_pair_stream_batches(family):
    stream = PairStream(family, size=32, batch_size=5, num_identities=4, num_motions=6, num_frames=20,
                        steps_per_epoch=3)
    k = len(synthetic.get_family(family).KEYPOINT_NAMES)
    batch = stream.batch(1)
    for key in ("source", "driving"):
        assert batch[key].shape == (5, 32, 32, 3) and batch[key].dtype == np.float32
    assert batch["source_keypoints"].shape == (5, k, 2) and batch["driving_visible"].shape == (5, k)
    assert (batch["identity"] < 4).all() and (batch["motion"] < 6).all()
    assert (batch["times"][:, 0] <= batch["times"][:, 1]).all() and batch["times"].max() < 20
    np.testing.assert_array_equal(stream.batch(1)["source"], batch["source"])
    assert np.abs(stream.batch(2)["source"] - batch["source"]).max() > 0
    # both frames come from the video named in the batch
    j = 2
    video = render_video(family, int(batch["identity"][j]), int(batch["motion"][j]), num_frames=20, size=32)
    np.testing.assert_allclose(batch["source"][j], video.frames[batch["times"][j, 0]], atol=1e-5)
    np.testing.assert_allclose(batch["driving_keypoints"][j], video.keypoints[batch["times"][j, 1]], atol=1e-6)
    assert batch["name"][j] == video.name and batch["video_id"][j] == video.name.split("#")[0]
    # iteration is prefetched but yields the same batches, epoch after epoch
    it = iter(stream)
    got = [next(it) for _ in range(4)]
    np.testing.assert_array_equal(got[1]["driving"], stream.batch(1, 0)["driving"])
    np.testing.assert_array_equal(got[3]["driving"], stream.batch(0, 1)["driving"])
    test = PairStream(family, size=32, batch_size=5, num_identities=4, split="test").batch(0)
    assert (test["identity"] >= synthetic.TEST_OFFSET).all()


def test_pair_stream_augments_frames_with_their_keypoints():
    params = {"flip_param": {"horizontal_flip": True}, "jitter_param": {"hue": 0.2}}
    plain = PairStream("figures", size=32, batch_size=16, num_frames=10).batch(0)
    aug = PairStream("figures", size=32, batch_size=16, num_frames=10, augmentation_params=params).batch(0)
    mirrored = np.isclose(aug["source_keypoints"][:, :, 0], -plain["source_keypoints"][:, :, 0], atol=1e-5).all(1)
    same = np.isclose(aug["source_keypoints"], plain["source_keypoints"], atol=1e-5).all((1, 2))
    assert mirrored.any() and same.any() and (mirrored | same).all()
    assert 0.0 <= aug["source"].min() and aug["source"].max() <= 1.0
    with pytest.raises(ValueError, match="frame size"):
        PairStream("faces", size=32, augmentation_params={"resize_param": {"ratio": [0.5, 0.6]}}).batch(0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="family must be one of"):
        render_video("cats")
    with pytest.raises(ValueError, match="num_frames"):
        render_video("faces", num_frames=0)
    with pytest.raises(ValueError, match="split"):
        PairStream(split="val")
    with pytest.raises(ValueError, match="layout"):
        synthetic.write_dataset("unused", layout="avi")


def test_write_dataset_layout_and_metadata(tmp_path):
    root = str(tmp_path / "ds")
    meta = synthetic.write_dataset(root, "figures", num_train=3, num_test=2, num_frames=4, size=32,
                                   videos_per_identity=2)
    train, test = sorted(os.listdir(os.path.join(root, "train"))), sorted(os.listdir(os.path.join(root, "test")))
    assert train == ["id0000000#0000000", "id0000000#0000001", "id0000001#0000002"]
    assert test == ["id1000000#1000000", "id1000000#1000001"]
    assert sorted(os.listdir(os.path.join(root, "train", train[0]))) == [f"{i:07d}.png" for i in range(4)]
    loaded = synthetic.read_metadata(root)
    with open(os.path.join(root, "metadata.json")) as f:
        assert json.load(f)["keypoint_names"] == list(figures.KEYPOINT_NAMES)
    entry = loaded["videos"]["id0000001#0000002"]
    assert entry["identity"] == 1 and entry["motion"] == 2 and entry["split"] == "train"
    video = render_video("figures", 1, 2, num_frames=4, size=32)
    np.testing.assert_allclose(entry["keypoints"], video.keypoints, atol=1e-5)
    np.testing.assert_array_equal(entry["visible"], video.visible)
    assert loaded["frame_shape"] == [32, 32, 3] and meta["family"] == "figures"
    with open(os.path.join(root, "pairs.csv")) as f:
        rows = list(csv.DictReader(f))
    assert rows == []  # both test videos share one identity: no cross-identity pair
    with pytest.raises(ValueError, match="overwrite=True"):
        synthetic.write_dataset(root, "faces", num_train=1, num_test=1, num_frames=2, size=16)
    synthetic.write_dataset(root, "faces", num_train=1, num_test=1, num_frames=2, size=16, overwrite=True)
    assert os.listdir(os.path.join(root, "train")) == ["id0000000#0000000"]
    assert synthetic.read_metadata(root)["videos"]["id0000000#0000000"]["family"] == "faces"


def test_write_dataset_pairs_cross_identities(tmp_path):
    synthetic.write_dataset(str(tmp_path), "faces", num_train=1, num_test=3, num_frames=2, size=16,
                            videos_per_identity=1)
    with open(tmp_path / "pairs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    for row in rows:
        assert row["source"].split("#")[0] != row["driving"].split("#")[0]
