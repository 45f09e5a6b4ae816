"""kmt.data.dataset: the official FramesDataset semantics, batches for Keras, bad data named."""

import glob
import os

import keras
import numpy as np
import pytest
import yaml

import kmt
from kmt.data import synthetic
from kmt.data.batching import keras_dataset, prefetch
from kmt.data.dataset import Batches, FramesDataset, RepeatedDataset, animation_pairs
from kmt.data import video_io
from kmt.data.video_io import VideoReadError, read_video, write_video

# ffmpeg runs as a subprocess; JAX warns about any fork, harmless for fork + exec.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")

# The dataset_params blocks of the official vox-256 and mgif-256 configs (paths replaced per test).
VOX = """
dataset_params:
  root_dir: data/vox-png
  frame_shape: [256, 256, 3]
  id_sampling: True
  pairs_list: data/vox256.csv
  augmentation_params:
    flip_param:
      horizontal_flip: True
      time_flip: True
    jitter_param:
      brightness: 0.1
      contrast: 0.1
      saturation: 0.1
      hue: 0.1
"""
MGIF = """
dataset_params:
  root_dir: data/moving-gif
  frame_shape: [256, 256, 3]
  id_sampling: False
  augmentation_params:
    flip_param:
      horizontal_flip: True
      time_flip: True
    crop_param:
      size: [256, 256]
    resize_param:
      ratio: [0.9, 1.1]
    jitter_param:
      hue: 0.5
"""
S = 16  # frame size of the test videos


def coded_video(video, frames=5):
    """Frames whose red channel is the frame index / 10 and green the video number / 10."""
    clip = np.zeros((frames, S, S, 3), np.float32)
    clip[..., 0] = (np.arange(frames) / 10)[:, None, None]
    clip[..., 1] = video / 10
    clip[..., 2] = np.linspace(0, 1, S)[None, None, :]  # not mirror-symmetric
    return clip


def decode(frame):
    return int(round(frame[..., 0].mean() * 10)), int(round(frame[..., 1].mean() * 10))


def make_root(root, names, split=True, ext=""):
    """Coded videos under root/train and root/test (or directly under root)."""
    out = {}
    for i, name in enumerate(names):
        folder = os.path.join(root, "train" if i % 4 else "test") if split else root
        os.makedirs(folder, exist_ok=True)
        write_video(os.path.join(folder, name + ext), coded_video(i))
        out[name + ext] = i
    if split:
        os.makedirs(os.path.join(root, "test"), exist_ok=True)
    return out


def params(text, root, **changes):
    p = yaml.safe_load(text)["dataset_params"]
    p.update(root_dir=str(root), frame_shape=[S, S, 3], **changes)
    if "crop_param" in (p.get("augmentation_params") or {}):
        p["augmentation_params"]["crop_param"]["size"] = [S, S]
    return p


def test_official_vox_params_with_id_sampling(tmp_path):
    names = [f"id{g}#clip{c}" for g in range(3) for c in range(4)]
    codes = make_root(tmp_path, names)
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("distance,source,driving,frame\n1,id0#clip0,id1#clip0,0\n2,id0#clip0,nope,0\n"
                        "3,id2#clip0,id1#clip0,0\n")
    train = FramesDataset(**params(VOX, tmp_path, pairs_list=str(csv_path)))
    assert train.videos == ["id0", "id1", "id2"] and len(train) == 3
    item = train[0]
    assert item["source"].shape == item["driving"].shape == (S, S, 3) and item["video_id"] == "id0"
    assert 0.0 <= item["source"].min() and item["source"].max() <= 1.0
    train = FramesDataset(**params(VOX, tmp_path, augmentation_params=None))  # to decode the pixels
    seen = {}
    rng = np.random.default_rng(0)
    for _ in range(60):
        item = train.sample(1, rng)
        assert item["video_id"] == "id1" and item["source"].shape == (S, S, 3)
        seen[item["name"]] = True
        t_src, v_src = decode(item["source"])
        t_drv, v_drv = decode(item["driving"])
        assert v_src == v_drv == codes[item["name"]], "source and driving come from one video"
    assert sorted(seen) == ["id1#clip1", "id1#clip2", "id1#clip3"]  # id1#clip0 is in test/
    test = FramesDataset(is_train=False, **params(VOX, tmp_path, pairs_list=str(csv_path)))
    assert test.videos == ["id0#clip0", "id1#clip0", "id2#clip0"]
    item = test[1]
    assert item["video"].shape == (5, S, S, 3) and item["name"] == "id1#clip0"
    assert animation_pairs(test, 5) == [("id0#clip0", "id1#clip0"), ("id2#clip0", "id1#clip0")]


