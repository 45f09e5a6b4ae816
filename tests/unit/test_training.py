"""The trainer: learning-rate milestones, checkpoints, exact resume, the optional discriminator, config errors."""

import copy
import csv
import os

import numpy as np
import pytest
from keras import ops

from kmt import checkpoint
from kmt.losses import VGG19Features
from kmt.training import Trainer, learning_rate_at

SIZE = 32
TINY = {
    "dataset_params": {"root_dir": "unused", "frame_shape": [SIZE, SIZE, 3]},
    "model_params": {
        "common_params": {"num_kp": 3, "num_channels": 3, "estimate_jacobian": True},
        "kp_detector_params": {"temperature": 0.1, "block_expansion": 4, "max_features": 16,
                               "scale_factor": 0.5, "num_blocks": 2},
        "generator_params": {"block_expansion": 4, "max_features": 16, "num_down_blocks": 1,
                             "num_bottleneck_blocks": 1, "estimate_occlusion_map": True,
                             "dense_motion_params": {"block_expansion": 4, "max_features": 16,
                                                     "num_blocks": 2, "scale_factor": 0.5}},
        "discriminator_params": {"scales": [1], "block_expansion": 4, "max_features": 16,
                                 "num_blocks": 2, "sn": True, "use_kp": True},
    },
    "train_params": {"num_epochs": 2, "num_repeats": 1, "epoch_milestones": [1],
                     "lr_generator": 2e-4, "lr_discriminator": 2e-4, "lr_kp_detector": 2e-4,
                     "batch_size": 2, "scales": [1], "checkpoint_freq": 1,
                     "transform_params": {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5},
                     "loss_weights": {"generator_gan": 1, "discriminator_gan": 1,
                                      "feature_matching": [10, 10], "perceptual": [0, 0, 0, 0, 0],
                                      "equivariance_value": 10, "equivariance_jacobian": 10}},
}
STEPS = 2


def batches(epoch):
    rng = np.random.default_rng(100 + epoch)
    while True:
        frames = rng.random((2, SIZE, SIZE, 3), dtype="float32")
        yield {"source": frames, "driving": np.roll(frames, 2, axis=2)}


@pytest.fixture(scope="module")
def vgg():
    return VGG19Features("random")


def weights_of(trainer):
    return {
        name: [np.asarray(ops.convert_to_numpy(v)) for v in model.variables]
        for name, model in trainer.models.items()
    }


def test_learning_rate_milestones_follow_multistep_lr():
    assert learning_rate_at(1.0, 0, [2, 4]) == 1.0
    assert learning_rate_at(1.0, 2, [2, 4]) == pytest.approx(0.1)
    assert learning_rate_at(1.0, 5, [2, 4]) == pytest.approx(0.01)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, vgg):
    """Two epochs without interruption (checkpoints after each epoch)."""
    trainer = Trainer(TINY, tmp_path_factory.mktemp("straight"), vgg=vgg, seed=3)
    trainer.train(batches, STEPS, progress=False)
    return trainer


