"""kmt's one checkpoint format: a model's config travels with its weights.

A checkpoint is a single ``.kmt`` file, a zip archive holding

``kmt-checkpoint.json``
    the format name and version, which networks are inside, the ``grid_sample``
    convention (``align_corners``), the image size the model was trained at,
    and the kmt / Keras versions and backend that wrote it;
``config.yaml``
    the full config in the official schema (``model_params``, ``train_params``, ...);
``<network>.weights.h5``
    the Keras weights of ``kp_detector``, ``generator`` and, when saved,
    ``discriminator``;
``training.json`` and ``optimizers.npz`` (training checkpoints only)
    the epoch and step, the random-number generator states, the loss log, and
    every optimizer variable (``<optimizer>/<index>``, in the order of
    ``optimizer.variables``), so that training resumes exactly where it stopped.

The trainer writes it, ``kmt convert`` writes it from an official ``.pth.tar``,
and ``kmt animate`` and :func:`load` read it: any checkpoint animates without
extra flags. Files are written to a temporary name beside the target
(``.partial-*.kmt``) and renamed into place with :func:`os.replace`, so a checkpoint
on disk is always complete: a process killed while writing leaves at most such a
temporary file, which kmt never reads and :func:`remove_partial_files` deletes
(the trainer does so in its log folder when it starts).

Reading checks everything it relies on and raises :class:`ValueError` (or
:class:`FileNotFoundError`) naming the file, what was expected and what was found.
"""

import glob
import io
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field

import keras
import numpy as np
import yaml

from kmt import __version__
from kmt.archive import open_archive, read_description, write_archive
from kmt.config import build_models, load_config

__all__ = ["FORMAT", "VERSION", "Checkpoint", "save", "load", "read_metadata", "read_training", "remove_partial_files"]

FORMAT = "kmt-checkpoint"
VERSION = 1
NETWORKS = ("kp_detector", "generator", "discriminator")
PARTIAL_PATTERN = ".partial-*.kmt"
"""The temporary names :func:`kmt.archive.write_archive` writes a ``.kmt`` file under before renaming it."""


@dataclass
class Checkpoint:
    """What :func:`load` returns: the config, the built models and (for training checkpoints) the state."""

    path: str
    config: dict
    models: dict
    metadata: dict
    training: dict = None
    optimizer_values: dict = field(default_factory=dict)

    @property
    def kp_detector(self):
        return self.models["kp_detector"]

    @property
    def generator(self):
        return self.models["generator"]

    @property
    def discriminator(self):
        return self.models.get("discriminator")

    @property
    def align_corners(self):
        return bool(self.metadata["align_corners"])

    @property
    def image_size(self):
        return tuple(self.metadata["image_size"]) if self.metadata.get("image_size") else None


def weights_to_bytes(model):
    """The Keras ``.weights.h5`` file of ``model``, as bytes (to store inside an archive)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.weights.h5")
        model.save_weights(path)
        with open(path, "rb") as handle:
            return handle.read()


def weights_from_bytes(model, data):
    """Load the ``.weights.h5`` bytes written by :func:`weights_to_bytes` into ``model``."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.weights.h5")
        with open(path, "wb") as handle:
            handle.write(data)
        model.load_weights(path)


def save(path, config, models, align_corners=True, image_size=None, training=None, optimizers=None):
    """Write a checkpoint atomically and return its path.

    Args:
        path: the ``.kmt`` file to write (its folder is created if needed).
        config: the config dict (official schema) the models were built from.
        models: ``{"kp_detector": ..., "generator": ..., "discriminator": ...}``;
            the discriminator is optional.
        align_corners: the ``grid_sample`` convention of the models.
        image_size: ``(height, width)`` the models work at, if known.
        training: JSON-serialisable training state (epoch, step, RNG state, log).
        optimizers: ``{name: keras.optimizers.Optimizer}`` whose variables are saved.
    """
    missing = [name for name in ("kp_detector", "generator") if name not in models]
    if missing:
        raise ValueError(f"`models` must hold {missing}; got {sorted(models)}.")
    unknown = sorted(set(models) - set(NETWORKS))
    if unknown:
        raise ValueError(f"`models` may only hold {NETWORKS}; got unknown {unknown}.")
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "networks": [name for name in NETWORKS if name in models],
        "align_corners": bool(align_corners),
        "image_size": list(image_size) if image_size else None,
        "kmt_version": __version__,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "training": training is not None,
    }
    members = {"kmt-checkpoint.json": json.dumps(metadata, indent=2),
               "config.yaml": yaml.safe_dump(config, sort_keys=False)}
    for name in metadata["networks"]:
        members[f"{name}.weights.h5"] = weights_to_bytes(models[name])
    if training is not None:
        members["training.json"] = json.dumps(training, indent=2)
    if optimizers:
        buffer = io.BytesIO()
        arrays = {
            f"{name}/{index:04d}": keras.ops.convert_to_numpy(variable)
            for name, optimizer in optimizers.items()
            for index, variable in enumerate(optimizer.variables)
        }
        np.savez(buffer, **arrays)
        members["optimizers.npz"] = buffer.getvalue()
    write_archive(path, members)
    return path


