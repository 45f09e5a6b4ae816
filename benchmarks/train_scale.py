"""Training at scale: mixed precision, several devices, memory per device, and what the official schedule costs.

Four tables from one run, every number measured in a worker process of its own (one Keras backend,
one precision, one device count per process), around ``kmt.training.Trainer(...).step``, the step
``kmt train`` runs (XLA on TensorFlow and JAX, eager autograd on PyTorch), with a random-weight VGG19:

1. **precision**: ``float32``, ``mixed_bfloat16`` and ``mixed_float16`` on each backend, for
   ``vox-adv-256`` at batch 2, 256 x 256 (the workload of ``train_step.py``) and ``synthetic-faces-64``
   at its own batch size; on the 64 px config also the same ``--loss-steps`` steps (same batches of
   synthetic faces, same equivariance transforms, same seed) at each precision: the relative
   difference of each loss's mean against float32, and the steps that dynamic loss scaling skipped;
2. **devices**: JAX and TensorFlow on 1 and 2 virtual CPU devices (the CPU is split first thing in
   the worker process), same global batch;
3. **memory**: the peak resident memory (``ru_maxrss``) of a worker that builds the ``vox-adv-256``
   trainer and runs its steps at batch 1, 2 and 4, fitted as ``a + b * batch``, and the estimate per
   device for the official batch split over 1, 2, 4 and 8 devices;
4. **cost**: seconds per step at the official batch, extrapolated from those steps, per 1000 steps and,
   with ``--epoch-items``, for the whole schedule of ``vox-256`` and ``vox-adv-256``.

    python benchmarks/train_scale.py [--repeats 3] [--epoch-items N]   # hours on 2 cores: 16-bit at 256 px is slow on a CPU
    python benchmarks/train_scale.py --quick                            # 64 px rows only, a few minutes

``--quick`` runs only 64 px workloads with 2 repeats (the memory and cost tables then use
``synthetic-faces-64`` in place of ``vox-adv-256``: they check the script, they are no estimate).
Results go to benchmarks/results/train_scale.md and train_scale.json (``--no-write`` to skip).
"""

import argparse
import json
import os
import resource
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
BIG, SMALL = "vox-adv-256", "synthetic-faces-64"
SCHEDULES = ("vox-256", "vox-adv-256")
SPLITS = (1, 2, 4, 8)


def _maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def worker(args):
    if args.devices > 1 or args.split:
        import kmt.backend  # imports Keras and its backend, runs nothing on it

        kmt.backend.split_cpu(args.devices)
    import keras
    import numpy as np

    from kmt.config import load_config
    from kmt.losses import sample_transform_parameters
    from kmt.training import Trainer

    imported_mb = _maxrss_mb()
    config = load_config(args.config)
    tp = config["train_params"]["transform_params"]
    batch = args.batch or int(config["train_params"]["batch_size"])
    size = args.size or int(config["dataset_params"]["frame_shape"][0])
    record = {"backend": keras.backend.backend(), "config": args.config, "batch": batch, "size": size,
              "precision": args.precision, "devices": args.devices, "jit": not args.no_jit}
    with tempfile.TemporaryDirectory() as log_dir:
        trainer = Trainer(config, log_dir, vgg_weights="random", seed=0, devices=args.devices,
                          precision=args.precision, jit=not args.no_jit)
        if args.loss_steps:
            import time

            from kmt.training_data import training_batches

            batches_for_epoch, _ = training_batches(config, seed=0, steps_per_epoch=args.loss_steps)
            rng = np.random.default_rng(0)
            losses, seconds = [], []
            for item in batches_for_epoch(0):
                params = sample_transform_parameters(rng, len(item["source"]), tp["sigma_affine"],
                                                     tp.get("sigma_tps"), tp.get("points_tps"))
                start = time.perf_counter()
                losses.append(trainer.step(item["source"], item["driving"], params))
                seconds.append(time.perf_counter() - start)
            record.update(losses=losses, loss_steps=len(losses), compile_s=seconds[0],
                          optimizers=_optimizer_state(trainer), use_gan=trainer.step.use_gan)
        rng = np.random.default_rng(1)
        source = rng.random((batch, size, size, 3), dtype="float32")
        driving = rng.random((batch, size, size, 3), dtype="float32")

        def run():
            params = sample_transform_parameters(rng, batch, tp["sigma_affine"], tp.get("sigma_tps"),
                                                 tp.get("points_tps"))
            trainer.step(source, driving, params)

        first, times = harness.timed(run, args.repeats)
    summary = harness.spread(times)
    record.setdefault("compile_s", first)
    record.update(times_s=times, median_s=summary["median"], min_s=summary["min"], max_s=summary["max"],
                  imported_rss_mb=imported_mb, maxrss_mb=_maxrss_mb())
    print(json.dumps(record))


