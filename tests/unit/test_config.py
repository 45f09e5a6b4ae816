"""kmt.config: the shipped configs, validation errors, and models built with the official sizes."""

import numpy as np
import pytest
import yaml

from kmt.config import (
    available_configs,
    build_discriminator,
    build_kp_detector,
    build_models,
    config_path,
    load_config,
    override_config,
)
from kmt.convert import state_dict_layout
from kmt.discriminator import MultiScaleDiscriminator
from kmt.generator import OcclusionAwareGenerator
from kmt.keypoints import KPDetector

OFFICIAL_NAMES = [
    "bair-256", "fashion-256", "mgif-256", "nemo-256", "taichi-256", "taichi-adv-256", "vox-256", "vox-adv-256",
]

# model_params of the official vox-adv-256.yaml.
VOX_ADV_MODEL_PARAMS = {
    "common_params": {"num_kp": 10, "num_channels": 3, "estimate_jacobian": True},
    "kp_detector_params": {
        "temperature": 0.1, "block_expansion": 32, "max_features": 1024, "scale_factor": 0.25, "num_blocks": 5,
    },
    "generator_params": {
        "block_expansion": 64,
        "max_features": 512,
        "num_down_blocks": 2,
        "num_bottleneck_blocks": 6,
        "estimate_occlusion_map": True,
        "dense_motion_params": {"block_expansion": 64, "max_features": 1024, "num_blocks": 5, "scale_factor": 0.25},
    },
    "discriminator_params": {"scales": [1], "block_expansion": 32, "max_features": 512, "num_blocks": 4, "use_kp": True},
}

# What sets the official configs apart from each other (facts of the official files).
DIFFERENCES = {
    #                 sn     use_kp  generator_gan  single_jacobian_map  lr_kp_detector  batch_size
    "bair-256":       (True,  False, 1, False, 2e-4, 36),
    "fashion-256":    (False, False, 1, False, 2e-4, 27),
    "mgif-256":       (True,  False, 1, True,  2e-4, 36),
    "nemo-256":       (True,  False, 1, False, 2e-4, 36),
    "taichi-256":     (False, False, 0, False, 2e-4, 30),
    "taichi-adv-256": (False, True,  1, False, 0,    27),
    "vox-256":        (True,  False, 0, False, 2e-4, 40),
    "vox-adv-256":    (False, True,  1, False, 2e-4, 36),
}


def trainable_count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def test_kmt_ships_every_official_config():
    assert set(OFFICIAL_NAMES) <= set(available_configs())


@pytest.mark.parametrize("name", OFFICIAL_NAMES)
def test_shipped_configs_hold_the_official_values(name):
    config = load_config(name)
    assert set(config) == {
        "dataset_params", "model_params", "train_params", "reconstruction_params", "animate_params",
        "visualizer_params",
    }
    model = config["model_params"]
    disc, train = model["discriminator_params"], config["train_params"]
    sn, use_kp, gan, single, lr_kp, batch = DIFFERENCES[name]
    assert (disc.get("sn", False), disc.get("use_kp", False)) == (sn, use_kp)
    assert train["loss_weights"]["generator_gan"] == gan
    assert model["kp_detector_params"].get("single_jacobian_map", False) == single
    assert (train["lr_kp_detector"], train["batch_size"]) == (lr_kp, batch)
    assert train["scales"] == [1, 0.5, 0.25, 0.125]
    assert train["transform_params"] == {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5}
    common = {k: v for k, v in VOX_ADV_MODEL_PARAMS.items() if k != "discriminator_params"}
    model = dict(model)
    model["kp_detector_params"] = {k: v for k, v in model["kp_detector_params"].items() if k != "single_jacobian_map"}
    assert {k: v for k, v in model.items() if k != "discriminator_params"} == common


def test_vox_adv_has_the_official_parameter_counts():
    models = build_models("vox-adv-256")
    assert load_config("vox-adv-256")["model_params"] == VOX_ADV_MODEL_PARAMS
    assert trainable_count(models["kp_detector"]) == 14_215_368
    assert trainable_count(models["generator"]) == 45_575_391
    assert trainable_count(models["discriminator"]) == 2_769_089


