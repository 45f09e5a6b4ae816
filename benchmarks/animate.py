"""Seconds per animated frame of ``kmt.animation.Animator`` (what ``kmt animate`` runs) beside the official code.

kmt's side is the animator ``kmt animate`` builds, :class:`kmt.animation.Animator` (compiled as it
compiles: TensorFlow graphs, ``jax.jit``, PyTorch eager), and the ONNX Runtime animator of
``kmt animate --runtime onnxruntime`` (:class:`kmt.onnx_runtime.OnnxAnimator`, on the graphs
``kmt.export`` writes from the same weights), timed on a whole clip by
``Animator.animate(source, clip, relative=True, adapt_movement_scale=True)``; the official side is
the loop of the official ``demo.py`` (``make_animation``: the source's keypoints and the first
driving frame's once, then for every frame the driving keypoints, the official ``normalize_kp``
and the whole generator), with the official modules, eager under ``torch.no_grad``. Both use the
vox-256 architecture with the same random weights (kmt's, exported with
``kmt.convert.export_state_dict``), ``align_corners=False`` (the official code on PyTorch >= 1.3),
float32, and report how far apart their frames are.

Two things differ between what ``kmt animate`` and the official demo do per frame, so each is a
column here, and the headline compares like with like:

- ``source encoder``: ``cached`` encodes the source once and reuses its features for every frame
  (``Animator``'s default); ``every frame`` runs the whole generator, encoder included, for every
  frame (``Animator(cache_source=False)``; the official generator can only do this);
- ``frames / call``: driving frames computed by one call of the networks; the official demo runs 1,
  ``kmt animate`` 8 (``--batch``); the official modules are also timed at 8 per call (the same
  loop, batched).

Like for like (the headline): the same encoder work and the same frames per call on both sides.
The other rows are labelled with what they compare. Seconds per frame: the clip's time over its
frames, ``--repeats`` clips after a first (compiling) one, in each of ``--rounds`` rounds; each
round runs every backend and the official code in turn (the order alternates). Cells give the
median over all timed clips with the min-max; ratios divide medians of the same round, and their
min-max over rounds is given too.

    python benchmarks/animate.py --official-dir ../official-fomm [--repeats 3] [--rounds 2]
        [--frames 8] [--batch 8] [--bfloat16]

Results go to benchmarks/results/animate.md and animate.json (``animate-<config>.*`` for another
config, e.g. ``--config synthetic-faces-64 --size 64``; ``-threads<N>`` with ``--threads N``;
``--no-write`` to skip).
"""

import argparse
import json
import os
import re
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")
COMPILED_AS = {"tensorflow": "tf.function (as Animator compiles)", "jax": "jax.jit", "torch": "eager, no_grad",
               "onnxruntime": "the graphs of `kmt export`, ONNX Runtime on the CPU"}
OFFICIAL = "official PyTorch"
CACHED, EVERY = "cached", "every frame"
SEED = 0


def inputs(size, frames):
    """One source image and a clip of ``frames`` driving frames, the same in every process."""
    rng = np.random.default_rng(SEED + 1)
    return rng.random((1, size, size, 3), dtype="float32"), rng.random((frames, size, size, 3), dtype="float32")


def kmt_models(config):
    import keras

    from kmt.config import build_models

    keras.utils.set_random_seed(SEED)  # the same weights in every process, whatever the backend
    return build_models(config, align_corners=False, networks=("kp_detector", "generator"))


def _record(args, run, frames, key, name):
    """Time ``run`` (one clip of ``frames`` frames); print one JSON line with seconds per frame."""
    try:
        first, times = harness.timed(run, args.repeats)
        np.save(os.path.join(args.out, name), np.asarray(run())[:1])
        record = {"first_call_s": first, "times_s": [t / frames for t in times], "prediction": name}
    except Exception as error:  # a variant that cannot run is reported, not fatal
        message = re.sub(r"\x1b\[[0-9;]*m", "", f"{type(error).__name__}: {error}")  # no terminal colours
        record = {"error": " ".join(message.split())[:500]}
    record.update(key, round=args.round)
    print(json.dumps(record), flush=True)


