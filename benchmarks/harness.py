"""What every benchmark script shares: timing loops, worker processes, the machine, writing results.

- :func:`timed` times a callable (a first, compiling call, then ``repeats`` calls);
  :func:`spread` summarises seconds as median, min, max and interquartile range;
- :func:`run_worker` runs a script again in a worker process (one Keras backend per
  process) and collects the JSON lines it prints; :func:`worker_env` is its environment;
- :func:`run_measured` runs a whole command and measures its wall time and the peak
  resident memory of its whole process tree (polled with ``psutil``);
- :func:`machine`, :func:`versions`, :func:`load_average` describe the run;
- :func:`write_results` writes ``benchmarks/results/<stem>.md`` and ``.json``.

The machine these scripts run on is usually shared, so the scripts interleave the
two sides of a comparison, repeat, and report ratios from one run with their spread.
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")


def timed(fn, repeats, budget_s=None, min_repeats=3):
    """``(first, times)``: seconds of a first call of ``fn()`` and of each later call.

    ``repeats`` later calls are timed, or, with ``budget_s``, fewer (at least
    ``min_repeats``) once their total exceeds ``budget_s`` seconds.
    """
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    while len(times) < max(repeats, 1):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if budget_s is not None and len(times) >= min_repeats and sum(times) > budget_s:
            break
    return first, times


def spread(values):
    """``{"median", "min", "max", "q1", "q3", "n"}`` of a list of numbers (quartiles by the exclusive method)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("spread: `values` is empty; nothing was measured.")
    q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "q1": q1, "q3": q3,
            "n": len(values)}


def ratio_spread(numerators, denominators):
    """The spread of ``numerator / denominator`` over pairs measured side by side (same index, same round)."""
    if len(numerators) != len(denominators):
        raise ValueError(f"ratio_spread: {len(numerators)} numerators against {len(denominators)} denominators.")
    return spread([n / d for n, d in zip(numerators, denominators)])


def fmt_spread(s, scale=1.0, digits=2, unit=""):
    """``"median (min-max)"`` of a :func:`spread`, multiplied by ``scale``."""
    f = f"{{:.{digits}f}}"
    return (f"{f.format(s['median'] * scale)}{unit} ({f.format(s['min'] * scale)}-"
            f"{f.format(s['max'] * scale)})")


def worker_env(backend=None, threads=None, extra=None):
    """The environment of a worker process: its Keras backend, TensorFlow's log quiet, thread limits."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if backend:
        env["KERAS_BACKEND"] = backend
    if threads and backend == "jax":
        flags = (f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
                 f"intra_op_parallelism_threads={threads}")
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flags).strip()
    env.update(extra or {})
    return env


def limit_threads(threads):
    """Intra-op threads of the framework this process runs (JAX reads XLA_FLAGS, set by :func:`worker_env`)."""
    if not threads:
        return
    backend = os.environ.get("KERAS_BACKEND")
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    if backend in ("torch", None):
        import torch

        torch.set_num_threads(threads)


def json_lines(text):
    """The JSON objects among the lines of ``text`` (a worker's stdout)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def run_worker(script, argv, backend=None, threads=None, env=None, timeout=3600, cwd=REPO):
    """Run ``python script *argv`` in its own process; the JSON lines it prints, parsed.

    Raises ``RuntimeError`` with the end of its output when it fails or prints no JSON.
    """
    if threads:
        argv = [*argv, "--threads", str(threads)]
    proc = subprocess.run([sys.executable, os.path.abspath(script), *argv], env=worker_env(backend, threads, env),
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)
    records = json_lines(proc.stdout)
    if proc.returncode != 0 or not records:
        raise RuntimeError(f"worker {os.path.basename(script)} {argv} ({backend or 'no backend'}) failed "
                           f"(exit {proc.returncode}):\n{(proc.stderr or proc.stdout)[-2000:]}")
    return records


def run_measured(command, env=None, cwd=None, interval=0.02, timeout=3600):
    """Run ``command`` (a list) to its end; its wall time and the peak memory of its process tree.

    Memory is the largest sum, over the command's process and all its descendants, of their
    resident set sizes, sampled every ``interval`` seconds (so a peak shorter than that may be
    missed, equally for every command measured this way). ``cpu_s`` is the user + system CPU time
    of the command and the descendants it waited for (``os.wait4``), which a busy machine changes
    less than the wall time. Returns ``{"wall_s", "cpu_s", "peak_rss_mb", "returncode", "stdout",
    "stderr"}``.
    """
    import psutil

    out_path, err_path = (os.path.join(_scratch(), name) for name in ("stdout", "stderr"))
    with open(out_path, "w") as out, open(err_path, "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=err)
        root = psutil.Process(proc.pid)
        peak, usage = 0, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        pass
            except psutil.NoSuchProcess:
                pass
            peak = max(peak, total)
            if time.perf_counter() - start > timeout:
                proc.kill()
            time.sleep(interval)
        wall = time.perf_counter() - start
    with open(out_path) as out, open(err_path) as err:
        stdout, stderr = out.read(), err.read()
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": peak / 2**20,
            "returncode": proc.returncode, "stdout": stdout, "stderr": stderr}


_SCRATCH = {}


def _scratch():
    if "dir" not in _SCRATCH:
        import tempfile

        _SCRATCH["dir"] = tempfile.mkdtemp(prefix="kmt-bench-")
    return _SCRATCH["dir"]


def load_average():
    """The 1, 5 and 15 minute load averages (``None`` where the system has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


class LoadSampler:
    """The machine's load while a block runs: 1-minute load averages sampled every ``interval`` s."""

    def __init__(self, interval=5.0):
        self.interval, self.samples = interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            load = load_average()
            if load:
                self.samples.append(load[0])
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self):
        return spread(self.samples) if self.samples else None


def machine():
    """The CPU model (with AVX-512 / AVX2 noted), the cores this process may use, the OS."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            info = handle.read()
        names = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")]
        model = names[0] if names else model
        flags = next((line for line in info.splitlines() if line.startswith("flags")), "").split()
        model += ", AVX-512" if "avx512f" in flags else (", AVX2" if "avx2" in flags else "")
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} CPU cores ({platform.system()} {platform.machine()})"


def versions(names=("numpy", "keras", "tensorflow", "jax", "jaxlib", "torch")):
    """``{"python": ..., name: version or None}`` read from the installed distributions (nothing imported)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def versions_text(found):
    return ", ".join(f"{k} {v}" for k, v in found.items() if v)


def header(script, summary):
    """The first line every report shares: script, machine, date, versions, load."""
    load = summary.get("load_averages") or summary.get("load_average")
    return (f"`python benchmarks/{script}` on {summary['machine']}, {summary['date']}; "
            f"{versions_text(summary['versions'])}. Load averages (1, 5, 15 min) during the run: {load} "
            "(a shared machine: compare rows of one run, not across runs).")


def describe():
    """The ``machine``, ``date`` and ``versions`` entries of a results summary."""
    return {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "versions": versions()}


def write_results(stem, summary, text, no_write=False):
    """Print ``text``; unless ``no_write``, write it to ``results/<stem>.md`` and ``summary`` to ``<stem>.json``."""
    print(text)
    if no_write:
        return None
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{stem}.json"), "w") as handle:
        json.dump(summary, handle, indent=2, default=str)
    with open(os.path.join(RESULTS, f"{stem}.md"), "w") as handle:
        handle.write(text)
    return os.path.join(RESULTS, f"{stem}.md")
