"""One kmt training step against one step of the official PyTorch FOMM (tests/fixtures/fomm_train_step.npz).

The fixture is the official ``train.py`` loop body on a tiny model with every loss term on
(perceptual pyramid with a seeded VGG19, LSGAN, feature matching, both equivariance terms),
the generator and keypoint-detector Adam steps, then the discriminator's. Here kmt's networks
start from the same weights, :class:`kmt.train_step.TrainStep` (what the Trainer runs) takes
one step with the fixture's transform parameters and :class:`kmt.optimizers.TorchAdam`, and
every loss term, every gradient and every weight and buffer after the step is compared.

Tolerances: about 10x the float32 floor of the table "fomm_train_step.npz" in
tests/fixtures/README.md (the official step in float32 against the same step in float64,
max abs error over max(1, max |reference|)), at least 1e-5. Gradients are also compared as one
Euclidean norm per network (the table's "L2" rows), which a few discontinuous elements (an L1
loss at a near-tie) cannot dominate. Weights after the step are compared on the elements whose
gradient is determined: in the official float32 step (the fixture's ``determined/`` masks, see
the README) and between kmt and the official step (within a tenth of its magnitude). Elsewhere
Adam's first step is ``lr * g / (|g| + eps)``, about ``lr * sign(g)``, of a gradient that is
float32 noise, and the test checks only that the weight moved by at most ``lr``. On the
determined elements the check is tight enough to tell PyTorch's Adam from Keras' (whose
epsilon changes the step of gradients below about 1e-4).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import BACKEND
from fomm_reference import fixture_config, fixture_models, nhwc, official_gradients, relative_error, unpack_mask
from kmt.convert import export_state_dict
from kmt.optimizers import TorchAdam
from kmt.train_step import TrainStep
from kmt.vgg import VGG19Features, seeded_vgg19_state_dict

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "fomm_train_step.npz"
NETWORKS = ("kp_detector", "generator", "discriminator")

# The float32 floor, from the table "fomm_train_step.npz" in tests/fixtures/README.md.
FLOOR = {
    "losses": 1.1e-06,
    "grads/kp_detector": 1.7e-02,
    "grads/kp_detector (L2)": 9.6e-03,
    "grads/generator": 3.6e-02,
    "grads/generator (L2)": 2.4e-03,
    "grads/discriminator": 1.1e-05,
    "grads/discriminator (L2)": 1.9e-05,
    "after/kp_detector (determined weights)": 3.1e-08,
    "after/kp_detector (buffers)": 2.4e-07,
    "after/generator (determined weights)": 3.2e-08,
    "after/generator (buffers)": 2.8e-07,
    "after/discriminator (determined weights)": 6.0e-07,
    "after/discriminator (buffers)": 7.1e-08,
}


def tolerance(group):
    """The README's rule: about ten times the floor, at least 1e-5."""
    return max(1e-5, 10.0 * FLOOR[group])


def section(npz, prefix):
    """``{key: array}`` of the fixture's entries under ``prefix/``, prefix removed."""
    return {k[len(prefix) + 1:]: npz[k] for k in npz if k.startswith(prefix + "/")}


@pytest.fixture(scope="module")
def result():
    with np.load(FIXTURE) as data:
        npz = {k: data[k] for k in data.files}
    config, train_params = fixture_config(npz), json.loads(str(npz["train_params"]))
    models = fixture_models(npz)
    vgg_state = seeded_vgg19_state_dict(int(npz["vgg/seed"]))
    vgg = VGG19Features(vgg_state, num_layers=5)
    optimizers = {
        name: TorchAdam(train_params[f"lr_{name}"], beta_1=0.5, beta_2=0.999) for name in NETWORKS
    }
    step = TrainStep(
        models["kp_detector"], models["generator"], models["discriminator"], optimizers, train_params,
        num_channels=config["common"]["num_channels"], vgg=vgg, align_corners=config["align_corners"],
        # XLA-compiling this step (VGG19 included) takes about two minutes on 2 CPU cores; TensorFlow's
        # graph mode runs the same ops. The Trainer's tests run the XLA-compiled step.
        jit=BACKEND != "tensorflow",
    )
    losses = step(nhwc(npz["inputs/source"]), nhwc(npz["inputs/driving"]), section(npz, "transform"))
    return {
        "npz": npz,
        "vgg_state": vgg_state,
        "train_params": train_params,
        "losses": losses,
        "grads": {name: official_gradients(models[name], optimizers[name]) for name in NETWORKS},
        "after": {name: export_state_dict(models[name]) for name in NETWORKS},
    }


