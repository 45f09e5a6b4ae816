"""Frames per second of FOMM animation at 256 x 256 on each Keras backend, beside the official PyTorch code.

One animated frame: the keypoints of the driving frame, then the generator (dense motion,
warping, occlusion, decoder), with the vox-256 architecture and random weights. ``--batch N``
computes N driving frames per call, as ``kmt animate`` does (8 by default); times are per frame.
Two workloads:

- ``frame``: what an animation loop runs per frame in kmt: the source's keypoints and encoder
  features are computed once (``OcclusionAwareGenerator.encode_source``), each frame reuses them;
- ``frame, full generator``: the whole generator every frame, as the official generator runs it.

Every backend runs compiled (``jax.jit``; ``tf.function`` with and without XLA; PyTorch eager and
``torch.compile``), each in its own process, in float32 and with the convolutions in bfloat16
(``kmt.layers.convolution_dtype``: faster where the CPU multiplies bfloat16 in hardware, about 1e-2
from float32; its rows show how far). With ``--official-dir`` (a checkout of
AliaksandrSiarohin/first-order-model, kept outside this repository) the official modules run the
same per-frame work (driving keypoints + generator, eager, ``torch.no_grad``) in the same run, with
kmt's weights exported to them (``kmt.convert.export_state_dict``), so the script also reports how
far apart the two implementations' frames are. The whole sequence runs ``--rounds`` times
(official first in each round); each row keeps its best round, so that load from other processes
on a shared machine penalises neither side more than the other. When the shared timing script of
the official code is found (``--official-script``), its ``animate_frame_s`` (which also recomputes
the source keypoints every frame) is reported as well.

    python benchmarks/animate.py --official-dir ../official-fomm [--repeats 10] [--rounds 2]

Results go to benchmarks/results/animate.md and animate.json (``animate-<config>.*`` for another
config than vox-256, e.g. ``--config synthetic-faces-64 --size 64``, the shipped model's architecture;
``-batch<N>`` added with ``--batch N``, ``-threads<N>`` with ``--threads N``; ``--no-write`` to skip).
"""

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BACKENDS = ("jax", "tensorflow", "torch")
BF16 = ", bfloat16 convolutions"
VARIANTS = {
    "jax": ("jax.jit", "jax.jit" + BF16),
    "tensorflow": ("tf.function(jit_compile=True)", "tf.function", "tf.function" + BF16),
    "torch": ("eager", "torch.compile", "eager" + BF16),
}
WORKLOADS = ("frame", "frame, full generator")
OFFICIAL = "official PyTorch"
SEED = 0


def inputs(size, batch=1):
    """One source image and ``batch`` driving frames, the same in every process."""
    rng = np.random.default_rng(SEED + 1)
    source = rng.random((1, size, size, 3), dtype="float32")
    driving = rng.random((batch, size, size, 3), dtype="float32")
    return source, driving


def kmt_models(config):
    import keras

    from kmt.config import build_models

    keras.utils.set_random_seed(SEED)  # the same weights in every process, whatever the backend
    return build_models(config, align_corners=False, networks=("kp_detector", "generator"))


