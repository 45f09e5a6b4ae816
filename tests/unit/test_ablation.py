"""kmt.ablation: the variants change the model they claim to change, and run() measures them."""

import copy
import math

import pytest

from helpers import BACKEND, TINY_MODEL_PARAMS
from kmt import ablation
from kmt.config import build_generator, build_kp_detector, load_config

SIZE = 32


def tiny_config(num_kp=6):
    config = load_config("synthetic-faces-64")
    config["model_params"] = copy.deepcopy(TINY_MODEL_PARAMS)
    config["model_params"]["common_params"]["num_kp"] = num_kp
    config["train_params"]["batch_size"] = 2
    config["train_params"]["scales"] = [1]
    config["train_params"]["loss_weights"]["perceptual"] = [10, 0, 0, 0, 0]
    config["synthetic_params"].update(num_identities=4, num_motions=4, num_frames=8)
    return config


def test_ablations_are_ordered_and_described():
    assert list(ablation.ABLATIONS)[0] == "full"
    assert {"no_jacobian", "no_occlusion", "no_equivariance", "fewer_keypoints"} <= set(ablation.ABLATIONS)
    for name, (description, overrides) in ablation.ABLATIONS.items():
        assert description and all("=" in assignment for assignment in overrides), name


def variable_paths(model):
    return {variable.path: tuple(variable.shape) for variable in model.variables}


def test_overrides_change_the_built_model():
    base = tiny_config(num_kp=6)

    full = ablation.variant_config("full", base)
    kp_detector, generator = build_kp_detector(full), build_generator(full)
    assert kp_detector.jacobian is not None and generator.dense_motion_network.occlusion is not None
    assert any("/jacobian/" in path for path in variable_paths(kp_detector))
    assert any("/occlusion/" in path for path in variable_paths(generator))

    no_jacobian = ablation.variant_config("no_jacobian", base)
    detector = build_kp_detector(no_jacobian)
    assert detector.jacobian is None and not any("/jacobian/" in path for path in variable_paths(detector))
    assert no_jacobian["train_params"]["loss_weights"]["equivariance_jacobian"] == 0

    no_occlusion = build_generator(ablation.variant_config("no_occlusion", base))
    assert no_occlusion.dense_motion_network.occlusion is None
    assert not any("/occlusion/" in path for path in variable_paths(no_occlusion))

    weights = ablation.variant_config("no_equivariance", base)["train_params"]["loss_weights"]
    assert weights["equivariance_value"] == 0 and weights["equivariance_jacobian"] == 0
    assert full["train_params"]["loss_weights"]["equivariance_value"] == 10

    fewer = build_kp_detector(ablation.variant_config("fewer_keypoints", base))
    assert fewer.num_kp == 5 and variable_paths(fewer)[fewer.kp.kernel.path][-1] == 5
    assert variable_paths(kp_detector)[kp_detector.kp.kernel.path][-1] == 6


def test_bad_names_are_refused():
    with pytest.raises(ValueError, match=r"`names`.*no_occlusion.*'no_such'"):
        ablation.run(["full", "no_such"])
    with pytest.raises(ValueError, match="`names`"):
        ablation.variant_config("nothing")


def test_init_must_be_a_checkpoint():
    with pytest.raises(ValueError, match="`init`.*missing.kmt"):
        ablation.run(["full"], config=tiny_config(), size=SIZE, steps=1, init="missing.kmt")


def test_run_two_variants(tmp_path):
    # One compiled step is cheaper than JAX's op-by-op eager mode; TensorFlow and PyTorch run eagerly.
    rows = ablation.run(["full", "no_occlusion"], config=tiny_config(), size=SIZE, steps=2, batch_size=2,
                        evaluation_pairs=2, jit=BACKEND == "jax", log_dir=tmp_path)
    assert [row["name"] for row in rows] == ["full", "no_occlusion"]
    for row in rows:
        for key in ("description", "l1", "copy_l1", "akd", "copy_akd", "num_kp", "steps", "seconds", "initialized"):
            assert key in row, key
        for key in ("l1", "copy_l1", "seconds"):
            assert math.isfinite(row[key]) and row[key] >= 0, (key, row[key])
        assert row["akd"] is None or math.isfinite(row["akd"])
        assert row["steps"] == 2 and row["num_kp"] == 6 and row["initialized"] == 0.0
    assert rows[0]["copy_l1"] == rows[1]["copy_l1"] > 0  # the same held-out pairs for every variant
    assert rows[1]["parameters"] < rows[0]["parameters"]  # the occlusion head is gone
    assert (tmp_path / "no_occlusion" / "log.csv").exists()
    html = ablation.table(rows).data
    assert "no_occlusion" in html and "<table>" in html
