"""kmt.training_data: an epoch is exactly the steps asked for, on disk and synthetic, reproducibly."""

import re

import numpy as np
import pytest

from kmt.data.video_io import write_video
from kmt.training_data import training_batches

S = 8  # frame size of the test videos
NUM_VIDEOS = 6


@pytest.fixture(scope="module")
def folder_config(tmp_path_factory):
    """Six training videos (png folders of 3 frames), batch 2: one pass over them is 3 batches."""
    root = tmp_path_factory.mktemp("videos")
    for i in range(NUM_VIDEOS + 1):
        folder = root / ("test" if i == NUM_VIDEOS else "train") / f"v{i}"
        clip = np.full((3, S, S, 3), i / 10, np.float32)
        clip[..., 0] = np.arange(3)[:, None, None] / 10
        write_video(str(folder), clip)
    return {"dataset_params": {"root_dir": str(root), "frame_shape": [S, S, 3]},
            "train_params": {"batch_size": 2, "num_repeats": 1}}


def synthetic_config():
    return {"dataset_params": {"frame_shape": [16, 16, 3]},
            "synthetic_params": {"family": "figures", "num_identities": 8, "num_motions": 8, "num_frames": 4},
            "train_params": {"batch_size": 2, "num_repeats": 1}}


def names(batches):
    return [list(batch["name"]) for batch in batches]


def test_without_steps_an_epoch_is_one_pass(folder_config):
    batches_for_epoch, steps = training_batches(folder_config, seed=1)
    assert steps == NUM_VIDEOS // 2
    epoch = names(batches_for_epoch(0))
    assert len(epoch) == steps
    assert sorted(n for batch in epoch for n in batch) == [f"v{i}" for i in range(NUM_VIDEOS)]


def test_more_steps_than_one_pass_cycle_through_reshuffled_passes(folder_config):
    batches_for_epoch, steps = training_batches(folder_config, seed=1, steps_per_epoch=10)
    assert steps == 10
    epoch = names(batches_for_epoch(0))
    assert len(epoch) == 10 and all(len(batch) == 2 for batch in epoch)
    passes = [[n for batch in epoch[start:start + 3] for n in batch] for start in (0, 3, 6)]
    for videos in passes:  # every full pass visits every video once
        assert sorted(videos) == [f"v{i}" for i in range(NUM_VIDEOS)]
    assert len({tuple(p) for p in passes}) == 3, "each pass has its own shuffle"
    one_pass = names(training_batches(folder_config, seed=1)[0](0))
    assert epoch[:3] == one_pass, "the first pass is the epoch's usual pass"


def test_fewer_steps_than_one_pass_stop_early(folder_config):
    batches_for_epoch, steps = training_batches(folder_config, seed=1, steps_per_epoch=2)
    assert steps == 2
    assert names(batches_for_epoch(4)) == names(training_batches(folder_config, seed=1)[0](4))[:2]


def test_epochs_are_deterministic_in_seed_and_epoch(folder_config):
    batches_for_epoch, _ = training_batches(folder_config, seed=3, steps_per_epoch=7)
    again, _ = training_batches(folder_config, seed=3, steps_per_epoch=7)  # as after a resume
    first, resumed = list(batches_for_epoch(2)), list(again(2))
    assert names(first) == names(resumed)
    for a, b in zip(first, resumed):
        np.testing.assert_array_equal(a["source"], b["source"])
        np.testing.assert_array_equal(a["driving"], b["driving"])
    assert names(batches_for_epoch(2)) != names(batches_for_epoch(3))
    other_seed, _ = training_batches(folder_config, seed=4, steps_per_epoch=7)
    assert names(other_seed(2)) != names(first)


def test_synthetic_stream_yields_the_steps_asked_for():
    batches_for_epoch, steps = training_batches(synthetic_config(), steps_per_epoch=3)
    epoch = list(batches_for_epoch(1))
    assert steps == 3 and len(epoch) == 3 and epoch[0]["source"].shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(epoch[2]["driving"], list(batches_for_epoch(1))[2]["driving"])


@pytest.mark.parametrize("steps", [0, -2, 2.5, True, "4"])
def test_steps_per_epoch_below_one_or_not_whole_is_refused(folder_config, steps):
    for config in (folder_config, synthetic_config()):
        with pytest.raises(ValueError, match=r"steps_per_epoch must be a whole number >= 1 \(or None for the "
                                             "config's epoch\\), got " + re.escape(repr(steps))):
            training_batches(config, steps_per_epoch=steps)


def test_too_few_videos_for_a_batch_is_named(folder_config):
    config = dict(folder_config, train_params={"batch_size": NUM_VIDEOS + 1})
    with pytest.raises(ValueError, match=f"{NUM_VIDEOS} items make no batch of {NUM_VIDEOS + 1}"):
        training_batches(config, steps_per_epoch=5)
