"""kmt.losses against the reference fixtures: the equivariance transform, its losses, LSGAN, feature matching."""

import warnings

import numpy as np
import pytest
from keras import ops

from helpers import to_numpy
from kmt import losses
from kmt import vgg as kmt_vgg
from kmt.vgg import TORCHVISION_VGG19_CONVS, seeded_vgg19_state_dict

MODES = ["eval", "train"]


def nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


def kp(data, mode, name):
    return {"value": data[f"{mode}/{name}/value"], "jacobian": data[f"{mode}/{name}/jacobian"]}


def transform_of(data):
    return losses.EquivarianceTransform(
        data["transform/theta"], data["transform/control_points"], data["transform/control_params"]
    )


def close(ours, ref, rtol=1e-5):
    """Transform and loss values are simple enough for 1e-5 relative (fixtures README)."""
    ref = np.asarray(ref)
    np.testing.assert_allclose(to_numpy(ours), ref, atol=rtol * max(1.0, float(np.abs(ref).max())), rtol=0)


@pytest.mark.parametrize("fixture_name", ["fomm_tiny", "fomm_tiny_align_corners"])
def test_transform_warps_coordinates_like_the_reference(fixture_name, request):
    data = request.getfixturevalue(fixture_name)
    transform = transform_of(data)
    close(transform.warp_coordinates(data["transform/coordinates"]), data["transform/warped"])
    close(transform.jacobian(data["transform/coordinates"]), data["transform/jacobian"])


@pytest.mark.parametrize("fixture_name", ["fomm_tiny", "fomm_tiny_align_corners"])
def test_transform_frame_matches_the_reference(fixture_name, request):
    data = request.getfixturevalue(fixture_name)
    align = bool(__import__("json").loads(str(data["config"]))["align_corners"])
    transform = transform_of(data)
    close(transform.transform_frame(nhwc(data["inputs/source"]), align_corners=align), nhwc(data["transform/frame"]))
    close(
        transform.transform_frame(nhwc(data["inputs/driving"]), align_corners=align),
        nhwc(data["transform/driving_frame"]),
    )


def test_tps_jacobian_agrees_with_finite_differences():
    rng = np.random.default_rng(0)
    params = losses.sample_transform_parameters(rng, 2, sigma_affine=0.05, sigma_tps=0.005, points_tps=5)
    transform = losses.EquivarianceTransform.from_parameters(params)
    z = rng.uniform(-0.9, 0.9, (2, 7, 2)).astype("float64")
    # |z - p| has kinks where a coordinate meets a control point's (multiples of 0.5): stay clear.
    near = np.abs(z * 2 - np.round(z * 2)) < 0.02
    z[near] += 0.03
    eps = 1e-3
    numeric = np.zeros((2, 7, 2, 2))
    for j in range(2):
        step = np.zeros(2)
        step[j] = eps
        plus = to_numpy(transform.warp_coordinates((z + step).astype("float32")))
        minus = to_numpy(transform.warp_coordinates((z - step).astype("float32")))
        numeric[..., j] = (plus - minus) / (2 * eps)
    np.testing.assert_allclose(to_numpy(transform.jacobian(z.astype("float32"))), numeric, atol=2e-3)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fixture_name", ["fomm_tiny", "fomm_tiny_align_corners"])
def test_equivariance_losses_match_the_reference(fixture_name, mode, request):
    data = request.getfixturevalue(fixture_name)
    transform = transform_of(data)
    driving, transformed = kp(data, mode, "kp_driving"), kp(data, mode, "kp_transformed")
    close(losses.equivariance_value_loss(driving, transformed, transform), data[f"{mode}/losses/equivariance_value"])
    close(
        losses.equivariance_jacobian_loss(driving, transformed, transform),
        data[f"{mode}/losses/equivariance_jacobian"],
    )


def discriminator_maps(data, mode, name):
    maps = {}
    for scale in (1,):
        maps[f"prediction_map_{scale}"] = nhwc(data[f"{mode}/{name}/prediction_map_{scale}"])
        i, features = 0, []
        while f"{mode}/{name}/feature_maps_{scale}/{i}" in data.files:
            features.append(nhwc(data[f"{mode}/{name}/feature_maps_{scale}/{i}"]))
            i += 1
        maps[f"feature_maps_{scale}"] = features
    return maps


@pytest.mark.parametrize("mode", MODES)
def test_gan_and_feature_matching_losses_match_the_reference(fomm_tiny, mode):
    fake = discriminator_maps(fomm_tiny, mode, "discriminator")
    real = discriminator_maps(fomm_tiny, mode, "discriminator_real")
    close(losses.generator_gan_loss(fake), fomm_tiny[f"{mode}/losses/gen_gan"])
    close(losses.discriminator_gan_loss(real, fake), fomm_tiny[f"{mode}/losses/disc_gan"])
    per_layer = losses.feature_matching_losses(real, fake)
    close(ops.stack(per_layer), fomm_tiny[f"{mode}/losses/feature_matching_per_layer"])


