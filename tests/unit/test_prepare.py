"""A folder of a user's videos turned into a dataset: finding, naming, skipping, splitting, writing, training on it."""

import contextlib
import io
import json
import os
import shlex
import shutil

import numpy as np
import pytest
import yaml

from helpers import TINY_MODEL_PARAMS
from kmt.book import carphone_path
from kmt.cli import main
from kmt.data import FramesDataset, read_video, render_video, write_video
from kmt.prepare import find_videos, prepare_dataset, split_videos, train_command, video_names

CARPHONE = carphone_path()
TINY = {
    "dataset_params": {"root_dir": "unused", "frame_shape": [32, 32, 3]},
    "model_params": TINY_MODEL_PARAMS,
    "train_params": {"num_epochs": 1, "num_repeats": 1, "epoch_milestones": [], "lr_generator": 2e-4,
                     "lr_discriminator": 2e-4, "lr_kp_detector": 2e-4, "batch_size": 2, "scales": [1],
                     "checkpoint_freq": 1,
                     "transform_params": {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5},
                     "loss_weights": {"generator_gan": 0, "discriminator_gan": 1, "feature_matching": [10, 10],
                                      "perceptual": [0, 0, 0, 0, 0], "equivariance_value": 10,
                                      "equivariance_jacobian": 10}},
}
WRITTEN = ["anna#talk", "anna#talk2", "ben#smile", "carl#intro", "synth0", "synth1"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Nested and flat clips (mp4, a frame folder, gif), a short gif, a broken mp4 and a text file."""
    root = tmp_path_factory.mktemp("videos")
    car = read_video(CARPHONE)
    (root / "anna").mkdir()
    (root / "ben").mkdir()
    write_video(root / "anna" / "talk.mp4", car[:12])
    write_video(root / "anna" / "talk2", car[12:24])  # a folder of frames
    write_video(root / "ben" / "smile.mp4", car[40:52])
    write_video(root / "carl#intro.mp4", car[60:72])
    for i in range(2):
        write_video(root / f"synth{i}.gif", render_video("faces", identity=i, num_frames=10, size=64).frames)
    write_video(root / "short.gif", render_video("faces", identity=3, num_frames=3, size=64).frames)
    (root / "broken.mp4").write_bytes(b"not a video")
    (root / "notes.txt").write_text("shot list")
    return root


def test_find_videos_and_their_names(tmp_path):
    for name in ("a/b.mp4", "a/b.gif", "a/x#y/c.mov", "top#clip.mp4", "solo.gif", "still.png", "readme.md",
                 "p/frames/0.png", ".hidden.mp4"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found, skipped = find_videos(tmp_path)
    assert [parts for _, parts in found] == [("a", "b"), ("a", "b"), ("a", "x#y", "c"), ("p", "frames"), ("solo",),
                                             ("top#clip",)]
    assert video_names(found) == ["a#b_gif", "a#b_mp4", "a#x-y_c", "p#frames", "solo", "top#clip"]
    assert sorted((os.path.basename(p), r.split(":")[0]) for p, r in skipped) == [
        ("readme.md", "not a video"),
        ("still.png", "an image at the top of the input folder is not a video; put the frames of a clip in a "
                      "folder of their own")]


def test_video_names_are_unique_even_when_extensions_agree():
    found = [("in/a/b_c.mp4", ("a", "b_c")), ("in/a/b/c.mp4", ("a", "b", "c"))]
    assert video_names(found) == ["a#b_c_1", "a#b_c_2"]


def test_splits_are_seeded_and_keep_identities_together():
    names = [f"p{i}#clip{j}" for i in range(5) for j in range(3)]
    by_video = split_videos(names, "video", 0.2, seed=1)
    assert len(by_video["test"]) == 3 and sorted(by_video["train"] + by_video["test"]) == sorted(names)
    assert split_videos(names, "video", 0.2, seed=1) == by_video
    by_id = split_videos(names, "identity", 0.2, seed=1)
    test_ids = {n.split("#")[0] for n in by_id["test"]}
    assert len(test_ids) == 1 and len(by_id["test"]) == 3
    assert not test_ids & {n.split("#")[0] for n in by_id["train"]}
    assert split_videos(["a", "b"], "video", 0.01)["test"] != []  # at least one test video
    with pytest.raises(ValueError, match=r"the test split would be empty: splitting by identity needs at least 2 "
                                         r"identities, one for train and one for test; got 1 \('p0'\) among 3 videos"):
        split_videos(names[:3], "identity")
    with pytest.raises(ValueError, match="test_fraction 0 would leave the test split empty"):
        split_videos(names, "video", 0.0)


def test_mixed_frame_sizes_are_an_error_naming_the_videos(videos, tmp_path):
    with pytest.raises(ValueError, match=r"the videos differ in frame size \(width x height\) - 64x64: synth0.gif, "
                                         r"synth1.gif; 176x144: anna/talk.mp4, anna/talk2, ben/smile.mp4, "
                                         r"carl#intro.mp4\. Give a size"):
        prepare_dataset(videos, tmp_path / "data")
    assert not (tmp_path / "data").exists()


@pytest.fixture(scope="module")
def prepared(videos, tmp_path_factory):
    """``kmt prepare`` on the videos with a tiny config: (dataset folder, config file, printed output)."""
    folder = tmp_path_factory.mktemp("prepared")
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    data = folder / "data"
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        status = main(["prepare", str(videos), "--out", str(data), "--config", str(config)])
    assert status == 0
    return data, config, capture.getvalue()


def test_cli_prepares_a_dataset_and_lists_what_it_skipped(videos, prepared):
    data, config, out = prepared
    assert "train       5      56  32x32" in out and "test        1      12  32x32" in out
    assert "skipped 3 file(s):" in out
    assert "  broken.mp4: unreadable: " in out
    assert "  notes.txt: not a video" in out
    assert "  short.gif: too short: 3 frame(s), fewer than min_frames 8" in out
    assert "resized to 32x32 from 176x144: anna#talk, anna#talk2, ben#smile, carl#intro; from 64x64: synth0" in out
    manifest = json.loads((data / "prepare.json").read_text())
    assert sorted(manifest["splits"]["train"] + manifest["splits"]["test"]) == WRITTEN
    assert {v["name"]: v["source"] for v in manifest["videos"]}["anna#talk2"] == str(videos / "anna" / "talk2")
    train = FramesDataset(data, frame_shape=(32, 32, 3), is_train=True)
    test = FramesDataset(data, frame_shape=(32, 32, 3), is_train=False)
    assert sorted(train.names + test.names) == WRITTEN
    assert test.video(0).shape == (12, 32, 32, 3) and train[0]["source"].shape == (32, 32, 3)
    words = shlex.split(out.split("train on it with:\n")[1].strip())
    assert words[:6] == ["kmt", "train", "--config", str(config), "--data", str(data)]
    assert "dataset_params.frame_shape=[32,32,3]" in words


def test_kmt_train_runs_the_printed_command_on_the_prepared_dataset(prepared, tmp_path):
    # A subprocess on TensorFlow under every backend's run: what is tested is the dataset and the
    # command, which do not depend on the backend (a first JAX training step compiles for over a
    # minute on 2 cores; test_training.py trains on every backend).
    import subprocess
    import sys

    data, config, out = prepared
    words = shlex.split(out.split("train on it with:\n")[1].strip())
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-m", "kmt.cli", *words[1:], "--log-dir", str(tmp_path / "log"),
                             "--steps-per-epoch", "3", "--epochs", "1", "--no-jit"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "log" / "last.kmt").exists()
    import csv

    (record,) = csv.DictReader((tmp_path / "log" / "log.csv").open())
    assert record["epoch"] == "0" and record["steps"] == "3"  # the steps asked for, not one pass over 5 videos


def test_split_by_folders_keeps_the_inputs_own_split(tmp_path, capsys):
    root = tmp_path / "in"
    for split, identity in (("train", 1), ("train", 2), ("test", 3)):
        (root / split).mkdir(parents=True, exist_ok=True)
        write_video(root / split / f"person{identity}#clip.gif",
                    render_video("faces", identity=identity, num_frames=8, size=32).frames)
    write_video(root / "stray.gif", render_video("faces", identity=4, num_frames=8, size=32).frames)
    summary = prepare_dataset(root, tmp_path / "data", split_by="folders")
    assert summary["splits"] == {"train": ["person1#clip", "person2#clip"], "test": ["person3#clip"]}
    assert [os.path.basename(p) for p, _ in summary["skipped"]] == ["stray.gif"]
    assert "outside train/ and test/" in summary["skipped"][0][1]
    assert sorted(os.listdir(tmp_path / "data" / "test")) == ["person3#clip"]
    shutil.rmtree(root / "test")
    with pytest.raises(ValueError, match=r"split_by 'folders' needs .* to hold train/ and test/ folders; it has no "
                                         r"test/"):
        prepare_dataset(root, tmp_path / "other", split_by="folders")
    assert main(["prepare", str(root), "--out", str(tmp_path / "again"), "--split-by", "folders",
                 "--test-fraction", "0.5"]) == 2
    assert "--test-fraction does not apply with --split-by folders" in capsys.readouterr().err


def test_face_crops_split_by_identity_as_mp4_and_nothing_is_dropped(videos, tmp_path):
    summary = prepare_dataset(videos, tmp_path / "data", layout="mp4", crop="face", size=64, split_by="identity")
    written = {v["source"] for v in summary["videos"]}
    skipped = {p for p, _ in summary["skipped"]}
    every_input = {str(videos / name) for name in ("anna/talk.mp4", "anna/talk2", "ben/smile.mp4", "carl#intro.mp4",
                                                   "synth0.gif", "synth1.gif", "short.gif", "broken.mp4", "notes.txt")}
    assert written | skipped == every_input and not written & skipped
    assert {"anna#talk", "anna#talk2", "ben#smile", "carl#intro"} <= {v["name"] for v in summary["videos"]}
    test_ids = {n.split("#")[0] for n in summary["splits"]["test"]}
    assert test_ids and not test_ids & {n.split("#")[0] for n in summary["splits"]["train"]}
    for video in summary["videos"]:
        left, top, right, bottom = video["box"]
        assert right - left == bottom - top >= 64
        path = tmp_path / "data" / video["split"] / (video["name"] + ".mp4")
        assert read_video(path).shape == (video["frames"], 64, 64, 3)
    reasons = dict(summary["skipped"])
    assert reasons[str(videos / "short.gif")] == "too short: 3 frame(s), fewer than min_frames 8"


def test_refusals(videos, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["prepare", str(empty), "--out", str(tmp_path / "d")]) == 2
    assert f"input_dir {str(empty)!r} is empty" in capsys.readouterr().err
    one_person = tmp_path / "one"
    (one_person / "anna").mkdir(parents=True)
    for name in ("a.gif", "b.gif"):
        write_video(one_person / "anna" / name, render_video("faces", identity=0, num_frames=8, size=32).frames)
    assert main(["prepare", str(one_person), "--out", str(tmp_path / "d"), "--split-by", "identity"]) == 2
    assert "the test split would be empty: splitting by identity needs at least 2 identities" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    assert main(["prepare", str(one_person), "--out", str(tmp_path / "d")]) == 0
    capsys.readouterr()
    assert main(["prepare", str(one_person), "--out", str(tmp_path / "d")]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["prepare", str(one_person), "--out", str(tmp_path / "d"), "--overwrite", "--layout", "mp4"]) == 0
    assert sorted(os.listdir(tmp_path / "d" / "train") + os.listdir(tmp_path / "d" / "test")) == [
        "anna#a.mp4", "anna#b.mp4"]
    capsys.readouterr()
    refusals = ((["--increase", "0.2"], "--increase does not apply without --crop"),
                (["--crop", "whole", "--max-missing", "0.5"], "--max-missing does not apply with --crop whole"),
                (["--crop", "face", "--config", "vox-256", "--size", "64"], "give --size or --config"),
                (["--out", str(one_person / "inside")], "must not contain one another"))
    for extra, message in refusals:
        out = [] if "--out" in extra else ["--out", str(tmp_path / "e")]
        assert main(["prepare", str(one_person), *out, *extra]) == 2
        assert message in capsys.readouterr().err


def test_the_printed_command_reads_the_dataset_with_vox_256(tmp_path):
    from kmt.config import override_config, with_dataset
    from kmt.training_data import training_batches

    root = tmp_path / "in"
    root.mkdir()
    for i in range(3):
        write_video(root / f"clip{i}.gif", render_video("faces", identity=i, num_frames=8, size=32).frames)
    summary = prepare_dataset(root, tmp_path / "data")
    words = shlex.split(train_command(str(tmp_path / "data"), summary["frame_shape"]))
    assert words[2:6] == ["--config", "vox-256", "--data", str(tmp_path / "data")]
    config = override_config("vox-256", [words[i + 1] for i, w in enumerate(words) if w == "--set"])
    config = with_dataset(config, words[5])
    config["train_params"]["batch_size"] = 2
    batches_for_epoch, steps = training_batches(config)
    batch = next(iter(batches_for_epoch(0)))
    assert steps == 75 * 2 // 2 and batch["source"].shape == (2, 32, 32, 3)
    assert np.isfinite(batch["driving"]).all()