def kmt_worker(args):
    """Time ``kmt.animation.Animator`` on this process's backend, per encoder mode and frames per call."""
    import keras

    from kmt.animation import Animator

    harness.limit_threads(args.threads)
    backend = keras.backend.backend()
    models = kmt_models(args.config)
    source, driving = inputs(args.size, args.frames)
    precisions = ["float32", "bfloat16"] if args.bfloat16 else ["float32"]
    for convolutions in precisions:
        for cache in (True, False):
            if convolutions != "float32" and not cache:
                continue
            for batch in sorted({1, args.batch}):
                animator = Animator(models["kp_detector"], models["generator"], batch_size=batch,
                                    convolutions=convolutions, cache_source=cache)

                def run(animator=animator):
                    return animator.animate(source[0], driving, relative=True, adapt_movement_scale=True)

                key = {"backend": backend, "convolutions": convolutions, "encoder": CACHED if cache else EVERY,
                       "batch": batch}
                _record(args, run, args.frames, key, f"{backend}-{convolutions}-{int(cache)}-{batch}-{args.round}.npy")


def onnxruntime_worker(args):
    """Time :class:`kmt.onnx_runtime.OnnxAnimator` (``kmt animate --runtime onnxruntime``) on the same weights.

    The random weights are built as the other workers build them, saved as a .kmt and exported with
    ``kmt.export`` (the export's seconds go to stderr; they are paid once per model, not per clip).
    """
    import time

    import onnxruntime

    from kmt import checkpoint, export
    from kmt.config import load_config
    from kmt.onnx_runtime import OnnxAnimator

    harness.limit_threads(args.threads)
    models = kmt_models(args.config)
    source, driving = inputs(args.size, args.frames)
    path = os.path.join(args.out, "weights.kmt")
    checkpoint.save(path, load_config(args.config), models, align_corners=False, image_size=(args.size, args.size))
    started = time.perf_counter()
    export(os.path.join(args.out, "onnx"), checkpoint=path)
    print(f"kmt.export: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    for cache in (True, False):
        for batch in sorted({1, args.batch}):
            animator = OnnxAnimator(os.path.join(args.out, "onnx"), batch_size=batch, threads=args.threads,
                                    cache_source=cache)

            def run(animator=animator):
                return animator.animate(source[0], driving, relative=True, adapt_movement_scale=True)

            key = {"backend": "onnxruntime", "convolutions": "float32", "encoder": CACHED if cache else EVERY,
                   "batch": batch, "variant": f"onnxruntime {onnxruntime.__version__}, CPU"}
            _record(args, run, args.frames, key, f"onnxruntime-{int(cache)}-{batch}-{args.round}.npy")


def _official_imports(official_dir):
    """The official modules, and ``normalize_kp`` from its ``animate.py``.

    ``normalize_kp`` is compiled from that file's own source, without running the module's imports
    (tqdm, scikit-learn, torchvision: its training requirements, which animating does not use).
    """
    import ast

    import torch
    from scipy.spatial import ConvexHull

    sys.path.insert(0, official_dir)
    from modules.generator import OcclusionAwareGenerator
    from modules.keypoint_detector import KPDetector

    path = os.path.join(official_dir, "animate.py")
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "normalize_kp")
    namespace = {"torch": torch, "np": np, "ConvexHull": ConvexHull}
    exec(compile(ast.Module([function], type_ignores=[]), path, "exec"), namespace)  # noqa: S102
    return KPDetector, OcclusionAwareGenerator, namespace["normalize_kp"]


