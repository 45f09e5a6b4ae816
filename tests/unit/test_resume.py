"""Resuming training is exact, even after the process is killed (SIGKILL) in the middle of an epoch.

The scenario, run with ``kmt train`` in subprocesses as a user runs it:

1. a run is killed with SIGKILL right after global step 7 (epoch 1, step 3 of 4), having written
   ``last.kmt`` after step 6 (``--save-every 2``);
2. a new process continues with ``--resume LOG/last.kmt`` (and another ``--seed``, which the
   checkpoint's seed overrides) and finishes the two epochs;
3. its weights, optimiser state and loss log equal those of a run that was never interrupted.

Resuming restores every input of every later step (weights, optimiser slots and iterations,
BatchNorm statistics, spectral-norm vectors, the learning rate of the epoch, the data of each step,
the equivariance generator's state), so on TensorFlow and JAX the two runs end bit for bit equal:
XLA compiles the step once (the processes share a persistent compilation cache) into CPU code whose
reductions are split the same way on every call. PyTorch's eager CPU kernels (oneDNN, OpenMP) do
not promise that: two runs of the same program once ended one float32 rounding apart (at most
3e-8) on a loaded machine, so there the check is within 1e-7 (plus 1e-6 relative, a few roundings
of the larger slots).

A second subprocess is killed while writing a checkpoint over a good one: only a hidden temporary
file is left beside it, which kmt never reads and the trainer deletes when it starts.
"""

import glob
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import keras
import numpy as np
import pytest
import yaml
from keras import ops

from helpers import TINY_MODEL_PARAMS
from kmt import checkpoint
from kmt.training import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BACKEND = keras.backend.backend()
BITWISE = BACKEND in ("tensorflow", "jax")  # XLA-compiled steps; PyTorch runs eagerly (see the docstring)
STEPS, EPOCHS, SAVE_EVERY, KILL_AFTER = 4, 2, 2, 7
CONFIG = {
    "dataset_params": {"root_dir": "unused", "frame_shape": [32, 32, 3],
                       "augmentation_params": {"flip_param": {"horizontal_flip": True, "time_flip": True},
                                               "jitter_param": {"brightness": 0.1, "hue": 0.1}}},
    "synthetic_params": {"family": "faces", "num_identities": 8, "num_motions": 8, "num_frames": 8},
    "model_params": TINY_MODEL_PARAMS,
    "train_params": {"num_epochs": EPOCHS, "num_repeats": 1, "epoch_milestones": [1], "lr_generator": 2e-4,
                     "lr_discriminator": 2e-4, "lr_kp_detector": 2e-4, "batch_size": 2, "scales": [1],
                     "checkpoint_freq": 1,
                     "transform_params": {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5},
                     "loss_weights": {"generator_gan": 1, "discriminator_gan": 1, "feature_matching": [10, 10],
                                      "perceptual": [0, 0, 0, 0, 0], "equivariance_value": 10,
                                      "equivariance_jacobian": 10}},
}

# Runs `kmt train`; with PAUSE_AFTER > 0, reports each step to MARKERS and stops (forever) after that step.
TRAIN_CHILD = """
import sys, time
import kmt.train_step
from kmt import cli

markers, pause_after, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
call, done = kmt.train_step.TrainStep.__call__, [0]

def counted(self, *a, **k):
    out = call(self, *a, **k)
    done[0] += 1
    with open(markers, "a") as handle:
        handle.write(f"step {done[0]}\\n")
    if done[0] == pause_after:
        with open(markers, "a") as handle:
            handle.write("paused\\n")
        time.sleep(3600)
    return out

kmt.train_step.TrainStep.__call__ = counted
sys.exit(cli.main(args))
"""