def timed(fn, repeats):
    """Seconds of the first call, and of each of ``repeats`` later calls."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, times


def _record(args, backend, variant, workload, run, name, batch):
    """Time ``run`` (``batch`` frames per call); times are recorded per frame, the first frame is kept."""
    try:
        first, times = timed(run, args.repeats)
        np.save(os.path.join(args.out, name), np.asarray(run())[:1])
        times = [t / batch for t in times]
        record = {"first_call_s": first, "times_s": times, "median_s": statistics.median(times), "prediction": name}
    except Exception as error:  # a variant that cannot run is reported, not fatal
        message = re.sub(r"\x1b\[[0-9;]*m", "", f"{type(error).__name__}: {error}")  # no terminal colours
        record = {"error": " ".join(message.split())[:500]}
    record.update(backend=backend, variant=variant, workload=workload, batch=batch, round=args.round)
    print(json.dumps(record), flush=True)


def _limit_threads(threads):
    """Intra-op threads of the framework this process runs (JAX reads XLA_FLAGS, set by the parent)."""
    if not threads:
        return
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    if keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(threads)


def kmt_worker(args):
    """Time the compiled variants of this process's backend; print one JSON line per measurement."""
    import keras

    _limit_threads(args.threads)
    backend = keras.backend.backend()
    kp_detector, generator = kmt_models(args.config).values()
    source, driving = inputs(args.size, args.batch)
    kp_source = kp_detector(source, training=False)
    kp_source = {k: keras.ops.convert_to_numpy(kp_source[k]) for k in ("value", "jacobian")}
    features = keras.ops.convert_to_numpy(generator.encode_source(source, training=False))
    arrays = (source, driving, kp_source["value"], kp_source["jacobian"], features)
    for variant in args.variants or VARIANTS[backend]:
        # torch.compile takes minutes per graph here: it is timed on the main workload only.
        for workload in WORKLOADS[:1] if variant == "torch.compile" else WORKLOADS:
            run = _compiled(backend, variant, kp_detector, generator, workload != "frame", arrays)
            name = f"{backend}-{VARIANTS[backend].index(variant)}-{WORKLOADS.index(workload)}-{args.round}.npy"
            _record(args, backend, variant, workload, run, name, args.batch)


def _compiled(backend, variant, kp_detector, generator, full, arrays):
    """A no-argument callable computing one frame from ``arrays``, compiled as ``variant`` says."""

    from kmt.layers import convolution_dtype

    def frame(kp_state, gen_state, source, driving, value, jacobian, features):
        with convolution_dtype("bfloat16" if variant.endswith(BF16) else "float32"):
            return _frame(kp_state, gen_state, source, driving, value, jacobian, features)

    def _frame(kp_state, gen_state, source, driving, value, jacobian, features):
        from keras import ops

        call_kp = kp_detector if kp_state is None else (lambda *a, **k: kp_detector.stateless_call(*kp_state, *a, **k)[0])
        call_gen = generator if gen_state is None else (lambda *a, **k: generator.stateless_call(*gen_state, *a, **k)[0])
        kp_driving = call_kp(driving, training=False)
        batch = driving.shape[0]
        if batch > 1:  # the source's tensors repeated along the batch, as kmt.animation.Animator does
            source, value, jacobian, features = (ops.repeat(x, batch, axis=0) for x in (source, value, jacobian, features))
        out = call_gen(
            source,
            kp_driving={"value": kp_driving["value"], "jacobian": kp_driving["jacobian"]},
            kp_source={"value": value, "jacobian": jacobian},
            source_features=None if full else features,
            training=False,
        )
        return out["prediction"]

    if backend == "jax":
        import jax

        # Variables go in as arguments (not as constants folded into the program).
        states = [
            ([v.value for v in m.trainable_variables], [v.value for v in m.non_trainable_variables])
            for m in (kp_detector, generator)
        ]
        jitted = jax.jit(frame)
        return lambda: np.asarray(jitted(*states, *arrays))
    if backend == "tensorflow":
        import tensorflow as tf

        fn = tf.function(
            lambda *a: frame(None, None, *a), jit_compile=variant == "tf.function(jit_compile=True)"
        )
        tensors = [tf.constant(a) for a in arrays]
        return lambda: fn(*tensors).numpy()
    import torch

    fn = lambda *a: frame(None, None, *a)  # noqa: E731
    fn = torch.compile(fn) if variant == "torch.compile" else fn
    tensors = [torch.tensor(a) for a in arrays]

    def run():
        with torch.no_grad():
            return fn(*tensors).numpy()

    return run