SHIPPED = sorted(glob.glob(os.path.join(os.path.dirname(kmt.__file__), "configs", "*.yaml")))


@pytest.mark.parametrize("config", SHIPPED, ids=os.path.basename)
def test_every_shipped_config_builds_a_dataset(tmp_path, config):
    assert len(SHIPPED) >= 10, f"kmt/configs should ship every official config and kmt's own; found {SHIPPED}"
    make_root(tmp_path, [f"id{i % 3}#c{i}" for i in range(12)])
    with open(config) as f:
        p = params(f.read(), tmp_path)
    batch = Batches(FramesDataset(**p), batch_size=2).batch(0)
    assert batch["source"].shape == (2, S, S, 3) and batch["driving"].dtype == np.float32
    assert 0.0 <= batch["source"].min() and batch["source"].max() <= 1.0
    assert len(FramesDataset(is_train=False, **p)) == 3


def test_pairs_are_sorted_in_time_without_augmentation(tmp_path):
    make_root(tmp_path, [f"v{i}" for i in range(8)])
    ds = FramesDataset(tmp_path, frame_shape=(S, S, 3))
    rng = np.random.default_rng(1)
    for _ in range(30):
        item = ds.sample(int(rng.integers(len(ds))), rng)
        assert decode(item["source"])[0] <= decode(item["driving"])[0]


def test_official_mgif_params_on_gifs_keep_the_frame_size(tmp_path):
    make_root(tmp_path, [f"g{i}" for i in range(5)], ext=".gif")
    ds = FramesDataset(**params(MGIF, tmp_path))
    batch = Batches(ds, batch_size=2).batch(0)
    assert batch["source"].shape == (2, S, S, 3) and batch["source"].dtype == np.float32
    assert 0.0 <= batch["driving"].min() and batch["driving"].max() <= 1.0


def test_random_split_without_train_folder(tmp_path):
    make_root(tmp_path, [f"v{i}" for i in range(10)], split=False, ext=".mp4")
    train = FramesDataset(tmp_path, frame_shape=(S, S, 3), random_seed=3)
    test = FramesDataset(tmp_path, frame_shape=(S, S, 3), random_seed=3, is_train=False)
    assert len(train) == 8 and len(test) == 2 and not set(train.videos) & set(test.videos)
    again = FramesDataset(tmp_path, frame_shape=(S, S, 3), random_seed=3, is_train=False)
    assert again.videos == test.videos
    splits = {tuple(FramesDataset(tmp_path, frame_shape=(S, S, 3), random_seed=s, is_train=False).videos)
              for s in range(5)}
    assert len(splits) > 1, "the split follows random_seed"
    assert test[0]["video"].shape == (5, S, S, 3)


def test_num_repeats_and_batches_cover_every_video(tmp_path):
    make_root(tmp_path, [f"v{i}" for i in range(8)])  # 6 in train/, 2 in test/
    ds = FramesDataset(tmp_path, frame_shape=(S, S, 3))
    assert len(RepeatedDataset(ds, 3)) == 18
    batches = Batches(ds, batch_size=4, num_repeats=3, seed=7)
    assert len(batches) == 4  # 18 items, last partial batch dropped
    names = [n for b in batches.epoch(0) for n in b["name"]]
    assert len(names) == 16 and max(names.count(n) for n in set(names)) <= 3
    everything = Batches(ds, batch_size=4, num_repeats=3, drop_last=False)
    names = [n for b in everything.epoch(0) for n in b["name"]]
    assert sorted(names) == sorted(ds.videos * 3)
    np.testing.assert_array_equal(batches.batch(2, 5)["source"], batches.batch(2, 5)["source"])
    assert batches.batch(0, 0)["name"] != batches.batch(0, 1)["name"] or \
        not np.array_equal(batches.batch(0, 0)["source"], batches.batch(0, 1)["source"])
    first, second = iter(batches), iter(batches)  # successive epochs
    assert [b["name"] for b in first] == [b["name"] for b in batches.epoch(0)]
    assert [b["name"] for b in second] == [b["name"] for b in batches.epoch(1)]


