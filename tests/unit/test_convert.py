"""kmt.convert: official state dicts in and out, checkpoint files, errors, and .keras round trips."""

import sys

import keras
import numpy as np
import pytest

from fomm_reference import call, fixture_config, fixture_models, nhwc, official_config, relative_error, tolerance
from helpers import to_numpy
from kmt.config import available_configs, build_models, load_config
from kmt.convert import (
    export_state_dict,
    load_checkpoint,
    load_state_dict,
    read_checkpoint,
    split_state_dicts,
    state_dict_layout,
)
from kmt.keypoints import KPDetector
from kmt.warping import ImagePyramid


def fixture_state_dicts(npz):
    return split_state_dicts(npz, "weights/")


def test_fixture_weights_go_in_and_come_back_unchanged(fomm_tiny):
    state_dicts = fixture_state_dicts(fomm_tiny)
    models = fixture_models(fomm_tiny)
    for name, model in models.items():
        exported = export_state_dict(model)
        assert list(exported) == list(state_dict_layout(model))
        assert set(exported) == set(state_dicts[name]), name
        for key, value in state_dicts[name].items():
            if key.endswith("num_batches_tracked"):
                continue
            np.testing.assert_allclose(exported[key], value, atol=1e-7, err_msg=key)


def test_layout_of_an_official_config():
    models = build_models("vox-256")
    layout = {name: state_dict_layout(model) for name, model in models.items()}
    kp, gen, disc = layout["kp_detector"], layout["generator"], layout["discriminator"]
    assert kp["predictor.encoder.down_blocks.0.conv.weight"] == (64, 3, 3, 3)
    assert kp["kp.weight"] == (10, 35, 7, 7) and kp["jacobian.weight"] == (40, 35, 7, 7)
    assert kp["down.weight"] == (3, 1, 13, 13)
    # The dense motion input: (num_kp + 1) slots of (heatmap + 3 channels).
    assert gen["dense_motion_network.hourglass.encoder.down_blocks.0.conv.weight"] == (128, 44, 3, 3)
    assert gen["dense_motion_network.mask.weight"] == (11, 108, 7, 7)
    assert gen["bottleneck.r5.norm2.running_var"] == (256,)
    assert gen["final.weight"] == (3, 64, 7, 7)
    assert disc["discs.1.down_blocks.0.conv.weight_v"] == (3 * 4 * 4,)
    assert disc["discs.1.conv.weight_orig"] == (1, 512, 1, 1)
    # 7 keys per conv + BatchNorm block, 14 per residual block, 2 per conv, 4 per spectral conv,
    # 2 per instance norm, 1 per anti-alias buffer.
    assert len(kp) == 10 * 7 + 2 * 2 + 1
    assert len(gen) == (10 * 7 + 2 * 2 + 1) + (1 + 2 + 2) * 7 + 6 * 14 + 2
    assert len(disc) == 5 * 4 + 3 * 2


def narrow(name):
    """A shipped config with every width cut down; flags, block counts and keypoints unchanged."""
    config = load_config(name)
    model = config["model_params"]
    for params in (
        model["kp_detector_params"],
        model["generator_params"],
        model["generator_params"]["dense_motion_params"],
        model["discriminator_params"],
    ):
        params.update(block_expansion=2, max_features=8)
    return config


@pytest.mark.parametrize("name", available_configs())
def test_every_official_config_round_trips_through_the_official_layout(name):
    config = narrow(name)
    models, fresh = build_models(config), build_models(config)
    for network in models:
        state_dict = export_state_dict(models[network])
        assert list(state_dict) == list(state_dict_layout(fresh[network]))
        load_state_dict(fresh[network], state_dict)
        for a, b in zip(models[network].weights, fresh[network].weights):
            np.testing.assert_array_equal(to_numpy(a), to_numpy(b), err_msg=f"{network} {a.path}")