def test_the_perceptual_network_has_the_fixtures_vgg19_weights(result):
    checksums = section(result["npz"], "vgg/checksum")
    assert sorted(checksums) == sorted(result["vgg_state"])
    for key, value in result["vgg_state"].items():
        ours = [np.sum(value, dtype="float64"), np.sum(np.abs(value), dtype="float64"), value.flat[0], value.flat[-1]]
        np.testing.assert_allclose(ours, checksums[key], rtol=1e-9, err_msg=key)


def test_every_loss_term_matches_the_official_step(result):
    reference = section(result["npz"], "losses")
    assert sorted(result["losses"]) == sorted(reference)
    for name, value in reference.items():
        ours = result["losses"][name]
        assert relative_error(ours, value) <= tolerance("losses"), (name, ours, value)


@pytest.mark.parametrize("network", NETWORKS)
def test_gradients_match_the_official_step(result, network):
    reference = section(result["npz"], f"grads/{network}")
    ours = result["grads"][network]
    assert set(reference) <= set(ours), sorted(set(reference) - set(ours))
    worst = max((relative_error(ours[k], v), k) for k, v in reference.items())
    assert worst[0] <= tolerance(f"grads/{network}"), worst
    num = sum(np.sum((ours[k].astype("float64") - v) ** 2) for k, v in reference.items())
    den = sum(np.sum(v.astype("float64") ** 2) for v in reference.values())
    assert np.sqrt(num / den) <= tolerance(f"grads/{network} (L2)"), np.sqrt(num / den)


@pytest.mark.parametrize("network", NETWORKS)
def test_weights_and_buffers_after_the_step_match(result, network):
    npz, lr = result["npz"], result["train_params"][f"lr_{network}"]
    reference, before = section(npz, f"after/{network}"), section(npz, f"weights/{network}")
    masks = section(npz, f"determined/{network}")
    ours = result["after"][network]
    checked = 0
    for key, value in reference.items():
        if key.endswith("num_batches_tracked"):
            continue
        if key in masks:
            # Determined in the official float32 step, and by kmt's gradient, which may differ from the
            # official one within the gradient tolerance: where the two disagree by more than a tenth of
            # the gradient, each step is lr * sign of its own noise.
            grad, ref_grad = result["grads"][network][key], section(npz, f"grads/{network}")[key]
            mask = unpack_mask(masks[key], value.shape) & (np.abs(ref_grad) > 10 * np.abs(grad - ref_grad))
            error = np.abs(ours[key].astype("float64") - value)
            scale = max(1.0, float(np.max(np.abs(value))))
            assert np.max(error[mask], initial=0.0) / scale <= tolerance(f"after/{network} (determined weights)"), key
            moved = np.abs(ours[key].astype("float64") - before[key])[~mask]
            assert np.max(moved, initial=0.0) <= lr * (1 + 1e-3), (key, np.max(moved))
            checked += int(mask.sum())
        else:
            assert relative_error(ours[key], value) <= tolerance(f"after/{network} (buffers)"), key
    # Most weights are determined, and the step moved them by far more than the tolerance.
    total = sum(reference[k].size for k in masks)
    assert checked >= 0.8 * total, (checked, total)
    moved = max(relative_error(before[k], reference[k]) for k in masks)
    assert moved > 10 * tolerance(f"after/{network} (determined weights)"), moved
