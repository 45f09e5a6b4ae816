"""Official FOMM weights in kmt models, and back (chapter 9).

The official PyTorch code stores each network as a ``state_dict``: a mapping
from names such as ``predictor.encoder.down_blocks.0.conv.weight`` to tensors.
This module knows, for every kmt model, which official name each of its
variables answers to and how the layouts differ:

* convolution kernels: PyTorch ``(out, in, kh, kw)`` -> Keras ``(kh, kw, in, out)``;
* spectral norm: ``weight_orig`` is the kernel, ``weight_u`` is ``u``,
  ``weight_v`` (the kernel's input space flattened as ``in x kh x kw``) becomes
  ``v`` of shape ``(kh, kw, in)``;
* BatchNorm: ``weight``, ``bias``, ``running_mean``, ``running_var`` ->
  ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``;
  ``num_batches_tracked`` is accepted and not used;
* the anti-aliasing buffers (``down.weight``) are not variables in kmt (the
  Gaussian is computed from ``scale_factor``): they are checked, not loaded.

Channel orders need no permutation: kmt keeps the reference's order for the
dense-motion input, the Jacobian head and the hourglass concatenation.

Entry points: :func:`load_state_dict` (one network from a mapping of arrays),
:func:`export_state_dict` (the reverse), :func:`read_checkpoint` (an official
``.pth.tar`` file in PyTorch's legacy or zip serialization, read with PyTorch
and ``weights_only=True``) and :func:`official_models` (a file or dicts plus a
config -> ready kmt models).
"""

import os
import re

import numpy as np
from keras import ops

from kmt.discriminator import MultiScaleDiscriminator, SpectralConv2D
from kmt.generator import OcclusionAwareGenerator
from kmt.keypoints import KPDetector

__all__ = [
    "NETWORKS",
    "state_dict_layout",
    "load_state_dict",
    "export_state_dict",
    "split_state_dicts",
    "read_checkpoint",
    "official_models",
]

NETWORKS = ("kp_detector", "generator", "discriminator")
"""The entries of an official checkpoint that hold networks."""


class _Entry:
    """One official key: the kmt variable it fills, its layout, and its shape in the official layout."""

    def __init__(self, key, variable, layout, value=None):
        self.key = key
        self.variable = variable
        self.layout = layout
        self.value = value  # the expected value of a checked buffer
        if layout == "buffer":
            self.shape = tuple(value.shape)
        elif layout == "conv":
            kh, kw, i, o = variable.shape
            self.shape = (o, i, kh, kw)
        elif layout == "sn_v":
            kh, kw, i = variable.shape
            self.shape = (i * kh * kw,)
        elif layout == "counter":
            self.shape = ()
        else:
            self.shape = tuple(variable.shape)

    def to_kmt(self, array):
        if self.layout == "conv":
            return np.transpose(array, (2, 3, 1, 0))
        if self.layout == "sn_v":
            kh, kw, i = self.variable.shape
            return np.transpose(np.reshape(array, (i, kh, kw)), (1, 2, 0))
        return array

    def to_official(self, array):
        if self.layout == "conv":
            return np.transpose(array, (3, 2, 0, 1))
        if self.layout == "sn_v":
            return np.reshape(np.transpose(array, (2, 0, 1)), (-1,))
        return array


def _conv(prefix, layer):
    if isinstance(layer, SpectralConv2D):
        return [
            _Entry(prefix + "weight_orig", layer.kernel, "conv"),
            _Entry(prefix + "bias", layer.bias, "vector"),
            _Entry(prefix + "weight_u", layer.u, "vector"),
            _Entry(prefix + "weight_v", layer.v, "sn_v"),
        ]
    return [_Entry(prefix + "weight", layer.kernel, "conv"), _Entry(prefix + "bias", layer.bias, "vector")]


def _batch_norm(prefix, layer):
    return [
        _Entry(prefix + "weight", layer.gamma, "vector"),
        _Entry(prefix + "bias", layer.beta, "vector"),
        _Entry(prefix + "running_mean", layer.moving_mean, "vector"),
        _Entry(prefix + "running_var", layer.moving_variance, "vector"),
        _Entry(prefix + "num_batches_tracked", None, "counter"),
    ]