def _optimizer_state(trainer):
    """``{name: {"iterations", "scale"}}``: the updates each (inner) optimizer applied, and its loss scale."""
    from keras import ops

    out = {}
    for name, optimizer in trainer.optimizers.items():
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        scale = getattr(optimizer, "dynamic_scale", None)
        out[name] = {"iterations": int(ops.convert_to_numpy(inner.iterations)),
                     "scale": None if scale is None else float(ops.convert_to_numpy(scale))}
    return out


def measure(backend, config, repeats, batch=None, size=None, precision="float32", devices=1, split=False,
            loss_steps=0, jit=True):
    argv = ["--worker", "--config", config, "--repeats", str(repeats), "--precision", precision,
            "--devices", str(devices), "--loss-steps", str(loss_steps)]
    argv += (["--batch", str(batch)] if batch else []) + (["--size", str(size)] if size else [])
    argv += (["--split"] if split else []) + ([] if jit else ["--no-jit"])
    print(f"  {backend} {config} batch {batch or 'config'} {precision} devices {devices}"
          f"{'' if jit else ' no-jit'}", file=sys.stderr, flush=True)
    return harness.run_worker(__file__, argv, backend=backend)[-1]


def _fit(xs, ys):
    """Least-squares ``(a, b)`` of ``y = a + b * x``."""
    n, mx, my = len(xs), sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if n > 1 and sxx else 0.0
    return my - b * mx, b


def _relative(value, reference):
    """``(value - reference) / |reference|`` as a signed percentage (the absolute difference where it is 0)."""
    return f"{(value - reference) / abs(reference) * 100:+.2f}%" if reference else f"{value - reference:+.2e} (abs)"


def _span(r):
    return f"{r['median_s']:.3f} ({r['min_s']:.3f}-{r['max_s']:.3f})"