def test_training_runs_logs_and_checkpoints(straight):
    log_dir = straight.log_dir
    assert [record["epoch"] for record in straight.history] == [0, 1]
    for key in ("gen_gan", "feature_matching", "equivariance_value", "equivariance_jacobian", "disc_gan"):
        assert np.isfinite(straight.history[-1][key]), key
    # The milestone at epoch 1 divided every learning rate by ten.
    for optimizer in straight.optimizers.values():
        assert float(ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(2e-5)
    with open(os.path.join(log_dir, "log.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [0, 1] and "disc_gan" in rows[0]
    for name in ("samples/epoch-0001.png", "checkpoint-0001.kmt", "checkpoint-0002.kmt", "last.kmt"):
        assert os.path.exists(os.path.join(log_dir, name)), name


def test_a_run_resumed_from_a_checkpoint_ends_where_the_straight_run_ends(straight, tmp_path, vgg):
    """Stopped after epoch 1 (its checkpoint), resumed in a fresh trainer: same weights after epoch 2."""
    resumed = Trainer(TINY, tmp_path, vgg=vgg, seed=3, resume=os.path.join(straight.log_dir, "checkpoint-0001.kmt"))
    assert resumed.epoch == 1 and len(resumed.history) == 1
    resumed.train(batches, STEPS, progress=False)
    expected, got = weights_of(straight), weights_of(resumed)
    for name in expected:
        for a, b in zip(expected[name], got[name]):
            np.testing.assert_allclose(b, a, atol=1e-5, rtol=1e-4)
    assert resumed.history[-1]["gen_gan"] == pytest.approx(straight.history[-1]["gen_gan"], rel=1e-4, abs=1e-5)


def test_training_checkpoint_loads_as_a_model(straight):
    loaded = checkpoint.load(os.path.join(straight.log_dir, "last.kmt"))
    assert loaded.training["epoch"] == 2 and loaded.image_size == (SIZE, SIZE)
    frames = next(batches(0))
    ours = straight.models["kp_detector"](frames["source"], training=False)["value"]
    theirs = loaded.kp_detector(frames["source"], training=False)["value"]
    np.testing.assert_allclose(ops.convert_to_numpy(theirs), ops.convert_to_numpy(ours), atol=1e-6)


def test_discriminator_is_not_updated_without_the_gan_loss(tmp_path, vgg):
    config = copy.deepcopy(TINY)
    config["train_params"]["loss_weights"]["generator_gan"] = 0
    trainer = Trainer(config, tmp_path, vgg=vgg, seed=2)
    before = [np.asarray(ops.convert_to_numpy(v)) for v in trainer.models["discriminator"].trainable_variables]
    record = trainer.train_epoch(batches(0), 1, progress=False)
    after = [np.asarray(ops.convert_to_numpy(v)) for v in trainer.models["discriminator"].trainable_variables]
    assert "disc_gan" not in record and "gen_gan" not in record
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_bad_config_keys_are_named(tmp_path, vgg):
    config = copy.deepcopy(TINY)
    config["train_params"]["loss_weights"]["perceptal"] = [1]
    with pytest.raises(ValueError, match=r"train_params\.loss_weights\.perceptal"):
        Trainer(config, tmp_path, vgg=vgg)
    config = copy.deepcopy(TINY)
    del config["train_params"]
    with pytest.raises(ValueError, match="no `train_params` section"):
        Trainer(config, tmp_path, vgg=vgg)


def test_resuming_from_weights_only_is_refused(tmp_path, vgg):
    trainer = Trainer(TINY, tmp_path, vgg=vgg)
    path = checkpoint.save(str(tmp_path / "weights.kmt"), trainer.config, trainer.models)
    with pytest.raises(ValueError, match="holds weights only"):
        Trainer(TINY, tmp_path, vgg=vgg, resume=path)


def test_init_from_starts_a_new_run_from_a_checkpoints_weights(tmp_path, vgg):
    source = Trainer(TINY, tmp_path / "a", vgg=vgg, seed=0)
    source.train(batches, STEPS, num_epochs=1, progress=False)
    shipped = {name: source.models[name] for name in ("kp_detector", "generator")}
    path = checkpoint.save(str(tmp_path / "weights.kmt"), TINY, shipped)  # weights only, like the shipped model
    tuned = Trainer(TINY, tmp_path / "b", vgg=vgg, seed=1, init_from=path)
    before, mine = weights_of(source), weights_of(tuned)
    for name in ("kp_detector", "generator"):
        for a, b in zip(before[name], mine[name]):
            np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(before["discriminator"], mine["discriminator"]))
    assert tuned.epoch == 0 and tuned.history == []
    assert all(int(ops.convert_to_numpy(o.iterations)) == 0 for o in tuned.optimizers.values())
    tuned.train(batches, STEPS, num_epochs=1, progress=False)
    assert tuned.epoch == 1 and os.path.exists(tmp_path / "b" / "last.kmt")


def test_init_from_names_what_does_not_fit(tmp_path, vgg):
    path = Trainer(TINY, tmp_path, vgg=vgg).save(str(tmp_path / "run.kmt"))
    with pytest.raises(ValueError, match="not both"):
        Trainer(TINY, tmp_path, vgg=vgg, resume=path, init_from=path)
    wider = copy.deepcopy(TINY)
    wider["model_params"]["kp_detector_params"]["block_expansion"] = 8
    with pytest.raises(ValueError, match=r"kp_detector variable .* has shape \(.*\), the config's .* has \("):
        Trainer(wider, tmp_path / "wider", vgg=vgg, init_from=path)


SHIFT = 5
LEARN = copy.deepcopy(TINY)
LEARN["model_params"]["common_params"]["num_kp"] = 5
LEARN["model_params"]["kp_detector_params"].update(block_expansion=8, max_features=64, num_blocks=3, scale_factor=1)
LEARN["model_params"]["generator_params"].update(block_expansion=8, max_features=64, num_down_blocks=2)
LEARN["model_params"]["generator_params"]["dense_motion_params"].update(
    block_expansion=8, max_features=64, num_blocks=3, scale_factor=1)
LEARN["train_params"].update(batch_size=8, epoch_milestones=[])
LEARN["train_params"]["loss_weights"].update(generator_gan=0, perceptual=[10, 0, 0, 0, 0])


def shifted_pairs(stream, index, epoch, seed):
    """Synthetic faces and the same frame moved by up to SHIFT pixels: motion the model must learn."""
    frames = stream.batch(index, epoch)["source"]
    rng = np.random.default_rng(seed)
    source, driving = [], []
    for frame in frames:
        dy, dx = rng.integers(-SHIFT, SHIFT + 1, 2)
        source.append(frame[SHIFT:SHIFT + SIZE, SHIFT:SHIFT + SIZE])
        driving.append(frame[SHIFT + dy:SHIFT + dy + SIZE, SHIFT + dx:SHIFT + dx + SIZE])
    return {"source": np.stack(source), "driving": np.stack(driving)}


def test_short_training_beats_copying_the_source(tmp_path):
    """300 compiled steps on synthetic videos: reconstruction L1 at least 15% below copying the source,
    and below the same model told that nothing moved (so the gain comes from modelling the motion)."""
    from kmt.data import PairStream

    train = PairStream("faces", size=SIZE + 2 * SHIFT, batch_size=8, num_identities=64, num_motions=64,
                       steps_per_epoch=100, prefetch=0)
    test = PairStream("faces", size=SIZE + 2 * SHIFT, batch_size=32, split="test", steps_per_epoch=1, prefetch=0)
    trainer = Trainer(LEARN, tmp_path, vgg=VGG19Features("random", num_layers=1), seed=0)
    trainer.train(lambda epoch: (shifted_pairs(train, i, epoch, 1000 * epoch + i) for i in range(100)), 100,
                  num_epochs=3, progress=False)
    batch = shifted_pairs(test, 0, 0, seed=12345)
    kp_detector, generator = trainer.models["kp_detector"], trainer.models["generator"]
    kp_source = kp_detector(batch["source"], training=False)
    kp_driving = kp_detector(batch["driving"], training=False)

    def l1(kp):
        out = generator(batch["source"], kp_driving=kp, kp_source=kp_source, training=False)["prediction"]
        return float(np.mean(np.abs(ops.convert_to_numpy(out) - batch["driving"])))

    copying = float(np.mean(np.abs(batch["source"] - batch["driving"])))
    model, no_motion = l1(kp_driving), l1(kp_source)
    print(f"L1: model {model:.4f}, told nothing moved {no_motion:.4f}, copying the source {copying:.4f}")
    assert model < 0.85 * copying, (model, copying)
    assert model < 0.97 * no_motion, (model, no_motion)