def test_counts_follow_the_config():
    # vox-256: spectral norm adds no trainable parameter (u, v are buffers), and without use_kp the
    # first discriminator conv sees 3 channels instead of 13: 10 * 64 * 4 * 4 fewer weights.
    vox = build_models("vox-256")
    assert trainable_count(vox["generator"]) == 45_575_391
    assert trainable_count(vox["discriminator"]) == 2_769_089 - 10 * 64 * 16
    assert len(vox["discriminator"].non_trainable_variables) == 2 * 5  # u and v of each conv
    # mgif-256: one shared Jacobian map, a 7x7 head with 4 instead of 40 outputs on 35 channels.
    mgif = build_models("mgif-256")
    assert trainable_count(mgif["kp_detector"]) == 14_215_368 - 36 * (35 * 49 + 1)


def flatten(config, prefix=""):
    """``{"a.b.c": value}`` for every leaf of a nested dict."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def test_vox_512_differs_from_vox_256_only_where_its_comments_say():
    vox256, vox512 = flatten(load_config("vox-256")), flatten(load_config("vox-512"))
    assert vox512.keys() == vox256.keys()
    changed = {key: (vox256[key], vox512[key]) for key in vox256 if vox256[key] != vox512[key]}
    assert changed == {
        "dataset_params.root_dir": ("data/vox-png", "data/vox-512-png"),
        "dataset_params.frame_shape": ([256, 256, 3], [512, 512, 3]),
        "model_params.kp_detector_params.scale_factor": (0.25, 0.125),
        "model_params.generator_params.dense_motion_params.scale_factor": (0.25, 0.125),
        "train_params.batch_size": (40, 10),
        "train_params.scales": ([1, 0.5, 0.25, 0.125], [1, 0.5, 0.25, 0.125, 0.0625]),
        "visualizer_params.kp_size": (5, 10),
    }
    # The networks see 64 x 64 pixels at 512 as at 256, and the pyramid reaches 32 x 32 as at 256.
    assert 512 * vox512["model_params.kp_detector_params.scale_factor"] == 256 * 0.25 == 64
    assert 512 * min(vox512["train_params.scales"]) == 256 * min(vox256["train_params.scales"]) == 32


def test_vox_512_builds_with_the_vox_256_variables_and_estimates_motion_at_64_pixels():
    from fomm_reference import call

    models = build_models("vox-512")
    # Every variable has its vox-256 shape (so `kmt train --init-from` a vox-256 checkpoint works):
    # the counts of test_counts_follow_the_config.
    assert trainable_count(models["kp_detector"]) == 14_215_368
    assert trainable_count(models["generator"]) == 45_575_391
    assert trainable_count(models["discriminator"]) == 2_769_089 - 10 * 64 * 16
    # Only the anti-aliasing Gaussians grow: sigma (1 / 0.125 - 1) / 2 = 3.5, 2 * round(4 * 3.5) + 1 taps.
    layout = {name: state_dict_layout(model) for name, model in models.items()}
    assert layout["kp_detector"]["down.weight"] == (3, 1, 29, 29)
    assert layout["generator"]["dense_motion_network.down.weight"] == (3, 1, 29, 29)
    assert layout["generator"]["bottleneck.r5.conv2.weight"] == (256, 256, 3, 3)
    image = np.random.default_rng(0).random((1, 512, 512, 3), dtype="float32")
    kp = call(models["kp_detector"], image)
    assert kp["value"].shape == (1, 10, 2) and kp["jacobian"].shape == (1, 10, 2, 2)
    assert kp["heatmap"].shape == (1, 58, 58, 10)  # a 7 x 7 valid convolution on 64 x 64 features
    kp = {"value": kp["value"], "jacobian": kp["jacobian"]}
    motion = call(models["generator"].dense_motion_network, image, kp_driving=kp, kp_source=kp)
    assert motion["deformation"].shape == (1, 64, 64, 2)
    assert motion["occlusion_map"].shape == (1, 64, 64, 1)
    # Driving keypoints equal to the source's: the motion field is close to the identity grid.
    identity = np.stack(np.meshgrid(np.linspace(-1, 1, 64), np.linspace(-1, 1, 64)), axis=-1)
    assert np.abs(motion["deformation"][0] - identity).max() < 1e-4


def test_a_users_copy_of_an_official_file_loads_unchanged(tmp_path):
    text = """# Dataset parameters