def _conv_norm(prefix, block):
    return _conv(prefix + "conv.", block.conv) + _batch_norm(prefix + "norm.", block.norm)


def _res_block(prefix, block):
    return (
        _conv(prefix + "conv1.", block.conv1)
        + _conv(prefix + "conv2.", block.conv2)
        + _batch_norm(prefix + "norm1.", block.norm1)
        + _batch_norm(prefix + "norm2.", block.norm2)
    )


def _hourglass(prefix, hourglass):
    entries = []
    for i, block in enumerate(hourglass.encoder.down_blocks):
        entries += _conv_norm(f"{prefix}encoder.down_blocks.{i}.", block)
    for i, block in enumerate(hourglass.decoder.up_blocks):
        entries += _conv_norm(f"{prefix}decoder.up_blocks.{i}.", block)
    return entries


def _anti_alias(prefix, layer):
    if layer is None:
        return []
    taps = np.outer(layer._taps, layer._taps).astype("float32")
    value = np.tile(taps[None, None], (layer.channels, 1, 1, 1))
    return [_Entry(prefix + "weight", None, "buffer", value)]


def _kp_detector(model):
    entries = _hourglass("predictor.", model.predictor) + _conv("kp.", model.kp)
    if model.jacobian is not None:
        entries += _conv("jacobian.", model.jacobian)
    return entries + _anti_alias("down.", model.down)


def _generator(model):
    entries = []
    dense = model.dense_motion_network
    if dense is not None:
        prefix = "dense_motion_network."
        entries += _hourglass(prefix + "hourglass.", dense.hourglass) + _conv(prefix + "mask.", dense.mask)
        if dense.occlusion is not None:
            entries += _conv(prefix + "occlusion.", dense.occlusion)
        entries += _anti_alias(prefix + "down.", dense.down)
    entries += _conv_norm("first.", model.first)
    for i, block in enumerate(model.down_blocks):
        entries += _conv_norm(f"down_blocks.{i}.", block)
    for i, block in enumerate(model.up_blocks):
        entries += _conv_norm(f"up_blocks.{i}.", block)
    for i, block in enumerate(model.bottleneck):
        entries += _res_block(f"bottleneck.r{i}.", block)
    return entries + _conv("final.", model.final)


def _discriminator(model):
    entries = []
    for key, disc in model.discs.items():
        prefix = f"discs.{key.replace('.', '-')}."
        for i, block in enumerate(disc.down_blocks):
            entries += _conv(f"{prefix}down_blocks.{i}.conv.", block.conv)
            if block.norm is not None:
                entries += [
                    _Entry(f"{prefix}down_blocks.{i}.norm.weight", block.norm.gamma, "vector"),
                    _Entry(f"{prefix}down_blocks.{i}.norm.bias", block.norm.beta, "vector"),
                ]
        entries += _conv(prefix + "conv.", disc.conv)
    return entries


def state_dict_layout(model):
    """The official keys of ``model``, in order, as ``{key: shape in the official layout}``.

    ``model`` is a :class:`~kmt.keypoints.KPDetector`,
    :class:`~kmt.generator.OcclusionAwareGenerator` or
    :class:`~kmt.discriminator.MultiScaleDiscriminator`; it is built if it was not.
    """
    return {entry.key: entry.shape for entry in _entries(model)}


def _entries(model):
    layouts = {KPDetector: _kp_detector, OcclusionAwareGenerator: _generator, MultiScaleDiscriminator: _discriminator}
    for cls, layout in layouts.items():
        if isinstance(model, cls):
            if not model.built:
                model.build(None)
            return layout(model)
    raise ValueError(
        "`model` must be a kmt KPDetector, OcclusionAwareGenerator or MultiScaleDiscriminator; "
        f"got {type(model).__name__}."
    )


