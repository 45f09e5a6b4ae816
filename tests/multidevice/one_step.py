"""One training step of a small FOMM on ``N`` devices, written to an ``.npz`` for the equality tests.

Run as ``python one_step.py N OUT.npz`` (it splits the CPU into ``N`` virtual devices
first thing, so it runs in a process of its own), or call :func:`one_step` in a
process whose devices are set. The step is the real one: ``Trainer(devices=N).step``
on a global batch of 4 frame pairs, with every loss of the reference on (perceptual
with seeded random VGG19 weights, GAN, feature matching, both equivariance terms).

The ``.npz`` holds the losses (``loss/<name>``), every network variable after the
step (``weight/<network>/<path>``: weights, BatchNorm statistics, spectral-norm
vectors) and the gradient of every trainable variable read from Adam's first moment
(``grad/<network>/<path>``; after one step from zero moments ``m = (1 - beta_1) g``).
"""

import copy
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from helpers import TINY_MODEL_PARAMS  # noqa: E402

GLOBAL_BATCH = 4
SIZE = 32
CONFIG = {
    "dataset_params": {"root_dir": "unused", "frame_shape": [SIZE, SIZE, 3]},
    "model_params": {**TINY_MODEL_PARAMS, "discriminator_params": {
        **TINY_MODEL_PARAMS["discriminator_params"], "sn": True, "use_kp": True}},
    "train_params": {"num_epochs": 1, "num_repeats": 1, "epoch_milestones": [],
                     "lr_generator": 2e-4, "lr_discriminator": 2e-4, "lr_kp_detector": 2e-4,
                     "batch_size": GLOBAL_BATCH, "scales": [1, 0.5], "checkpoint_freq": 1,
                     "transform_params": {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5},
                     "loss_weights": {"generator_gan": 1, "discriminator_gan": 1,
                                      "feature_matching": [10, 10], "perceptual": [10, 10, 0, 0, 0],
                                      "equivariance_value": 10, "equivariance_jacobian": 10}},
}
LEARNING_RATE = CONFIG["train_params"]["lr_generator"]


def inputs():
    """The global batch: ``source``, ``driving`` (B, 32, 32, 3) and the equivariance transform's parameters."""
    import numpy as np

    from kmt.losses import sample_transform_parameters

    rng = np.random.default_rng(7)
    source = rng.random((GLOBAL_BATCH, SIZE, SIZE, 3), dtype="float32")
    driving = np.roll(source, 3, axis=2) * 0.9 + 0.05
    transform = CONFIG["train_params"]["transform_params"]
    params = sample_transform_parameters(rng, GLOBAL_BATCH, transform["sigma_affine"], transform["sigma_tps"],
                                         transform["points_tps"])
    return source, driving, params


def one_step(devices):
    """``{name: array}`` after one step on ``devices`` devices (see the module docstring)."""
    import numpy as np
    from keras import ops

    from kmt.training import Trainer
    from kmt.vgg import seeded_vgg19_state_dict

    def numpy(value):
        return np.asarray(ops.convert_to_numpy(value))

    source, driving, params = inputs()
    with tempfile.TemporaryDirectory() as log_dir:
        trainer = Trainer(copy.deepcopy(CONFIG), log_dir, devices=devices, vgg_weights=seeded_vgg19_state_dict(3, num_layers=2))
        losses = trainer.step(source, driving, params)
    out = {f"loss/{name}": np.float32(value) for name, value in losses.items()}
    for name, model in trainer.models.items():
        optimizer = trainer.optimizers[name]
        for variable in model.variables:
            out[f"weight/{name}/{variable.path}"] = numpy(variable)
        for variable in model.trainable_variables:
            out[f"grad/{name}/{variable.path}"] = numpy(optimizer.moments(variable)[0]) / (1.0 - optimizer.beta_1)
    return out


if __name__ == "__main__":
    count, path = int(sys.argv[1]), sys.argv[2]
    import kmt.backend

    kmt.backend.split_cpu(count)
    import numpy as np

    np.savez(path, **one_step(count))
