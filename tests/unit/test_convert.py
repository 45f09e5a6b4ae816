"""kmt.convert: official state dicts in and out, checkpoint files, errors, and .keras round trips."""

import os
import subprocess
import sys
import zipfile
from collections import OrderedDict

import keras
import numpy as np
import pytest

import yaml

from fomm_reference import call, fixture_config, fixture_models, nhwc, official_config, relative_error, tolerance
from helpers import BACKEND, to_numpy
from kmt import checkpoint as kmt_checkpoint
from kmt.animation import Animator
from kmt.config import available_configs, build_models, load_config
from kmt.convert import (
    export_state_dict,
    load_state_dict,
    official_models,
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


def test_official_models_from_arrays_computes_the_official_prediction(fomm_tiny):
    config = fixture_config(fomm_tiny)
    models = official_models(fixture_state_dicts(fomm_tiny), official_config(fomm_tiny), align_corners=False)
    assert sorted(models) == ["discriminator", "generator", "kp_detector"]
    source, driving = nhwc(fomm_tiny["inputs/source"]), nhwc(fomm_tiny["inputs/driving"])
    kp_source = call(models["kp_detector"], source)
    kp_driving = call(models["kp_detector"], driving)
    strip = lambda kp: {"value": kp["value"], "jacobian": kp["jacobian"]}  # noqa: E731
    out = call(models["generator"], source, kp_driving=strip(kp_driving), kp_source=strip(kp_source))
    error = relative_error(np.transpose(out["prediction"], (0, 3, 1, 2)), fomm_tiny["eval/generator/prediction"])
    assert error <= tolerance("eval", "generator/prediction")
    assert config["align_corners"] is False


def test_official_models_needs_the_two_main_networks(fomm_tiny):
    state_dicts = fixture_state_dicts(fomm_tiny)
    with pytest.raises(ValueError, match="not a FOMM checkpoint"):
        official_models({"generator": state_dicts["generator"]}, official_config(fomm_tiny), networks=["kp_detector"])
    models = official_models({"kp_detector": state_dicts["kp_detector"]}, official_config(fomm_tiny))
    assert list(models) == ["kp_detector"]


def test_official_checkpoint_files(fomm_tiny, tmp_path):
    import torch
    state_dicts = fixture_state_dicts(fomm_tiny)
    checkpoint = {name: {k: torch.tensor(v) for k, v in sd.items()} for name, sd in state_dicts.items()}
    checkpoint.update(epoch=99, optimizer_generator={"state": {}, "param_groups": [{"lr": 2e-4, "params": [0]}]})
    path = tmp_path / "tiny-cpk.pth.tar"
    torch.save(checkpoint, path)
    read = read_checkpoint(str(path))
    assert sorted(read) == ["discriminator", "generator", "kp_detector"]
    np.testing.assert_array_equal(read["generator"]["final.bias"], state_dicts["generator"]["final.bias"])
    models = official_models(str(path), official_config(fomm_tiny), align_corners=False)
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
    with pytest.raises(ValueError, match="does not exist"):  # a missing file is named first
        read_checkpoint(str(tmp_path / "vox-cpk.pth.tar"))
    (tmp_path / "vox-cpk.pth.tar").write_bytes(b"\x80\x02")
    with pytest.raises(ImportError) as error:
        read_checkpoint(tmp_path / "vox-cpk.pth.tar")
    assert str(error.value) == NO_TORCH and error.value.name == "torch"


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


# Official checkpoint files ---------------------------------------------------------------------
NO_TORCH = (
    "Reading an official .pth.tar checkpoint needs PyTorch, only to read that file (kmt and the converted .kmt "
    "run without it): install a CPU build with `pip install torch --index-url "
    "https://download.pytorch.org/whl/cpu` (or plain `pip install torch`), or pass the state dicts as arrays "
    "to `official_models`."
)
OPTIMIZERS = ["optimizer_kp_detector", "optimizer_generator", "optimizer_discriminator"]
FORMATS = ["zip", "legacy", "legacy from a GPU"]


def torch_state_dict(torch, arrays):
    """``arrays`` as ``Module.state_dict()`` returns them: an OrderedDict of tensors with ``_metadata``."""
    state_dict = OrderedDict((key, torch.tensor(value)) for key, value in arrays.items())
    prefixes = sorted({key.rpartition(".")[0] for key in arrays})
    state_dict._metadata = OrderedDict((prefix, {"version": 1}) for prefix in prefixes)
    return state_dict


def official_checkpoint(torch, state_dicts, epoch):
    """What the official trainer saves: the state dicts, each network's Adam state (one step taken), the epoch."""
    content = {name: torch_state_dict(torch, state_dict) for name, state_dict in state_dicts.items()}
    for name, state_dict in state_dicts.items():
        params = [torch.nn.Parameter(torch.tensor(v)) for k, v in state_dict.items()
                  if v.dtype.kind == "f" and "running_" not in k and not k.endswith(("down.weight", "_u", "_v"))]
        optimizer = torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))
        sum((p * p).sum() for p in params).backward()
        optimizer.step()
        content[f"optimizer_{name}"] = optimizer.state_dict()
    content["epoch"] = epoch
    return content


