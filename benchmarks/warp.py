"""Speed of kmt's ``grid_sample`` against ``torch.nn.functional.grid_sample`` and a naive loop.

The workload (chapter 1): a batch of 16 images of 256 x 256 x 3, each warped by its own
256 x 256 sampling grid, bilinear, zero padding, ``align_corners=True``. The grids are what FOMM
produces: a random affine map near the identity plus a small smooth deformation, so some points
fall outside the image. Two passes are timed:

- ``forward``: the warped images;
- ``forward+backward``: the warped images and the gradients with respect to the images and the
  grids for a fixed random output gradient (a vector-Jacobian product, what training runs).

Each Keras backend runs in its own process (one process holds one backend), eager and compiled
(``tf.function(jit_compile=True)``, ``jax.jit``; ``torch.compile`` with ``--torch-compile``), and
three implementations are timed in it:

- ``kmt.grid_sample``: what the models call (on PyTorch it calls PyTorch's own op);
- ``kmt.grid_sample_keras``: the ``keras.ops`` version (the same function as above on TensorFlow
  and JAX, so only the PyTorch process times it separately);
- ``naive loop``: what a simple port does, ``keras.ops.image.map_coordinates(channel,
  coordinates, order=1, fill_mode="constant")`` for every image and channel in Python loops.

``torch.nn.functional.grid_sample`` (NCHW, PyTorch's native layout) is timed in a process of its
own before and after each backend's process; a backend's ratios use the faster of the two runs
around it (on a shared machine the load changes during a run). Times are medians of
``--repeats`` calls after a first call (which compiles; its time is reported separately).

    python benchmarks/warp.py [--repeats 15] [--backends jax tensorflow torch] [--quick]

``--quick`` times 2 images of 32 x 32 with few repeats (a smoke test). A full run writes
benchmarks/results/warp.md and warp.json (``--no-write`` to skip); a quick run writes nothing.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

HERE = harness.HERE
BACKENDS = ("tensorflow", "jax", "torch")
COMPILED = {"tensorflow": "tf.function(jit_compile=True)", "jax": "jax.jit", "torch": "torch.compile"}
PASSES = ("forward", "forward+backward")
SEED = 0


def workload(batch, size):
    """Images, grids and an output gradient, the same in every process."""
    rng = np.random.default_rng(SEED)
    image = rng.random((batch, size, size, 3), dtype="float32")
    line = np.linspace(-1.0, 1.0, size)
    xx, yy = np.meshgrid(line, line)
    base = np.stack([xx, yy, np.ones_like(xx)], axis=-1)
    grids = []
    for _ in range(batch):
        angle = rng.uniform(-0.2, 0.2)
        scale = rng.uniform(0.85, 1.15)
        rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        theta = np.concatenate([rotation, rng.uniform(-0.15, 0.15, (2, 1))], axis=1)
        # A small smooth deformation: 8 x 8 random offsets, bilinearly upsampled.
        coarse = rng.normal(0.0, 0.03, (8, 8, 2))
        pos = np.linspace(0.0, 7.0, size)
        low = np.minimum(np.floor(pos).astype(int), 6)
        frac = (pos - low)[:, None]
        rows = coarse[low] * (1 - frac[..., None]) + coarse[low + 1] * frac[..., None]
        smooth = rows[:, low] * (1 - frac[None]) + rows[:, low + 1] * frac[None]
        grids.append(base @ theta.T + smooth)
    grid = np.stack(grids).astype("float32")
    cotangent = rng.normal(size=(batch, size, size, 3)).astype("float32")
    return image, grid, cotangent


def timed(fn, repeats, budget_s):
    """(seconds of the first call, median and min milliseconds, number of timed calls).

    At least 3 calls are timed; fewer than ``repeats`` when one call takes so long that
    ``repeats`` of them would exceed ``budget_s``.
    """
    first, times = harness.timed(fn, max(3, repeats), budget_s=budget_s)
    return first, 1e3 * statistics.median(times), 1e3 * min(times), len(times)


# --- the functions timed, per backend -------------------------------------------------------


def naive_loop(image, grid):
    """The per-sample, per-channel ``map_coordinates`` port (align_corners=True)."""
    from keras import ops

    batch, height, width, channels = image.shape
    rows = (grid[..., 1] + 1.0) * (0.5 * (height - 1))
    cols = (grid[..., 0] + 1.0) * (0.5 * (width - 1))
    warped = []
    for b in range(batch):
        coordinates = ops.stack([rows[b], cols[b]], axis=0)
        warped.append(
            ops.stack(
                [
                    ops.image.map_coordinates(image[b, :, :, c], coordinates, order=1, fill_mode="constant")
                    for c in range(channels)
                ],
                axis=-1,
            )
        )
    return ops.stack(warped, axis=0)


def _runners(backend, fn, mode, image, grid, cotangent):
    """``{pass: no-argument callable}`` running ``fn`` eager or compiled on ``backend``.

    Each callable returns NumPy-convertible results only when asked (``results=True``), so the
    timed calls measure the computation, not copies back to NumPy.
    """
    if backend == "jax":
        import jax

        def fwd(i, g):
            return fn(i, g)

        def fwd_bwd(i, g, c):
            out, vjp = jax.vjp(fn, i, g)
            return (out, *vjp(c))

        if mode != "eager":
            fwd, fwd_bwd = jax.jit(fwd), jax.jit(fwd_bwd)
        args = [jax.numpy.asarray(a) for a in (image, grid, cotangent)]
        return {
            "forward": lambda results=False: jax.block_until_ready(fwd(*args[:2])),
            "forward+backward": lambda results=False: jax.block_until_ready(fwd_bwd(*args)),
        }
    if backend == "tensorflow":
        import tensorflow as tf

        def fwd(i, g):
            return fn(i, g)

        def fwd_bwd(i, g, c):
            with tf.GradientTape() as tape:
                tape.watch([i, g])
                out = fn(i, g)
            return (out, *tape.gradient(out, [i, g], output_gradients=c))

        if mode != "eager":
            fwd, fwd_bwd = tf.function(fwd, jit_compile=True), tf.function(fwd_bwd, jit_compile=True)
        args = [tf.constant(a) for a in (image, grid, cotangent)]
        return {"forward": lambda results=False: fwd(*args[:2]), "forward+backward": lambda results=False: fwd_bwd(*args)}
    import torch

    compiled = torch.compile(fn) if mode != "eager" else fn
    image_t, grid_t, cot_t = (torch.tensor(a) for a in (image, grid, cotangent))

    def fwd(results=False):
        with torch.no_grad():
            return compiled(image_t, grid_t)

    def fwd_bwd(results=False):
        i = image_t.detach().requires_grad_()
        g = grid_t.detach().requires_grad_()
        out = compiled(i, g)
        return (out.detach(), *torch.autograd.grad(out, [i, g], grad_outputs=cot_t))

    return {"forward": fwd, "forward+backward": fwd_bwd}


def _to_numpy(x):
    if hasattr(x, "detach"):
        x = x.detach()
    return np.asarray(x)


def _max_diff(results, reference):
    """Largest absolute difference from PyTorch of the output and, after a backward pass, of each
    gradient, divided by the largest magnitude of PyTorch's values when that exceeds 1."""
    if not isinstance(results, (tuple, list)):
        results = (results,)
    names = ("output", "image gradient", "grid gradient")
    return {
        name: float(np.max(np.abs(_to_numpy(ours) - reference[name])) / max(1.0, np.max(np.abs(reference[name]))))
        for name, ours in zip(names, results)
    }