# Saves a good checkpoint at TARGET, then saves again over it and stops (forever) in the middle of the write.
WRITE_CHILD = """
import sys, time, zipfile
sys.path.insert(0, sys.argv[3])
from helpers import TINY_MODEL_PARAMS
from kmt import checkpoint
from kmt.config import build_models

target, markers = sys.argv[1], sys.argv[2]
config = {"model_params": TINY_MODEL_PARAMS, "dataset_params": {"root_dir": "unused", "frame_shape": [32, 32, 3]}}
models = build_models(config, networks=("kp_detector", "generator"))
checkpoint.save(target, config, models)
write = zipfile.ZipFile.writestr

def slow(self, name, data, *a, **k):
    write(self, name, data, *a, **k)
    if name == "kp_detector.weights.h5":
        self.fp.flush()
        with open(markers, "a") as handle:
            handle.write("writing\\n")
        time.sleep(3600)

zipfile.ZipFile.writestr = slow
checkpoint.save(target, config, models, image_size=(32, 32))
"""


def child_env(cache):
    """The test's backend; a persistent XLA compilation cache shared by the runs (TensorFlow and JAX)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1", KERAS_BACKEND=BACKEND,
               JAX_COMPILATION_CACHE_DIR=os.path.join(cache, "jax"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    env["TF_XLA_FLAGS"] = (env.get("TF_XLA_FLAGS", "") + f" --tf_xla_persistent_cache_directory={cache}/tf").strip()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    return env


def start(script, args, folder, name, env):
    """A child process running ``script`` with ``args``; its output goes to ``folder/name.out``."""
    path = os.path.join(folder, name + ".py")
    with open(path, "w") as handle:
        handle.write(script)
    output = open(os.path.join(folder, name + ".out"), "w")
    process = subprocess.Popen([sys.executable, path, *map(str, args)], stdout=output, stderr=subprocess.STDOUT,
                               cwd=ROOT, env=env)
    output.close()
    return process


def output_of(folder, name):
    with open(os.path.join(folder, name + ".out")) as handle:
        return handle.read()[-4000:]


def wait_for(markers, word, process, folder, name, timeout=400):
    """Block until the child writes ``word`` to its marker file; fail with its output if it ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(markers) and word in open(markers).read().split("\n"):
            return open(markers).read().split("\n")
        if process.poll() is not None:
            pytest.fail(f"{name} ended (status {process.returncode}) before {word!r}:\n{output_of(folder, name)}")
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"{name} did not reach {word!r} in {timeout} s:\n{output_of(folder, name)}")


def sigkill(process):
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL


def finish(process, folder, name, timeout=400):
    try:
        status = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"{name} did not finish in {timeout} s:\n{output_of(folder, name)}")
    assert status == 0, output_of(folder, name)


def stop_all(processes):
    """Kill the children still running (a failed test must not leave a paused trainer behind)."""
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def complete_checkpoints(folder):
    """Every file kmt could be pointed at in ``folder`` (its ``*.kmt``) reads as a whole checkpoint."""
    paths = sorted(glob.glob(os.path.join(folder, "*.kmt")))
    for path in paths:
        with zipfile.ZipFile(path) as archive:
            assert archive.testzip() is None, path
        checkpoint.read_metadata(path)
    return paths


def state_of(path):
    """``{name: array}`` of every network variable and every optimiser variable in a checkpoint."""
    loaded = checkpoint.load(path)
    state = {f"{name}:{variable.path}": np.asarray(ops.convert_to_numpy(variable))
             for name, model in loaded.models.items() for variable in model.variables}
    for name, values in loaded.optimizer_values.items():
        state.update({f"optimizer {name}:{index}": np.asarray(value) for index, value in enumerate(values)})
    return state, loaded.training


