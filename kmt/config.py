"""FOMM configs: the official YAML schema, validated, and the three models built from it.

A config is the YAML file the official code trains from (``vox-256.yaml``,
``taichi-256.yaml``, ...): sections ``dataset_params``, ``model_params``,
``train_params``, ``reconstruction_params``, ``animate_params`` and
``visualizer_params``. kmt reads a user's copy of an official file unchanged,
and ships its own copies of every official config under ``kmt/configs/``
(same schema, same values): ``load_config("vox-256")``, beside two of kmt's own in the
same schema: ``synthetic-faces-64`` (the shipped model's) and ``vox-512``.
:func:`with_dataset` points any config at a dataset folder (``kmt train --data``).

Only ``model_params`` is required; every section present is checked against
:data:`SCHEMA`, and an unknown or missing key is named in the error with its
full path (``model_params.kp_detector_params.num_blocks``).

:func:`build_models` turns ``model_params`` into a
:class:`~kmt.keypoints.KPDetector`, an
:class:`~kmt.generator.OcclusionAwareGenerator` and a
:class:`~kmt.discriminator.MultiScaleDiscriminator`, exactly as the official
``run.py`` does (each network gets its own section plus ``common_params``).
"""

import copy
import os

import yaml

__all__ = [
    "SCHEMA",
    "CONFIG_DIR",
    "available_configs",
    "config_path",
    "load_config",
    "override_config",
    "with_dataset",
    "validate_config",
    "build_kp_detector",
    "build_generator",
    "build_discriminator",
    "build_models",
]

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
"""Where the configs kmt ships live."""

# A leaf is a type name; a section is a dict {key: (required, leaf or section)}.
_INT, _NUMBER, _BOOL, _STR, _LIST, _ANY = "int", "number", "bool", "str", "list", "any"


def _req(spec):
    return (True, spec)


def _opt(spec):
    return (False, spec)


_MODEL_PARAMS = {
    "common_params": _req(
        {"num_kp": _req(_INT), "num_channels": _req(_INT), "estimate_jacobian": _opt(_BOOL)}
    ),
    "kp_detector_params": _req(
        {
            "temperature": _req(_NUMBER),
            "block_expansion": _req(_INT),
            "max_features": _req(_INT),
            "num_blocks": _req(_INT),
            "scale_factor": _opt(_NUMBER),
            "single_jacobian_map": _opt(_BOOL),
            "pad": _opt(_INT),
        }
    ),
    "generator_params": _req(
        {
            "block_expansion": _req(_INT),
            "max_features": _req(_INT),
            "num_down_blocks": _req(_INT),
            "num_bottleneck_blocks": _req(_INT),
            "estimate_occlusion_map": _opt(_BOOL),
            "dense_motion_params": _opt(
                {
                    "block_expansion": _req(_INT),
                    "max_features": _req(_INT),
                    "num_blocks": _req(_INT),
                    "scale_factor": _opt(_NUMBER),
                    "kp_variance": _opt(_NUMBER),
                }
            ),
        }
    ),
    "discriminator_params": _req(
        {
            "scales": _opt(_LIST),
            "block_expansion": _opt(_INT),
            "max_features": _opt(_INT),
            "num_blocks": _opt(_INT),
            "sn": _opt(_BOOL),
            "use_kp": _opt(_BOOL),
            "kp_variance": _opt(_NUMBER),
        }
    ),
}

SCHEMA = {
    "dataset_params": _opt(
        {
            "root_dir": _req(_STR),
            "frame_shape": _opt(_LIST),
            "id_sampling": _opt(_BOOL),
            "pairs_list": _opt(_ANY),
            "random_seed": _opt(_INT),
            "skip_bad": _opt(_BOOL),
            "cache_videos": _opt(_INT),
            "augmentation_params": _opt(
                {
                    "flip_param": _opt({"horizontal_flip": _opt(_BOOL), "time_flip": _opt(_BOOL)}),
                    "rotation_param": _opt({"degrees": _req(_ANY)}),
                    "resize_param": _opt({"ratio": _opt(_LIST), "interpolation": _opt(_STR)}),
                    "crop_param": _opt({"size": _req(_LIST)}),
                    "jitter_param": _opt(
                        {
                            "brightness": _opt(_NUMBER),
                            "contrast": _opt(_NUMBER),
                            "saturation": _opt(_NUMBER),
                            "hue": _opt(_NUMBER),
                        }
                    ),
                }
            ),
        }
    ),
    # kmt's own: train from the procedural generator in memory (kmt.training_data).
    "synthetic_params": _opt(
        {
            "family": _req(_STR),
            "num_identities": _opt(_INT),
            "num_motions": _opt(_INT),
            "num_frames": _opt(_INT),
        }
    ),
    "model_params": _req(_MODEL_PARAMS),
    "train_params": _opt(
        {
            "num_epochs": _req(_INT),
            "num_repeats": _req(_INT),
            "epoch_milestones": _req(_LIST),
            "lr_generator": _req(_NUMBER),
            "lr_discriminator": _req(_NUMBER),
            "lr_kp_detector": _req(_NUMBER),
            "batch_size": _req(_INT),
            "scales": _req(_LIST),
            "checkpoint_freq": _req(_INT),
            "transform_params": _req(
                {"sigma_affine": _req(_NUMBER), "sigma_tps": _opt(_NUMBER), "points_tps": _opt(_INT)}
            ),
            "loss_weights": _req(
                {
                    "generator_gan": _req(_NUMBER),
                    "discriminator_gan": _req(_NUMBER),
                    "feature_matching": _req(_LIST),
                    "perceptual": _req(_LIST),
                    "equivariance_value": _req(_NUMBER),
                    "equivariance_jacobian": _req(_NUMBER),
                }
            ),
        }
    ),
    "reconstruction_params": _opt({"num_videos": _req(_ANY), "format": _req(_STR)}),
    "animate_params": _opt(
        {
            "num_pairs": _req(_INT),
            "format": _req(_STR),
            "normalization_params": _req(
                {
                    "adapt_movement_scale": _req(_BOOL),
                    "use_relative_movement": _req(_BOOL),
                    "use_relative_jacobian": _req(_BOOL),
                }
            ),
        }
    ),
    "visualizer_params": _opt({"kp_size": _req(_INT), "draw_border": _req(_BOOL), "colormap": _req(_STR)}),
}
"""The official config schema: ``{key: (required, type name or nested section)}``."""


