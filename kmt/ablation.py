"""Ablations (chapter 7): train the model with one part removed and measure what it costs.

Each variant is a config with a few keys changed, written as ``kmt train --set``
assignments (``"section.key=value"``, :func:`kmt.config.override_config`):

* ``full``: the config as it is;
* ``no_jacobian``: zeroth-order motion, keypoints without Jacobians
  (``estimate_jacobian: False``; the Jacobian equivariance term goes with them);
* ``no_occlusion``: the generator without its occlusion map;
* ``no_equivariance``: both equivariance loss weights set to 0;
* ``fewer_keypoints``: 5 keypoints instead of the config's (10 in ``synthetic-faces-64``).

:func:`run` trains every variant it is given with the same code path as ``kmt train``
(:class:`kmt.training.Trainer`, :func:`kmt.training_data.training_batches`), the same seed,
the same training batches and the same held-out pairs, then reconstructs each held-out
driving frame from its source. It reports the mean absolute error (L1, pixel values in
[0, 1]) against the baseline "copy the source frame", and, where the synthetic evaluators
of the config's family ship with kmt, the average keypoint distance (AKD, in pixels of
the frames) between an external landmark detector's answers on the prediction and on the
driving frame. Held-out pairs come from identities and motions never used in training.
"""

import os
import shutil
import tempfile
import time
from collections import OrderedDict

import numpy as np

__all__ = ["ABLATIONS", "SMALL_NETWORKS", "run", "table", "variant_config", "recorded"]

ABLATIONS = OrderedDict([
    ("full", ("the model as configured: keypoints with Jacobians, occlusion map, equivariance losses", ())),
    ("no_jacobian", ("keypoints without Jacobians: each region only translates (zeroth-order motion)",
                     ("model_params.common_params.estimate_jacobian=False",
                      "train_params.loss_weights.equivariance_jacobian=0"))),
    ("no_occlusion", ("the generator without an occlusion map: every warped feature is trusted",
                      ("model_params.generator_params.estimate_occlusion_map=False",))),
    ("no_equivariance", ("no equivariance losses: keypoints are shaped by the reconstruction alone",
                         ("train_params.loss_weights.equivariance_value=0",
                          "train_params.loss_weights.equivariance_jacobian=0"))),
    ("fewer_keypoints", ("5 keypoints instead of the config's number",
                         ("model_params.common_params.num_kp=5",))),
])
"""name -> (description, config overrides as ``kmt train --set`` assignments)."""

SMALL_NETWORKS = tuple(
    f"model_params.{section}.{key}={value}"
    for section in ("kp_detector_params", "generator_params", "generator_params.dense_motion_params")
    for key, value in (("block_expansion", 8), ("max_features", 64))
) + ("model_params.kp_detector_params.num_blocks=3", "model_params.generator_params.dense_motion_params.num_blocks=3")
"""Overrides (for ``run(overrides=...)``) that shrink every network of ``synthetic-faces-64``: quick runs."""


def _names(names):
    if names is None:
        return list(ABLATIONS)
    if isinstance(names, str):
        names = [names]
    names = list(names)
    unknown = [name for name in names if name not in ABLATIONS]
    if unknown or not names:
        raise ValueError(f"`names` must be a non-empty list of ablations among {list(ABLATIONS)}; "
                         f"got {names!r}" + (f" ({unknown} unknown)." if unknown else "."))
    return names


def variant_config(name, config="synthetic-faces-64", overrides=()):
    """The config of ablation ``name``: ``config`` with ``overrides`` and then the ablation's own applied."""
    from kmt.config import load_config, override_config

    (name,) = _names([name])
    assignments = list(overrides) + list(ABLATIONS[name][1])
    return override_config(config, assignments) if assignments else load_config(config)