def precision_tables(rows, small_rows):
    lines = ["## 1. Mixed precision", "",
             "Seconds per `trainer.step` (median, min-max over the repeats after a first, compiling step) and the "
             "ratio to float32 on the same backend. Layers compute in 16 bits with float32 weights; "
             "`mixed_float16` adds dynamic loss scaling (`keras.optimizers.LossScaleOptimizer`, scale starting at "
             "2**15). **On a CPU, 16-bit math is often slower, not faster**: there are no tensor cores, "
             "bfloat16/float16 kernels are fewer and the casts cost time. These rows show what the policies cost "
             "here and that they run; the speed that matters is a GPU's (not measured here).", "",
             "| workload | backend | precision | s / step | x float32 | first step (s) |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    for r in rows + small_rows:
        base = next(b for b in rows + small_rows if b["backend"] == r["backend"] and b["config"] == r["config"]
                    and b["precision"] == "float32")
        lines.append(f"| {r['config']}, batch {r['batch']}, {r['size']} px | {r['backend']} | {r['precision']} | "
                     f"{_span(r)} | {r['median_s'] / base['median_s']:.2f}x | {r['compile_s']:.1f} |")
    if not small_rows:
        return lines
    names = list(small_rows[0]["losses"][0])
    steps = small_rows[0]["loss_steps"]
    lines += ["", f"Losses of the same {steps} steps of `{SMALL}` (same synthetic batches, same equivariance "
              "transforms, seed 0) at each precision: relative difference of each loss's mean over the steps, "
              "`(mean - mean float32) / |mean float32|`, then the same for the first step alone (identical "
              "weights: the forward pass's 16-bit error only; later steps also carry the earlier updates' "
              "differences). Skipped: steps whose update dynamic loss scaling skipped (a non-finite gradient: the "
              "inner optimizer's `iterations` stays behind), generator side (keypoint detector and generator skip "
              "together) and discriminator, and the scale after the steps. From 2**15 the scale halves at every "
              "overflow until the gradients are finite, so the first steps of a `mixed_float16` run are skipped "
              "by design; the weights then lag the float32 run's, which the mean over the steps shows.", "",
              "| backend | precision | " + " | ".join(f"{n}: mean / step 1" for n in names) + " | skipped (gen / disc) | loss scale after |",
              "| --- | --- | " + " | ".join("---:" for _ in names) + " | ---: | ---: |"]
    for r in small_rows:
        base = next(b for b in small_rows if b["backend"] == r["backend"] and b["precision"] == "float32")
        cells = []
        for name in names:
            mine = sum(s[name] for s in r["losses"]) / len(r["losses"])
            ref = sum(s[name] for s in base["losses"]) / len(base["losses"])
            cells.append(f"{_relative(mine, ref)} / {_relative(r['losses'][0][name], base['losses'][0][name])}")
        opt, k = r["optimizers"], r["loss_steps"]
        skipped_gen = k - opt["generator"]["iterations"]
        skipped_disc = f"{k - opt['discriminator']['iterations']}/{k}" if r["use_gan"] else "not trained"
        scale = opt["generator"]["scale"]
        lines.append(f"| {r['backend']} | {r['precision']} | " + " | ".join(cells)
                     + f" | {skipped_gen}/{k} / {skipped_disc} | {'-' if scale is None else f'{scale:g}'} |")
    return lines


def devices_table(rows):
    lines = ["## 2. Several devices", "",
             "The same global batch on 1 and 2 virtual CPU devices (`kmt.backend.split_cpu(N)` first thing in the "
             "worker; JAX `keras.distribution.DataParallel`, TensorFlow `MirroredStrategy`; PyTorch trains on one "
             "device). **Two virtual devices on this 2-core CPU share the same cores**: these rows measure the "
             "overhead of the distribution machinery, not a speed-up. TensorFlow runs the replicated step as a "
             "graph without XLA, so its 1-device step is also timed without XLA (`jit=False`), the like-for-like "
             "baseline.", "",
             "| workload | backend | devices | compiled | s / step | x 1 device (same compilation) |",
             "| --- | --- | ---: | --- | ---: | ---: |"]
    def compiled(r):
        if r["backend"] == "jax":
            return "jax.jit"
        return "XLA" if r["jit"] and r["devices"] == 1 else "graph, no XLA"

    for r in rows:
        base = next(b for b in rows if b["backend"] == r["backend"] and b["config"] == r["config"]
                    and b["devices"] == 1 and compiled(b) == compiled(r))
        lines.append(f"| {r['config']}, batch {r['batch']}, {r['size']} px | {r['backend']} | {r['devices']} | "
                     f"{compiled(r)} | {_span(r)} | {r['median_s'] / base['median_s']:.2f}x |")
    return lines


def memory_table(rows, config, quick):
    batches = [r["batch"] for r in rows]
    a, b = _fit(batches, [r["maxrss_mb"] for r in rows])
    full = 40
    lines = ["## 3. Memory per device (an estimate from CPU memory)", "",
             f"Peak resident memory (`ru_maxrss`) of one worker process ({rows[0]['backend']}, one device) that "
             f"imports the backend, builds the `{config}` trainer (three networks, Adam slots, VGG19), compiles and "
             f"runs its step at {rows[0]['size']} px; a fresh process per batch size. Fit: "
             f"**{a:,.0f} MB + {b:,.1f} MB x batch**. After the imports alone: "
             f"{rows[0]['imported_rss_mb']:,.0f} MB.", "",
             "| batch | peak RSS (MB) | fit (MB) | s / step | s / sample |", "| ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['batch']} | {r['maxrss_mb']:,.0f} | {a + b * r['batch']:,.0f} | {_span(r)} | "
                     f"{r['median_s'] / r['batch']:.3f} |")
    lines += ["", f"**Estimate**, not a measurement: the official batch of {full} split over N devices, per device "
              f"`a + b x {full}/N`. Host (CPU) memory, framework start-up included; GPU memory differs (cuDNN "
              "workspaces, the allocator's pools, XLA's buffer assignment) and must be measured on the GPU."
              + (" (`--quick`: the 64 px config stands in; not an estimate for vox.)" if quick else ""), "",
              "| devices | batch per device | estimated MB per device |", "| ---: | ---: | ---: |"]
    for n in SPLITS:
        lines.append(f"| {n} | {full / n:g} | {a + b * full / n:,.0f} |")
    return lines, {"a_mb": a, "b_mb_per_sample": b}


def cost_table(rows, config, epoch_items, quick):
    from kmt.config import load_config

    batches = [r["batch"] for r in rows]
    c, d = _fit(batches, [r["median_s"] for r in rows])
    largest = max(rows, key=lambda r: r["batch"])
    per_sample = largest["median_s"] / largest["batch"]
    lines = ["## 4. What the official schedule costs on this CPU (an estimate)", "",
             f"Seconds per step at batch B, extrapolated from the `{config}` steps of table 3 (batch "
             f"{', '.join(map(str, batches))}, {rows[0]['backend']}, one device): the linear fit "
             f"**{c:.2f} s + {d:.3f} s x B**, and, proportionally, the per-sample time at batch {largest['batch']} "
             f"({per_sample:.3f} s) x B. The schedules are the shipped configs' (the official ones: `num_epochs`, "
             "`num_repeats`, `batch_size`); `vox-256` trains no discriminator (`generator_gan: 0`), so the "
             "`vox-adv-256` step time is an upper bound for it."
             + (" (`--quick`: the 64 px config stands in; not a cost estimate.)" if quick else ""), ""]
    lines += ["An epoch is `num_repeats x items / batch_size` steps (the official `DatasetRepeater`). Both vox "
              "configs set `id_sampling: true`, so the items are the training **identities** (the official "
              "`FramesDataset` counts the distinct names before `#`), not the video clips; their number depends "
              "on the preprocessed copy of VoxCeleb and is not confirmed here: give it with `--epoch-items N` "
              "to print the whole schedule"
              + (f" (this run: {epoch_items})." if epoch_items else "; this run prints the cost per 1000 steps only."),
              "", "| schedule | batch | epochs | num_repeats | s / step (fit) | s / step (per sample) | "
              "CPU hours / 1000 steps (fit) | CPU hours / 1000 steps (per sample) | steps per epoch | "
              "CPU days, whole schedule (fit) |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    out = []
    for name in SCHEDULES:
        tp = load_config(name)["train_params"]
        batch, epochs, repeats = int(tp["batch_size"]), int(tp["num_epochs"]), int(tp["num_repeats"])
        fit_s, prop_s = c + d * batch, per_sample * batch
        steps = repeats * epoch_items // batch if epoch_items else None
        days = f"{steps * epochs * fit_s / 86400:,.0f}" if steps else "-"
        lines.append(f"| {name} | {batch} | {epochs} | {repeats} | {fit_s:.1f} | {prop_s:.1f} | "
                     f"{1000 * fit_s / 3600:.1f} | {1000 * prop_s / 3600:.1f} | {steps or '-'} | {days} |")
        out.append({"schedule": name, "batch": batch, "num_epochs": epochs, "num_repeats": repeats,
                    "fit_s_per_step": fit_s, "per_sample_s_per_step": prop_s, "steps_per_epoch": steps})
    return lines, {"fit": {"c_s": c, "d_s_per_sample": d}, "schedules": out}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 px rows only, --repeats 2: checks the script works")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--loss-steps", type=int, default=10, help="steps compared across precisions (64 px)")
    parser.add_argument("--memory-backend", default="tensorflow", choices=BACKENDS)
    parser.add_argument("--memory-batches", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--skip-devices-256", action="store_true", help="devices table at 64 px only")
    parser.add_argument("--epoch-items", type=int, help="training items (identities under id_sampling) of the "
                        "dataset, for the whole-schedule cost; without it, the cost per 1000 steps only")
    parser.add_argument("--no-write", action="store_true")
    # worker arguments
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--split", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-jit", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    for flag, value in (("--repeats", args.repeats), ("--loss-steps", args.loss_steps)):
        if value < 1:
            parser.error(f"{flag} must be a whole number >= 1; got {value}.")
    if args.epoch_items is not None and args.epoch_items < 1:
        parser.error(f"--epoch-items must be a whole number >= 1; got {args.epoch_items}.")
    if len(set(args.memory_batches)) < 2 or min(args.memory_batches) < 1:
        parser.error(f"--memory-batches needs at least two different batch sizes >= 1; got {args.memory_batches}.")
    repeats = 2 if args.quick else args.repeats

    load = harness.load_average()
    described = harness.describe()
    with harness.LoadSampler() as sampler:
        big = [] if args.quick else [measure(b, BIG, repeats, 2, 256, p) for b in args.backends for p in PRECISIONS]
        small = [measure(b, SMALL, max(repeats, 2 if args.quick else 5), precision=p, loss_steps=args.loss_steps)
                 for b in args.backends for p in PRECISIONS]
        workloads = [(SMALL, 8, 64)] + ([] if args.quick or args.skip_devices_256 else [(BIG, 2, 256)])
        devices = []
        for config, batch, size in workloads:
            for backend in [b for b in ("jax", "tensorflow") if b in args.backends]:
                variants = [(1, True), (2, True)] + ([(1, False)] if backend == "tensorflow" else [])
                devices += [measure(backend, config, repeats, batch, size, devices=n, split=True, jit=jit)
                            for n, jit in variants]
        memory_config, memory_size = (SMALL, 64) if args.quick else (BIG, 256)
        memory = [measure(args.memory_backend, memory_config, repeats, batch, memory_size)
                  for batch in sorted(set(args.memory_batches))]
    after = harness.load_average()

    lines = ["# Training at scale: precision, devices, memory, cost", "",
             f"`python benchmarks/train_scale.py{' --quick' if args.quick else ''}` on {described['machine']}, "
             f"{described['date']}; {harness.versions_text(described['versions'])}. Load average (1, 5, 15 min) "
             f"before/after: {load} / {after}; 1-minute load sampled during the run: "
             f"{harness.fmt_spread(sampler.summary()) if sampler.summary() else 'n/a'} (a shared machine: compare "
             "rows of one run, not across runs). Random weights (VGG19 too: ImageNet weights are not downloaded); "
             "every row is a fresh worker process.", ""]
    if args.quick:
        lines += ["**`--quick`**: 64 px workloads only, 2 repeats; a check that the script runs, not the "
                  "benchmark. The full run: `python benchmarks/train_scale.py`.", ""]
    lines += precision_tables(big, small) + [""] + devices_table(devices) + [""]
    memory_lines, memory_fit = memory_table(memory, memory_config, args.quick)
    cost_lines, cost = cost_table(memory, memory_config, args.epoch_items, args.quick)
    text = "\n".join(lines + memory_lines + [""] + cost_lines) + "\n"
    summary = {"quick": args.quick, "repeats": repeats, "precision_256": big, "precision_64": small,
               "devices": devices, "memory": memory, "memory_fit": memory_fit, "cost": cost,
               "epoch_items": args.epoch_items, "load_before": load, "load_after": after,
               "load_during": sampler.summary(), **described}
    harness.write_results("train_scale", summary, text, args.no_write)


if __name__ == "__main__":
    main()
