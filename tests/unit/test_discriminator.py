"""kmt.discriminator: spectral norm and instance norm against PyTorch, the patch discriminators."""

import keras
import numpy as np
import pytest

from fomm_reference import call, nchw, nhwc
from helpers import to_numpy, value_and_grads
from kmt.discriminator import (
    Discriminator,
    DiscriminatorBlock,
    InstanceNorm,
    MultiScaleDiscriminator,
    SpectralConv2D,
)

import torch  # noqa: E402 - the test environment has PyTorch (requirements-dev.txt)
F = torch.nn.functional


def spectral_pair(rng, in_channels=3, out_channels=5, kernel_size=4):
    """A torch spectral-norm conv and a kmt SpectralConv2D holding the same kernel, bias, u and v."""
    torch.manual_seed(int(rng.integers(1 << 30)))
    reference = torch.nn.utils.spectral_norm(torch.nn.Conv2d(in_channels, out_channels, kernel_size))
    ours = SpectralConv2D(out_channels, kernel_size)
    ours.build((None, None, None, in_channels))
    # Copies: PyTorch updates u and v in place, and JAX may share a NumPy array's memory.
    ours.kernel.assign(np.transpose(reference.weight_orig.detach().numpy(), (2, 3, 1, 0)).copy())
    ours.bias.assign(reference.bias.detach().numpy().copy())
    ours.u.assign(reference.weight_u.numpy().copy())
    v = reference.weight_v.numpy().reshape(in_channels, kernel_size, kernel_size)
    ours.v.assign(np.transpose(v, (1, 2, 0)).copy())
    return reference, ours


def ours_v_as_torch(layer):
    return np.transpose(to_numpy(layer.v), (2, 0, 1)).reshape(-1)