def test_steps_per_epoch_cycles_through_reshuffled_passes(tmp_path):
    make_root(tmp_path, [f"v{i}" for i in range(8)])  # 6 in train/
    ds = FramesDataset(tmp_path, frame_shape=(S, S, 3))
    one_pass = Batches(ds, batch_size=3, seed=2, prefetch=0, workers=0)
    longer = Batches(ds, batch_size=3, seed=2, steps_per_epoch=7)
    shorter = Batches(ds, batch_size=3, seed=2, steps_per_epoch=1)
    assert (len(one_pass), one_pass.batches_per_pass, len(longer), len(shorter)) == (2, 2, 7, 1)
    epoch = [b["name"] for b in longer.epoch(3)]
    assert len(epoch) == 7 and epoch[:2] == [b["name"] for b in one_pass.epoch(3)]
    passes = [epoch[k] + epoch[k + 1] for k in (0, 2, 4)]
    assert all(sorted(p) == sorted(ds.videos) for p in passes) and len({tuple(p) for p in passes}) == 3
    assert [b["name"] for b in shorter.epoch(3)] == epoch[:1]
    np.testing.assert_array_equal(longer.batch(6, 3)["source"], longer.batch(6, 3)["source"])
    assert [b["name"] for b in longer.epoch(4)] != epoch
    assert len(keras_dataset(longer)) == 7
    with pytest.raises(IndexError, match="batch index 7 out of range for 7 batches"):
        longer.batch(7)
    for bad in (0, -1):
        with pytest.raises(ValueError, match=rf"steps_per_epoch must be >= 1 \(or None for one pass over the "
                                             rf"data\), got {bad}"):
            Batches(ds, batch_size=3, steps_per_epoch=bad)