def _sized(config, size, batch_size):
    params = config.setdefault("dataset_params", {})
    if size is not None:
        if int(size) < 16:
            raise ValueError(f"`size` must be a frame side of at least 16 pixels (or None for the config's); "
                             f"got {size!r}.")
        params["frame_shape"] = [int(size), int(size), 3]
    if batch_size is not None:
        if int(batch_size) < 1:
            raise ValueError(f"`batch_size` must be at least 1 (or None for the config's); got {batch_size!r}.")
        config["train_params"]["batch_size"] = int(batch_size)
    return config


def _held_out(config, count):
    from kmt.data import PairStream

    synthetic = config.get("synthetic_params")
    if not synthetic:
        raise ValueError("Ablations train on kmt's synthetic stream: the config needs a `synthetic_params` section "
                         "(as synthetic-faces-64 has).")
    side = config["dataset_params"]["frame_shape"][:2]
    stream = PairStream(synthetic.get("family", "faces"), size=tuple(side), batch_size=int(count), split="test",
                        num_frames=int(synthetic.get("num_frames", 64)), seed=0, prefetch=0)
    return stream.batch(0)


def _evaluators(family, jit=True):
    from kmt.evaluators import load_evaluators

    try:
        return load_evaluators(family, jit=jit)
    except (FileNotFoundError, ValueError):
        return None


def _predict(models, source, driving, batch_size):
    from keras import ops

    kp_detector, generator = models["kp_detector"], models["generator"]
    out = []
    for start in range(0, len(source), batch_size):
        s, d = source[start:start + batch_size], driving[start:start + batch_size]
        kp_source, kp_driving = kp_detector(s, training=False), kp_detector(d, training=False)
        prediction = generator(s, kp_driving=kp_driving, kp_source=kp_source, training=False)["prediction"]
        out.append(np.asarray(ops.convert_to_numpy(prediction), "float32"))
    return np.concatenate(out)


def _akd(judges, frames, driving):
    """``(AKD over every landmark found in both frames, AKD of each pair)``; ``None`` / nan where none is."""
    from kmt.metrics import keypoint_distances

    kp, seen = judges.detect(frames)
    kp_true, seen_true = judges.detect(driving)
    distances = keypoint_distances(kp, kp_true, driving.shape[1:3])
    both = (seen > 0.5) & (seen_true > 0.5)
    counts = both.sum(axis=1)
    per_pair = np.where(counts > 0, (distances * both).sum(axis=1) / np.maximum(counts, 1), np.nan)
    return (float(distances[both].mean()) if both.any() else None), per_pair


def _checkpoint_path(init):
    if init == "shipped":
        import kmt.pretrained

        return kmt.pretrained.default_checkpoint()
    path = os.fspath(init)
    if not os.path.isfile(path):
        raise ValueError(f"`init` must be None (train from scratch), 'shipped' (the model kmt ships) or the path of "
                         f"a .kmt checkpoint; got {init!r}, which is not a file.")
    return path


def _initialize(models, loaded):
    """Copy every variable of ``loaded`` whose path and shape a network of ``models`` shares.

    Returns the fraction of the variables of the networks ``loaded`` holds that were copied.
    """
    copied = total = 0
    for name, model in models.items():
        if name not in loaded.models:
            continue  # the discriminator: shipped checkpoints hold none
        source = {v.path: v for v in loaded.models[name].variables}
        for variable in model.variables:
            total += 1
            match = source.get(variable.path)
            if match is not None and tuple(match.shape) == tuple(variable.shape):
                variable.assign(match.value)
                copied += 1
    return copied / max(total, 1)


def _restore_matplotlib(previous):
    import sys

    if previous is not None and "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        if plt.get_backend() != previous:
            plt.switch_backend(previous)