def test_sampled_parameters_have_the_reference_shapes_and_spread():
    rng = np.random.default_rng(1)
    params = losses.sample_transform_parameters(rng, 64, sigma_affine=0.05, sigma_tps=0.005, points_tps=5)
    assert params["theta"].shape == (64, 2, 3)
    assert params["control_params"].shape == (64, 1, 25)
    assert params["control_points"].shape == (1, 5, 5, 2)
    assert abs(np.std(params["theta"] - np.eye(2, 3)) - 0.05) < 0.01
    affine_only = losses.sample_transform_parameters(rng, 2, sigma_affine=0.05)
    assert set(affine_only) == {"theta"}
    with pytest.raises(ValueError, match="`sigma_tps` and `points_tps` go together"):
        losses.sample_transform_parameters(rng, 2, sigma_affine=0.05, sigma_tps=0.005)


def test_identity_transform_leaves_frames_and_keypoints_alone():
    frame = np.random.default_rng(2).random((1, 8, 8, 3), dtype="float32")
    transform = losses.EquivarianceTransform(np.eye(2, 3, dtype="float32")[None])
    np.testing.assert_allclose(to_numpy(transform.transform_frame(frame)), frame, atol=1e-6)
    value = {"value": np.zeros((1, 3, 2), "float32"), "jacobian": np.tile(np.eye(2, dtype="float32"), (1, 3, 1, 1))}
    assert float(to_numpy(losses.equivariance_value_loss(value, value, transform))) == 0.0
    assert float(to_numpy(losses.equivariance_jacobian_loss(value, value, transform))) == 0.0


def test_vgg_features_warn_when_imagenet_weights_are_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.warns(UserWarning, match="RANDOM VGG19 features"):
        vgg = losses.VGG19Features()
    assert not vgg.pretrained
    features = vgg(np.random.default_rng(0).random((1, 32, 32, 3), dtype="float32"))
    assert [tuple(f.shape) for f in features] == [(1, 32, 32, 64), (1, 16, 16, 128), (1, 8, 8, 256), (1, 4, 4, 512), (1, 2, 2, 512)]


def test_random_vgg_features_are_seeded_and_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        a, b = losses.VGG19Features("random", seed=3), losses.VGG19Features("random", seed=3)
    x = np.random.default_rng(0).random((1, 16, 16, 3), dtype="float32")
    np.testing.assert_array_equal(to_numpy(a(x)[2]), to_numpy(b(x)[2]))
    with pytest.raises(ValueError, match="names a file that does not exist"):
        losses.VGG19Features("/nonexistent/vgg.h5")


def test_perceptual_loss_is_zero_for_equal_pyramids_and_checks_weights():
    vgg = losses.VGG19Features("random")
    x = np.random.default_rng(0).random((1, 16, 16, 3), dtype="float32")
    pyramid = {"prediction_1": x}
    assert float(to_numpy(losses.perceptual_loss(vgg, pyramid, pyramid, [10] * 5))) == 0.0
    other = {"prediction_1": x[:, ::-1]}
    assert float(to_numpy(losses.perceptual_loss(vgg, other, pyramid, [10] * 5))) > 0.0
    with pytest.raises(ValueError, match="must have 5 entries"):
        losses.perceptual_loss(vgg, pyramid, pyramid, [1, 1])


# torchvision-layout VGG19 weights (the reference's perceptual network) -------------------------------------
PINNED_SEED5 = [0.42725977301597595, -0.302409291267395]  # seeded_vgg19_state_dict(5)["features.0.weight"].flat[:2]