def torch_native_worker(args):
    """Time ``torch.nn.functional.grid_sample`` (NCHW); save its results as the reference."""
    import torch

    image, grid, cotangent = workload(args.batch, args.size)
    image_t = torch.tensor(np.ascontiguousarray(np.transpose(image, (0, 3, 1, 2))))
    grid_t = torch.tensor(grid)
    cot_t = torch.tensor(np.ascontiguousarray(np.transpose(cotangent, (0, 3, 1, 2))))

    def sample(i, g):
        return torch.nn.functional.grid_sample(i, g, mode="bilinear", padding_mode="zeros", align_corners=True)

    def fwd():
        with torch.no_grad():
            return sample(image_t, grid_t)

    def fwd_bwd():
        i = image_t.detach().requires_grad_()
        g = grid_t.detach().requires_grad_()
        out = sample(i, g)
        return (out.detach(), *torch.autograd.grad(out, [i, g], grad_outputs=cot_t))

    for name, fn in (("forward", fwd), ("forward+backward", fwd_bwd)):
        first, median, best, count = timed(fn, args.repeats, args.budget)
        record = {
            "backend": "torch",
            "implementation": "torch.nn.functional.grid_sample",
            "mode": f"eager, NCHW, {torch.get_num_threads()} threads",
            "pass": name,
            "median_ms": median,
            "min_ms": best,
            "first_call_s": first,
            "repeats": count,
            "run": args.run,
        }
        print(json.dumps(record), flush=True)
    if args.run == 0:
        out, grad_image, grad_grid = fwd_bwd()
        np.savez(
            os.path.join(args.out, "reference.npz"),
            output=np.transpose(out.numpy(), (0, 2, 3, 1)),
            image_gradient=np.transpose(grad_image.numpy(), (0, 2, 3, 1)),
            grid_gradient=grad_grid.numpy(),
        )