def as_if_saved_from_a_gpu_by_pytorch_1_0(data):
    """A legacy file whose storages are CUDA storages on cuda:0, as the published checkpoints were written."""
    for old, new in ((b"ctorch\nFloatStorage\n", b"ctorch.cuda\nFloatStorage\n"),
                     (b"ctorch\nLongStorage\n", b"ctorch.cuda\nLongStorage\n"),
                     (b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")):  # the pickled location string
        assert data.count(old) == 1, old  # each is pickled once, then memoised
        data = data.replace(old, new)
    return data


@pytest.fixture(scope="module")
def official_files(fomm_tiny, tmp_path_factory):
    import torch
    folder = tmp_path_factory.mktemp("official")
    content = official_checkpoint(torch, fixture_state_dicts(fomm_tiny), epoch=42)
    paths = {fmt: str(folder / f"{fmt.replace(' ', '-')}-cpk.pth.tar") for fmt in FORMATS}
    torch.save(content, paths["zip"])
    torch.save(content, paths["legacy"], _use_new_zipfile_serialization=False)
    for name in OPTIMIZERS:  # PyTorch 1.0's Adam: parameters named by id(), steps counted in Python ints
        ids = {index: 140_000_000_000_000 + 64 * index for index in content[name]["state"]}
        states = content[name]["state"]
        content[name]["state"] = {ids[i]: {**state, "step": int(state["step"])} for i, state in states.items()}
        content[name]["param_groups"][0]["params"] = [ids[i] for i in content[name]["param_groups"][0]["params"]]
    legacy = folder / "gpu.tmp"
    torch.save(content, legacy, _use_new_zipfile_serialization=False)
    with open(paths["legacy from a GPU"], "wb") as handle:
        handle.write(as_if_saved_from_a_gpu_by_pytorch_1_0(legacy.read_bytes()))
    config = {"dataset_params": {"root_dir": "data/tiny", "frame_shape": [64, 64, 3]}, **official_config(fomm_tiny)}
    (folder / "tiny.yaml").write_text(yaml.safe_dump(config))
    return {"folder": folder, "config": str(folder / "tiny.yaml"), "content": content, **paths}


def test_the_files_are_in_the_serializations_they_claim(official_files):
    heads = {fmt: open(official_files[fmt], "rb").read(4) for fmt in FORMATS}
    assert heads["zip"] == b"PK\x03\x04"
    assert heads["legacy"] == heads["legacy from a GPU"] == b"\x80\x02\x8a\x0a"
    assert zipfile.is_zipfile(official_files["zip"]) and not zipfile.is_zipfile(official_files["legacy"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_official_files_in_every_serialization_give_the_official_model(fomm_tiny, official_files, fmt):
    state_dicts = fixture_state_dicts(fomm_tiny)
    read, others = read_checkpoint(official_files[fmt], other_entries=True)
    assert sorted(read) == ["discriminator", "generator", "kp_detector"]
    for name, state_dict in state_dicts.items():
        assert list(read[name]) == list(state_dict)
        for key, value in state_dict.items():
            assert read[name][key].dtype == value.dtype, key
            np.testing.assert_array_equal(read[name][key], value, err_msg=key)
    # The optimizer states and the epoch pass torch's weights-only load and come back as plain data.
    assert list(others) == OPTIMIZERS + ["epoch"] and others["epoch"] == 42
    adam = others["optimizer_generator"]
    assert adam["param_groups"][0]["lr"] == 2e-4 and tuple(adam["param_groups"][0]["betas"]) == (0.5, 0.999)
    first = adam["state"][adam["param_groups"][0]["params"][0]]
    assert isinstance(first["exp_avg"], np.ndarray)
    np.testing.assert_allclose(first["exp_avg"], 0.5 * 2 * state_dicts["generator"]["dense_motion_network.hourglass."
                                                                                 "encoder.down_blocks.0.conv.weight"],
                               rtol=1e-6)  # (1 - beta1) * gradient of sum(p^2)
    assert int(first["step"]) == 1

    models = official_models(official_files[fmt], official_config(fomm_tiny), align_corners=False)
    source, driving = nhwc(fomm_tiny["inputs/source"]), nhwc(fomm_tiny["inputs/driving"])
    strip = lambda kp: {"value": kp["value"], "jacobian": kp["jacobian"]}  # noqa: E731
    kp_source, kp_driving = call(models["kp_detector"], source), call(models["kp_detector"], driving)
    out = call(models["generator"], source, kp_driving=strip(kp_driving), kp_source=strip(kp_source))
    error = relative_error(kp_driving["value"], fomm_tiny["eval/kp_driving/value"])
    assert error <= tolerance("eval", "kp_driving/value")
    error = relative_error(np.transpose(out["prediction"], (0, 3, 1, 2)), fomm_tiny["eval/generator/prediction"])
    assert error <= tolerance("eval", "generator/prediction")


def test_kmt_checkpoint_load_reads_an_official_file_named_with_its_config(fomm_tiny, official_files):
    state_dicts = fixture_state_dicts(fomm_tiny)
    loaded = kmt_checkpoint.load(official_files["legacy from a GPU"], config=official_files["config"],
                                 align_corners=False, networks=("kp_detector", "generator"))
    assert sorted(loaded.models) == ["generator", "kp_detector"]
    assert loaded.align_corners is False and loaded.image_size == (64, 64)
    exported = export_state_dict(loaded.generator)
    for key, value in state_dicts["generator"].items():
        if not key.endswith(("num_batches_tracked", "down.weight")):  # a counter and a computed Gaussian
            np.testing.assert_array_equal(exported[key], value, err_msg=key)
    models = official_models(state_dicts, official_config(fomm_tiny), networks=("kp_detector",))
    assert list(models) == ["kp_detector"]
    np.testing.assert_array_equal(export_state_dict(models["kp_detector"])["kp.weight"],
                                  state_dicts["kp_detector"]["kp.weight"])


def kmt_cli(*args, env=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run([sys.executable, "-m", "kmt.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)


def test_kmt_convert_reads_both_serializations_and_the_result_animates(fomm_tiny, official_files):
    folder, loaded = official_files["folder"], {}
    for fmt in ("zip", "legacy from a GPU"):
        out = folder / f"{fmt.replace(' ', '-')}.kmt"
        result = kmt_cli("convert", official_files[fmt], "--config", official_files["config"], "--out", out,
                         "--pytorch13")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == str(out)
        notes = [line for line in result.stderr.splitlines() if line.startswith("kmt convert:")]
        assert notes == [
            "kmt convert: not carried over: optimizer_kp_detector, optimizer_generator, optimizer_discriminator, "
            "epoch 42 (the .kmt holds the weights of kp_detector, generator, discriminator; `kmt train --init-from "
            f"{out}` starts training from them with fresh optimizers)"
        ]
        loaded[fmt] = kmt_checkpoint.load(str(out))
        assert loaded[fmt].align_corners is False and loaded[fmt].image_size == (64, 64)
    for name in ("kp_detector", "generator", "discriminator"):
        for a, b in zip(loaded["zip"].models[name].weights, loaded["legacy from a GPU"].models[name].weights):
            np.testing.assert_array_equal(to_numpy(a), to_numpy(b), err_msg=f"{name} {a.path}")
    # Animating with absolute keypoints reproduces the official prediction for (source 0, driving 0).
    model = loaded["legacy from a GPU"]
    source, driving = nhwc(fomm_tiny["inputs/source"]), nhwc(fomm_tiny["inputs/driving"])
    frames = Animator(model.kp_detector, model.generator, batch_size=2).animate(source[0], driving, relative=False)
    assert frames.shape == (2, 64, 64, 3) and np.isfinite(frames).all()
    official = np.transpose(fomm_tiny["eval/generator/prediction"], (0, 2, 3, 1))[0]
    assert relative_error(frames[0], official) <= tolerance("eval", "generator/prediction")


def test_kmt_convert_without_pytorch_says_how_to_install_it(official_files, tmp_path):
    hidden = tmp_path / "no-torch"
    (hidden / "torch").mkdir(parents=True)
    (hidden / "torch" / "__init__.py").write_text('raise ImportError("No module named \'torch\'", name="torch")\n')
    path = os.pathsep.join([str(hidden), *filter(None, [os.environ.get("PYTHONPATH")])])
    backend = "tensorflow" if BACKEND == "torch" else BACKEND  # Keras' PyTorch backend needs torch itself
    out = tmp_path / "vox.kmt"
    result = kmt_cli("convert", official_files["legacy"], "--config", official_files["config"], "--out", out,
                     env={"PYTHONPATH": path, "KERAS_BACKEND": backend})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    messages = [line for line in result.stderr.splitlines() if line.startswith("kmt")]
    assert messages == [f"kmt convert: error: {NO_TORCH}"]
    assert not out.exists()


def test_files_that_are_not_official_checkpoints_are_named_in_clear_errors(official_files, tmp_path):
    import torch
    folder = tmp_path

    def error_of(path):
        with pytest.raises(ValueError) as error:
            read_checkpoint(path)
        assert repr(str(path)) in str(error.value)  # every message names the file
        return str(error.value)

    generator = official_files["content"]["generator"]
    torch.save(generator, folder / "generator.pth")
    message = error_of(folder / "generator.pth")
    assert f"holds a bare state dict ({len(generator)} tensors such as 'dense_motion_network." in message
    assert "not a FOMM checkpoint: a dict with the entries 'kp_detector' and 'generator'" in message
    assert "It looks like the state dict of a generator." in message
    torch.save(torch.zeros(3), folder / "tensor.pth")
    assert "holds a Tensor, not a FOMM checkpoint" in error_of(folder / "tensor.pth")

    (folder / "notes.txt").write_text("not a checkpoint")
    message = error_of(folder / "notes.txt")
    assert message.startswith(
        f"{str(folder / 'notes.txt')!r} is not a PyTorch checkpoint: it starts with neither a zip signature nor "
        "the magic number of PyTorch's legacy serialization (torch.load: UnpicklingError: "
    )
    (folder / "empty.pth.tar").write_bytes(b"")
    empty = str(folder / "empty.pth.tar")
    assert error_of(empty) == f"{empty!r} is empty, not a PyTorch checkpoint."
    for fmt in ("zip", "legacy"):
        data = open(official_files[fmt], "rb").read()
        for cut in (len(data) // 2, len(data) - 1):
            truncated = folder / f"{fmt}-{cut}.pth.tar"
            truncated.write_bytes(data[:cut])
            message = error_of(truncated)
            assert f"is truncated or damaged: it starts as a PyTorch checkpoint ({fmt} serialization)" in message
            assert message.endswith("Copy or download it again.")

    torch.save({"kp_detector": official_files["content"]["kp_detector"], "epoch": np.int64(3)}, folder / "numpy.pth")
    message = error_of(folder / "numpy.pth")
    assert "holds Python objects other than tensors and plain containers (numpy." in message
    assert "multiarray.scalar), which kmt does not unpickle" in message
    with zipfile.ZipFile(folder / "model.kmt", "w") as archive:
        archive.writestr("kmt-checkpoint.json", "{}")
    assert "is already a kmt checkpoint" in error_of(folder / "model.kmt")
    with pytest.raises(ValueError, match="`path` is a folder, not a checkpoint file"):
        read_checkpoint(folder)


def test_kmt_convert_reports_a_damaged_file_in_one_line(official_files, tmp_path, capsys):
    from kmt.cli import main

    truncated = tmp_path / "vox-cpk.pth.tar"
    truncated.write_bytes(open(official_files["legacy"], "rb").read()[:1000])
    out = tmp_path / "x.kmt"
    assert main(["convert", str(truncated), "--config", official_files["config"], "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kmt convert: error: {str(truncated)!r} is truncated or damaged") and err.count("\n") == 1
    assert not out.exists()
