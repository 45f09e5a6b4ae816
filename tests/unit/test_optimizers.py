"""kmt.optimizers.TorchAdam against torch.optim.Adam (the reference's optimizer), step by step."""

import keras
import numpy as np
import pytest
import torch

from helpers import to_numpy
from kmt.optimizers import TorchAdam

# Gradients from 1e-9 to 10: Keras' and PyTorch's epsilons differ most for the small ones.
SCALES = np.array([1e-9, 1e-7, 1e-6, 1e-5, 1e-4, 1e-2, 1.0, 10.0], "float32")


def gradients(steps, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((3, 8)) * SCALES).astype("float32") for _ in range(steps)]


def torch_run(start, grads, **kwargs):
    weight = torch.nn.Parameter(torch.from_numpy(start.copy()))
    optimizer = torch.optim.Adam([weight], **kwargs)
    for grad in grads:
        weight.grad = torch.from_numpy(grad)
        optimizer.step()
    return weight.detach().numpy()


def keras_run(optimizer, start, grads):
    variable = keras.Variable(start.copy())
    for grad in grads:
        optimizer.apply([keras.ops.convert_to_tensor(grad)], [variable])
    return to_numpy(variable), variable


@pytest.mark.parametrize("amsgrad", [False, True])
def test_torch_adam_follows_torch_optim_adam_over_several_steps(amsgrad):
    start = np.random.default_rng(1).standard_normal((3, 8)).astype("float32")
    grads = gradients(5)
    reference = torch_run(start, grads, lr=2e-4, betas=(0.5, 0.999), amsgrad=amsgrad)
    ours, _ = keras_run(TorchAdam(2e-4, beta_1=0.5, beta_2=0.999, amsgrad=amsgrad), start, grads)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-7)
    # Keras' own Adam (epsilon 1e-7 before the bias correction) moves the small-gradient weights differently.
    keras_adam, _ = keras_run(keras.optimizers.Adam(2e-4, beta_1=0.5, beta_2=0.999, amsgrad=amsgrad), start, grads)
    assert np.abs(keras_adam - reference).max() > 1e-4


def test_torch_adam_defaults_and_epsilon_match_pytorch():
    optimizer = TorchAdam()
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.9, 0.999, 1e-8)
    start = np.zeros((3, 8), "float32")
    grads = gradients(3, seed=2)
    np.testing.assert_allclose(
        keras_run(TorchAdam(1e-3, epsilon=1e-6), start, grads)[0], torch_run(start, grads, lr=1e-3, eps=1e-6),
        rtol=0, atol=1e-8,
    )


def test_torch_adam_keeps_keras_adams_slots_and_exposes_the_moments():
    start = np.ones((3, 8), "float32")
    grads = gradients(1)
    ours = TorchAdam(2e-4, beta_1=0.5)
    _, variable = keras_run(ours, start, grads)
    keras_adam = keras.optimizers.Adam(2e-4, beta_1=0.5)
    keras_run(keras_adam, start, grads)
    # Same variables in the same order: checkpoints of either optimizer load into the other.
    assert [tuple(v.shape) for v in ours.variables] == [tuple(v.shape) for v in keras_adam.variables]
    first, second = ours.moments(variable)
    np.testing.assert_allclose(to_numpy(first), 0.5 * grads[0], rtol=1e-6)
    np.testing.assert_allclose(to_numpy(second), 0.001 * grads[0] ** 2, rtol=1e-5)
    for mine, theirs in zip(ours.variables, keras_adam.variables):
        np.testing.assert_allclose(to_numpy(mine), to_numpy(theirs), rtol=1e-6)
    config = ours.get_config()
    assert keras.optimizers.deserialize(keras.optimizers.serialize(ours)).get_config()["epsilon"] == config["epsilon"]