dataset_params:
  root_dir: data/vox-png
  frame_shape: [256, 256, 3]
  id_sampling: True
  pairs_list: data/vox256.csv
  augmentation_params:
    flip_param:
      horizontal_flip: True
      time_flip: True
model_params:
  common_params:
    num_kp: 10
    num_channels: 3
    estimate_jacobian: True
  kp_detector_params:
     # Softmax temperature for keypoint heatmaps
     temperature: 0.1
     block_expansion: 32
     max_features: 1024
     scale_factor: 0.25
     num_blocks: 5
  generator_params:
    block_expansion: 64
    max_features: 512
    num_down_blocks: 2
    num_bottleneck_blocks: 6
    estimate_occlusion_map: True
    dense_motion_params:
      block_expansion: 64
      max_features: 1024
      num_blocks: 5
      scale_factor: 0.25
  discriminator_params:
    scales: [1]
    block_expansion: 32
    max_features: 512
    num_blocks: 4
    sn: True
train_params:
  num_epochs: 100
  num_repeats: 75
  epoch_milestones: [60, 90]
  lr_generator: 2.0e-4
  lr_discriminator: 2.0e-4
  lr_kp_detector: 2.0e-4
  batch_size: 40
  scales: [1, 0.5, 0.25, 0.125]
  checkpoint_freq: 50
  transform_params:
    sigma_affine: 0.05
    sigma_tps: 0.005
    points_tps: 5
  loss_weights:
    generator_gan: 0
    discriminator_gan: 1
    feature_matching: [10, 10, 10, 10]
    perceptual: [10, 10, 10, 10, 10]
    equivariance_value: 10
    equivariance_jacobian: 10
