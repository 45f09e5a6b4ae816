"""The ``devices`` and ``precision`` switches of the trainer: what each backend accepts, refuses, and trains.

Several devices are proven equal to one in ``tests/multidevice`` (its own processes,
the CPU split into virtual devices); here the process has one device.
"""

import copy

import keras
import numpy as np
import pytest
from keras import ops

import kmt.backend
from kmt import cli
from kmt.backend.devices import Placement, resolve_count
from kmt.training import Trainer
from test_training import TINY, batches

BACKEND = keras.backend.backend()


def test_devices_argument_errors_name_what_was_given():
    for bad in (0, -1, 1.5, "two", True, None):
        with pytest.raises(ValueError, match="`devices` must be a whole number >= 1 or 'all'"):
            resolve_count(bad, ["cpu:0"], "jax")
    assert resolve_count("all", ["gpu:0", "gpu:1"], "jax") == 2
    assert resolve_count("2", ["gpu:0", "gpu:1"], "jax") == 2
    with pytest.raises(ValueError, match=r"`devices` is 3 but the jax backend sees 2 device\(s\): gpu:0, gpu:1\.$"):
        resolve_count(3, ["gpu:0", "gpu:1"], "jax")


def test_a_batch_that_does_not_split_evenly_is_refused():
    Placement(["a", "b"]).check_batch(4)
    with pytest.raises(ValueError, match="batch of 3 samples does not split evenly over 2 devices"):
        Placement(["a", "b"]).check_batch(3)


def test_more_devices_than_there_are_is_refused_with_what_to_do(tmp_path):
    if BACKEND == "torch":  # one device: the message names the backends that train on several
        message = "several devices on the jax backend .* and the tensorflow backend .*the torch backend trains on one"
        with pytest.raises(ValueError, match=message):
            Trainer(TINY, tmp_path, devices=2)
        with pytest.raises(RuntimeError, match=message):
            kmt.backend.split_cpu(2)
    else:
        with pytest.raises(ValueError, match=rf"`devices` is 2 but the {BACKEND} backend sees 1 device\(s\).*"
                                             r"kmt train --cpu-devices 2"):
            Trainer(TINY, tmp_path, devices=2)
        # The backend has run by now: splitting the CPU is too late, and says so.
        with pytest.raises(RuntimeError, match="already started with 1 CPU device.*first thing in the process"):
            kmt.backend.split_cpu(3)
    assert kmt.backend.load("training").placement("all").count == 1


def test_the_cli_names_its_flags(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    import yaml

    config.write_text(yaml.safe_dump(TINY))
    assert cli.main(["train", "--config", str(config), "--log-dir", str(tmp_path / "log"), "--devices", "two"]) == 2
    assert "--devices must be a whole number >= 1 or 'all'; got 'two'" in capsys.readouterr().err
    assert cli.main(["train", "--config", str(config), "--cpu-devices", "0"]) == 2
    assert "--cpu-devices must be a number of devices >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--config", str(config), "--precision", "float16"])
    assert "invalid choice: 'float16'" in capsys.readouterr().err


def test_precision_must_be_a_known_policy(tmp_path):
    with pytest.raises(ValueError, match="`precision` must be one of float32, mixed_bfloat16, mixed_float16; "
                                         "got 'float64'"):
        Trainer(TINY, tmp_path, precision="float64")


def _dtype(x):
    return keras.backend.standardize_dtype(x.dtype)


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_computes_blocks_in_16_bits_and_keypoints_warps_and_losses_in_float32(tmp_path, precision):
    trainer = Trainer(copy.deepcopy(TINY), tmp_path, precision=precision)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    kp_detector, generator = trainer.models["kp_detector"], trainer.models["generator"]
    low = precision.split("_")[1]
    assert kp_detector.predictor.encoder.down_blocks[0].compute_dtype == low
    assert generator.dense_motion_network.mask.compute_dtype == "float32"
    frames = np.random.default_rng(0).random((2, 32, 32, 3), dtype="float32")
    kp = kp_detector(frames, training=True)
    assert {key: _dtype(value) for key, value in kp.items()} == {
        "value": "float32", "heatmap": "float32", "jacobian": "float32"}
    out = generator(frames, kp_driving=kp, kp_source=kp, training=True)
    for key in ("deformation", "mask", "occlusion_map", "deformed", "prediction", "sparse_deformed"):
        assert _dtype(out[key]) == "float32", key
    all_weights = [v for m in trainer.models.values() for v in m.weights]
    assert {keras.backend.standardize_dtype(v.dtype) for v in all_weights} == {"float32"}

    history = trainer.train(batches, 3, num_epochs=1, progress=False)
    losses = {k: v for k, v in history[0].items() if k not in ("epoch", "steps", "seconds")}
    assert len(losses) == 5 and all(np.isfinite(v) for v in losses.values())
    optimizers = trainer.optimizers
    if precision == "mixed_float16":
        assert all(isinstance(o, keras.optimizers.LossScaleOptimizer) for o in optimizers.values())
        # One scaled loss feeds the keypoint detector and the generator: their scales move together.
        scales = [float(ops.convert_to_numpy(optimizers[n].dynamic_scale)) for n in ("kp_detector", "generator")]
        assert scales[0] == scales[1] <= 2.0**15
    else:
        assert not any(isinstance(o, keras.optimizers.LossScaleOptimizer) for o in optimizers.values())


def test_a_run_resumes_with_the_precision_it_started_with(tmp_path):
    trainer = Trainer(copy.deepcopy(TINY), tmp_path / "run")
    trainer.save(str(tmp_path / "run" / "last.kmt"))
    with pytest.raises(ValueError, match="trained with precision 'float32'; resume it with the same `precision` "
                                         r"\(got 'mixed_bfloat16'\)"):
        Trainer(copy.deepcopy(TINY), tmp_path / "run", resume=True, precision="mixed_bfloat16")