def _to_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _strip_data_parallel(state_dict):
    keys = list(state_dict)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def load_state_dict(model, state_dict, strict=True):
    """Fill ``model`` with the weights of an official ``state_dict``.

    Args:
        model: a kmt ``KPDetector``, ``OcclusionAwareGenerator`` or
            ``MultiScaleDiscriminator``, built with the config the weights
            come from.
        state_dict: mapping official key -> array (NumPy arrays, PyTorch
            tensors or anything ``np.asarray`` takes), e.g.
            ``torch.load(path)["generator"]``. Keys prefixed ``module.``
            (``nn.DataParallel``) are accepted.
        strict: also reject keys the model has no place for.

    Raises:
        ValueError: naming the first key that is missing, has another shape
        than the model expects (both shapes given, in PyTorch's layout), or
        (with ``strict``) is unexpected. Nothing is assigned unless every key
        is right.

    Returns:
        ``model``.
    """
    if not hasattr(state_dict, "keys"):
        raise ValueError(
            f"`state_dict` must be a mapping from official key names to arrays; got {type(state_dict).__name__}."
        )
    state_dict = _strip_data_parallel(dict(state_dict))
    entries = _entries(model)
    name = type(model).__name__
    updates = []
    for entry in entries:
        if entry.key not in state_dict:
            if entry.layout == "counter":
                continue
            raise ValueError(
                f"The state dict has no key '{entry.key}', which this {name} needs (shape "
                f"{entry.shape}). Is it the state dict of the right network, built from the same config?"
            )
        array = _to_numpy(state_dict[entry.key])
        if tuple(array.shape) != entry.shape:
            raise ValueError(
                f"Shape mismatch for key '{entry.key}': the state dict has {tuple(array.shape)}, this "
                f"{name} expects {entry.shape}. Build the model from the config the weights were trained with."
            )
        if entry.layout == "buffer":
            error = float(np.max(np.abs(array.astype("float64") - entry.value)))
            if error > 1e-5:
                raise ValueError(
                    f"Key '{entry.key}' should hold the anti-aliasing Gaussian of this {name}'s "
                    f"scale_factor; it differs from it by up to {error:.3g}."
                )
        elif entry.layout != "counter":
            updates.append((entry.variable, entry.to_kmt(array).astype(entry.variable.dtype)))
    if strict:
        known = {entry.key for entry in entries}
        unexpected = [key for key in state_dict if key not in known]
        if unexpected:
            raise ValueError(
                f"Unexpected key '{unexpected[0]}' (shape {tuple(_to_numpy(state_dict[unexpected[0]]).shape)}) "
                f"in the state dict of a {name}"
                + (f", and {len(unexpected) - 1} more" if len(unexpected) > 1 else "")
                + ". Is it the state dict of the right network, built from the same config?"
            )
    for variable, value in updates:
        variable.assign(value)
    return model


def export_state_dict(model):
    """The official ``state_dict`` of a kmt model, as ``{key: np.ndarray}`` in PyTorch layouts.

    The inverse of :func:`load_state_dict`: the anti-aliasing buffers are
    included (computed), and each BatchNorm's ``num_batches_tracked`` is 0
    (kmt does not count batches), so ``torch``'s ``load_state_dict`` accepts
    the result in the official modules.
    """
    out = {}
    for entry in _entries(model):
        if entry.layout == "buffer":
            out[entry.key] = entry.value
        elif entry.layout == "counter":
            out[entry.key] = np.zeros((), "int64")
        else:
            out[entry.key] = entry.to_official(np.asarray(ops.convert_to_numpy(entry.variable)))
    return out


def split_state_dicts(arrays, prefix=""):
    """Group flat ``"<prefix><network>/<key>"`` arrays into ``{network: {key: array}}``.

    For instance the test fixtures store their weights as
    ``weights/generator/first.conv.weight``: ``split_state_dicts(npz, "weights/")``.
    Only the networks of :data:`NETWORKS` are collected.
    """
    out = {}
    for name in arrays.keys():
        if not name.startswith(prefix):
            continue
        network, _, key = name[len(prefix):].partition("/")
        if network in NETWORKS and key:
            out.setdefault(network, {})[key] = np.asarray(arrays[name])
    return out


# The first bytes of the two serializations torch.save writes: a zip archive (PyTorch >= 1.6 by
# default) or the legacy stream, which opens with the pickled magic number 0x1950a86a20f9469cfc6c.
_ZIP_SIGNATURE = b"PK\x03\x04"
_LEGACY_SIGNATURE = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
# Which network a bare state dict belongs to, by the first part of its keys.
_KEY_PREFIXES = {"predictor": "kp_detector", "kp": "kp_detector", "first": "generator",
                 "dense_motion_network": "generator", "discs": "discriminator"}

