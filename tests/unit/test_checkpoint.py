"""kmt's checkpoint format: round trip, every error a damaged or foreign file gets, and atomic writes.

Every reading error names the file, what kmt expected and what it found. A failed save leaves the
target as it was (an older checkpoint stays whole) and no temporary file behind.
"""

import io
import json
import os
import zipfile

import keras
import numpy as np
import pytest
import yaml
from keras import ops

import kmt.archive
from helpers import TINY_MODEL_PARAMS
from kmt import checkpoint
from kmt.config import build_models

SIZE = 32
CONFIG = {"dataset_params": {"root_dir": "unused", "frame_shape": [SIZE, SIZE, 3]}, "model_params": TINY_MODEL_PARAMS}
TRAINING = {"epoch": 3, "step_in_epoch": 0, "seed": 5, "history": [{"epoch": 2, "steps": 4, "gen_gan": 0.5}]}


@pytest.fixture(scope="module")
def models():
    return build_models(CONFIG)


@pytest.fixture(scope="module")
def optimizers(models):
    result = {}
    for name, model in models.items():
        optimizer = keras.optimizers.Adam(1e-3)
        optimizer.build(model.trainable_variables)
        for variable in optimizer.variables:  # distinct, non-zero values, to see each one come back
            variable.assign(np.random.default_rng(len(result)).random(tuple(variable.shape)).astype(variable.dtype))
        result[name] = optimizer
    return result


@pytest.fixture(scope="module")
def saved(tmp_path_factory, models, optimizers):
    """A training checkpoint with all three networks, and a weights-only one without the discriminator."""
    folder = tmp_path_factory.mktemp("checkpoints")
    full = checkpoint.save(str(folder / "train.kmt"), CONFIG, models, image_size=(SIZE, SIZE), training=TRAINING,
                           optimizers=optimizers)
    light = checkpoint.save(str(folder / "weights.kmt"), CONFIG,
                            {name: models[name] for name in ("kp_detector", "generator")}, align_corners=False)
    return {"full": full, "light": light}


