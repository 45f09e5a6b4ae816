"""Seconds per FOMM training step on each Keras backend, beside the official PyTorch code.

Two workloads:

- ``vox-adv-256``, batch 2, 256 x 256: the official adversarial config (keypoint detector, generator,
  discriminator, VGG19 perceptual pyramid at four scales, equivariance), one full step = the
  generator/keypoint-detector update then the discriminator update, random weights;
- ``synthetic-faces-64``: kmt's small config at its own batch size, reported as images per second.

Each backend runs kmt's compiled step (:class:`kmt.train_step.TrainStep`: XLA on TensorFlow and JAX,
eager autograd on PyTorch) in its own process. With ``--official-script`` (the project's
``official_fomm_bench.py``) and ``--official-dir`` (a checkout of the official first-order-model code,
kept outside this repository) the official step is timed in the same run, before and after kmt.

    python benchmarks/train_step.py --official-script ../shared/bench/official_fomm_bench.py \\
        --official-dir ../official-fomm [--repeats 3] [--backends tensorflow jax torch]

Results go to benchmarks/results/train_step.md and train_step.json (``--no-write`` to skip).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BACKENDS = ("tensorflow", "jax", "torch")
COMPILED_AS = {"tensorflow": "tf.function(jit_compile=True)", "jax": "jax.jit", "torch": "eager autograd"}


def worker(args):
    import keras
    import numpy as np

    from kmt.config import build_models, load_config
    from kmt.losses import VGG19Features, sample_transform_parameters, vgg_layers_needed
    from kmt.train_step import TrainStep

    config = load_config(args.config)
    train_params = dict(config["train_params"])
    batch = args.batch or int(train_params["batch_size"])
    size = args.size or int(config["dataset_params"]["frame_shape"][0])
    keras.utils.set_random_seed(0)
    models = build_models(config)
    optimizers = {
        name: keras.optimizers.Adam(2e-4, beta_1=0.5, beta_2=0.999)
        for name in ("kp_detector", "generator", "discriminator")
    }
    layers = vgg_layers_needed(train_params["loss_weights"]["perceptual"])
    vgg = VGG19Features("random", num_layers=layers) if layers else None
    step = TrainStep(models["kp_detector"], models["generator"], models["discriminator"], optimizers, train_params,
                     num_channels=config["model_params"]["common_params"]["num_channels"], vgg=vgg)
    rng = np.random.default_rng(0)
    source = rng.random((batch, size, size, 3), dtype="float32")
    driving = rng.random((batch, size, size, 3), dtype="float32")
    tp = train_params["transform_params"]

    def run():
        params = sample_transform_parameters(rng, batch, tp["sigma_affine"], tp.get("sigma_tps"), tp.get("points_tps"))
        step(source, driving, params)

    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    print(json.dumps({
        "backend": keras.backend.backend(), "config": os.path.basename(str(args.config)), "batch": batch,
        "size": size, "first_s": first, "median_s": statistics.median(times), "min_s": min(times),
        "params": {name: int(sum(np.prod(v.shape) for v in m.trainable_variables)) for name, m in models.items()},
    }))


def run_worker(backend, config, repeats, batch=None, size=None):
    command = [sys.executable, __file__, "--worker", "--config", config, "--repeats", str(repeats)]
    command += ["--batch", str(batch)] if batch else []
    command += ["--size", str(size)] if size else []
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode or not lines:
        raise RuntimeError(f"{backend} worker failed:\n{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def run_official(script, official_dir, config_path, repeats):
    env = dict(os.environ, REF=official_dir)
    result = subprocess.run([sys.executable, script, config_path, "256", "2", str(repeats)], capture_output=True,
                            text=True, env=env)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode or not lines:
        raise RuntimeError(f"official bench failed:\n{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def versions():
    out = {"python": platform.python_version()}
    for name in ("numpy", "keras", "tensorflow", "jax", "torch"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            pass
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", default="vox-adv-256")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--size", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS))
    parser.add_argument("--official-script", help="the project's official_fomm_bench.py")
    parser.add_argument("--official-dir", help="a checkout of the official first-order-model code")
    parser.add_argument("--small-config", default="synthetic-faces-64")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from kmt.config import config_path

    load = os.getloadavg()
    official = []
    if args.official_script and args.official_dir:
        official_config = os.path.join(args.official_dir, "config", "vox-adv-256.yaml")
        official.append(run_official(args.official_script, args.official_dir, official_config, args.repeats))
    rows = [run_worker(b, config_path(args.config), args.repeats, batch=2, size=256) for b in args.backends]
    if args.official_script and args.official_dir:
        official.append(run_official(args.official_script, args.official_dir, official_config, args.repeats))
    small = [run_worker(b, config_path(args.small_config), max(args.repeats, 5)) for b in args.backends]

    reference = min(o["train_step_s"] for o in official) if official else None
    lines = [
        "# Training step speed",
        "",
        f"`python benchmarks/train_step.py` on {platform.processor() or platform.machine()}, {os.cpu_count()} CPU "
        f"cores, {time.strftime('%Y-%m-%d')}; " + ", ".join(f"{k} {v}" for k, v in versions().items())
        + f". Load average before/after: {[round(x, 2) for x in load]} / {[round(x, 2) for x in os.getloadavg()]}.",
        "",
        "One full step of `vox-adv-256` (keypoint detector + generator update, then discriminator update; VGG19 "
        "perceptual pyramid at 4 scales; equivariance), batch 2, 256 x 256, random weights. Seconds are medians of "
        f"{args.repeats} steps after a first (compiling) step.",
        "",
        "| implementation | compiled as | s / step | x official | first step (s) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for index, o in enumerate(official):
        lines.append(f"| official PyTorch FOMM (run {index + 1}) | eager, torch {o['torch']}, {o['threads']} threads | "
                     f"{o['train_step_s']:.2f} | {o['train_step_s'] / reference:.2f}x | |")
    for r in rows:
        ratio = f"{r['median_s'] / reference:.2f}x" if reference else "n/a"
        lines.append(f"| kmt, {r['backend']} | {COMPILED_AS[r['backend']]} | {r['median_s']:.2f} | {ratio} | "
                     f"{r['first_s']:.1f} |")
    lines += ["", f"`{args.small_config}` (kmt's small synthetic config), its own batch size:", "",
              "| backend | batch | size | s / step | images / s |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in small:
        lines.append(f"| {r['backend']} | {r['batch']} | {r['size']} | {r['median_s']:.3f} | "
                     f"{r['batch'] / r['median_s']:.1f} |")
    if rows:
        lines += ["", "Trainable parameters (vox-adv-256): " + ", ".join(f"{k} {v:,}" for k, v in rows[0]["params"].items())
                  + (f"; official: " + ", ".join(f"{k} {v:,}" for k, v in official[0]["params"].items()) if official else "") + "."]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        with open(os.path.join(HERE, "results", "train_step.md"), "w") as handle:
            handle.write(text)
        with open(os.path.join(HERE, "results", "train_step.json"), "w") as handle:
            json.dump({"official": official, "kmt": rows, "small": small, "versions": versions()}, handle, indent=2)


if __name__ == "__main__":
    main()