def remove_partial_files(folder):
    """Delete the temporary files a killed checkpoint write left in ``folder``; returns their paths.

    Only call it on a folder no other process is writing a checkpoint into at the same time.
    """
    paths = sorted(glob.glob(os.path.join(glob.escape(os.fspath(folder)), PARTIAL_PATTERN)))
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
    return paths


def _open(path):
    if os.fspath(path).endswith(".kmt"):
        hint = ("It may be incomplete or damaged: a .kmt file is a zip archive (kmt writes one in full, then "
                "renames it).")
    else:
        hint = ("An official FOMM checkpoint (.pth.tar) must be converted first: "
                "`kmt convert CHECKPOINT.pth.tar --config CONFIG --out MODEL.kmt`.")
    return open_archive(path, "kmt-checkpoint.json", "kmt checkpoint (a .kmt zip archive)", hint=hint)


def _member(archive, path, name):
    """The bytes of member ``name``, with an error naming the file if the archive is damaged."""
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as error:
        raise ValueError(f"{path!r}: its member {name} cannot be read ({error}); the file is damaged.") from error


def _load_member_weights(archive, path, name, model):
    """Load the member ``<name>.weights.h5`` into ``model``, streamed through a temporary file.

    Streaming keeps the network's weights out of memory as one whole ``bytes`` object, which
    lowers the peak memory of loading a large model by about the size of its weights.
    """
    member = f"{name}.weights.h5"
    with tempfile.TemporaryDirectory() as folder:
        temporary = os.path.join(folder, "model.weights.h5")
        try:
            with archive.open(member) as source, open(temporary, "wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
        except (zipfile.BadZipFile, EOFError, zlib.error) as error:
            raise ValueError(f"{path!r}: its member {member} cannot be read ({error}); the file is damaged.") from error
        try:
            model.load_weights(temporary)
        except ValueError as error:
            raise ValueError(f"{path!r}: {member} does not fit the {name} its config.yaml builds ({error}); "
                             "the file is damaged or was edited.") from error


def _json_member(archive, path, name):
    try:
        value = json.loads(_member(archive, path, name))
    except ValueError as error:  # json.JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"{path!r}: {name} is not valid JSON ({error}); the file is damaged.") from error
    if not isinstance(value, dict):
        raise ValueError(f"{path!r}: {name} must hold a JSON object, found {type(value).__name__}; the file is "
                         "damaged.")
    return value


def read_metadata(path):
    """The checkpoint's metadata and config, without building any model."""
    with _open(path) as archive:
        _json_member(archive, path, "kmt-checkpoint.json")
        metadata = read_description(archive, path, "kmt-checkpoint.json", FORMAT, VERSION)
        if "config.yaml" not in archive.namelist():
            raise ValueError(f"{path!r} is a kmt checkpoint without its config (no config.yaml inside).")
        try:
            config = yaml.safe_load(_member(archive, path, "config.yaml"))
        except yaml.YAMLError as error:
            raise ValueError(f"{path!r}: config.yaml is not valid YAML ({error}); the file is damaged.") from error
    if not isinstance(config, dict) or "model_params" not in config:
        found = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{path!r}: config.yaml must be a config with model_params; found {found}.")
    missing = [key for key in ("networks", "align_corners") if key not in metadata]
    if missing:
        raise ValueError(f"{path!r}: kmt-checkpoint.json lacks {missing}; the file is damaged or was not written by kmt.")
    networks = metadata["networks"]
    if not isinstance(networks, list) or not networks or not set(networks) <= set(NETWORKS):
        raise ValueError(f"{path!r}: kmt-checkpoint.json lists networks {networks!r}; expected a non-empty list of "
                         f"some of {list(NETWORKS)}.")
    return metadata, config


def read_training(path):
    """A training checkpoint's ``training.json`` (epoch, step, seed, log), or ``None`` for a weights-only one."""
    read_metadata(path)
    with _open(path) as archive:
        if "training.json" not in archive.namelist():
            return None
        return _json_member(archive, path, "training.json")


def _optimizer_values(path, data):
    """``{optimizer: [array, ...]}`` from the bytes of ``optimizers.npz``, in variable order."""
    try:
        arrays = np.load(io.BytesIO(data))
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path!r}: optimizers.npz cannot be read ({error}); the file is damaged.") from error
    values = {}
    with arrays:
        for key in arrays.files:
            optimizer, _, index = key.partition("/")
            if not optimizer or not index.isdigit():
                raise ValueError(f"{path!r}: optimizers.npz holds {key!r}; expected names such as "
                                 "'generator/0003' (optimizer/variable index).")
            values.setdefault(optimizer, {})[int(index)] = arrays[key]
    for optimizer, by_index in values.items():
        if sorted(by_index) != list(range(len(by_index))):
            raise ValueError(f"{path!r}: optimizers.npz holds variables {sorted(by_index)} of {optimizer!r}; expected "
                             f"0 to {len(by_index) - 1} without a gap. The file is damaged.")
    return {name: [by_index[i] for i in range(len(by_index))] for name, by_index in values.items()}


