"""Training on several devices computes what one device computes on the same global batch.

One step of the real trainer (``Trainer(devices=N).step``, every loss of the reference on)
runs on 1 device in this process and on 2 and 4 virtual CPU devices in processes of
their own (``one_step.py``: the CPU is split before the backend starts). JAX shards the
batch under ``keras.distribution.DataParallel``; TensorFlow runs ``MirroredStrategy``
with losses scaled by ``1 / N`` and BatchNorm statistics summed across devices.

Tolerances, from float32 differences measured on this step (the devices change only the
order of the sums), each well inside the float32 floor of the official step itself
(float32 against float64, ``tests/fixtures/README.md``):

* losses: relative 1e-5 (measured <= 1.4e-6);
* gradients, relative L2 error per network: keypoint detector 5e-3, generator 3e-3,
  discriminator 2e-5 (measured <= 1.3e-3, 7.3e-4, 4.5e-6 on 2 and 4 devices, both
  backends; the float32 floor is 9.6e-3, 2.4e-3 and 1.1e-5): the L1 losses through VGG's
  ReLU and max-pool corners make the first two noisy, as the fixture README explains;
  and no element further than 5e-3, 2e-3, 1e-5 of the network's largest gradient
  (measured <= 1.3e-3, 5.0e-4, 1.9e-6);
* BatchNorm statistics and spectral-norm vectors: 1e-6 (measured <= 1.5e-7);
* updated weights: within 1e-7 (measured <= 7.5e-9) wherever the gradient is
  determined (``|g| > 1e-4 max|g|`` of the network). Elsewhere the gradient is float32
  noise around zero (biases followed by BatchNorm, whose true gradient is 0); Adam's
  first step moves a weight by about the learning rate whatever the noise, so those
  weights are only checked to be at most twice the learning rate apart.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import one_step as case  # noqa: E402

BACKEND = keras.backend.backend()
NETWORKS = ("kp_detector", "generator", "discriminator")
GRADIENT_L2 = {"kp_detector": 5e-3, "generator": 3e-3, "discriminator": 2e-5}
GRADIENT_MAX = {"kp_detector": 5e-3, "generator": 2e-3, "discriminator": 1e-5}


@pytest.fixture(scope="module")
def on_one_device():
    return case.one_step(1)


def on_devices(count, tmp_path):
    path = tmp_path / f"step-{count}.npz"
    env = dict(os.environ, KERAS_BACKEND=BACKEND)
    result = subprocess.run([sys.executable, os.path.join(HERE, "one_step.py"), str(count), str(path)],
                            capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    with np.load(path) as data:
        return dict(data)


def _network(values, kind, network):
    prefix = f"{kind}/{network}/"
    return {key[len(prefix):]: value for key, value in values.items() if key.startswith(prefix)}


@pytest.mark.parametrize("count", [2, 4])
def test_one_step_on_several_devices_equals_one_device(on_one_device, count, tmp_path):
    many = on_devices(count, tmp_path)
    assert sorted(many) == sorted(on_one_device)

    losses = [key for key in on_one_device if key.startswith("loss/")]
    assert len(losses) == 6  # perceptual, gen_gan, feature_matching, both equivariance terms, disc_gan
    for key in losses:
        np.testing.assert_allclose(many[key], on_one_device[key], rtol=1e-5, err_msg=key)

    for network in NETWORKS:
        ref_grads, grads = _network(on_one_device, "grad", network), _network(many, "grad", network)
        g1 = np.concatenate([ref_grads[k].ravel() for k in sorted(ref_grads)])
        gn = np.concatenate([grads[k].ravel() for k in sorted(ref_grads)])
        largest = np.abs(g1).max()
        assert largest > 0, network
        assert np.linalg.norm(gn - g1) <= GRADIENT_L2[network] * np.linalg.norm(g1), network
        assert np.abs(gn - g1).max() <= GRADIENT_MAX[network] * largest, network

        ref_weights, weights = _network(on_one_device, "weight", network), _network(many, "weight", network)
        for path in ref_weights:
            a, b = weights[path], ref_weights[path]
            if path not in ref_grads:  # BatchNorm statistics, spectral-norm vectors
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-6, err_msg=f"{network} {path}")
                continue
            determined = np.abs(ref_grads[path]) > 1e-4 * largest
            np.testing.assert_allclose(a[determined], b[determined], rtol=0, atol=1e-7,
                                       err_msg=f"{network} {path}")
            assert np.abs(a - b).max() <= 2 * case.LEARNING_RATE + 1e-7, f"{network} {path}"