def test_unknown_keys_and_bad_folders_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['num_workers'\]"):
        FramesDataset(tmp_path, num_workers=4)
    with pytest.raises(ValueError, match=r"augmentation_params: unknown key\(s\) \['blur_param'\]"):
        FramesDataset(tmp_path, augmentation_params={"blur_param": {}})
    with pytest.raises(ValueError, match="is not a folder"):
        FramesDataset(tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no videos"):
        FramesDataset(tmp_path)
    os.makedirs(tmp_path / "train")
    with pytest.raises(ValueError, match="no test/ folder"):
        FramesDataset(tmp_path)
    os.makedirs(tmp_path / "test")
    with pytest.raises(ValueError, match=r"train.*holds no videos"):
        FramesDataset(tmp_path)
    with pytest.raises(ValueError, match="frame_shape"):
        FramesDataset(tmp_path, frame_shape=[S, S, 4])


def test_corrupt_and_empty_videos_are_named_or_skipped(tmp_path):
    make_root(tmp_path, [f"v{i}" for i in range(5)], ext=".mp4")
    (tmp_path / "train" / "broken.mp4").write_bytes(b"definitely not h264" * 10)
    ds = FramesDataset(tmp_path, frame_shape=(S, S, 3))
    index = ds.videos.index("broken.mp4")
    with pytest.raises(VideoReadError, match=r"broken\.mp4"):
        ds.sample(index, np.random.default_rng(0))
    (tmp_path / "train" / "empty.mp4").write_bytes(b"")
    os.makedirs(tmp_path / "train" / "no_frames")
    with pytest.raises(VideoReadError, match=r"empty\.mp4.*empty"):
        FramesDataset(tmp_path, frame_shape=(S, S, 3))
    with pytest.warns(UserWarning) as record:
        ds = FramesDataset(tmp_path, frame_shape=(S, S, 3), skip_bad=True)
    messages = " ".join(str(r.message) for r in record)
    assert "empty.mp4" in messages and "no_frames" in messages
    assert sorted(os.path.basename(p) for p, _ in ds.skipped) == ["empty.mp4", "no_frames"]
    with pytest.warns(UserWarning, match="broken.mp4"):
        names = [n for b in Batches(ds, batch_size=2, num_repeats=3).epoch(0) for n in b["name"]]
    assert "broken.mp4" not in names and len(names) == 12  # replaced, the epoch keeps its length
    assert "broken.mp4" in [os.path.basename(p) for p, _ in ds.skipped]


@pytest.mark.parametrize("ext", [".mp4", ".gif"])
def test_pairs_read_partly_are_those_of_a_whole_decode(tmp_path, ext):
    make_root(tmp_path, [f"v{i}" for i in range(6)], ext=ext)
    ds = FramesDataset(tmp_path, frame_shape=(S, S, 3))
    for i in range(len(ds)):
        item = ds.sample(i, np.random.default_rng(i))
        whole = read_video(ds.path(item["name"]))
        expected = whole[np.sort(np.random.default_rng(i).choice(len(whole), size=2, replace=True))]
        np.testing.assert_array_equal(item["source"], expected[0])
        np.testing.assert_array_equal(item["driving"], expected[1])


def test_a_video_listing_more_frames_than_it_decodes_still_gives_pairs(tmp_path, monkeypatch):
    make_root(tmp_path, ["a", "b", "c"], ext=".mp4")
    count = video_io._count_ffmpeg_frames
    monkeypatch.setattr(video_io, "_count_ffmpeg_frames",
                        lambda p, decode=False: count(p, decode) + (0 if decode else 50))
    ds = FramesDataset(tmp_path, frame_shape=(S, S, 3))
    assert video_io.num_frames(ds.path(ds.videos[0])) == 55
    for _ in range(3):
        item = ds.sample(0, np.random.default_rng(0))
        assert decode(item["source"])[0] <= decode(item["driving"])[0] <= 4
    assert video_io.num_frames(ds.path(ds.videos[0])) == 5, "the count was corrected on the first read"


def test_cached_videos_give_the_same_pairs(tmp_path):
    make_root(tmp_path, [f"v{i}" for i in range(6)], ext=".mp4")
    plain = FramesDataset(tmp_path, frame_shape=(S, S, 3))
    cached = FramesDataset(tmp_path, frame_shape=(S, S, 3), cache_videos=2)
    for i in list(range(len(plain))) * 2:
        a = plain.sample(i, np.random.default_rng(i))
        b = cached.sample(i, np.random.default_rng(i))
        np.testing.assert_array_equal(a["source"], b["source"])
        np.testing.assert_array_equal(a["driving"], b["driving"])
    assert len(cached._cache) == 2


def test_wrong_frame_size_is_named(tmp_path):
    make_root(tmp_path, ["a", "b"])
    ds = FramesDataset(tmp_path, frame_shape=(32, 32, 3))
    with pytest.raises(VideoReadError, match=r"train/b.*16x16, frame_shape expects 32x32"):
        ds[0]


def test_prefetch_keeps_order_raises_and_stops_early():
    assert list(prefetch(lambda i: i * i, range(6), buffer=2, workers=2)) == [0, 1, 4, 9, 16, 25]
    assert list(prefetch(lambda i: i, range(3), buffer=0, workers=0)) == [0, 1, 2]

    def fail_at_three(i):
        if i == 3:
            raise RuntimeError("item 3")
        return i

    got = []
    with pytest.raises(RuntimeError, match="item 3"):
        for x in prefetch(fail_at_three, range(10)):
            got.append(x)
    assert got == [0, 1, 2]
    gen = prefetch(lambda i: i, range(10**9))
    assert next(gen) == 0
    gen.close()  # leaves without computing the rest


def test_synthetic_dataset_round_trip_through_the_reader(tmp_path):
    synthetic.write_dataset(str(tmp_path), "faces", num_train=4, num_test=2, num_frames=6, size=32,
                            videos_per_identity=2, layout="mp4")
    ds = FramesDataset(tmp_path, frame_shape=(32, 32, 3), id_sampling=True)
    assert ds.videos == ["id0000000", "id0000001"]
    test = FramesDataset(tmp_path, frame_shape=(32, 32, 3), is_train=False)
    item = test[0]
    meta = synthetic.read_metadata(str(tmp_path))["videos"][item["name"]]
    video = synthetic.render_video("faces", meta["identity"], meta["motion"], 6, 32)
    assert np.abs(item["video"] - video.frames).mean() < 0.03


def test_batches_reach_keras_on_this_backend(tmp_path):
    make_root(tmp_path, [f"v{i}" for i in range(6)])
    batches = Batches(FramesDataset(tmp_path, frame_shape=(S, S, 3)), batch_size=2, num_repeats=2)
    data = keras_dataset(batches)
    assert len(data) == len(batches)
    x = data[0]
    assert sorted(x) == ["driving", "source"]
    tensor = keras.ops.convert_to_tensor(x["source"])
    assert tuple(tensor.shape) == (2, S, S, 3) and keras.backend.standardize_dtype(tensor.dtype) == "float32"
    stream = synthetic.PairStream("figures", size=S, batch_size=3, steps_per_epoch=2)
    y = keras_dataset(stream)[1]
    assert y["source_keypoints"].shape == (3, 14, 2) and "name" not in y


def test_a_test_only_dataset_is_read_for_testing_and_refused_for_training(tmp_path):
    """What `kmt synth --num-train 0` writes: test/ alone, evaluated as it is, never split at random."""
    synthetic.write_dataset(str(tmp_path), "faces", num_train=0, num_test=2, num_frames=4, size=S)
    assert not os.path.isdir(tmp_path / "train")
    testing = FramesDataset(tmp_path, frame_shape=[S, S, 3], is_train=False)
    assert testing.root_dir == str(tmp_path / "test") and len(testing.names) == 2
    with pytest.raises(ValueError, match="has a test/ folder but no train/ folder to train on"):
        FramesDataset(tmp_path, frame_shape=[S, S, 3])


def assert_same_items(got, expected):
    assert [it["name"] for it in got] == [it["name"] for it in expected]
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a["source"], b["source"])
        np.testing.assert_array_equal(a["driving"], b["driving"])