def run(names=None, *, config="synthetic-faces-64", size=None, steps=200, batch_size=None, seed=0,
        evaluation_pairs=64, overrides=(), init=None, vgg=None, jit=True, progress=False, log_dir=None):
    """Train each ablation for ``steps`` steps and measure it on held-out pairs.

    Args:
        names: ablations to run, keys of :data:`ABLATIONS` (default: all, in order).
        config: the base config (a shipped name, a YAML path or a dict with ``synthetic_params``).
        size: frame side in pixels (default: the config's ``frame_shape``).
        steps: training steps of every variant (one epoch of that many steps).
        batch_size: training batch (default: the config's).
        seed: model initialisation, training batches and equivariance warps; the same for
            every variant.
        evaluation_pairs: held-out (source, driving) pairs, the same for every variant.
        overrides: ``"section.key=value"`` assignments applied to every variant first
            (e.g. smaller networks).
        init: ``None`` to train every variant from scratch; ``"shipped"`` (the model kmt
            ships, for ``synthetic-faces-64``) or a ``.kmt`` path to start every variant from
            its weights wherever the variant has the same variable (path and shape): what an
            ablation removes is dropped, what it changes (e.g. the keypoint head of
            ``fewer_keypoints``) starts from its initialisation; the discriminator and the
            optimisers start afresh.
        vgg: the perceptual network shared by the variants; default: seeded random VGG19
            features (what kmt trains with offline).
        jit: compile the training step and the evaluators (faster for many steps; a few
            steps run faster eagerly).
        progress: print a line per variant.
        log_dir: where the runs write their logs (``<log_dir>/<name>``); default: a
            temporary folder, removed afterwards.

    Returns:
        a list of dicts, one per variant, in order: ``name``, ``description``, ``l1`` (the
        model on the held-out pairs), ``copy_l1`` (copying the source), ``akd`` and
        ``copy_akd`` (pixels; ``None`` without evaluators for the family, or when the
        detector finds no landmark in both frames), ``num_kp``,
        ``parameters`` (trainable, keypoint detector and generator), ``steps``, ``seed``,
        ``l1_pairs`` and ``akd_pairs`` (each held-out pair's own, in order; an ``akd_pairs``
        entry is ``None`` where no landmark is found in both frames), ``initialized`` (the
        fraction of its keypoint detector and generator variables copied from ``init``; 0 from
        scratch), ``seconds`` (training and measuring).
    """
    from kmt.losses import VGG19Features, vgg_layers_needed
    from kmt.training import Trainer
    from kmt.training_data import training_batches

    names = _names(names)
    if int(steps) < 1:
        raise ValueError(f"`steps` must be at least 1; got {steps!r}.")
    if int(evaluation_pairs) < 1:
        raise ValueError(f"`evaluation_pairs` must be at least 1; got {evaluation_pairs!r}.")
    loaded = None
    if init is not None:
        from kmt.checkpoint import load

        loaded = load(_checkpoint_path(init), networks=("kp_detector", "generator"))
    configs = {name: _sized(variant_config(name, config, overrides), size, batch_size) for name in names}
    first = configs[names[0]]
    held_out = _held_out(first, evaluation_pairs)
    source, driving = held_out["source"], held_out["driving"]
    judges = _evaluators(first["synthetic_params"].get("family", "faces"), jit=jit)
    copy_l1 = float(np.mean(np.abs(source - driving)))
    copy_akd = _akd(judges, source, driving)[0] if judges is not None else None
    if vgg is None:
        layers = max(vgg_layers_needed(c["train_params"]["loss_weights"]["perceptual"]) for c in configs.values())
        vgg = VGG19Features("random", num_layers=layers) if layers else None
    root = tempfile.mkdtemp(prefix="kmt-ablation-") if log_dir is None else os.fspath(log_dir)
    try:
        import matplotlib

        previous_backend = matplotlib.get_backend()
    except ImportError:  # pragma: no cover - matplotlib is a requirement
        previous_backend = None
    rows = []
    try:
        for name in names:
            started = time.perf_counter()
            variant = configs[name]
            trainer = Trainer(variant, os.path.join(root, name), vgg=vgg, seed=seed, jit=jit)
            initialized = _initialize(trainer.models, loaded) if loaded is not None else 0.0
            batches_for_epoch, count = training_batches(variant, seed=seed, steps_per_epoch=int(steps))
            record = trainer.train_epoch(batches_for_epoch(0), count, progress=False)
            _restore_matplotlib(previous_backend)
            prediction = _predict(trainer.models, source, driving, int(variant["train_params"]["batch_size"]))
            models = (trainer.models["kp_detector"], trainer.models["generator"])
            l1_pairs = np.mean(np.abs(prediction - driving), axis=(1, 2, 3))
            akd, akd_pairs = _akd(judges, prediction, driving) if judges is not None else (None, None)
            row = {
                "name": name, "description": ABLATIONS[name][0],
                "l1": float(np.mean(l1_pairs)), "copy_l1": copy_l1, "akd": akd, "copy_akd": copy_akd,
                "num_kp": int(variant["model_params"]["common_params"]["num_kp"]),
                "parameters": int(sum(np.prod(v.shape) for m in models for v in m.trainable_variables)),
                "steps": int(record["steps"]), "seed": int(seed), "initialized": round(initialized, 4),
                "seconds": round(time.perf_counter() - started, 1),
                "l1_pairs": [float(v) for v in l1_pairs],
                "akd_pairs": None if akd_pairs is None else [None if np.isnan(v) else float(v) for v in akd_pairs],
            }
            rows.append(row)
            if progress:
                akd = "" if row["akd"] is None else f", AKD {row['akd']:.2f} px (copy {copy_akd:.2f})"
                print(f"{name:>16}: L1 {row['l1']:.4f} (copy {copy_l1:.4f}){akd}, {row['seconds']:.0f} s", flush=True)
            del trainer
    finally:
        if log_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    return rows


