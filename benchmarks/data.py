"""How fast kmt.data makes training data on 2 CPU cores, at 64, 128 and 256 pixels.

Measures, side by side in one run:

- the synthetic generator rendering whole videos (frames per second), both families;
- the synthetic pair stream (``PairStream``, the in-memory training source): pairs per second
  computed in the calling thread, and as the training loop sees them through the prefetching
  iterator while the main thread stays busy half the time (a stand-in for a training step);
- the real-data loader (``FramesDataset`` + ``Batches`` with the official vox augmentations:
  flips and colour jitter) on datasets written to a temporary folder as png frame folders
  and as mp4, pairs per second;
- reading one training pair (``FramesDataset.sample``, vox augmentations) from short and long
  mp4 clips and frame folders at 64 and 256 px, decoding the whole clip per pair (how mp4 was
  read before kmt read only the frames a pair needs) beside reading only the pair, next to the
  synthetic stream's rate and the rate the TensorFlow training step consumes pairs at (read
  from ``benchmarks/results/train_step.json``, written by ``benchmarks/train_step.py``).

A pair is one training example (a source and a driving frame). The training step's rate is
its batch size over its median seconds per step. Run:
``python benchmarks/data.py [--out benchmarks/results/data.md]``.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 2:
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])

from kmt.data import synthetic  # noqa: E402
from kmt.data.dataset import Batches, FramesDataset  # noqa: E402
from kmt.data.video_io import num_frames, read_video, to_float_rgb, write_video  # noqa: E402

TRAIN_STEP_RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "train_step.json")
# (size, frames per clip): short clips, and long ones (fewer frames at 256 px to bound the run time).
CLIPS = ((64, 32), (64, 300), (256, 32), (256, 150))

SIZES = (64, 128, 256)
VOX_AUGMENTATION = {"flip_param": {"horizontal_flip": True, "time_flip": True},
                    "jitter_param": {"brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.1}}


def rate(fn, items, repeats=3, min_time=0.5):
    """Median items per second of ``fn()`` (which makes ``items`` items) over ``repeats`` runs of at least
    ``min_time`` seconds each (``fn`` is called as often as that takes)."""

    def run():
        start, count = time.perf_counter(), 0
        while time.perf_counter() - start < min_time:
            fn()
            count += 1
        return count

    counts = []
    _, times = harness.timed(lambda: counts.append(run()), repeats)
    return float(np.median([items * n / t for n, t in zip(counts[1:], times)]))


def busy(seconds):
    """Keep the main thread busy like a training step that holds the GIL part of the time."""
    end = time.perf_counter() + seconds
    x = np.ones(256, np.float32)
    while time.perf_counter() < end:
        x = np.sqrt(x + 1.0)


def prefetched_rate(iterator, batch_size, steps, step_time):
    """Pairs per second a training loop gets when each step also works ``step_time`` seconds."""
    next(iterator)
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
        busy(step_time)
    elapsed = time.perf_counter() - start
    return steps * batch_size / elapsed, steps * step_time / elapsed


def generator_rows(families):
    rows = []
    for family in families:
        for size in SIZES:
            frames = 32
            video_fps = rate(lambda: synthetic.render_video(family, 1, 2, frames, size), frames)
            batch = 16
            stream = synthetic.PairStream(family, size, batch, steps_per_epoch=10**6)
            counter = iter(range(10**9))
            pair_rate = rate(lambda: stream.batch(next(counter)), batch)
            step_time = 0.5 * batch / pair_rate
            it = iter(synthetic.PairStream(family, size, batch, steps_per_epoch=10**6, workers=1, prefetch=2))
            loop_rate, duty = prefetched_rate(it, batch, 8, step_time)
            it.close()
            rows.append((family, size, video_fps, pair_rate, loop_rate, duty))
            print(f"{family:8s} {size:4d}px  video {video_fps:8.0f} frames/s  stream {pair_rate:7.0f} pairs/s  "
                  f"through prefetch with a busy loop {loop_rate:7.0f} pairs/s (loop busy {duty:.0%})", flush=True)
    return rows


def loader_rows(root):
    rows = []
    for size in (64, 256):
        for layout, cache in (("frames", 0), ("mp4", 0), ("mp4", 16)):
            path = os.path.join(root, f"{layout}-{size}")
            if not cache:
                start = time.perf_counter()
                synthetic.write_dataset(path, "faces", num_train=16, num_test=2, num_frames=32, size=size,
                                        layout=layout)
                write_fps = 18 * 32 / (time.perf_counter() - start)
            ds = FramesDataset(path, frame_shape=(size, size, 3), augmentation_params=VOX_AUGMENTATION,
                               cache_videos=cache)
            layout = f"{layout}, cache_videos={cache}" if cache else layout
            written = None if cache else write_fps
            batches = Batches(ds, batch_size=8, num_repeats=4, prefetch=0, workers=0)
            if cache:
                for _ in batches.epoch(0):  # fill the cache first
                    pass
            counter = iter(range(10**9))
            single = rate(lambda: batches.batch(next(counter) % len(batches)), 8)
            threaded = Batches(ds, batch_size=8, num_repeats=4, prefetch=2, workers=2)
            start = time.perf_counter()
            n = sum(len(b["name"]) for b in threaded.epoch(0))
            two = n / (time.perf_counter() - start)
            rows.append((layout, size, written, single, two))
            print(f"loader {layout:22s} {size:4d}px  write {write_fps:6.0f} frames/s  read {single:6.0f} pairs/s  "
                  f"2 threads {two:6.0f} pairs/s", flush=True)
    return rows


def training_rates(path=TRAIN_STEP_RESULTS):
    """``{size: (pairs per second, config, batch)}`` of the TensorFlow training steps in ``path``."""
    with open(path) as f:
        results = json.load(f)
    rates = {}
    for entry in results.get("small", []) + results.get("kmt", []):
        if entry["backend"] == "tensorflow":
            rates[entry["size"]] = (entry["batch"] / entry["median_s"], entry["config"], entry["batch"])
    return rates


def decode_whole_with_imageio_ffmpeg(path):
    """How mp4 pairs were read before: the whole clip decoded by imageio-ffmpeg, then float32."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(path, pix_fmt="rgb24")
    try:
        width, height = next(reader)["size"]
        frames = np.stack([np.frombuffer(buf, np.uint8).reshape(height, width, 3) for buf in reader])
    finally:
        reader.close()
    return to_float_rgb(frames)