@pytest.mark.parametrize("training", [False, True])
def test_spectral_conv_matches_torch_spectral_norm(rng, training):
    reference, ours = spectral_pair(rng)
    x = rng.normal(size=(2, 9, 8, 3)).astype("float32")
    reference.train(training)
    for _ in range(2):  # the second call starts from the vectors the first one updated
        expected = reference(torch.tensor(nchw(x))).detach().numpy()
        np.testing.assert_allclose(call(ours, x, training=training), nhwc(expected), atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(to_numpy(ours.u), reference.weight_u.numpy(), atol=1e-6)
        np.testing.assert_allclose(ours_v_as_torch(ours), reference.weight_v.numpy(), atol=1e-6)


def test_spectral_conv_gradient_matches_torch(rng):
    """No gradient flows through u and v, as in PyTorch: the kernel gradients agree."""
    reference, ours = spectral_pair(rng)
    x = rng.normal(size=(2, 7, 7, 3)).astype("float32")
    weight = rng.normal(size=(2, 4, 4, 5)).astype("float32")
    u, v = ours.u.value, ours.v.value

    def loss(kernel, bias):
        out, _ = ours.stateless_call([kernel, bias], [u, v], keras.ops.convert_to_tensor(x), training=True)
        return out * keras.ops.convert_to_tensor(weight)

    _, (kernel_grad, bias_grad) = value_and_grads(loss, to_numpy(ours.kernel), to_numpy(ours.bias))
    reference.train(True)
    (reference(torch.tensor(nchw(x))) * torch.tensor(nchw(weight))).sum().backward()
    expected = np.transpose(reference.weight_orig.grad.numpy(), (2, 3, 1, 0))
    np.testing.assert_allclose(kernel_grad, expected, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(bias_grad, reference.bias.grad.numpy(), atol=1e-4, rtol=1e-4)


def test_power_iteration_converges_to_the_largest_singular_value(rng):
    _, ours = spectral_pair(rng)
    ours.kernel.assign(5.0 * to_numpy(ours.kernel))
    x = rng.normal(size=(1, 4, 4, 3)).astype("float32")
    for _ in range(30):
        call(ours, x, training=True)
    matrix = np.transpose(to_numpy(ours.kernel), (3, 0, 1, 2)).reshape(5, -1)
    normalised = np.transpose(to_numpy(ours.normalized_kernel(False)), (3, 0, 1, 2)).reshape(5, -1)
    assert np.linalg.svd(normalised, compute_uv=False)[0] == pytest.approx(1.0, abs=1e-4)
    assert np.linalg.svd(matrix, compute_uv=False)[0] > 1.5  # it really was rescaled


def test_inference_keeps_the_stored_vectors(rng):
    _, ours = spectral_pair(rng)
    u, v = to_numpy(ours.u), to_numpy(ours.v)
    call(ours, rng.normal(size=(1, 6, 6, 3)).astype("float32"))
    np.testing.assert_array_equal(to_numpy(ours.u), u)
    np.testing.assert_array_equal(to_numpy(ours.v), v)


def test_instance_norm_matches_torch(rng):
    norm = InstanceNorm()
    norm.build((None, None, None, 4))
    norm.gamma.assign(rng.normal(size=4).astype("float32"))
    norm.beta.assign(rng.normal(size=4).astype("float32"))
    x = rng.normal(1.0, 2.0, size=(3, 5, 6, 4)).astype("float32")
    expected = F.instance_norm(
        torch.tensor(nchw(x)), weight=torch.tensor(to_numpy(norm.gamma)), bias=torch.tensor(to_numpy(norm.beta)), eps=1e-5
    )
    np.testing.assert_allclose(call(norm, x), nhwc(expected.numpy()), atol=1e-5)


def test_block_order_conv_norm_leaky_relu_pool(rng):
    block = DiscriminatorBlock(3, 4, norm=True, kernel_size=4, pool=True)
    block.build()
    x = rng.normal(size=(2, 11, 11, 3)).astype("float32")
    kernel = torch.tensor(np.transpose(to_numpy(block.conv.kernel), (3, 2, 0, 1)))
    out = F.conv2d(torch.tensor(nchw(x)), kernel, torch.tensor(to_numpy(block.conv.bias)))
    out = F.instance_norm(out, weight=torch.ones(4), bias=torch.zeros(4), eps=1e-5)
    out = F.avg_pool2d(F.leaky_relu(out, 0.2), 2)
    np.testing.assert_allclose(call(block, x), nhwc(out.numpy()), atol=1e-5)


def test_discriminator_shapes_and_keypoint_channels(rng):
    disc = Discriminator(num_channels=3, block_expansion=8, num_blocks=4, max_features=64, use_kp=True, num_kp=5)
    x = rng.random((2, 64, 64, 3), dtype="float32")
    kp = rng.uniform(-1, 1, size=(2, 5, 2)).astype("float32")
    feature_maps, prediction_map = call(disc, x, kp)
    assert [f.shape for f in feature_maps] == [(2, 30, 30, 16), (2, 13, 13, 32), (2, 5, 5, 64), (2, 2, 2, 64)]
    assert prediction_map.shape == (2, 2, 2, 1)
    assert disc.down_blocks[0].conv.kernel.shape == (4, 4, 8, 16)  # [image, 5 heatmaps]
    assert disc.down_blocks[0].norm is None and not disc.down_blocks[-1].pool
    with pytest.raises(ValueError, match="needs `kp`"):
        disc(x)


def test_multi_scale_discriminator_keys(rng):
    disc = MultiScaleDiscriminator(scales=[1, 0.5], block_expansion=4, num_blocks=2, max_features=8, sn=True)
    pyramid = {
        "prediction_1": rng.random((1, 32, 32, 3), dtype="float32"),
        "prediction_0.5": rng.random((1, 16, 16, 3), dtype="float32"),
    }
    out = call(disc, pyramid)
    assert sorted(out) == ["feature_maps_0.5", "feature_maps_1", "prediction_map_0.5", "prediction_map_1"]
    # 32 -> conv 29 -> pool 14 -> conv 11 (no pool on the last block); 16 -> 13 -> 6 -> 3.
    assert out["prediction_map_1"].shape == (1, 11, 11, 1)
    assert len(out["feature_maps_0.5"]) == 2 and out["prediction_map_0.5"].shape == (1, 3, 3, 1)
    with pytest.raises(ValueError, match="prediction_0.5"):
        disc({"prediction_1": pyramid["prediction_1"]})


def test_spectral_discriminator_saves_its_vectors(rng, tmp_path):
    disc = MultiScaleDiscriminator(scales=[1], block_expansion=4, num_blocks=2, max_features=8, sn=True, use_kp=True, num_kp=2)
    pyramid = {"prediction_1": rng.random((1, 16, 16, 3), dtype="float32")}
    kp = rng.uniform(-1, 1, size=(1, 2, 2)).astype("float32")
    call(disc, pyramid, kp, training=True)  # move u and v away from their initial values
    disc.save(tmp_path / "disc.keras")
    restored = keras.models.load_model(tmp_path / "disc.keras")
    assert restored.get_config() == disc.get_config()
    for a, b in zip(disc.weights, restored.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    np.testing.assert_array_equal(call(disc, pyramid, kp)["prediction_map_1"], call(restored, pyramid, kp)["prediction_map_1"])


def test_layer_configs_round_trip():
    for layer in (
        SpectralConv2D(4, 4),
        InstanceNorm(epsilon=1e-3),
        DiscriminatorBlock(3, 4, norm=True, pool=True, sn=True),
        Discriminator(num_channels=1, block_expansion=4, num_blocks=2, sn=True, use_kp=True, num_kp=3),
    ):
        config = layer.get_config()
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(restored) is type(layer) and restored.get_config() == config