def official_worker(args):
    """Time the official demo loop (``make_animation``), one frame per call and batched, with kmt's weights."""
    os.environ["KERAS_BACKEND"] = "torch"
    import torch

    from kmt.config import load_config
    from kmt.convert import export_state_dict

    harness.limit_threads(args.threads)
    KPDetector, OcclusionAwareGenerator, normalize_kp = _official_imports(args.official_dir)
    params = load_config(args.config)["model_params"]
    kp_detector = KPDetector(**params["kp_detector_params"], **params["common_params"]).eval()
    generator = OcclusionAwareGenerator(**params["generator_params"], **params["common_params"]).eval()
    ours = kmt_models(args.config)
    for module, name in ((kp_detector, "kp_detector"), (generator, "generator")):
        module.load_state_dict({k: torch.tensor(v) for k, v in export_state_dict(ours[name]).items()})
    del ours
    source, driving = (torch.tensor(np.transpose(x, (0, 3, 1, 2))) for x in inputs(args.size, args.frames))

    def animation(batch):
        """The demo's make_animation, computing ``batch`` driving frames per call of the networks."""
        with torch.no_grad():
            kp_source = kp_detector(source)
            kp_initial = kp_detector(driving[:1])
            predictions = []
            for begin in range(0, len(driving), batch):
                frames = driving[begin:begin + batch]
                count = len(frames)
                kp_driving = kp_detector(frames)
                kp_norm = normalize_kp(kp_source=kp_source, kp_driving=kp_driving, kp_driving_initial=kp_initial,
                                       use_relative_movement=True, use_relative_jacobian=True,
                                       adapt_movement_scale=True)
                sources = source.repeat(count, 1, 1, 1)
                kp_sources = {k: v.repeat(count, *[1] * (v.dim() - 1)) for k, v in kp_source.items()}
                out = generator(sources, kp_source=kp_sources, kp_driving=kp_norm)
                predictions.append(np.transpose(out["prediction"].numpy(), (0, 2, 3, 1)))
        return np.concatenate(predictions)

    for batch in sorted({1, args.batch}):
        key = {"backend": OFFICIAL, "convolutions": "float32", "encoder": EVERY, "batch": batch,
               "variant": f"eager, torch {torch.__version__}, {torch.get_num_threads()} threads"}
        _record(args, lambda b=batch: animation(b), args.frames, key, f"official-{batch}-{args.round}.npy")


def measure(args):
    """Every worker in every round (the order alternates); ``{key: [records]}`` and the load averages."""
    runs, loads = {}, []
    with tempfile.TemporaryDirectory() as out:
        common = ["--config", args.config, "--size", str(args.size), "--batch", str(args.batch), "--frames",
                  str(args.frames), "--repeats", str(args.repeats), "--out", out]
        common += ["--bfloat16"] if args.bfloat16 else []
        jobs = [(["--worker", "official", "--official-dir", args.official_dir], "torch")] if args.official_dir else []
        jobs += [(["--worker", "kmt"], backend) for backend in args.backends]
        jobs += [(["--worker", "onnxruntime"], "torch")] if args.onnxruntime else []
        for round_ in range(args.rounds):
            loads.append(harness.load_average())
            for argv, backend in jobs if round_ % 2 == 0 else jobs[::-1]:
                name = "official" if "official" in argv else argv[1] if argv[1] == "onnxruntime" else backend
                print(f"round {round_ + 1}: {name} ...", file=sys.stderr, flush=True)
                for record in harness.run_worker(__file__, [*argv, *common, "--round", str(round_)], backend,
                                                 args.threads):
                    key = (record["backend"], record["convolutions"], record["encoder"], record["batch"])
                    runs.setdefault(key, []).append(record)
        loads.append(harness.load_average())
        rows = summarise(runs, out)
    return rows, loads


def summarise(runs, out):
    """One row per (backend, convolutions, encoder, frames per call): spreads, ratios, agreement."""
    rows = {}
    for key, records in runs.items():
        timed_ = [r for r in records if "times_s" in r]
        row = {"backend": key[0], "convolutions": key[1], "encoder": key[2], "batch": key[3],
               "variant": records[0].get("variant", COMPILED_AS.get(key[0], ""))}
        if not timed_:
            row["error"] = records[0].get("error", "no timing")
        else:
            row["s_per_frame"] = harness.spread([t for r in timed_ for t in r["times_s"]])
            row["round_medians"] = {r["round"]: harness.spread(r["times_s"])["median"] for r in timed_}
            row["first_call_s"] = [r["first_call_s"] for r in timed_]
            row["prediction"] = timed_[0]["prediction"]
        rows[key] = row
    reference_frame = None
    official = {k[3]: r for k, r in rows.items() if k[0] == OFFICIAL and "s_per_frame" in r}
    if 1 in official:
        reference_frame = np.load(os.path.join(out, official[1]["prediction"]))
    for row in rows.values():
        prediction = row.pop("prediction", None)
        if prediction and reference_frame is not None and row["backend"] != OFFICIAL:
            row["max_abs_diff_vs_official"] = float(np.abs(np.load(os.path.join(out, prediction)) - reference_frame).max())
        for batch, reference in official.items():
            if "s_per_frame" in row and row["backend"] != OFFICIAL:
                row[f"vs_official_{batch}"] = _ratio(reference, row)
    return list(rows.values())