def recorded(path=None):
    """The rows of the recorded run (``benchmarks/results/ablations.json``), averaged over its seeds.

    Each row is as :func:`run` returns it without the per-pair lists, with ``l1``, ``akd`` and
    ``seconds`` the means over the seeds, ``seeds`` their number and ``pairs`` the number of
    held-out pairs.
    """
    import json

    if path is None:
        import kmt.book

        path = kmt.book.repository_root() / "benchmarks" / "results" / "ablations.json"
    with open(path, encoding="utf-8") as handle:
        runs = json.load(handle)["runs"]
    rows = []
    for position, first in enumerate(runs[0]):
        same = [run[position] for run in runs]
        row = {key: value for key, value in first.items() if not key.endswith("_pairs")}
        for key in ("l1", "akd", "seconds"):
            values = [r[key] for r in same if r.get(key) is not None]
            row[key] = float(np.mean(values)) if values else None
        row["seeds"] = len(same)
        row["pairs"] = len(first.get("l1_pairs") or [])
        rows.append(row)
    return rows


def _number(value, digits):
    return "-" if value is None or not np.isfinite(value) else f"{float(value):.{digits}f}"


def table(rows, caption=None):
    """The rows of :func:`run` (or :func:`recorded`) as an HTML table (``kmt.book.table``).

    One line per variant: AKD and L1 with their change against the ``full`` row (when there
    is one), the number of keypoints and the seconds; a last line for copying the source.
    """
    import kmt.book

    if not rows:
        raise ValueError("`rows` is empty: pass what kmt.ablation.run returned.")
    full = next((row for row in rows if row["name"] == "full"), None)

    def change(row, key):
        if row is full:
            return ""
        if full is None or row.get(key) is None or not full.get(key):
            return "-"
        return f"{100 * (row[key] / full[key] - 1):+.1f}%"

    header = ["variant", "AKD (px)", "AKD vs full", "L1", "L1 vs full", "keypoints", "seconds"]
    body = [[row["name"], _number(row.get("akd"), 2), change(row, "akd"), _number(row["l1"], 4), change(row, "l1"),
             row["num_kp"], _number(row["seconds"], 0)] for row in rows]
    body.append(["copy the source frame", _number(rows[0].get("copy_akd"), 2), "", _number(rows[0]["copy_l1"], 4),
                 "", "", ""])
    return kmt.book.table(header, body, caption=caption)