def kmt_worker(args):
    """Time kmt and the naive loop, eager and compiled, on this process's Keras backend."""
    import keras

    from kmt import warping

    backend = keras.backend.backend()
    image, grid, cotangent = workload(args.batch, args.size)
    saved = np.load(os.path.join(args.out, "reference.npz"))
    reference = {
        "output": saved["output"],
        "image gradient": saved["image_gradient"],
        "grid gradient": saved["grid_gradient"],
    }
    implementations = [("kmt.grid_sample", warping.grid_sample)]
    if backend == "torch":
        implementations.append(("kmt.grid_sample_keras", warping.grid_sample_keras))
    implementations.append(("naive loop", naive_loop))
    modes = ["eager"]
    if backend != "torch" or args.torch_compile:
        modes.append(COMPILED[backend])
    for implementation, fn in implementations:
        for mode in modes:
            if backend == "torch" and mode != "eager" and implementation != "kmt.grid_sample_keras":
                continue  # torch.compile is timed on the keras.ops version only
            for name in PASSES:
                record = {"backend": backend, "implementation": implementation, "mode": mode, "pass": name}
                try:
                    run = _runners(backend, fn, mode, image, grid, cotangent)[name]
                    first, median, best, count = timed(run, args.repeats, args.budget)
                    record.update(
                        median_ms=median,
                        min_ms=best,
                        first_call_s=first,
                        repeats=count,
                        max_abs_diff_vs_torch=_max_diff(run(results=True), reference),
                    )
                    if implementation == "kmt.grid_sample":
                        record["grid_sample_implementation"] = warping.grid_sample_implementation()
                except Exception as error:  # a variant that cannot run is reported, not fatal
                    record["error"] = f"{type(error).__name__}: {error}"[:500]
                print(json.dumps(record), flush=True)


# --- the parent process ------------------------------------------------------------------


def _run_worker(argv, backend, timeout=3600):
    return harness.run_worker(__file__, argv, backend=backend, timeout=timeout)


def summarise(records, torch_runs):
    """Add ratios to every record (``x_torch``, against the faster of the PyTorch runs before and
    after its backend's process) and return the headline comparisons."""
    torch_ms = {name: min(r["median_ms"] for r in torch_runs if r["pass"] == name) for name in PASSES}
    index = {}
    for record in records:
        if "median_ms" in record:
            reference = min(
                r["median_ms"] for r in torch_runs if r["pass"] == record["pass"] and r["run"] in record["torch_runs"]
            )
            record["torch_ms"] = reference
            record["x_torch"] = record["median_ms"] / reference
            index[(record["backend"], record["implementation"], record["mode"], record["pass"])] = record
    headline = []
    for backend in ("tensorflow", "jax"):
        mode = COMPILED[backend]
        ours = index.get((backend, "kmt.grid_sample", mode, "forward+backward"))
        if ours is None:
            continue
        naive_eager = index.get((backend, "naive loop", "eager", "forward+backward"))
        naive_compiled = index.get((backend, "naive loop", mode, "forward+backward"))
        headline.append(
            {
                "backend": backend,
                "mode": mode,
                "forward_backward_ms": ours["median_ms"],
                "x_torch": ours["x_torch"],
                "speedup_vs_naive_eager": naive_eager["median_ms"] / ours["median_ms"] if naive_eager else None,
                "speedup_vs_naive_compiled": naive_compiled["median_ms"] / ours["median_ms"] if naive_compiled else None,
            }
        )
    return torch_ms, headline


def _ms(value):
    return f"{value:,.2f}" if value < 10 else f"{value:,.1f}"