def _ratio(reference, row):
    """The official row's seconds over this row's: of the pooled medians, and min-max over rounds."""
    rounds = [reference["round_medians"][r] / m for r, m in row["round_medians"].items() if r in reference["round_medians"]]
    return {"median": reference["s_per_frame"]["median"] / row["s_per_frame"]["median"],
            "min": min(rounds) if rounds else None, "max": max(rounds) if rounds else None}


def _fmt_ratio(r):
    if r is None:
        return ""
    spread = f" ({r['min']:.2f}-{r['max']:.2f})" if r.get("min") is not None else ""
    return f"{r['median']:.2f}x{spread}"


def _label(row):
    return OFFICIAL if row["backend"] == OFFICIAL else f"kmt, {row['backend']}"


def _cell(row):
    return harness.fmt_spread(row["s_per_frame"], digits=3) if "s_per_frame" in row else f"failed: {row['error'][:120]}"


def report(summary):
    rows, batch = summary["rows"], summary["batch"]
    f32 = [r for r in rows if r["convolutions"] == "float32"]
    lines = [
        f"# Animation speed: {summary['config']} at {summary['size']} x {summary['size']}",
        "",
        harness.header("animate.py", summary),
        "",
        f"Seconds per frame of a {summary['frames']}-frame clip, relative motion with adapted scale, random "
        "weights (the same on both sides); kmt: `kmt.animation.Animator.animate` as `kmt animate` runs it; "
        "official: the official demo's `make_animation` loop with the official modules. Median (min-max) of "
        f"{summary['repeats']} clips per round over {summary['rounds']} rounds, after a first (compiling) clip; "
        "ratios: the official seconds over kmt's (above 1: kmt faster), of the medians, with their min-max over "
        f"rounds. Threads: {summary['threads']}.",
        "",
        "## Like for like: the same work, the same frames per call",
        "",
        "Both run the whole generator (source encoder included) for every frame, as the official code does, "
        "at the same number of frames per call.",
        "",
        "| frames / call | official (s / frame) | kmt backend | kmt (s / frame) | kmt speed-up | max abs diff |",
        "| ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    official = {r["batch"]: r for r in f32 if r["backend"] == OFFICIAL}
    for frames_per_call in sorted(official):
        for row in (r for r in f32 if r["backend"] != OFFICIAL and r["encoder"] == EVERY and r["batch"] == frames_per_call):
            diff = f"{row['max_abs_diff_vs_official']:.1e}" if "max_abs_diff_vs_official" in row else ""
            lines.append(f"| {frames_per_call} | {_cell(official[frames_per_call])} | {row['backend']} | {_cell(row)} | "
                         f"{_fmt_ratio(row.get(f'vs_official_{frames_per_call}'))} | {diff} |")
    lines += [
        "",
        "## Other comparisons (labelled: the two sides do different work)",
        "",
        "`cached`: kmt encodes the source once per clip (its animator's default; the official generator "
        "cannot), so kmt does less work per frame than the official code in these rows. `vs official, 1 / call` "
        "compares with the official demo as it runs (one frame per call): the last rows are what `kmt animate` "
        f"does ({batch} frames per call, cached encoder) against what `demo.py` does.",
        "",
        "| implementation | convolutions | source encoder | frames / call | s / frame | frames / s "
        f"| vs official, 1 / call | vs official, {batch} / call | first clip (s) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    order = lambda r: (r["backend"] != OFFICIAL, r["backend"], r["convolutions"], r["encoder"], r["batch"])  # noqa: E731
    for row in sorted(rows, key=order):
        speed = f"{1 / row['s_per_frame']['median']:.2f}" if "s_per_frame" in row else ""
        first = f"{np.median(row['first_call_s']):.1f}" if row.get("first_call_s") else ""
        lines.append(f"| {_label(row)} | {row['convolutions']} | {row['encoder']} | {row['batch']} | {_cell(row)} | "
                     f"{speed} | {_fmt_ratio(row.get('vs_official_1'))} | "
                     f"{_fmt_ratio(row.get(f'vs_official_{batch}')) if batch != 1 else ''} | {first} |")
    script = summary.get("official_script")
    if script:
        lines.append("")
        if "error" in script:
            lines.append(f"The shared official timing script failed: {script['error'][:300]}")
        else:
            lines.append(
                "The shared official timing script, run after the rounds (random weights; its animated frame "
                f"also recomputes the source keypoints): animate_frame_s = {script['animate_frame_s']:.3f} s "
                f"({1 / script['animate_frame_s']:.2f} frames/s), torch {script['torch']}, {script['threads']} threads."
            )
    return "\n".join(lines) + "\n"


def _official_script(script, official_dir, config, size, repeats):
    import subprocess

    proc = subprocess.run([sys.executable, script, os.path.join(official_dir, "config", f"{config}.yaml"), str(size),
                           "1", str(repeats)], env=dict(os.environ, REF=official_dir), capture_output=True, text=True,
                          timeout=3600)
    lines = harness.json_lines(proc.stdout)
    return lines[-1] if proc.returncode == 0 and lines else {"error": (proc.stderr or proc.stdout)[-1000:]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="vox-256", help="a config kmt ships (default: vox-256)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=8, help="driving frames of the clip animated per timed call")
    parser.add_argument("--batch", type=int, default=8, help="frames per call besides 1 (kmt animate's default: 8)")
    parser.add_argument("--repeats", type=int, default=3, help="timed clips per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="times the whole sequence runs")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--bfloat16", action="store_true", help="also time kmt with bfloat16 convolutions")
    parser.add_argument("--no-onnxruntime", dest="onnxruntime", action="store_false",
                        help="leave out the ONNX Runtime rows (kmt export + OnnxAnimator)")
    parser.add_argument("--threads", type=int, help="intra-op threads of every framework, the official code's "
                        "included (default: each framework's own, i.e. all cores)")
    parser.add_argument("--official-dir", help="a checkout of the official first-order-model (outside this repository)")
    parser.add_argument("--official-script", default=os.path.join(harness.REPO, "..", "shared", "bench",
                                                                  "official_fomm_bench.py"),
                        help="the shared timing script of the official code (run when it exists and --official-dir "
                        "is given)")
    parser.add_argument("--no-write", action="store_true", help="print only, do not write benchmarks/results/")
    parser.add_argument("--worker", choices=("kmt", "official", "onnxruntime"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for flag in ("frames", "batch", "repeats", "rounds", "size"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1; got {getattr(args, flag)}.")
    if args.worker == "kmt":
        return kmt_worker(args)
    if args.worker == "official":
        return official_worker(args)
    if args.worker == "onnxruntime":
        return onnxruntime_worker(args)
    if args.official_dir:
        args.official_dir = os.path.abspath(args.official_dir)

    rows, loads = measure(args)
    script = None
    if args.official_dir and os.path.exists(args.official_script) and \
            os.path.exists(os.path.join(args.official_dir, "config", f"{args.config}.yaml")):
        print("the official timing script ...", file=sys.stderr, flush=True)
        script = _official_script(args.official_script, args.official_dir, args.config, args.size, min(args.repeats, 3))
    summary = {"config": args.config, "size": args.size, "frames": args.frames, "batch": args.batch,
               "repeats": args.repeats, "rounds": args.rounds, **harness.describe(),
               "threads": args.threads or "framework defaults (all cores)", "load_averages": loads, "rows": rows,
               "official_script": script}
    stem = "animate" if args.config == "vox-256" else f"animate-{os.path.splitext(os.path.basename(args.config))[0]}"
    stem += f"-threads{args.threads}" if args.threads else ""
    harness.write_results(stem, summary, report(summary), args.no_write)


if __name__ == "__main__":
    main()