def without_seconds(history):
    return [{key: value for key, value in record.items() if key != "seconds"} for record in history]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The killed run resumed in a new process, and a run never interrupted: their folders and facts."""
    folder = str(tmp_path_factory.mktemp("resume"))
    config = os.path.join(folder, "tiny.yaml")
    with open(config, "w") as handle:
        yaml.safe_dump(CONFIG, handle)
    env = child_env(os.path.join(folder, "cache"))
    killed_dir, straight_dir = os.path.join(folder, "killed"), os.path.join(folder, "straight")
    common = ["train", "--config", config, "--steps-per-epoch", STEPS, "--save-every", SAVE_EVERY]

    markers, children = os.path.join(folder, "killed.markers"), []
    try:
        return run_all(folder, config, env, killed_dir, straight_dir, common, markers, children)
    finally:
        stop_all(children)


def run_all(folder, config, env, killed_dir, straight_dir, common, markers, children):
    started = time.perf_counter()
    killed = start(TRAIN_CHILD, [markers, KILL_AFTER, *common, "--log-dir", killed_dir, "--seed", 1], folder,
                   "killed", env)
    children.append(killed)
    lines = wait_for(markers, "paused", killed, folder, "killed")
    sigkill(killed)
    steps_done = max(int(line.split()[1]) for line in lines if line.startswith("step "))
    on_disk = complete_checkpoints(killed_dir)
    left_over = glob.glob(os.path.join(killed_dir, ".partial-*"))
    last = os.path.join(killed_dir, "last.kmt")
    snapshot = shutil.copy(last, os.path.join(folder, "resume-point.kmt"))
    resumed_from = checkpoint.read_training(last)

    # A stale temporary file, as a kill during a write leaves: the resumed trainer must delete it.
    stale = os.path.join(killed_dir, ".partial-stale.kmt")
    with open(stale, "wb") as handle:
        handle.write(b"PK\x03\x04 half a checkpoint")
    # The resumed run and the straight run are independent: run them side by side.
    resumed = start(TRAIN_CHILD, [os.path.join(folder, "resumed.markers"), 0, *common, "--log-dir", killed_dir,
                                  "--seed", 99, "--resume", last], folder, "resumed", env)
    straight = start(TRAIN_CHILD, [os.path.join(folder, "straight.markers"), 0, *common, "--log-dir", straight_dir,
                                   "--seed", 1], folder, "straight", env)
    children += [resumed, straight]
    finish(resumed, folder, "resumed")
    finish(straight, folder, "straight")
    print(f"{BACKEND}: three training processes in {time.perf_counter() - started:.1f} s")
    return {"folder": folder, "config": config, "killed_dir": killed_dir, "straight_dir": straight_dir,
            "steps_done": steps_done, "on_disk": on_disk, "left_over": left_over, "resumed_from": resumed_from,
            "snapshot": snapshot, "stale": stale, "resumed_output": output_of(folder, "resumed")}


def test_the_kill_came_mid_epoch_after_a_checkpoint_and_left_only_complete_files(runs):
    assert runs["steps_done"] == KILL_AFTER
    epoch, step = divmod(KILL_AFTER, STEPS)
    assert 0 < step < STEPS, "the kill must come in the middle of an epoch"
    names = sorted(os.path.basename(path) for path in runs["on_disk"])
    assert names == ["checkpoint-0001.kmt", "last.kmt"], names  # epoch 0's checkpoint, then last.kmt mid-epoch 1
    assert runs["left_over"] == []


def test_at_most_one_checkpoint_interval_of_work_was_lost(runs):
    training = runs["resumed_from"]
    assert (training["epoch"], training["step_in_epoch"]) == (1, 2)
    resumed_at = training["epoch"] * STEPS + training["step_in_epoch"]
    assert 0 <= runs["steps_done"] - resumed_at <= SAVE_EVERY
    assert "Epoch 2/2, resumed after step 2" in runs["resumed_output"]


def test_resumed_run_ends_where_the_uninterrupted_run_ends(runs):
    expected, expected_training = state_of(os.path.join(runs["straight_dir"], "last.kmt"))
    got, got_training = state_of(os.path.join(runs["killed_dir"], "last.kmt"))
    assert sorted(got) == sorted(expected)
    assert len([key for key in got if key.startswith("optimizer")]) > 10
    largest = max(float(np.max(np.abs(got[key] - expected[key]), initial=0)) for key in expected)
    print(f"{BACKEND}: largest difference between the resumed and the uninterrupted run: {largest:.3g}")
    for key in expected:
        if BITWISE:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
        else:
            np.testing.assert_allclose(got[key], expected[key], rtol=1e-6, atol=1e-7, err_msg=key)
    # Adam took one step per training step, with the learning rate of the last epoch (milestone at epoch 1).
    assert all(int(got[f"optimizer {name}:0"]) == EPOCHS * STEPS for name in ("kp_detector", "generator", "discriminator"))
    assert float(got["optimizer generator:1"]) == pytest.approx(2e-5)
    # The loss log, with epoch 1's sums carried over the kill, is the same number for number.
    assert got_training["epoch"] == EPOCHS and got_training["step_in_epoch"] == 0
    assert got_training["seed"] == 1 and got_training["epoch_progress"] is None
    got_history, expected_history = without_seconds(got_training["history"]), without_seconds(expected_training["history"])
    if BITWISE:
        assert got_history == expected_history
    else:
        assert [sorted(record) for record in got_history] == [sorted(record) for record in expected_history]
        for mine, theirs in zip(got_history, expected_history, strict=True):
            assert mine == pytest.approx(theirs, rel=1e-6, abs=1e-7)


def test_the_resumed_trainer_deleted_the_temporary_file_of_a_killed_write(runs):
    assert not os.path.exists(runs["stale"])
    assert glob.glob(os.path.join(runs["killed_dir"], ".partial-*")) == []
    assert len(complete_checkpoints(runs["killed_dir"])) == 3  # checkpoint-0001, checkpoint-0002, last


def test_restore_sets_every_network_and_optimizer_variable_to_what_was_saved(runs, tmp_path):
    """Right after a restore (no step taken), every variable equals the checkpoint's, read independently."""
    path = runs["snapshot"]
    trainer = Trainer(runs["config"], tmp_path, seed=42, resume=path)
    reference = checkpoint.load(path)  # networks through Keras' own weight loading
    for name, model in trainer.models.items():
        saved = reference.models[name].variables
        assert len(model.variables) == len(saved) > 0
        for variable, value in zip(model.variables, saved):
            np.testing.assert_array_equal(ops.convert_to_numpy(variable), ops.convert_to_numpy(value),
                                          err_msg=f"{name} {variable.path}")
    with zipfile.ZipFile(path) as archive:  # optimizers straight from the archive's arrays
        arrays = np.load(io.BytesIO(archive.read("optimizers.npz")))
        training = json.loads(archive.read("training.json"))
    for name, optimizer in trainer.optimizers.items():
        variables = optimizer.variables
        assert len(variables) == len([key for key in arrays.files if key.startswith(name + "/")]) > 2
        for index, variable in enumerate(variables):
            np.testing.assert_array_equal(ops.convert_to_numpy(variable), arrays[f"{name}/{index:04d}"],
                                          err_msg=f"{name} {variable.path}")
        assert int(ops.convert_to_numpy(optimizer.iterations)) == 6
        slots = [ops.convert_to_numpy(v) for v in variables if v.path.endswith(("momentum", "velocity"))]
        assert slots and all(np.any(slot != 0) for slot in slots)
    assert (trainer.epoch, trainer.step_in_epoch, trainer.seed) == (1, 2, 1)
    assert trainer.history == training["history"]
    assert trainer._progress.state()["transform_rng"] == training["epoch_progress"]["transform_rng"]
    assert trainer._progress.totals == training["epoch_progress"]["totals"]