"""
    path = tmp_path / "vox-256.yaml"
    path.write_text(text)
    config = load_config(str(path))
    assert config["model_params"] == load_config("vox-256")["model_params"]
    assert config["train_params"]["lr_generator"] == 2e-4
    models = build_models(str(path))
    assert isinstance(models["kp_detector"], KPDetector)
    assert isinstance(models["generator"], OcclusionAwareGenerator)
    assert isinstance(models["discriminator"], MultiScaleDiscriminator)


def tiny_config():
    config = yaml.safe_load(open(config_path("vox-adv-256")))
    model = config["model_params"]
    model["kp_detector_params"].update(block_expansion=4, max_features=16, num_blocks=2)
    model["generator_params"].update(block_expansion=4, max_features=16, num_bottleneck_blocks=1)
    model["generator_params"]["dense_motion_params"].update(block_expansion=4, max_features=16, num_blocks=2)
    model["discriminator_params"].update(block_expansion=4, max_features=16)
    return config


def test_build_models_passes_align_corners_and_names():
    models = build_models(tiny_config(), align_corners=False)
    assert [m.name for m in models.values()] == ["kp_detector", "generator", "discriminator"]
    assert all(m.built for m in models.values())
    assert models["generator"].align_corners is False
    assert models["generator"].dense_motion_network.align_corners is False
    assert build_models(tiny_config(), networks=["kp_detector"]).keys() == {"kp_detector"}
    assert build_kp_detector(tiny_config()).num_kp == 10
    assert build_discriminator(tiny_config()).disc_params["use_kp"] is True
    with pytest.raises(ValueError, match="networks"):
        build_models(tiny_config(), networks=["vgg"])


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda c: c["model_params"]["kp_detector_params"].update(num_blockz=5),
         r"Unknown key `model_params\.kp_detector_params\.num_blockz`"),
        (lambda c: c["model_params"]["generator_params"]["dense_motion_params"].pop("num_blocks"),
         r"Missing key `model_params\.generator_params\.dense_motion_params\.num_blocks`"),
        (lambda c: c["model_params"].pop("common_params"), r"Missing key `model_params\.common_params`"),
        (lambda c: c["model_params"]["common_params"].update(num_kp="ten"),
         r"`model_params\.common_params\.num_kp` must be of type int; got 'ten'"),
        (lambda c: c["model_params"]["common_params"].update(num_kp=0), r"num_kp` must be positive"),
        (lambda c: c["model_params"]["kp_detector_params"].update(scale_factor=2),
         r"kp_detector_params\.scale_factor` must be in \(0, 1\]"),
        (lambda c: c["train_params"]["loss_weights"].pop("perceptual"),
         r"Missing key `train_params\.loss_weights\.perceptual`"),
        (lambda c: c.update(trainer_params={}), r"Unknown section `trainer_params`"),
        (lambda c: c.pop("model_params"), r"Missing section `model_params`"),
    ],
)
def test_validation_names_the_key(edit, message):
    config = tiny_config()
    edit(config)
    with pytest.raises(ValueError, match=message):
        load_config(config)


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model_params:\n  common_params: {num_kp: 10}\n")
    with pytest.raises(ValueError, match=r"broken\.yaml: Missing key `model_params\.common_params\.num_channels`"):
        load_config(str(path))
    with pytest.raises(ValueError, match="No config named 'vox-1024'"):
        load_config("vox-1024")
    with pytest.raises(ValueError, match="not found"):
        load_config(str(tmp_path / "missing.yaml"))


def test_load_config_copies_dicts():
    config = tiny_config()
    loaded = load_config(config)
    loaded["model_params"]["common_params"]["num_kp"] = 3
    assert config["model_params"]["common_params"]["num_kp"] == 10


def test_overrides_set_existing_keys_as_yaml_and_name_typos():
    base = load_config("synthetic-faces-64")
    config = override_config("synthetic-faces-64", ["train_params.epoch_milestones=[14]",
                                                    "train_params.lr_generator=1e-4",
                                                    "model_params.common_params.num_kp=5"])
    assert config["train_params"]["epoch_milestones"] == [14]
    assert config["train_params"]["lr_generator"] == pytest.approx(1e-4)
    assert config["model_params"]["common_params"]["num_kp"] == 5
    assert load_config("synthetic-faces-64") == base  # the shipped file is untouched
    with pytest.raises(ValueError, match=r"train_params has no key 'epoch_milestone'; it has \[.*'epoch_milestones'"):
        override_config("synthetic-faces-64", ["train_params.epoch_milestone=[14]"])
    with pytest.raises(ValueError, match="must look like `section.key=value`; got 'num_kp'"):
        override_config("synthetic-faces-64", ["num_kp"])
    with pytest.raises(ValueError, match=r"`model_params.common_params.num_kp` must be of type int; got 'many'"):
        override_config("synthetic-faces-64", ["model_params.common_params.num_kp=many"])


def test_with_dataset_trains_a_synthetic_config_on_a_folder_and_checks_the_frame_size(tmp_path):
    import json

    from kmt.config import with_dataset

    (tmp_path / "train").mkdir()
    config = with_dataset("synthetic-faces-64", tmp_path)
    assert "synthetic_params" not in config and config["dataset_params"]["root_dir"] == str(tmp_path)
    assert "synthetic_params" in load_config("synthetic-faces-64")  # the shipped config is left as it is
    (tmp_path / "prepare.json").write_text(json.dumps({"frame_shape": [128, 128, 3]}))
    with pytest.raises(ValueError, match=r"holds 128x128 frames \(prepare.json\) but the config's "
                                         r"dataset_params.frame_shape is \[64, 64, 3\]"):
        with_dataset("synthetic-faces-64", tmp_path)
    with pytest.raises(ValueError, match=r"`root_dir` .* is not a folder"):
        with_dataset("vox-256", tmp_path / "missing")