def official_worker(args):
    """Time the official modules on the per-frame work of its demo loop, with kmt's weights."""
    os.environ["KERAS_BACKEND"] = "torch"
    import torch

    from kmt.config import load_config
    from kmt.convert import export_state_dict

    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, args.official_dir)
    from modules.generator import OcclusionAwareGenerator
    from modules.keypoint_detector import KPDetector

    params = load_config(args.config)["model_params"]
    kp_detector = KPDetector(**params["kp_detector_params"], **params["common_params"]).eval()
    generator = OcclusionAwareGenerator(**params["generator_params"], **params["common_params"]).eval()
    ours = kmt_models(args.config)
    for module, name in ((kp_detector, "kp_detector"), (generator, "generator")):
        module.load_state_dict({k: torch.tensor(v) for k, v in export_state_dict(ours[name]).items()})
    del ours
    variant = f"eager, torch {torch.__version__}, {torch.get_num_threads()} threads"
    for batch in sorted({1, args.batch}):  # one frame per call is what the official demo loop runs
        source, driving = (torch.tensor(np.transpose(x, (0, 3, 1, 2))) for x in inputs(args.size, batch))
        with torch.no_grad():
            kp_source = kp_detector(source)
            sources = source.repeat(batch, 1, 1, 1)
            kp_sources = {k: v.repeat(batch, *[1] * (v.dim() - 1)) for k, v in kp_source.items()}

        def frame():
            with torch.no_grad():
                kp_driving = kp_detector(driving)
                prediction = generator(sources, kp_source=kp_sources, kp_driving=kp_driving)["prediction"]
            return np.transpose(prediction.numpy(), (0, 2, 3, 1))

        name = f"official-{batch}-{args.round}.npy"
        _record(args, OFFICIAL, variant, "frame, full generator", frame, name, batch)


def _run_worker(argv, backend=None, threads=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if backend:
        env["KERAS_BACKEND"] = backend
    if threads:
        argv = [*argv, "--threads", str(threads)]
        if backend == "jax":
            flags = f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} intra_op_parallelism_threads={threads}"
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flags).strip()
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *argv], env=env, capture_output=True, text=True, timeout=3600
    )
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not records:
        raise RuntimeError(f"worker {argv} failed (exit {proc.returncode}):\n{(proc.stderr or proc.stdout)[-2000:]}")
    return records


def _official_script(script, official_dir, config, size, repeats):
    env = dict(os.environ, REF=official_dir)
    config_path = os.path.join(official_dir, "config", f"{config}.yaml")
    proc = subprocess.run(
        [sys.executable, script, config_path, str(size), "1", str(repeats)],
        env=env, capture_output=True, text=True, timeout=3600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout)[-1000:]}
    return json.loads(lines[-1])