def test_resuming_mid_epoch_with_other_steps_per_epoch_is_refused(runs, tmp_path):
    trainer = Trainer(runs["config"], tmp_path, resume=runs["snapshot"])
    with pytest.raises(ValueError, match=r"stopped at step 2 of an epoch of 4 steps, but steps_per_epoch is 5.*"
                                         r"--steps-per-epoch 4"):
        trainer.train(lambda epoch: iter(()), 5, progress=False)


@pytest.mark.parametrize("damage,message", [
    (lambda t: t.update(epoch_progress=None), r"step_in_epoch 2 but holds no matching epoch_progress"),
    (lambda t: t["epoch_progress"].pop("transform_rng"), r"epoch_progress cannot be read .*transform_rng"),
])
def test_a_damaged_training_state_is_named(runs, tmp_path, damage, message):
    members = {}
    with zipfile.ZipFile(runs["snapshot"]) as archive:
        for name in archive.namelist():
            members[name] = archive.read(name)
    training = json.loads(members["training.json"])
    damage(training)
    members["training.json"] = json.dumps(training)
    path = str(tmp_path / "damaged.kmt")
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match=message) as error:
        Trainer(runs["config"], tmp_path / "log", resume=path)
    assert repr(path) in str(error.value)


def test_optimizer_state_that_does_not_fit_is_named(runs, tmp_path):
    members = {}
    with zipfile.ZipFile(runs["snapshot"]) as archive:
        for name in archive.namelist():
            members[name] = archive.read(name)
    with np.load(io.BytesIO(members["optimizers.npz"])) as arrays:
        values = {key: arrays[key] for key in arrays.files}
    values["generator/0002"] = np.zeros((7, 7, 7), "float32")  # the first slot, in a shape no variable has
    buffer = io.BytesIO()
    np.savez(buffer, **values)
    members["optimizers.npz"] = buffer.getvalue()
    path = str(tmp_path / "cut.kmt")
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match=r"optimizer 'generator' variable .* was saved with shape \(.*\), the model "
                                         r"needs \(") as error:
        Trainer(runs["config"], tmp_path / "log", resume=path)
    assert repr(path) in str(error.value)


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_checkpoint_whole(tmp_path):
    target, markers = str(tmp_path / "last.kmt"), str(tmp_path / "write.markers")
    writer = start(WRITE_CHILD, [target, markers, os.path.join(ROOT, "tests")], str(tmp_path), "write",
                   child_env(str(tmp_path / "cache")))
    wait_for(markers, "writing", writer, str(tmp_path), "write")
    sigkill(writer)
    assert complete_checkpoints(str(tmp_path)) == [target]
    assert checkpoint.read_metadata(target)[0]["image_size"] is None  # the first save, not the interrupted one
    partial = glob.glob(str(tmp_path / ".partial-*"))
    assert len(partial) == 1 and os.path.basename(partial[0]).endswith(".kmt")
    assert os.path.getsize(partial[0]) > 0 and not zipfile.is_zipfile(partial[0])  # half written, never read
    assert checkpoint.remove_partial_files(str(tmp_path)) == partial
    assert not os.path.exists(partial[0]) and os.path.exists(target)


