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
import zipfile
from dataclasses import dataclass, field

import keras
import numpy as np
import yaml

from kmt import __version__
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
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".partial-", suffix=".kmt", dir=folder)
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("kmt-checkpoint.json", json.dumps(metadata, indent=2))
            archive.writestr("config.yaml", yaml.safe_dump(config, sort_keys=False))
            for name in metadata["networks"]:
                archive.writestr(f"{name}.weights.h5", weights_to_bytes(models[name]))
            if training is not None:
                archive.writestr("training.json", json.dumps(training, indent=2))
            if optimizers:
                buffer = io.BytesIO()
                arrays = {
                    f"{name}/{index:04d}": keras.ops.convert_to_numpy(variable)
                    for name, optimizer in optimizers.items()
                    for index, variable in enumerate(optimizer.variables)
                }
                np.savez(buffer, **arrays)
                archive.writestr("optimizers.npz", buffer.getvalue())
        os.chmod(temporary, 0o644)  # mkstemp creates owner-only files; a checkpoint is meant to be shared
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path


def _open(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"No checkpoint at {path!r}.")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path!r} is not a kmt checkpoint (a .kmt zip archive). An official FOMM checkpoint "
            "(.pth.tar) must be converted first: `kmt convert --config CONFIG CHECKPOINT.pth.tar --out MODEL.kmt`."
        )
    archive = zipfile.ZipFile(path)
    if "kmt-checkpoint.json" not in archive.namelist():
        archive.close()
        raise ValueError(f"{path!r} is a zip archive but not a kmt checkpoint (no kmt-checkpoint.json inside).")
    return archive


def read_metadata(path):
    """The checkpoint's metadata and config, without building any model."""
    with _open(path) as archive:
        metadata = json.loads(archive.read("kmt-checkpoint.json"))
        config = yaml.safe_load(archive.read("config.yaml"))
    if metadata.get("format") != FORMAT or metadata.get("version", 0) > VERSION:
        raise ValueError(
            f"{path!r} has format {metadata.get('format')!r} version {metadata.get('version')!r}; this kmt "
            f"reads {FORMAT!r} up to version {VERSION}."
        )
    return metadata, config


def load(path, networks=None):
    """Build the models a checkpoint describes and load their weights.

    Args:
        path: a ``.kmt`` file.
        networks: which networks to load (default: every one inside).

    Returns:
        a :class:`Checkpoint`; for a training checkpoint, ``training`` holds the
        saved state and ``optimizer_values`` the optimizer variables per optimizer.
    """
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
