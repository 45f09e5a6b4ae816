"""kmt.data.augmentation: the official flips, jitter, rotation and mgif crop/resize, with keypoints."""

import numpy as np
import pytest

from kmt.data import augmentation
from kmt.data.augmentation import Augmentation


@pytest.fixture
def clip():
    rng = np.random.default_rng(0)
    return rng.uniform(0.05, 0.95, size=(3, 12, 16, 3)).astype(np.float32)


@pytest.fixture
def keypoints():
    rng = np.random.default_rng(1)
    return rng.uniform(-0.9, 0.9, size=(3, 5, 2)).astype(np.float32)


def outcomes(aug, clip, seeds=40):
    return [aug(clip, np.random.default_rng(s)) for s in range(seeds)]


def test_horizontal_flip_mirrors_frames_and_keypoints(clip, keypoints):
    aug = Augmentation(flip_param={"horizontal_flip": True, "time_flip": False})
    flipped = 0
    for seed in range(20):
        out, kp, vis = aug(clip, np.random.default_rng(seed), keypoints)
        if np.array_equal(out, clip):
            np.testing.assert_allclose(kp, keypoints, atol=1e-7)
        else:
            flipped += 1
            np.testing.assert_array_equal(out, clip[:, :, ::-1])
            np.testing.assert_allclose(kp[..., 0], -keypoints[..., 0], atol=1e-6)
            np.testing.assert_allclose(kp[..., 1], keypoints[..., 1], atol=1e-6)
        assert vis.all()
    assert 3 < flipped < 17


def test_time_flip_reverses_the_clip(clip, keypoints):
    aug = Augmentation(flip_param={"time_flip": True})
    results = [aug(clip, np.random.default_rng(s), keypoints) for s in range(20)]
    reversed_ = [np.array_equal(out, clip[::-1]) for out, _, _ in results]
    assert any(reversed_) and not all(reversed_)
    for (out, kp, _), rev in zip(results, reversed_):
        assert rev or np.array_equal(out, clip)
        np.testing.assert_allclose(kp, keypoints[::-1] if rev else keypoints, atol=1e-6)


def test_never_both_flips_at_once_like_the_official_code(clip):
    aug = Augmentation(flip_param={"time_flip": True, "horizontal_flip": True})
    kinds = set()
    for out in outcomes(aug, clip):
        kind = [k for k, ref in (("none", clip), ("time", clip[::-1]), ("mirror", clip[:, :, ::-1]))
                if np.array_equal(out, ref)]
        assert kind, "a clip was flipped both ways"
        kinds.add(kind[0])
    assert kinds == {"none", "time", "mirror"}