_NO_TORCH = (
    "Reading an official .pth.tar checkpoint needs PyTorch, only to read that file (kmt and the converted .kmt "
    "run without it): install a CPU build with `pip install torch --index-url "
    "https://download.pytorch.org/whl/cpu` (or plain `pip install torch`), or pass the state dicts as arrays "
    "to `official_models`."
)


def _serialization(path):
    """``"zip"``, ``"legacy"`` or ``None``: how the file at ``path`` starts."""
    with open(path, "rb") as handle:
        head = handle.read(len(_LEGACY_SIGNATURE))
    if head.startswith(_ZIP_SIGNATURE):
        return "zip"
    return "legacy" if head == _LEGACY_SIGNATURE else None


def _unreadable(path, error):
    """The ValueError that says why ``torch.load`` could not read the file at ``path``."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(error)).split())
    text = re.sub(r".*WeightsUnpickler error: (.*?)(Check the documentation.*)?$", r"\1", text).strip()
    reason = f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__
    kind = _serialization(path)
    if kind is None:
        if os.path.getsize(path) == 0:
            return ValueError(f"{path!r} is empty, not a PyTorch checkpoint.")
        return ValueError(
            f"{path!r} is not a PyTorch checkpoint: it starts with neither a zip signature nor the magic number "
            f"of PyTorch's legacy serialization (torch.load: {reason})."
        )
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:
        return ValueError(
            f"{path!r} holds Python objects other than tensors and plain containers ({refused.group(1)}), which kmt "
            "does not unpickle: it reads checkpoints with torch.load(weights_only=True), which runs no code from the "
            "file (official FOMM checkpoints hold only tensors, numbers and dicts). If you trust the file, load it "
            "yourself and pass its state dicts to kmt.convert.official_models as arrays."
        )
    if kind == "zip":
        import zipfile

        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if "kmt-checkpoint.json" in archive.namelist():
                    return ValueError(f"{path!r} is already a kmt checkpoint: use it as it is "
                                      "(`kmt animate --checkpoint`, `kmt.checkpoint.load`).")
            return ValueError(f"{path!r} is a zip archive but not a PyTorch checkpoint torch.load can read ({reason}).")
    return ValueError(
        f"{path!r} is truncated or damaged: it starts as a PyTorch checkpoint ({kind} serialization) but "
        f"torch.load could not read it to the end ({reason}). Copy or download it again."
    )


def _not_a_checkpoint(path, content):
    """The ValueError for a file torch.load read that is not an official FOMM checkpoint."""
    expected = "a FOMM checkpoint: a dict with the entries 'kp_detector' and 'generator' (state dicts)"
    if not isinstance(content, dict):
        return ValueError(f"{path!r} holds a {type(content).__name__}, not {expected}.")
    keys = [str(key) for key in content]
    if keys and all(hasattr(value, "shape") for value in content.values()):
        guesses = sorted({_KEY_PREFIXES.get(key.split(".")[0]) for key in keys} - {None})
        guess = f" It looks like the state dict of a {guesses[0]}." if len(guesses) == 1 else ""
        return ValueError(
            f"{path!r} holds a bare state dict ({len(keys)} tensors such as {keys[0]!r}), not {expected}.{guess} "
            "Load it with kmt.convert.official_models({'<network>': state_dict, ...}, config) or "
            "kmt.convert.load_state_dict(model, state_dict)."
        )
    shown = keys[:8] + ([f"... ({len(keys) - 8} more)"] if len(keys) > 8 else [])
    return ValueError(f"{path!r} is not {expected}; its entries are {shown}.")


def _tree_to_numpy(value):
    if isinstance(value, dict):
        return {key: _tree_to_numpy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_tree_to_numpy(item) for item in value)
    return _to_numpy(value) if hasattr(value, "detach") else value


def read_checkpoint(path, other_entries=False):
    """The network state dicts of an official checkpoint file (``vox-cpk.pth.tar`` and friends).

    The official trainer saves ``{"kp_detector": state_dict, "generator": ..., "discriminator": ...,
    "optimizer_kp_detector": optimizer.state_dict(), ..., "epoch": int}`` with ``torch.save``; the
    published files use PyTorch's legacy serialization (PyTorch 1.0, tensors saved from the GPU),
    newer ones the zip serialization. Both are read with ``torch.load(map_location="cpu",
    weights_only=True)``, which rebuilds tensors, numbers and containers and runs no code from the
    file; every entry of an official file is of those kinds. PyTorch is needed for this function only.

    Args:
        path: the checkpoint file.
        other_entries: also return the entries that are not networks.

    Returns:
        ``{"kp_detector": {...}, "generator": {...}, "discriminator": {...}}`` (the networks the file
        has) with NumPy arrays; with ``other_entries``, the pair ``(state_dicts, others)`` where
        ``others`` holds every other entry (``epoch``, ``optimizer_generator``, ...) as read, tensors
        as NumPy arrays.

    Raises:
        ImportError: PyTorch is not installed (the message says how to install a CPU build).
        ValueError: naming ``path``: it does not exist, is empty, truncated or damaged, is not a
        PyTorch file, holds objects a weights-only load refuses, or is not a FOMM checkpoint
        (e.g. a bare state dict).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"`path` does not exist: {path!r}.")
    if os.path.isdir(path):
        raise ValueError(f"`path` is a folder, not a checkpoint file: {path!r}.")
    try:
        import torch
    except ImportError as error:
        raise ImportError(_NO_TORCH, name="torch") from error
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise _unreadable(path, error) from error
    if not isinstance(content, dict) or not any(isinstance(content.get(n), dict) for n in ("kp_detector", "generator")):
        raise _not_a_checkpoint(path, content)
    state_dicts = {
        name: {key: _to_numpy(value) for key, value in content[name].items()}
        for name in NETWORKS
        if isinstance(content.get(name), dict)
    }
    if not other_entries:
        return state_dicts
    return state_dicts, {key: _tree_to_numpy(value) for key, value in content.items() if key not in state_dicts}