def test_a_resumed_epoch_starts_at_its_step_with_or_without_a_start_argument():
    from kmt.training import _batches_from
    from kmt.training_data import training_batches

    batches_for_epoch, steps = training_batches(CONFIG, seed=1, steps_per_epoch=STEPS)
    whole = list(batches_for_epoch(1))
    assert len(whole) == steps == STEPS
    for rest in (list(_batches_from(batches_for_epoch, 1, 2)),  # reads only the batches from step 2 on
                 list(_batches_from(lambda epoch: batches_for_epoch(epoch), 1, 2))):  # skips the first two
        assert len(rest) == STEPS - 2
        for mine, theirs in zip(rest, whole[2:]):
            np.testing.assert_array_equal(mine["source"], theirs["source"])
            np.testing.assert_array_equal(mine["driving"], theirs["driving"])
    with pytest.raises(ValueError, match=r"start must be a step in \[0, 4\], got 5"):
        batches_for_epoch(0, start=5)


@pytest.mark.parametrize("save_every", [0, 1.5, True])
def test_save_every_must_be_a_whole_number_of_steps(tmp_path, save_every):
    trainer = Trainer(CONFIG, tmp_path)
    with pytest.raises(ValueError, match=rf"`save_every` must be a whole number of steps >= 1 or None; got "
                                         rf"{save_every!r}"):
        trainer.train(lambda epoch: iter(()), STEPS, progress=False, save_every=save_every)