def test_sample_many_reads_a_batch_together_and_gives_the_items_of_sample(tmp_path, monkeypatch):
    names = [f"id{g}#clip{c}" for g in range(3) for c in range(4)]
    make_root(tmp_path, names, ext=".mp4")
    for name, ext in (("id0#gif", ".gif"), ("id1#folder", "")):
        write_video(str(tmp_path / "train" / (name + ext)), coded_video(20))
    p = params(VOX, tmp_path, pairs_list=None)
    one_by_one, together = FramesDataset(**p), FramesDataset(**p)
    indices = [0, 1, 2, 2, 1, 0]
    expected = [one_by_one.sample(i, np.random.default_rng([5, k])) for k, i in enumerate(indices)]
    runs = []
    run = video_io.subprocess.run
    monkeypatch.setattr(video_io.subprocess, "run", lambda cmd, *a, **k: runs.append(cmd) or run(cmd, *a, **k))
    got = together.sample_many(indices, [np.random.default_rng([5, k]) for k in range(len(indices))])
    assert_same_items(got, expected)
    assert len(runs) == 1, "the frame counts were known: one ffmpeg run for the mp4 of the batch"


def test_sample_many_with_bad_videos_matches_sample(tmp_path):
    make_root(tmp_path, [f"v{i}" for i in range(6)], ext=".mp4")
    (tmp_path / "train" / "broken.mp4").write_bytes(b"definitely not h264" * 10)
    with pytest.warns(UserWarning, match="broken.mp4"):
        one_by_one = FramesDataset(tmp_path, frame_shape=(S, S, 3), skip_bad=True)
        expected = [one_by_one.sample(i, np.random.default_rng(i)) for i in range(len(one_by_one))]
    with pytest.warns(UserWarning, match="broken.mp4"):
        together = FramesDataset(tmp_path, frame_shape=(S, S, 3), skip_bad=True)
        got = together.sample_many(range(len(together)), [np.random.default_rng(i) for i in range(len(together))])
    assert_same_items(got, expected)
    assert together.skipped == one_by_one.skipped and "broken.mp4" not in [it["name"] for it in got]
    strict = FramesDataset(tmp_path, frame_shape=(S, S, 3))
    with pytest.raises(VideoReadError, match=r"broken\.mp4"):
        strict.sample_many(range(len(strict)), [np.random.default_rng(i) for i in range(len(strict))])
    wrong_size = FramesDataset(tmp_path, frame_shape=(32, 32, 3), skip_bad=True)
    with pytest.warns(UserWarning) as record, pytest.raises(ValueError, match="no readable video left"):
        wrong_size.sample_many([0, 1], [np.random.default_rng(0), np.random.default_rng(1)])
    assert "16x16, frame_shape expects 32x32" in " ".join(str(r.message) for r in record)