def _type_ok(kind, value):
    if kind == _ANY:
        return True
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == _STR:
        return isinstance(value, str)
    return isinstance(value, (list, tuple))


def _validate(section, schema, path):
    if not isinstance(section, dict):
        raise ValueError(f"`{path}` must be a mapping of keys to values; got {section!r}.")
    for key in section:
        if key not in schema:
            raise ValueError(
                f"Unknown key `{path}.{key}` in the config; `{path}` accepts {sorted(schema)}."
            )
    for key, (required, spec) in schema.items():
        where = f"{path}.{key}"
        if key not in section:
            if required:
                raise ValueError(f"Missing key `{where}` in the config.")
            continue
        value = section[key]
        if isinstance(spec, dict):
            if value is None and not required:
                continue
            _validate(value, spec, where)
        elif not _type_ok(spec, value):
            raise ValueError(f"`{where}` must be of type {spec}; got {value!r}.")


def validate_config(config):
    """Check ``config`` (a dict) against :data:`SCHEMA`; return it, or raise ``ValueError`` naming the key."""
    if not isinstance(config, dict):
        raise ValueError(f"A config must be a mapping with a `model_params` section; got {config!r}.")
    for key in config:
        if key not in SCHEMA:
            raise ValueError(f"Unknown section `{key}` in the config; sections are {sorted(SCHEMA)}.")
    for key, (required, spec) in SCHEMA.items():
        if key not in config:
            if required:
                raise ValueError(f"Missing section `{key}` in the config.")
            continue
        _validate(config[key], spec, key)
    _check_values(config["model_params"])
    return config


def _check_values(model_params):
    positive = [
        ("common_params", "num_kp"),
        ("common_params", "num_channels"),
        ("kp_detector_params", "temperature"),
        ("kp_detector_params", "block_expansion"),
        ("kp_detector_params", "max_features"),
        ("generator_params", "block_expansion"),
        ("generator_params", "max_features"),
    ]
    for section, key in positive:
        if model_params[section][key] <= 0:
            raise ValueError(
                f"`model_params.{section}.{key}` must be positive; got {model_params[section][key]!r}."
            )
    for section in ("kp_detector_params", ("generator_params", "dense_motion_params")):
        params = (
            model_params[section]
            if isinstance(section, str)
            else (model_params[section[0]].get(section[1]) or {})
        )
        scale = params.get("scale_factor", 1)
        if not 0 < scale <= 1:
            name = section if isinstance(section, str) else ".".join(section)
            raise ValueError(f"`model_params.{name}.scale_factor` must be in (0, 1]; got {scale!r}.")


