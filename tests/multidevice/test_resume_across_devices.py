"""A run checkpointed on 2 devices resumes on 1, and a run checkpointed on 1 resumes on 2.

Each run is ``kmt train`` in a process of its own, as a user runs it (``--cpu-devices 2
--devices 2`` splits the CPU into two virtual devices). Three runs of two epochs of two
steps (global batch 2) end at the same place, within float32 noise:

* ``2 -> 1``: epoch 1 on 2 devices, then ``--resume`` on 1 device;
* ``1 -> 2``: epoch 1 on 1 device, then ``--resume`` on 2 devices;
* ``1``: both epochs on 1 device, never interrupted.

The checkpoints hold no trace of the device count: the same members and variables
whatever wrote them, the optimizers' step counts continue (4 after two epochs), and the
loss log of the resumed runs continues the first epoch's. Between runs only the order of
float32 sums differs (``test_data_parallel.py`` bounds one step), and after four steps:

* the logged epoch losses agree to 1e-5 (measured <= 8.6e-7 on JAX and TensorFlow);
* each network's weights are apart by at most 5e-3 of how far training moved them,
  ``|w - w_1| <= 5e-3 |w_1 - w_init|`` (measured <= 1.1e-3);
* at most 2% of the weights differ by more than 1e-5 (measured <= 0.91%): those whose
  gradient is float32 noise around zero (biases followed by BatchNorm), which Adam moves
  by about the learning rate whatever the noise, so no weight is further apart than twice
  the learning rate per step.
"""

import copy
import csv
import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
import yaml
from keras import ops

from kmt import checkpoint
from kmt.config import build_models

BACKEND = keras.backend.backend()
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import one_step  # noqa: E402

LEARNING_RATE = one_step.LEARNING_RATE

CONFIG = {
    "dataset_params": {"root_dir": "unused", "frame_shape": [32, 32, 3],
                       "augmentation_params": {"flip_param": {"horizontal_flip": True, "time_flip": True}}},
    "synthetic_params": {"family": "faces", "num_identities": 8, "num_motions": 8, "num_frames": 8},
    "model_params": one_step.CONFIG["model_params"],
    "train_params": {**one_step.CONFIG["train_params"], "num_epochs": 2, "batch_size": 2,
                     "loss_weights": {**one_step.CONFIG["train_params"]["loss_weights"],
                                      "perceptual": [0, 0, 0, 0, 0]}},
}


def kmt_train(log_dir, config, *flags):
    command = [sys.executable, "-m", "kmt", "train", "--config", str(config), "--log-dir", str(log_dir),
               "--steps-per-epoch", "2", *flags]
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    two = ("--cpu-devices", "2", "--devices", "2")
    kmt_train(folder / "2-1", config, "--epochs", "1", *two)
    kmt_train(folder / "2-1", config, "--resume", str(folder / "2-1" / "last.kmt"))
    kmt_train(folder / "1-2", config, "--epochs", "1")
    kmt_train(folder / "1-2", config, "--resume", str(folder / "1-2" / "last.kmt"), *two)
    kmt_train(folder / "1", config)
    return {name: folder / name for name in ("2-1", "1-2", "1")}


def state(log_dir):
    loaded = checkpoint.load(str(log_dir / "last.kmt"))
    weights = {f"{name}/{v.path}": np.asarray(ops.convert_to_numpy(v))
               for name, model in loaded.models.items() for v in model.variables}
    with open(log_dir / "log.csv") as handle:
        log = list(csv.DictReader(handle))
    with zipfile.ZipFile(log_dir / "last.kmt") as archive:
        members = sorted(archive.namelist())
    return loaded, weights, log, members


@pytest.mark.parametrize("order", ["2-1", "1-2"])
def test_a_run_resumes_on_another_number_of_devices(runs, order):
    loaded, weights, log, members = state(runs[order])
    ref_loaded, ref_weights, ref_log, ref_members = state(runs["1"])
    assert members == ref_members
    assert loaded.training["epoch"] == 2 and loaded.training["step_in_epoch"] == 0
    assert [len(loaded.optimizer_values[name]) for name in sorted(loaded.optimizer_values)] == \
        [len(ref_loaded.optimizer_values[name]) for name in sorted(ref_loaded.optimizer_values)]
    for name, values in loaded.optimizer_values.items():
        assert int(np.asarray(values[0])) == 4, name  # iterations: both epochs' steps

    assert [row["epoch"] for row in log] == ["0", "1"]
    for row, ref_row in zip(log, ref_log):
        for key in ref_row:
            if key not in ("epoch", "steps", "seconds"):
                np.testing.assert_allclose(float(row[key]), float(ref_row[key]), rtol=1e-5, err_msg=key)

    assert sorted(weights) == sorted(ref_weights)
    initial = initial_weights()
    for network in ("kp_detector", "generator", "discriminator"):
        keys = [k for k in ref_weights if k.startswith(network + "/")]
        apart = np.sqrt(sum(np.sum((weights[k] - ref_weights[k]) ** 2) for k in keys))
        moved = np.sqrt(sum(np.sum((ref_weights[k] - initial[k]) ** 2) for k in keys))
        assert moved > 0 and apart <= 5e-3 * moved, f"{network}: apart {apart:.3g}, moved {moved:.3g}"
    differences = np.concatenate([np.abs(weights[k] - ref_weights[k]).ravel() for k in ref_weights])
    steps = 4
    summary = f"max {differences.max():.2e}, share above 1e-5 {np.mean(differences > 1e-5):.2%}"
    assert np.mean(differences > 1e-5) <= 0.02, summary
    assert differences.max() <= steps * 2 * LEARNING_RATE + 1e-7, summary


def initial_weights():
    """The weights every run starts from: the trainer builds the models right after seeding with its seed (0)."""
    keras.utils.set_random_seed(0)
    models = build_models(copy.deepcopy(CONFIG))
    return {f"{name}/{v.path}": np.asarray(ops.convert_to_numpy(v)) for name, m in models.items() for v in m.variables}