def test_shape_mismatch_names_the_key_and_both_shapes(fomm_tiny):
    config = fixture_config(fomm_tiny)
    detector = KPDetector(**{**config["kp"], "block_expansion": 4}, **config["common"])
    with pytest.raises(ValueError) as error:
        load_state_dict(detector, fixture_state_dicts(fomm_tiny)["kp_detector"])
    message = str(error.value)
    assert "'predictor.encoder.down_blocks.0.conv.weight'" in message
    assert "(16, 3, 3, 3)" in message and "(8, 3, 3, 3)" in message


def test_nothing_is_assigned_when_a_key_is_wrong(fomm_tiny):
    detector = fixture_models(fomm_tiny, ["kp_detector"])["kp_detector"]
    before = [to_numpy(v) for v in detector.weights]
    state_dict = dict(fixture_state_dicts(fomm_tiny)["kp_detector"])
    state_dict = {k: v + 1.0 if v.dtype.kind == "f" else v for k, v in state_dict.items()}
    state_dict["kp.bias"] = np.zeros(4, "float32")
    with pytest.raises(ValueError, match="kp.bias"):
        load_state_dict(detector, state_dict)
    for a, b in zip(before, detector.weights):
        np.testing.assert_array_equal(a, to_numpy(b))


def test_missing_unexpected_and_foreign_keys(fomm_tiny):
    state_dicts = fixture_state_dicts(fomm_tiny)
    models = fixture_models(fomm_tiny)
    missing = {k: v for k, v in state_dicts["generator"].items() if k != "final.bias"}
    with pytest.raises(ValueError, match=r"no key 'final\.bias'.*shape \(3,\)"):
        load_state_dict(models["generator"], missing)
    extra = {**state_dicts["kp_detector"], "head.weight": np.zeros((2, 2), "float32")}
    with pytest.raises(ValueError, match=r"Unexpected key 'head\.weight' \(shape \(2, 2\)\)"):
        load_state_dict(models["kp_detector"], extra)
    load_state_dict(models["kp_detector"], extra, strict=False)
    with pytest.raises(ValueError, match=r"no key 'discs\.1\.down_blocks\.0\.conv\.weight_orig'"):
        load_state_dict(models["discriminator"], state_dicts["generator"])
    with pytest.raises(ValueError, match="mapping"):
        load_state_dict(models["kp_detector"], [1, 2, 3])
    with pytest.raises(ValueError, match="KPDetector, OcclusionAwareGenerator or MultiScaleDiscriminator"):
        load_state_dict(keras.layers.Dense(2), {})