def available_configs():
    """Names of the configs kmt ships (``"vox-256"``, ``"taichi-256"``, ...)."""
    return sorted(f[: -len(".yaml")] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml"))


def config_path(name):
    """Path of the shipped config ``name`` (with or without ``.yaml``)."""
    stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
    path = os.path.join(CONFIG_DIR, stem + ".yaml")
    if not os.path.exists(path):
        raise ValueError(f"No config named {name!r} ships with kmt; available: {available_configs()}.")
    return path


def load_config(source):
    """A validated config dict from a YAML path, a shipped config's name, or a dict (deep-copied).

    ``load_config("vox-adv-256")`` reads ``kmt/configs/vox-adv-256.yaml``;
    ``load_config("path/to/vox-256.yaml")`` reads a user's (e.g. official) file.
    """
    if isinstance(source, dict):
        return validate_config(copy.deepcopy(source))
    source = os.fspath(source)
    path = source if os.path.exists(source) else None
    if path is None:
        if os.sep in source or "/" in source:
            raise ValueError(f"Config file not found: {source!r}.")
        path = config_path(source)
    with open(path, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    try:
        return validate_config(config)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def with_dataset(config, root_dir):
    """A copy of ``config`` that trains on the dataset folder ``root_dir`` (``train/`` and ``test/``).

    ``dataset_params.root_dir`` becomes ``root_dir`` and a ``synthetic_params`` section (kmt's
    in-memory synthetic stream) is dropped, so a config made for synthetic data, such as the
    shipped model's, fine-tunes on real videos unchanged. When the folder was written by
    ``kmt prepare`` (its ``prepare.json`` records the frame size), a config whose
    ``dataset_params.frame_shape`` differs is refused with both sizes named.
    """
    import json

    root_dir = os.fspath(root_dir)
    if not os.path.isdir(root_dir):
        raise ValueError(f"`root_dir` {root_dir!r} is not a folder (a dataset with train/ and test/).")
    config = copy.deepcopy(load_config(config))
    config.pop("synthetic_params", None)
    params = config.setdefault("dataset_params", {})
    params["root_dir"] = root_dir
    manifest = os.path.join(root_dir, "prepare.json")
    if os.path.isfile(manifest):
        with open(manifest, encoding="utf-8") as handle:
            shape = json.load(handle).get("frame_shape")
        wanted = params.get("frame_shape")
        if shape and wanted and list(wanted[:2]) != list(shape[:2]):
            raise ValueError(f"{root_dir!r} holds {shape[0]}x{shape[1]} frames (prepare.json) but the config's "
                             f"dataset_params.frame_shape is {list(wanted)}; prepare the data at that size or set "
                             f"dataset_params.frame_shape=[{shape[0]}, {shape[1]}, 3] (a model trained at one size "
                             "expects that size).")
    return validate_config(config)


def override_config(config, assignments):
    """A copy of ``config`` with ``"dotted.key=value"`` assignments applied, validated.

    ``value`` is read as YAML (``train_params.epoch_milestones=[14]``,
    ``train_params.lr_generator=1e-4``). Only keys the config already has can be
    set, so a typo is an error that names the key, not a silent new setting.
    """
    config = copy.deepcopy(load_config(config))
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"An override must look like `section.key=value`; got {assignment!r}.")
        parts = key.strip().split(".")
        parent = config
        for depth, part in enumerate(parts):
            if not isinstance(parent, dict) or part not in parent:
                where = ".".join(parts[:depth]) or "the config"
                known = sorted(parent) if isinstance(parent, dict) else []
                raise ValueError(f"Override {key.strip()!r}: {where} has no key {part!r}; it has {known}.")
            if depth < len(parts) - 1:
                parent = parent[part]
        value = yaml.safe_load(text)
        if isinstance(value, str) and isinstance(parent[parts[-1]], (int, float)):
            try:  # YAML 1.1 reads 1e-4 (no dot) as a string
                value = float(value)
            except ValueError:
                pass
        parent[parts[-1]] = value
    return validate_config(config)


def _model_params(config):
    config = load_config(config)
    return config["model_params"]


def build_kp_detector(config, **kwargs):
    """The :class:`~kmt.keypoints.KPDetector` of a config (path, name or dict); ``kwargs`` go to the model (e.g. ``name``)."""
    from kmt.keypoints import KPDetector

    params = _model_params(config)
    model = KPDetector(**params["kp_detector_params"], **params["common_params"], **kwargs)
    model.build(None)
    return model


def build_generator(config, align_corners=True, **kwargs):
    """The :class:`~kmt.generator.OcclusionAwareGenerator` of a config, with the given ``grid_sample`` convention."""
    from kmt.generator import OcclusionAwareGenerator

    params = _model_params(config)
    model = OcclusionAwareGenerator(
        **params["generator_params"], **params["common_params"], align_corners=align_corners, **kwargs
    )
    model.build(None)
    return model


def build_discriminator(config, **kwargs):
    """The :class:`~kmt.discriminator.MultiScaleDiscriminator` of a config."""
    from kmt.discriminator import MultiScaleDiscriminator

    params = _model_params(config)
    model = MultiScaleDiscriminator(**params["discriminator_params"], **params["common_params"], **kwargs)
    model.build(None)
    return model


def build_models(config, align_corners=True, networks=("kp_detector", "generator", "discriminator")):
    """``{"kp_detector": ..., "generator": ..., "discriminator": ...}`` built (variables created) from a config.

    ``config`` is a path, a shipped config's name or a dict; ``align_corners``
    is the ``grid_sample`` convention of the generator (``True``: the official
    checkpoints; ``False``: the official code on PyTorch >= 1.3); ``networks``
    selects which models to build.
    """
    config = load_config(config)
    builders = {
        "kp_detector": lambda: build_kp_detector(config, name="kp_detector"),
        "generator": lambda: build_generator(config, align_corners=align_corners, name="generator"),
        "discriminator": lambda: build_discriminator(config, name="discriminator"),
    }
    unknown = [n for n in networks if n not in builders]
    if unknown:
        raise ValueError(f"`networks` must be among {sorted(builders)}; got {unknown}.")
    return {name: builders[name]() for name in networks}