def members_of(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_members(path, members, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return str(path)


def numpy_of(variable):
    return np.asarray(ops.convert_to_numpy(variable))


# Round trip --------------------------------------------------------------------------------------
def test_a_training_checkpoint_round_trips_networks_optimizers_and_state(saved, models, optimizers):
    loaded = checkpoint.load(saved["full"])
    assert loaded.metadata["format"] == checkpoint.FORMAT and loaded.metadata["version"] == checkpoint.VERSION
    assert loaded.metadata["networks"] == ["kp_detector", "generator", "discriminator"]
    assert loaded.image_size == (SIZE, SIZE) and loaded.align_corners is True
    assert loaded.training == TRAINING == checkpoint.read_training(saved["full"])
    for name, model in models.items():
        for mine, theirs in zip(model.variables, loaded.models[name].variables, strict=True):
            np.testing.assert_array_equal(numpy_of(theirs), numpy_of(mine), err_msg=mine.path)
    assert sorted(loaded.optimizer_values) == sorted(optimizers)
    for name, optimizer in optimizers.items():
        for variable, value in zip(optimizer.variables, loaded.optimizer_values[name], strict=True):
            np.testing.assert_array_equal(value, numpy_of(variable), err_msg=variable.path)


def test_a_weights_only_checkpoint_has_no_training_state(saved):
    loaded = checkpoint.load(saved["light"])
    assert loaded.training is None and loaded.optimizer_values == {} and loaded.discriminator is None
    assert loaded.align_corners is False and loaded.image_size is None
    assert checkpoint.read_training(saved["light"]) is None
    assert checkpoint.load(loaded, networks=["generator"]) is loaded


def test_optimizer_variables_come_back_in_index_order_not_name_order(saved, tmp_path):
    members = members_of(saved["full"])
    buffer = io.BytesIO()
    np.savez(buffer, **{f"generator/{index}": np.full(2, index) for index in reversed(range(12))})
    members["optimizers.npz"] = buffer.getvalue()
    loaded = checkpoint.load(write_members(tmp_path / "order.kmt", members))
    assert [int(value[0]) for value in loaded.optimizer_values["generator"]] == list(range(12))


# Errors of reading -------------------------------------------------------------------------------
def edit_json(name, change):
    def damage(members):
        data = json.loads(members[name])
        change(data)
        members[name] = json.dumps(data)
    return damage


def edit_config(change):
    def damage(members):
        data = yaml.safe_load(members["config.yaml"])
        change(data)
        members["config.yaml"] = yaml.safe_dump(data)
    return damage


def replace(name, data):
    def damage(members):
        members[name] = data
    return damage


def drop(name):
    def damage(members):
        del members[name]
    return damage


def npz(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


DAMAGED = {
    # case: (how the archive is damaged, what the message must say: expected and found)
    "no description": (drop("kmt-checkpoint.json"),
                       r"is a zip archive but not a kmt checkpoint \(no kmt-checkpoint\.json inside\)"),
    "description not json": (replace("kmt-checkpoint.json", b"{format: kmt"),
                             r"kmt-checkpoint\.json is not valid JSON \(.*\); the file is damaged"),
    "description not an object": (replace("kmt-checkpoint.json", b"[1, 2]"),
                                  r"kmt-checkpoint\.json must hold a JSON object, found list"),
    "wrong format": (edit_json("kmt-checkpoint.json", lambda d: d.update(format="kmt-evaluators")),
                     r"has format 'kmt-evaluators' version 1; this kmt reads 'kmt-checkpoint' up to version 1"),
    "newer version": (edit_json("kmt-checkpoint.json", lambda d: d.update(version=2)),
                      r"has format 'kmt-checkpoint' version 2; this kmt reads 'kmt-checkpoint' up to version 1"),
    "version not a number": (edit_json("kmt-checkpoint.json", lambda d: d.update(version="1")),
                             r"version '1'; this kmt reads 'kmt-checkpoint' up to version 1"),
    "no format": (edit_json("kmt-checkpoint.json", lambda d: d.pop("format")),
                  r"has format None version 1; this kmt reads 'kmt-checkpoint'"),
    "no networks": (edit_json("kmt-checkpoint.json", lambda d: d.pop("networks")),
                    r"kmt-checkpoint\.json lacks \['networks'\]; the file is damaged or was not written by kmt"),
    "no align_corners": (edit_json("kmt-checkpoint.json", lambda d: d.pop("align_corners")),
                         r"kmt-checkpoint\.json lacks \['align_corners'\]"),
    "unknown network": (edit_json("kmt-checkpoint.json", lambda d: d.update(networks=["kp_detector", "keypointer"])),
                        r"lists networks \['kp_detector', 'keypointer'\]; expected a non-empty list of some of "
                        r"\['kp_detector', 'generator', 'discriminator'\]"),
    "no network": (edit_json("kmt-checkpoint.json", lambda d: d.update(networks=[])),
                   r"lists networks \[\]; expected a non-empty list"),
    "no config": (drop("config.yaml"), r"is a kmt checkpoint without its config \(no config\.yaml inside\)"),
    "config not yaml": (replace("config.yaml", b"model_params: [unclosed"), r"config\.yaml is not valid YAML"),
    "config without model_params": (edit_config(lambda c: c.pop("model_params")),
                                    r"config\.yaml must be a config with model_params; found \['dataset_params'\]"),
    "missing network weights": (drop("generator.weights.h5"),
                                r"lists the network 'generator' but holds no generator\.weights\.h5; the file is "
                                r"damaged"),
    "weights of another config": (edit_config(lambda c: c["model_params"]["kp_detector_params"].update(
                                      block_expansion=8)),
                                  r"kp_detector\.weights\.h5 does not fit the kp_detector its config\.yaml builds"),
    "training state not json": (replace("training.json", b"{epoch: 3"), r"training\.json is not valid JSON"),
    "training state without epoch": (edit_json("training.json", lambda d: d.pop("epoch")),
                                     r"training\.json must give the epoch as a whole number >= 0; found None"),
    "negative epoch": (edit_json("training.json", lambda d: d.update(epoch=-1)),
                       r"training\.json must give the epoch as a whole number >= 0; found -1"),
    "optimizers not npz": (replace("optimizers.npz", b"not numpy"), r"optimizers\.npz cannot be read"),
    "optimizer variable badly named": (replace("optimizers.npz", npz(generator_3=np.zeros(2))),
                                       r"optimizers\.npz holds 'generator_3'; expected names such as "
                                       r"'generator/0003'"),
    "optimizer variable missing": (replace("optimizers.npz", npz(**{"generator/0000": np.zeros(2),
                                                                    "generator/0002": np.zeros(2)})),
                                   r"holds variables \[0, 2\] of 'generator'; expected 0 to 1 without a gap"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_checkpoint_is_refused_with_a_message_naming_the_file(saved, tmp_path, case):
    damage, message = DAMAGED[case]
    members = members_of(saved["full"])
    damage(members)
    path = write_members(tmp_path / f"{case.replace(' ', '-')}.kmt", members)
    with pytest.raises(ValueError, match=message) as error:
        checkpoint.load(path)
    assert repr(path) in str(error.value)


def test_a_member_with_a_bad_checksum_is_named(saved, tmp_path):
    path = write_members(tmp_path / "crc.kmt", members_of(saved["full"]), compression=zipfile.ZIP_STORED)
    with open(path, "rb") as handle:
        data = handle.read()
    assert data.count(b"model_params") == 1
    with open(path, "wb") as handle:
        handle.write(data.replace(b"model_params", b"model_paramz"))
    with pytest.raises(ValueError, match=r"its member config\.yaml cannot be read \(.*CRC.*\); the file is damaged") \
            as error:
        checkpoint.read_metadata(path)
    assert repr(path) in str(error.value)


def test_missing_foreign_and_truncated_files_are_named(saved, tmp_path):
    missing = str(tmp_path / "nothing.kmt")
    with pytest.raises(FileNotFoundError, match=r"No kmt checkpoint at ") as error:
        checkpoint.load(missing)
    assert repr(missing) in str(error.value)

    official = str(tmp_path / "vox-cpk.pth.tar")
    with open(official, "wb") as handle:
        handle.write(b"\x80\x02a pickled PyTorch state dict")
    with pytest.raises(ValueError, match=r"is not a kmt checkpoint \(a \.kmt zip archive\)\. An official FOMM "
                                         r"checkpoint \(\.pth\.tar\) must be converted first: `kmt convert") as error:
        checkpoint.load(official)
    assert repr(official) in str(error.value)

    truncated = str(tmp_path / "truncated.kmt")
    with open(saved["full"], "rb") as source, open(truncated, "wb") as handle:
        handle.write(source.read()[: os.path.getsize(saved["full"]) // 2])
    with pytest.raises(ValueError, match=r"is not a kmt checkpoint \(a \.kmt zip archive\)\. It may be incomplete "
                                         r"or damaged") as error:
        checkpoint.read_metadata(truncated)
    assert repr(truncated) in str(error.value)


def test_asking_for_networks_a_checkpoint_lacks_is_named(saved):
    with pytest.raises(ValueError, match=r"holds \['kp_detector', 'generator'\]; it has no \['discriminator'\]") \
            as error:
        checkpoint.load(saved["light"], networks=["discriminator"])
    assert repr(saved["light"]) in str(error.value)
    loaded = checkpoint.load(saved["light"])
    with pytest.raises(ValueError, match=r"`checkpoint` \(.*\) holds \['generator', 'kp_detector'\]; it has no "
                                         r"\['discriminator'\]") as error:
        checkpoint.load(loaded, networks=["discriminator"])
    assert repr(saved["light"]) in str(error.value)
    with pytest.raises(ValueError, match=r"`checkpoint` must be a path, None \(the shipped model\) or a loaded "
                                         r"kmt\.checkpoint\.Checkpoint; got int"):
        checkpoint.load(3)


def test_save_names_missing_and_unknown_networks(tmp_path, models):
    target = str(tmp_path / "bad.kmt")
    with pytest.raises(ValueError, match=r"`models` must hold \['generator'\]; got \['kp_detector'\]"):
        checkpoint.save(target, CONFIG, {"kp_detector": models["kp_detector"]})
    with pytest.raises(ValueError, match=r"`models` may only hold \('kp_detector', 'generator', 'discriminator'\); "
                                         r"got unknown \['vgg'\]"):
        checkpoint.save(target, CONFIG, {**models, "vgg": models["generator"]})
    assert os.listdir(tmp_path) == []


# A failed save leaves nothing half-written --------------------------------------------------------
@pytest.fixture
def existing(tmp_path, saved):
    """A folder holding a good checkpoint, and a function returning the folder's files and their bytes."""
    target = str(tmp_path / "last.kmt")
    with open(saved["light"], "rb") as source, open(target, "wb") as handle:
        handle.write(source.read())

    def contents():
        return {name: open(os.path.join(tmp_path, name), "rb").read() for name in sorted(os.listdir(tmp_path))}

    return target, contents


def fail_after_first_member(monkeypatch, error):
    writestr = zipfile.ZipFile.writestr
    calls = []

    def failing(self, name, data, *args, **kwargs):
        calls.append(name)
        if len(calls) == 2:
            raise error
        return writestr(self, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing)
    return calls


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_an_error_in_the_middle_of_a_save_leaves_the_old_checkpoint_and_no_temporary(existing, models, monkeypatch,
                                                                                      error):
    target, contents = existing
    before = contents()
    calls = fail_after_first_member(monkeypatch, error)
    with pytest.raises(type(error)):
        checkpoint.save(target, CONFIG, models, training=TRAINING)
    assert calls == ["kmt-checkpoint.json", "config.yaml"]
    assert contents() == before  # same files, same bytes: no .partial-* left, last.kmt untouched
    monkeypatch.undo()
    assert checkpoint.load(target).discriminator is None  # still the old, whole checkpoint


def test_a_failed_rename_leaves_the_old_checkpoint_and_no_temporary(existing, models, monkeypatch):
    target, contents = existing
    before = contents()

    def refuse(source, destination):
        assert os.path.basename(source).startswith(".partial-") and os.path.exists(source)
        raise PermissionError(13, "Permission denied", destination)

    monkeypatch.setattr(kmt.archive.os, "replace", refuse)
    with pytest.raises(PermissionError, match="Permission denied"):
        checkpoint.save(target, CONFIG, models)
    assert contents() == before


def test_a_failure_before_writing_leaves_the_old_checkpoint(existing, models, monkeypatch):
    target, contents = existing
    before = contents()

    def broken(model):
        raise RuntimeError(f"cannot serialise {model.name}")

    monkeypatch.setattr(checkpoint, "weights_to_bytes", broken)
    with pytest.raises(RuntimeError, match="cannot serialise"):
        checkpoint.save(target, CONFIG, models)
    assert contents() == before


def test_an_unwritable_target_leaves_nothing_behind(tmp_path, models):
    folder = tmp_path / "a-folder.kmt"  # the target is a directory: the rename cannot replace it
    folder.mkdir()
    (folder / "inside").write_text("kept")
    with pytest.raises(IsADirectoryError) as error:
        checkpoint.save(str(folder), CONFIG, models)
    assert str(folder) in str(error.value)
    assert sorted(os.listdir(tmp_path)) == ["a-folder.kmt"] and os.listdir(folder) == ["inside"]
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError) as error:  # the target's folder cannot be created: a file has its name
        checkpoint.save(str(blocker / "last.kmt"), CONFIG, models)
    assert str(blocker) in str(error.value)
    assert sorted(os.listdir(tmp_path)) == ["a-folder.kmt", "file"] and blocker.read_text() == "not a folder"


def test_remove_partial_files_deletes_only_temporaries_of_killed_writes(tmp_path, saved):
    for name in (".partial-abc123.kmt", ".partial-x.kmt", "last.kmt", "partial-keep.kmt", ".partial-y.kmt-eval"):
        (tmp_path / name).write_bytes(b"data")
    removed = checkpoint.remove_partial_files(tmp_path)
    assert [os.path.basename(path) for path in removed] == [".partial-abc123.kmt", ".partial-x.kmt"]
    assert sorted(os.listdir(tmp_path)) == [".partial-y.kmt-eval", "last.kmt", "partial-keep.kmt"]
    assert checkpoint.remove_partial_files(tmp_path) == []