class WholeClipDataset(FramesDataset):
    """``FramesDataset`` decoding the whole clip for every pair, one pair at a time (the old
    path for mp4)."""

    def _read_pair(self, name, rng):
        path = self.path(name)
        video = read_video(path) if os.path.isdir(path) else decode_whole_with_imageio_ffmpeg(path)
        return video[np.sort(rng.choice(len(video), size=2, replace=True))]

    def sample_many(self, indices, rngs):
        return [self.sample(int(i), rng) for i, rng in zip(indices, rngs)]


def write_clips(root, size, length, count=4):
    """``count`` synthetic clips as png folders under ``root/frames`` and mp4 under ``root/mp4``."""
    for layout in ("frames", "mp4"):
        for split in ("train", "test"):
            os.makedirs(os.path.join(root, layout, split), exist_ok=True)
    for i in range(count):
        frames = synthetic.render_video("faces", i, i, length, size).frames
        write_video(os.path.join(root, "frames", "train", f"v{i}"), frames)
        write_video(os.path.join(root, "mp4", "train", f"v{i}.mp4"), frames)


def pair_rows(root, stream_rates, train_rates, batch_size=8):
    """Pairs per second: whole-clip decoding; reading only the pair, one at a time and in batches."""
    rows = []
    for size, length in CLIPS:
        folder = os.path.join(root, f"clips-{size}-{length}")
        write_clips(folder, size, length)
        for layout in ("mp4", "frames"):
            rates = []
            for kind in (WholeClipDataset, FramesDataset):
                ds = kind(os.path.join(folder, layout), frame_shape=(size, size, 3),
                          augmentation_params=VOX_AUGMENTATION)
                for name in ds.videos:  # frame counts are read once per file, as in a first epoch
                    num_frames(ds.path(name))
                rng = np.random.default_rng(0)
                rates.append(rate(lambda: ds.sample(int(rng.integers(len(ds))), rng), 1, min_time=0.3))
            batches = Batches(ds, batch_size=batch_size, num_repeats=2 * batch_size, prefetch=0, workers=0)
            counter = iter(range(10**9))
            rates.append(rate(lambda: batches.batch(next(counter) % len(batches)), batch_size, min_time=0.3))
            train = train_rates.get(size)
            rows.append((layout, size, length, *rates, stream_rates.get(size), train))
            print(f"pair {layout:6s} {size:4d}px {length:4d} frames  whole clip {rates[0]:6.1f}  one pair "
                  f"{rates[1]:6.1f}  batches of {batch_size} {rates[2]:6.1f} pairs/s ({rates[2] / rates[0]:5.1f}x)  "
                  f"synthetic stream {stream_rates.get(size, float('nan')):5.0f}  training consumes "
                  f"{train[0] if train else float('nan'):6.2f} pairs/s", flush=True)
    return rows