def _load_average():
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def measure(args):
    """Run every worker ``args.rounds`` times; one row per (backend, variant, workload), its best round kept."""
    runs = {}
    loads = []
    with tempfile.TemporaryDirectory() as out:
        common = ["--config", args.config, "--size", str(args.size), "--batch", str(args.batch),
                  "--repeats", str(args.repeats), "--out", out]
        for round_ in range(args.rounds):
            loads.append(_load_average())
            jobs = [(["--worker", "official", "--official-dir", args.official_dir], None)] if args.official_dir else []
            for backend in args.backends:
                variants = [v for v in VARIANTS[backend] if round_ == 0 or v != "torch.compile"]
                jobs.append((["--worker", "kmt", "--variants", *variants], backend))
            for argv, backend in jobs:
                print(f"round {round_ + 1}: {backend or 'official'} ...", file=sys.stderr, flush=True)
                for record in _run_worker([*argv, *common, "--round", str(round_)], backend, args.threads):
                    key = (record["backend"], record["variant"], record["workload"], record["batch"])
                    runs.setdefault(key, []).append(record)
        loads.append(_load_average())
        rows = []
        for records in runs.values():
            timed_ = [r for r in records if "median_s" in r]
            row = dict(min(timed_, key=lambda r: r["median_s"]) if timed_ else records[0])
            row["rounds_s"] = [r.get("median_s") for r in records]
            rows.append(row)
        officials = {r["batch"]: r for r in rows if r["backend"] == OFFICIAL and "prediction" in r}
        official = officials.get(1)
        reference = np.load(os.path.join(out, official["prediction"])) if official else None
        first = None
        for row in rows:
            if "prediction" not in row:
                continue
            frame = np.load(os.path.join(out, row.pop("prediction")))
            if row["backend"] == OFFICIAL:
                continue
            first = frame if first is None else first
            row["max_abs_diff_vs_first_kmt"] = float(np.abs(frame - first).max())
            if official:
                row["max_abs_diff_vs_official"] = float(np.abs(frame - reference).max())
                row["speedup_vs_official"] = official["median_s"] / row["median_s"]
            if row["batch"] in officials and row["batch"] != 1:
                row["speedup_vs_official_same_batch"] = officials[row["batch"]]["median_s"] / row["median_s"]
    return rows, loads


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="vox-256", help="a config kmt ships (default: vox-256)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1, help="driving frames per call (kmt animate's default is 8)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="times the whole sequence runs")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument(
        "--threads", type=int, help="intra-op threads of every framework, the official code's included "
        "(default: each framework's own, i.e. all cores)"
    )
    parser.add_argument("--official-dir", help="a checkout of the official first-order-model (outside this repository)")
    parser.add_argument(
        "--official-script",
        default=os.path.join(REPO, "..", "shared", "bench", "official_fomm_bench.py"),
        help="the shared timing script of the official code (run when it exists and --official-dir is given)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only, do not write benchmarks/results/")
    parser.add_argument("--worker", choices=("kmt", "official"), help=argparse.SUPPRESS)
    parser.add_argument("--variants", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "kmt":
        return kmt_worker(args)
    if args.worker == "official":
        return official_worker(args)

    rows, loads = measure(args)
    script = None
    official_config = os.path.join(args.official_dir or "", "config", f"{args.config}.yaml")
    if args.official_dir and os.path.exists(args.official_script) and os.path.exists(official_config):
        print("the official timing script ...", file=sys.stderr, flush=True)
        script = _official_script(args.official_script, args.official_dir, args.config, args.size, min(args.repeats, 3))
    summary = {
        "config": args.config,
        "size": args.size,
        "batch": args.batch,
        "repeats": args.repeats,
        "rounds": args.rounds,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "threads": args.threads or "framework defaults (all cores)",
        "load_averages": loads,
        "rows": rows,
        "official_script": script,
        "versions": _versions(),
    }
    text = report(summary)
    print(text)
    if not args.no_write:
        results = os.path.join(HERE, "results")
        os.makedirs(results, exist_ok=True)
        stem = "animate" if args.config == "vox-256" else f"animate-{os.path.splitext(os.path.basename(args.config))[0]}"
        stem += f"-batch{args.batch}" if args.batch != 1 else ""
        stem += f"-threads{args.threads}" if args.threads else ""
        with open(os.path.join(results, f"{stem}.json"), "w") as handle:
            json.dump(summary, handle, indent=2)
        with open(os.path.join(results, f"{stem}.md"), "w") as handle:
            handle.write(text)


def _versions():
    from importlib import metadata

    versions = {}
    for name in ("keras", "tensorflow", "jax", "torch"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def report(summary):
    rows = summary["rows"]
    lines = [
        f"# Animation speed: {summary['config']} at {summary['size']} x {summary['size']}",
        "",
        f"`python benchmarks/animate.py` on {summary['machine']}, Python {summary['python']}, {summary['date']}; "
        + ", ".join(f"{k} {v}" for k, v in summary["versions"].items() if v)
        + f". Load averages (1, 5, 15 min) at the start of each round and at the end: {summary['load_averages']}"
        " (a shared machine: compare rows of one run, not across runs).",
        "",
        "One frame = keypoints of the driving frame + the generator, random weights (the same in "
        "every process, the official modules included). `frame`: the source's keypoints and encoder "
        "features computed once and reused (kmt's animation path); `frame, full generator`: the whole "
        "generator every frame, as the official code runs it. `frames / call`: driving frames computed "
        "by one call (the official demo loop runs one; `kmt animate` runs 8). Seconds per frame: median of "
        f"{summary['repeats']} calls after a first (compiling) call, divided by the frames per call, best of "
        f"{summary['rounds']} rounds (each round's median in the last column). `vs official`: against the "
        "official code one frame per call, as its demo animates; `same batch`: against the official modules "
        f"given as many frames per call. Threads: {summary['threads']}.",
        "",
        "| implementation | compiled as | workload | frames / call | s / frame | frames / s | vs official "
        "| same batch | first call (s) | max abs diff vs official | rounds (s / frame) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    official_one = next((r for r in rows if r["backend"] == OFFICIAL and r.get("batch", 1) == 1 and "median_s" in r), None)
    order = lambda r: (r["backend"] != OFFICIAL, r["backend"], r["variant"], r["workload"], r.get("batch", 1))  # noqa: E731
    for row in sorted(rows, key=order):
        name = row["backend"] if row["backend"] == OFFICIAL else f"kmt, {row['backend']}"
        batch = row.get("batch", 1)
        if "error" in row:
            lines.append(f"| {name} | {row['variant']} | {row['workload']} | {batch} | failed: {row['error'][:150]} "
                         "| | | | | | |")
            continue
        official = row["backend"] == OFFICIAL
        if official:
            ratio = f"{official_one['median_s'] / row['median_s']:.2f}x" if official_one else ""
            same = "1.00x" if batch != 1 else ""
        else:
            ratio = f"{row['speedup_vs_official']:.2f}x" if "speedup_vs_official" in row else ""
            same = f"{row['speedup_vs_official_same_batch']:.2f}x" if "speedup_vs_official_same_batch" in row else ""
        diff = "reference" if official else (f"{row['max_abs_diff_vs_official']:.1e}" if "max_abs_diff_vs_official" in row else "")
        rounds = ", ".join(f"{t:.4f}" for t in row["rounds_s"] if t is not None)
        lines.append(
            f"| {name} | {row['variant']} | {row['workload']} | {batch} | {row['median_s']:.4f} | "
            f"{1 / row['median_s']:.2f} | {ratio} | {same} | {row['first_call_s']:.1f} | {diff} | {rounds} |"
        )
    ours = [r for r in rows if "median_s" in r and r["backend"] != OFFICIAL]
    if ours:
        lines.append("")
        for workload in WORKLOADS:
            candidates = [r for r in ours if r["workload"] == workload]
            if candidates:
                top = min(candidates, key=lambda r: r["median_s"])
                ratio = f", {top['speedup_vs_official']:.2f}x the official" if "speedup_vs_official" in top else ""
                lines.append(
                    f"- Fastest for `{workload}`: {top['backend']}, {top['variant']}: "
                    f"{1 / top['median_s']:.2f} frames/s{ratio}."
                )
        torch_rows = {r["variant"]: r for r in ours if r["backend"] == "torch" and r["workload"] == "frame"}
        if {"eager", "torch.compile"} <= set(torch_rows):
            faster = min(torch_rows.values(), key=lambda r: r["median_s"])
            lines.append(f"- PyTorch backend: {faster['variant']} is the faster way to run kmt.")
    script = summary.get("official_script")
    if script:
        lines.append("")
        if "error" in script:
            lines.append(f"The shared official timing script failed: {script['error'][:300]}")
        else:
            lines.append(
                "The shared official timing script, run after the rounds (random weights; its animated frame "
                f"also recomputes the source keypoints): animate_frame_s = {script['animate_frame_s']:.3f} s "
                f"({1 / script['animate_frame_s']:.2f} frames/s), train_step_s = {script['train_step_s']:.2f} s "
                f"(batch 1), torch {script['torch']}, {script['threads']} threads."
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