def test_batch_counters_are_optional_and_data_parallel_prefixes_accepted(fomm_tiny):
    state_dict = fixture_state_dicts(fomm_tiny)["generator"]
    stripped = {f"module.{k}": v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    model = fixture_models(fomm_tiny, ["generator"])["generator"]
    load_state_dict(model, stripped)
    np.testing.assert_allclose(
        export_state_dict(model)["first.conv.weight"], state_dict["first.conv.weight"], atol=0
    )


def test_anti_alias_buffers_are_checked(fomm_tiny):
    state_dict = dict(fixture_state_dicts(fomm_tiny)["kp_detector"])
    state_dict["down.weight"] = state_dict["down.weight"] * 2
    with pytest.raises(ValueError, match=r"'down\.weight'.*anti-aliasing Gaussian"):
        load_state_dict(fixture_models(fomm_tiny, ["kp_detector"])["kp_detector"], state_dict)


def test_load_checkpoint_from_arrays_computes_the_official_prediction(fomm_tiny):
    config = fixture_config(fomm_tiny)
    models = load_checkpoint(fixture_state_dicts(fomm_tiny), official_config(fomm_tiny), align_corners=False)
    assert sorted(models) == ["discriminator", "generator", "kp_detector"]
    source, driving = nhwc(fomm_tiny["inputs/source"]), nhwc(fomm_tiny["inputs/driving"])
    kp_source = call(models["kp_detector"], source)
    kp_driving = call(models["kp_detector"], driving)
    strip = lambda kp: {"value": kp["value"], "jacobian": kp["jacobian"]}  # noqa: E731
    out = call(models["generator"], source, kp_driving=strip(kp_driving), kp_source=strip(kp_source))
    error = relative_error(np.transpose(out["prediction"], (0, 3, 1, 2)), fomm_tiny["eval/generator/prediction"])
    assert error <= tolerance("eval", "generator/prediction")
    assert config["align_corners"] is False


def test_load_checkpoint_needs_the_two_main_networks(fomm_tiny):
    state_dicts = fixture_state_dicts(fomm_tiny)
    with pytest.raises(ValueError, match="not a FOMM checkpoint"):
        load_checkpoint({"generator": state_dicts["generator"]}, official_config(fomm_tiny), networks=["kp_detector"])
    models = load_checkpoint({"kp_detector": state_dicts["kp_detector"]}, official_config(fomm_tiny))
    assert list(models) == ["kp_detector"]


def test_official_checkpoint_files(fomm_tiny, tmp_path):
    torch = pytest.importorskip("torch")
    state_dicts = fixture_state_dicts(fomm_tiny)
    checkpoint = {name: {k: torch.tensor(v) for k, v in sd.items()} for name, sd in state_dicts.items()}
    checkpoint.update(epoch=99, optimizer_generator={"state": {}, "param_groups": [{"lr": 2e-4, "params": [0]}]})
    path = tmp_path / "tiny-cpk.pth.tar"
    torch.save(checkpoint, path)
    read = read_checkpoint(str(path))
    assert sorted(read) == ["discriminator", "generator", "kp_detector"]
    np.testing.assert_array_equal(read["generator"]["final.bias"], state_dicts["generator"]["final.bias"])
    models = load_checkpoint(str(path), official_config(fomm_tiny), align_corners=False)
    exported = export_state_dict(models["discriminator"])
    np.testing.assert_array_equal(
        exported["discs.1.conv.weight_v"], state_dicts["discriminator"]["discs.1.conv.weight_v"]
    )

    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "classifier.pth")
    with pytest.raises(ValueError, match=r"not a FOMM checkpoint.*\['state_dict'\]"):
        read_checkpoint(str(tmp_path / "classifier.pth"))
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="torch.load"):
        read_checkpoint(str(tmp_path / "notes.txt"))
    with pytest.raises(ValueError, match="does not exist"):
        read_checkpoint(str(tmp_path / "missing.pth.tar"))


def test_reading_a_checkpoint_without_pytorch_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="needs PyTorch"):
        read_checkpoint(str(tmp_path / "vox-cpk.pth.tar"))


def test_converted_models_survive_a_keras_round_trip(fomm_tiny_align_corners, tmp_path):
    npz = fomm_tiny_align_corners
    models = fixture_models(npz)
    source, driving = nhwc(npz["inputs/source"]), nhwc(npz["inputs/driving"])
    pyramid = ImagePyramid([1], 3)

    def outputs(kp_detector, generator, discriminator):
        kp_s, kp_d = call(kp_detector, source), call(kp_detector, driving)
        strip = lambda kp: {"value": kp["value"], "jacobian": kp["jacobian"]}  # noqa: E731
        generated = call(generator, source, kp_driving=strip(kp_d), kp_source=strip(kp_s))
        disc = call(discriminator, pyramid(generated["prediction"]), kp=kp_d["value"])
        return {**kp_d, **generated, "prediction_map": disc["prediction_map_1"]}

    before = outputs(*models.values())
    restored = []
    for name, model in models.items():
        model.save(tmp_path / f"{name}.keras")
        restored.append(keras.models.load_model(tmp_path / f"{name}.keras"))
    assert restored[1].align_corners is True
    after = outputs(*restored)
    assert sorted(before) == sorted(after)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)
