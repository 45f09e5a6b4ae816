"""kmt.losses against the reference fixtures: the equivariance transform, its losses, LSGAN, feature matching."""

import warnings

import numpy as np
import pytest
from keras import ops

from helpers import to_numpy
from kmt import losses

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