def markdown(gen, load, pairs, train_rates, load_average):
    described = harness.describe()
    lines = [
        "# Data pipeline throughput",
        "",
        f"`python benchmarks/data.py` on {described['machine']}, numpy {np.__version__}, {described['date']}. "
        "Medians of 3 runs; timings on a shared machine vary by up to ~1.5x.",
        "",
        "## Synthetic generator",
        "",
        "`video`: `render_video` of 32 frames; `stream`: `PairStream.batch` of 16 pairs in the calling thread; "
        "`prefetched`: what a training loop receives through the stream's background thread while its own "
        "step keeps the main thread busy half of the time.",
        "",
        "| family | size | video (frames/s) | stream (pairs/s) | prefetched (pairs/s) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {f} | {s} | {v:,.0f} | {p:,.0f} | {l:,.0f} |" for f, s, v, p, l, _ in gen]
    slow64 = min(p for _, s, _, p, _, _ in gen if s == 64)
    slow256 = min(p for _, s, _, p, _, _ in gen if s == 256)
    lines += [
        "",
        f"The TensorFlow training step consumes {train_rates[64][0]:.1f} pairs per second at 64 px "
        f"(`{train_rates[64][1]}`; the stream then spends {100 * train_rates[64][0] / slow64:.0f} % of one "
        f"core making them) and {train_rates[256][0]:.2f} at 256 px (`{train_rates[256][1]}`, "
        f"{100 * train_rates[256][0] / slow256:.1f} % of one core), from `benchmarks/results/train_step.json`.",
    ]
    lines += [
        "",
        "## Real-data loader",
        "",
        "16 training videos of 32 frames written by `write_dataset` (`write`: frames per second, png "
        "folders or H.264 mp4), read back by `FramesDataset` with the official vox augmentations (flips, "
        "colour jitter) in batches of 8: `1 thread` calls `Batches.batch` in the calling thread, "
        "`2 threads` iterates an epoch with two loader threads. `cache_videos=16` keeps the decoded "
        "videos in memory (timed after a first epoch has filled the cache).",
        "",
        "| layout | size | write (frames/s) | 1 thread (pairs/s) | 2 threads (pairs/s) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {lay} | {s} | {'-' if w is None else f'{w:,.0f}'} | {a:,.0f} | {b:,.0f} |"
              for lay, s, w, a, b in load]
    lines += [
        "",
        "Folders of png frames decode only the two frames a pair needs; the mp4 of a batch are decoded by "
        "one ffmpeg run, each file only up to the later frame of its pair (the start of ffmpeg, about 10 ms "
        "of CPU, is most of the cost of a short clip); `cache_videos` removes the decoding for datasets that "
        "fit in memory. Two loader threads gain little on 2 cores, where the training loop needs the other "
        "core.",
    ]
    lines += [
        "",
        "## Real layouts: the whole clip, or only the pair",
        "",
        "Pairs per second (every column but the ratio) of the real-data loader (vox augmentations, one "
        "thread) on 4 synthetic `faces` clips per row, written as H.264 mp4 and as png frame folders. `whole clip`: `FramesDataset.sample` "
        "decoding the whole clip for every pair, as mp4 was read before (imageio-ffmpeg, then float32); for "
        "frame folders the loader has always read only the two frames, and the column shows what decoding "
        "the whole folder would cost. `one pair`: `FramesDataset.sample` now, reading only the pair; "
        "`batch of 8`: `Batches.batch` now, which reads the pairs of a batch together (one ffmpeg run for "
        "its mp4); both with the frame count of each file read once beforehand, as in a first epoch. "
        "`synthetic`: the `faces` pair stream above at that size. "
        "`training consumes`: pairs per second of one TensorFlow training step, its batch over its median "
        "seconds per step, from `benchmarks/results/train_step.json` (" +
        "; ".join(f"{s} px: `{c}`, batch {b}" for s, (_, c, b) in sorted(train_rates.items())) + ").",
        "",
        "| layout | size | frames | whole clip | one pair | batch of 8 | batch of 8 / whole clip | "
        "synthetic | training consumes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for layout, size, length, whole, pair, batched, stream, train in pairs:
        stream_text = "-" if stream is None else f"{stream:,.0f}"
        train_text = "-" if train is None else f"{train[0]:.2f}"
        lines.append(f"| {layout} | {size} | {length} | {whole:,.1f} | {pair:,.1f} | {batched:,.1f} | "
                     f"{batched / whole:.1f}x | {stream_text} | {train_text} |")
    lines.append("")
    for size in sorted({row[1] for row in pairs}):
        layout, _, length, _, _, batched, _, train = min((r for r in pairs if r[1] == size), key=lambda r: r[5])
        if train is not None:
            lines.append(f"At {size} px the slowest real layout here ({layout}, {length} frames) gives "
                         f"{batched:,.1f} pairs/s in batches, {batched / train[0]:,.1f} times what the training "
                         f"step consumes ({train[0]:.2f} pairs/s).")
    lines += [
        "",
        f"Load average (1, 5, 15 min) before / after the run: {load_average[0]} / {load_average[1]} on 2 "
        "cores shared with other work: absolute rates move with the load; the columns of a row are "
        "measured within seconds of each other, so their ratios move less.",
    ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the markdown table to this file")
    args = parser.parse_args()
    load_before = harness.load_average()
    print(f"load average {load_before}", flush=True)
    train_rates = training_rates()
    gen = generator_rows(("faces", "figures"))
    stream_rates = {s: p for f, s, _, p, _, _ in gen if f == "faces"}
    with tempfile.TemporaryDirectory() as root:
        load = loader_rows(root)
        pairs = pair_rows(root, stream_rates, train_rates)
    load_after = harness.load_average()
    text = markdown(gen, load, pairs, train_rates, (load_before, load_after))
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