def test_jitter_stays_in_range_and_uses_one_factor_per_clip(clip):
    aug = Augmentation(jitter_param={"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.5})
    for out in outcomes(aug, clip, 10):
        assert out.shape == clip.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert np.abs(out - clip).max() > 1e-3
    bright = Augmentation(jitter_param={"brightness": 0.2})(clip, np.random.default_rng(3))
    ratio = bright / clip
    assert np.ptp(ratio[bright < 0.999]) < 1e-5  # one brightness factor for every frame
    assert 0.8 <= ratio.max() <= 1.2


def test_jitter_steps_match_their_definitions(clip):
    x = clip[:1]
    grey = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    rng = np.random.default_rng(5)
    f = np.random.default_rng(5).uniform(0.5, 1.5)
    out = augmentation.color_jitter(x, rng, saturation=0.5)
    np.testing.assert_allclose(out, np.clip(f * x + (1 - f) * grey[..., None], 0, 1), atol=1e-6)
    out = augmentation.color_jitter(x, np.random.default_rng(5), contrast=0.5)
    np.testing.assert_allclose(out, np.clip(f * x + (1 - f) * grey.mean(), 0, 1), atol=1e-6)


def test_hue_shift_matches_colorsys(clip):
    import colorsys

    turns = 0.3
    out = augmentation.shift_hue(clip, turns)
    for t, r, c in [(0, 0, 0), (1, 5, 7), (2, 11, 15)]:
        h, s, v = colorsys.rgb_to_hsv(*clip[t, r, c])
        np.testing.assert_allclose(out[t, r, c], colorsys.hsv_to_rgb((h + turns) % 1.0, s, v), atol=1e-5)
    np.testing.assert_allclose(augmentation.shift_hue(clip, 0.0), clip, atol=1e-6)
    np.testing.assert_allclose(augmentation.shift_hue(np.array([1.0, 0.0, 0.0]), 1 / 3), [0.0, 1.0, 0.0], atol=1e-6)


def test_rotation_by_a_quarter_turn_is_rot90_and_moves_keypoints():
    rng = np.random.default_rng(2)
    square = rng.uniform(size=(2, 9, 9, 3)).astype(np.float32)
    out, kp = augmentation.rotate(square, 90.0, np.array([[[8.0, 0.0]]] * 2))
    np.testing.assert_allclose(out, np.rot90(square, k=1, axes=(1, 2)), atol=1e-5)
    # the top-right pixel (col 8, row 0) goes to the top-left after a counter-clockwise turn
    np.testing.assert_allclose(kp[0, 0], [0.0, 0.0], atol=1e-9)
    aug = Augmentation(rotation_param={"degrees": [30, 30]})
    out = aug(square, np.random.default_rng(0))
    assert out[:, 0, 0].max() == 0.0 and out[:, 4, 4].max() > 0  # corners fall outside, zeros


def test_resize_matches_torch_bilinear_when_enlarging():
    import torch
    rng = np.random.default_rng(4)
    x = rng.uniform(size=(2, 6, 7, 3)).astype(np.float32)
    out, _ = augmentation.resize(x, (11, 9), "bilinear")
    ref = torch.nn.functional.interpolate(torch.tensor(x).permute(0, 3, 1, 2), size=(11, 9), mode="bilinear",
                                          align_corners=False).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_resize_keeps_keypoints_on_their_content():
    x = np.zeros((1, 20, 20, 3), np.float32)
    x[0, 5, 14] = 1.0
    kp = np.array([[[14.0, 5.0]]])
    for size, mode in [((40, 40), "nearest"), ((30, 10), "bilinear")]:
        out, moved = augmentation.resize(x, size, mode, kp)
        row, col = np.unravel_index(out[0, ..., 0].argmax(), out.shape[1:3])
        assert abs(moved[0, 0, 0] - col) <= 0.5 and abs(moved[0, 0, 1] - row) <= 0.5


def test_mgif_resize_and_crop_keep_the_frame_size(keypoints):
    clip = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    aug = Augmentation(crop_param={"size": [32, 32]}, resize_param={"ratio": [0.9, 1.1]},
                       flip_param={"horizontal_flip": True, "time_flip": True}, jitter_param={"hue": 0.5})
    for seed in range(8):
        out, kp, vis = aug(clip, np.random.default_rng(seed), keypoints[:2], np.ones((2, 5), bool))
        assert out.shape == clip.shape and kp.shape == (2, 5, 2)
        outside = (np.abs(kp) > 1 + 1 / 31).any(-1)
        assert not (vis & outside).any()


def test_crop_pads_with_edges_and_hides_keypoints_cut_off():
    clip = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3) / 96
    out, kp = augmentation.random_crop(clip, (6, 6), np.random.default_rng(0), np.zeros((2, 1, 2)))
    assert out.shape == (2, 6, 6, 3)
    np.testing.assert_array_equal(out[:, 0, 1:5], clip[:, 0])  # the padding repeats the edge row
    np.testing.assert_allclose(kp, 1.0)
    aug = Augmentation(crop_param={"size": 2})
    big = np.zeros((1, 10, 10, 3), np.float32)
    _, kp, vis = aug(big, np.random.default_rng(1), np.array([[[-1.0, -1.0], [1.0, 1.0]]]))
    assert not vis.all()


def test_official_blocks_are_accepted_and_mistakes_named():
    Augmentation(flip_param={"horizontal_flip": True, "time_flip": True},
                 jitter_param={"brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.1})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['rotate_param'\]"):
        Augmentation(rotate_param={"degrees": 3})
    with pytest.raises(ValueError, match=r"flip_param: unknown key\(s\) \['vertical_flip'\]"):
        Augmentation(flip_param={"vertical_flip": True})
    with pytest.raises(ValueError, match="jitter_param.hue"):
        Augmentation(jitter_param={"hue": 0.7})
    with pytest.raises(ValueError, match="interpolation"):
        Augmentation(resize_param={"ratio": [0.9, 1.1], "interpolation": "cubic"})
    with pytest.raises(ValueError, match=r"\(T, H, W, C\)"):
        Augmentation()(np.zeros((4, 4, 3)), np.random.default_rng(0))