def report(summary):
    torch_ms = summary["torch_native_ms"]
    lines = [
        f"# grid_sample speed: {summary['batch']} x {summary['size']} x {summary['size']} x 3 images, "
        f"{summary['size']} x {summary['size']} grids",
        "",
        f"`python benchmarks/warp.py` on {summary['machine']}, {summary['date']}; "
        + ", ".join(f"{k} {v}" for k, v in summary["versions"].items() if v)
        + f". Load average before/after: {summary['load_average_before']} / {summary['load_average_after']} "
        "(a shared machine: compare rows of one run, not across runs).",
        "",
        "Bilinear, zero padding, `align_corners=True`, a smooth FOMM-like warp (affine + small "
        "deformation). `forward+backward` = the output and the gradients for the images and the grids "
        "(a vector-Jacobian product). Milliseconds are medians after a first call (which compiles: "
        "`first call`). `torch.nn.functional.grid_sample` is timed in its own process before and after "
        "each backend's process; `x torch` divides by the faster of the two runs around the row's "
        f"backend (its fastest runs: {_ms(torch_ms['forward'])} ms forward, "
        f"{_ms(torch_ms['forward+backward'])} ms forward+backward; its rows divide by these).",
        "",
        "| backend | implementation | mode | forward (ms) | x torch | forward+backward (ms) | x torch "
        "| first call (s) | max abs diff vs torch |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = {}
    for record in summary["torch_native"] + summary["records"]:
        key = (record["backend"], record["implementation"], record["mode"], record.get("run", 0))
        rows.setdefault(key, {})[record["pass"]] = record
    for (backend, implementation, mode, run), passes in rows.items():
        if implementation.startswith("torch.nn"):
            implementation = f"{implementation} (run {run + 1})"
        cells = []
        for name in PASSES:
            record = passes.get(name, {})
            if "error" in record:
                cells += [f"failed: {record['error'][:80]}", ""]
            elif "median_ms" in record:
                ratio = record.get("x_torch", record["median_ms"] / torch_ms[name])
                cells += [_ms(record["median_ms"]), f"{ratio:.2f}x"]
            else:
                cells += ["", ""]
        first = max((p.get("first_call_s", 0.0) for p in passes.values()), default=0.0)
        diffs = passes.get("forward+backward", {}).get("max_abs_diff_vs_torch") or {}
        diff = f"{max(diffs.values()):.1e}" if diffs else ("0 (reference)" if implementation.startswith("torch.nn") else "")
        lines.append(f"| {backend} | {implementation} | {mode} | " + " | ".join(cells) + f" | {first:.1f} | {diff} |")
    if summary["headline"]:
        lines += [
            "",
            "Compiled kmt against the reference and the naive loop (forward+backward):",
            "",
            "| backend | compiled as | ms | x torch | naive loop eager / kmt | naive loop compiled / kmt |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for h in summary["headline"]:
            eager = f"{h['speedup_vs_naive_eager']:.1f}x" if h["speedup_vs_naive_eager"] else "-"
            compiled = f"{h['speedup_vs_naive_compiled']:.1f}x" if h["speedup_vs_naive_compiled"] else "-"
            lines.append(
                f"| {h['backend']} | {h['mode']} | {_ms(h['forward_backward_ms'])} | {h['x_torch']:.2f}x | {eager} | {compiled} |"
            )
    lines += [
        "",
        "`max abs diff vs torch`: the largest absolute difference of the output and of both gradients "
        "from PyTorch's, each divided by the largest magnitude of PyTorch's values where that exceeds 1 "
        "(the grid gradient, in units of the grid, reaches a few hundred here).",
        "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=256, help="image and grid height and width")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of timed calls per row at most (>= 3 calls)")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--quick", action="store_true", help="2 images of 32 x 32, 3 repeats, nothing written")
    parser.add_argument("--torch-compile", action="store_true", help="also time torch.compile of the keras.ops version")
    parser.add_argument("--no-write", action="store_true", help="print only, do not write benchmarks/results/")
    parser.add_argument("--worker", choices=("torch-native", "kmt"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--run", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.batch, args.size, args.repeats, args.budget, args.no_write = 2, 32, 3, 5.0, True

    if args.worker == "torch-native":
        return torch_native_worker(args)
    if args.worker == "kmt":
        return kmt_worker(args)

    load_before = harness.load_average()
    records, torch_native = [], []
    with tempfile.TemporaryDirectory() as out:
        common = ["--batch", str(args.batch), "--size", str(args.size), "--repeats", str(args.repeats),
                  "--budget", str(args.budget), "--out", out]
        if args.torch_compile:
            common.append("--torch-compile")
        # PyTorch's op before and after every backend: each backend is compared with the
        # faster of the two runs around it, which share its share of the machine.
        print("timing torch.nn.functional.grid_sample ...", file=sys.stderr, flush=True)
        torch_native += _run_worker(["--worker", "torch-native", "--run", "0", *common], "torch")
        for run, backend in enumerate(args.backends, start=1):
            print(f"timing {backend} ...", file=sys.stderr, flush=True)
            for record in _run_worker(["--worker", "kmt", *common], backend):
                record["torch_runs"] = [run - 1, run]
                records.append(record)
            print("timing torch.nn.functional.grid_sample again ...", file=sys.stderr, flush=True)
            torch_native += _run_worker(["--worker", "torch-native", "--run", str(run), *common], "torch")
    torch_ms, headline = summarise(records, torch_native)
    summary = {
        "batch": args.batch,
        "size": args.size,
        "repeats": args.repeats,
        **harness.describe(),
        "load_average_before": load_before,
        "load_average_after": harness.load_average(),
        "torch_native_ms": torch_ms,
        "torch_native": torch_native,
        "records": records,
        "headline": headline,
    }
    harness.write_results("warp", summary, report(summary), args.no_write)

if __name__ == "__main__":
    main()