def _torch_vgg_reference(state, images, num_layers):
    """relu1_1 .. relu<num_layers>_1 as the reference's ``Vgg19`` computes them, NHWC out (PyTorch on CPU)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.transpose(images, (0, 3, 1, 2)).copy())
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (x - mean) / std
    outputs, block = [], 1
    for index in sorted(TORCHVISION_VGG19_CONVS):
        name = TORCHVISION_VGG19_CONVS[index][0]
        if name.startswith(f"block{block + 1}_"):
            x = F.max_pool2d(x, 2)
            block += 1
        weight, bias = (torch.from_numpy(state[f"features.{index}.{s}"]) for s in ("weight", "bias"))
        x = torch.relu(F.conv2d(x, weight, bias, padding=1))
        if name.endswith("_conv1"):
            outputs.append(np.transpose(x.numpy(), (0, 2, 3, 1)))
            if len(outputs) == num_layers:
                return outputs


def test_vgg_from_torchvision_arrays_matches_the_reference_with_its_normalisation():
    state = seeded_vgg19_state_dict(seed=1, num_layers=3)
    vgg = losses.VGG19Features(state, num_layers=3)
    assert vgg.pretrained and vgg.input_normalization == "torchvision"
    images = np.random.default_rng(0).random((2, 16, 16, 3), dtype="float32")
    ours = [to_numpy(f) for f in vgg(images)]
    reference = _torch_vgg_reference(state, images, 3)
    assert [f.shape for f in ours] == [f.shape for f in reference] == [(2, 16, 16, 64), (2, 8, 8, 128), (2, 4, 4, 256)]
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.abs(b).max()))
    # The Caffe normalisation of Keras' weights gives other numbers from the same kernels.
    caffe = losses.VGG19Features(state, num_layers=3, input_normalization="caffe")
    assert np.abs(to_numpy(caffe(images)[0]) - reference[0]).max() > 1.0


def test_vgg_reads_a_torchvision_pth_file(tmp_path):
    import torch

    state = seeded_vgg19_state_dict(seed=2, num_layers=2)
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    # A torchvision file also holds the deeper layers and the classifier: they are ignored.
    torch.save({**{k: torch.from_numpy(v) for k, v in state.items()}, "classifier.0.bias": torch.zeros(4096)}, path)
    from_file = losses.VGG19Features(str(path), num_layers=2)
    from_arrays = losses.VGG19Features(state, num_layers=2)
    assert from_file.pretrained and from_file.input_normalization == "torchvision"
    images = np.random.default_rng(1).random((1, 8, 8, 3), dtype="float32")
    for a, b in zip(from_file(images), from_arrays(images)):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    # The reference's own Vgg19 module names its layers slice<k>.<i>: those keys load too.
    renamed = {k.replace("features.", "slice1." if k.startswith("features.0.") else "slice2."): v
               for k, v in state.items()}
    np.testing.assert_array_equal(
        to_numpy(losses.VGG19Features(renamed, num_layers=2)(images)[1]), to_numpy(from_arrays(images)[1])
    )


def test_vgg_weights_errors_name_the_key_and_the_shapes(tmp_path, monkeypatch):
    state = seeded_vgg19_state_dict(seed=0, num_layers=2)
    missing = {k: v for k, v in state.items() if k != "features.5.weight"}
    with pytest.raises(ValueError, match=r"lacks 'features.5.weight' \(shape \(128, 64, 3, 3\)\)"):
        losses.VGG19Features(missing, num_layers=2)
    wrong = {**state, "features.2.bias": np.zeros(32, "float32")}
    with pytest.raises(ValueError, match=r"features.2.bias.*must have shape \(64,\).*got \(32,\)"):
        losses.VGG19Features(wrong, num_layers=2)
    with pytest.raises(ValueError, match="names a file that does not exist"):
        losses.VGG19Features(str(tmp_path / "absent.pth"))
    with pytest.raises(ValueError, match="`input_normalization` must be 'caffe' or 'torchvision'; got 'bgr'"):
        losses.VGG19Features("random", input_normalization="bgr")
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # as if PyTorch were not installed
    with pytest.raises(ImportError, match=r"'vgg19.pth' needs PyTorch \(`pip install torch`"):
        kmt_vgg._import_torch("vgg19.pth")


def test_seeded_vgg19_weights_are_reproducible_and_torchvision_shaped():
    a, b = seeded_vgg19_state_dict(seed=5, num_layers=5), seeded_vgg19_state_dict(seed=5, num_layers=5)
    assert sorted(a) == sorted(f"features.{i}.{s}" for i in (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28)
                               for s in ("weight", "bias"))
    assert a["features.28.weight"].shape == (512, 512, 3, 3) and a["features.5.bias"].shape == (128,)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    other = seeded_vgg19_state_dict(seed=6, num_layers=1)
    assert not np.array_equal(other["features.0.weight"], a["features.0.weight"])
    limit = np.sqrt(6.0 / 27)
    assert 0.9 * limit < np.abs(a["features.0.weight"]).max() <= limit
    # Pinned values: the weights are a function of the seed alone, on every platform.
    np.testing.assert_allclose(a["features.0.weight"].flat[:2], PINNED_SEED5, rtol=1e-6)


def test_trainer_builds_the_perceptual_network_from_vgg_weights(tmp_path):
    import torch

    from helpers import TINY_MODEL_PARAMS
    from kmt.optimizers import TorchAdam
    from kmt.training import Trainer

    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save({k: torch.from_numpy(v) for k, v in seeded_vgg19_state_dict(seed=0, num_layers=1).items()}, path)
    config = {
        "model_params": TINY_MODEL_PARAMS,
        "train_params": {"num_epochs": 1, "num_repeats": 1, "epoch_milestones": [], "checkpoint_freq": 1,
                         "lr_generator": 2e-4, "lr_discriminator": 2e-4, "lr_kp_detector": 2e-4,
                         "batch_size": 2, "scales": [1], "transform_params": {"sigma_affine": 0.05},
                         "loss_weights": {"generator_gan": 0, "discriminator_gan": 1, "feature_matching": [0, 0],
                                          "perceptual": [10, 0, 0, 0, 0], "equivariance_value": 0,
                                          "equivariance_jacobian": 0}},
    }
    trainer = Trainer(config, tmp_path / "log", vgg_weights=str(path))
    assert trainer.vgg.num_layers == 1 and trainer.vgg.input_normalization == "torchvision" and trainer.vgg.pretrained
    assert all(isinstance(o, TorchAdam) for o in trainer.optimizers.values())
    with pytest.raises(ValueError, match="not both"):
        Trainer(config, tmp_path / "log2", vgg=trainer.vgg, vgg_weights=str(path))