def official_models(checkpoint, config, align_corners=True, networks=None):
    """kmt models carrying the weights of an official checkpoint.

    :func:`kmt.checkpoint.load` (``config=...``) calls this for official files and wraps the
    models in a checkpoint; use this function directly for state dicts held as arrays.

    Args:
        checkpoint: a path to an official ``.pth.tar`` (read with
            :func:`read_checkpoint`, needs PyTorch) or a dict
            ``{"kp_detector": state_dict, "generator": ..., "discriminator": ...}``
            of arrays.
        config: the config the weights were trained with: a path, the name of
            a config kmt ships (``"vox-256"``) or a dict (see :mod:`kmt.config`).
        align_corners: the ``grid_sample`` convention (``True`` for the official
            checkpoints, trained with PyTorch 1.0).
        networks: which networks to return; by default every one of
            :data:`NETWORKS` the checkpoint holds (``kp_detector`` and
            ``generator`` are required).

    Returns:
        ``{"kp_detector": KPDetector, "generator": OcclusionAwareGenerator,
        "discriminator": MultiScaleDiscriminator}`` (those requested).
    """
    from kmt.config import build_models

    state_dicts = read_checkpoint(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else checkpoint
    if not isinstance(state_dicts, dict):
        raise ValueError(
            f"`checkpoint` must be a path or a dict of state dicts; got {type(checkpoint).__name__}."
        )
    if networks is None:
        networks = [n for n in NETWORKS if n in state_dicts]
    missing = [n for n in ("kp_detector", "generator") if n in networks and n not in state_dicts] + [
        n for n in networks if n not in state_dicts and n not in ("kp_detector", "generator")
    ]
    if not networks or missing:
        raise ValueError(
            "`checkpoint` is not a FOMM checkpoint with the networks asked for: expected entries "
            f"{list(networks) or ['kp_detector', 'generator']}, found {sorted(state_dicts)}."
        )
    models = build_models(config, align_corners=align_corners, networks=networks)
    for name in networks:
        load_state_dict(models[name], state_dicts[name])
    return models