def load(checkpoint=None, networks=None, config=None, align_corners=True):
    """The one way to load a model: build the networks a checkpoint describes and load their weights.

    Args:
        checkpoint: a ``.kmt`` file; ``None`` for the model shipped with kmt; an official
            FOMM ``.pth.tar`` together with ``config`` (read by :mod:`kmt.convert`, which
            needs PyTorch); or an already loaded :class:`Checkpoint`, returned as it is
            (after checking it holds ``networks``).
        networks: which networks to load (default: every one inside).
        config: only for an official ``.pth.tar``: the config it was trained with (a path,
            the name of a shipped config such as ``"vox-256"``, or a dict).
        align_corners: only for an official ``.pth.tar``: the ``grid_sample`` convention
            (``True`` for the published checkpoints, trained with PyTorch 1.0).

    Returns:
        a :class:`Checkpoint`; for a training checkpoint, ``training`` holds the
        saved state and ``optimizer_values`` the optimizer variables per optimizer.
    """
    if isinstance(checkpoint, Checkpoint):
        absent = [name for name in (networks or ()) if name not in checkpoint.models]
        if absent:
            raise ValueError(f"`checkpoint` ({checkpoint.path!r}) holds {sorted(checkpoint.models)}; it has no {absent}.")
        return checkpoint
    if checkpoint is None:
        from kmt.pretrained import default_checkpoint

        checkpoint = default_checkpoint()
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise ValueError(f"`checkpoint` must be a path, None (the shipped model) or a loaded kmt.checkpoint.Checkpoint; "
                         f"got {type(checkpoint).__name__}.")
    path = os.fspath(checkpoint)
    if config is not None:
        return _load_official(path, networks, config, align_corners)
    metadata, config = read_metadata(path)
    inside = metadata["networks"]
    networks = tuple(inside if networks is None else networks)
    absent = [name for name in networks if name not in inside]
    if absent:
        raise ValueError(f"{path!r} holds {inside}; it has no {absent}.")
    config = load_config(config)
    models = build_models(config, align_corners=metadata["align_corners"], networks=networks)
    training, optimizer_values = None, {}
    with _open(path) as archive:
        names = archive.namelist()
        for name in networks:
            member = f"{name}.weights.h5"
            if member not in names:
                raise ValueError(f"{path!r} lists the network {name!r} but holds no {member}; the file is damaged.")
            _load_member_weights(archive, path, name, models[name])
        if "training.json" in names:
            training = _json_member(archive, path, "training.json")
            if not isinstance(training.get("epoch"), int) or training["epoch"] < 0:
                raise ValueError(f"{path!r}: training.json must give the epoch as a whole number >= 0; found "
                                 f"{training.get('epoch')!r}.")
        if "optimizers.npz" in names:
            optimizer_values = _optimizer_values(path, _member(archive, path, "optimizers.npz"))
    return Checkpoint(path, config, models, metadata, training, optimizer_values)


def _load_official(path, networks, config, align_corners):
    from kmt.convert import official_models

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint at {path!r}.")
    config = load_config(config)
    models = official_models(path, config, align_corners=align_corners, networks=networks)
    size = config.get("dataset_params", {}).get("frame_shape", (256, 256, 3))[:2]
    metadata = {"format": "official-fomm", "networks": sorted(models), "align_corners": bool(align_corners),
                "image_size": [int(s) for s in size]}
    return Checkpoint(path, config, models, metadata)
