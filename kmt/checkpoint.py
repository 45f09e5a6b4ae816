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
    every optimizer variable, so that training resumes exactly where it stopped.

The trainer writes it, ``kmt convert`` writes it from an official ``.pth.tar``,
and ``kmt animate`` and :func:`load` read it: any checkpoint animates without
extra flags. Files are written to a temporary name and renamed into place, so a
checkpoint on disk is always complete.
"""

import io
import json
import os
import tempfile
from dataclasses import dataclass, field

import keras
import numpy as np
import yaml

from kmt import __version__
from kmt.archive import open_archive, read_description, write_archive
from kmt.config import build_models, load_config

__all__ = ["FORMAT", "VERSION", "Checkpoint", "save", "load", "read_metadata"]

FORMAT = "kmt-checkpoint"
VERSION = 1
NETWORKS = ("kp_detector", "generator", "discriminator")


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


def _open(path):
    return open_archive(path, "kmt-checkpoint.json", "kmt checkpoint (a .kmt zip archive)",
                        hint="An official FOMM checkpoint (.pth.tar) must be converted first: "
                             "`kmt convert CHECKPOINT.pth.tar --config CONFIG --out MODEL.kmt`.")


def read_metadata(path):
    """The checkpoint's metadata and config, without building any model."""
    with _open(path) as archive:
        metadata = read_description(archive, path, "kmt-checkpoint.json", FORMAT, VERSION)
        if "config.yaml" not in archive.namelist():
            raise ValueError(f"{path!r} is a kmt checkpoint without its config (no config.yaml inside).")
        config = yaml.safe_load(archive.read("config.yaml"))
    missing = [key for key in ("networks", "align_corners") if key not in metadata]
    if missing:
        raise ValueError(f"{path!r}: kmt-checkpoint.json lacks {missing}; the file is damaged or was not written by kmt.")
    return metadata, config


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
        for name in networks:
            if f"{name}.weights.h5" not in archive.namelist():
                raise ValueError(f"{path!r} lists the network {name!r} but holds no {name}.weights.h5; the file is "
                                 "damaged.")
            weights_from_bytes(models[name], archive.read(f"{name}.weights.h5"))
        names = archive.namelist()
        if "training.json" in names:
            training = json.loads(archive.read("training.json"))
        if "optimizers.npz" in names:
            with np.load(io.BytesIO(archive.read("optimizers.npz"))) as arrays:
                for key in sorted(arrays.files):
                    optimizer, _ = key.split("/")
                    optimizer_values.setdefault(optimizer, []).append(arrays[key])
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
