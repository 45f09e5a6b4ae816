"""kmt.warping against PyTorch: grid_sample in every mode, its gradients, the resizes, the pyramid."""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from helpers import BACKEND, compiled, run, to_numpy, value_and_grads
from kmt import sampling, warping
from kmt.warping import (
    AntiAliasInterpolation2d,
    ImagePyramid,
    grid_sample,
    grid_sample_keras,
    make_coordinate_grid,
    resize_bilinear,
    upsample_nearest_2x,
)

import torch  # noqa: E402 - the test environment has PyTorch (requirements-dev.txt)
F = torch.nn.functional

COMBINATIONS = list(
    itertools.product(warping.GRID_SAMPLE_MODES, warping.PADDING_MODES, [True, False])
)
IMPLEMENTATIONS = {"grid_sample": grid_sample, "grid_sample_keras": grid_sample_keras}


def nhwc_to_torch(x):
    return torch.tensor(np.asarray(x)).permute(0, 3, 1, 2)


def torch_grid_sample(image, grid, mode, padding_mode, align_corners):
    out = F.grid_sample(
        nhwc_to_torch(image),
        torch.tensor(grid),
        mode=mode,
        padding_mode=padding_mode,
        align_corners=align_corners,
    )
    return out.permute(0, 2, 3, 1).numpy()


def random_case(rng):
    """A seeded random problem: B=1..3, C=1..4, non-square, Ho != H, grid up to 3x outside [-1, 1]."""
    b, c = rng.integers(1, 4), rng.integers(1, 5)
    h, w = rng.integers(2, 10), rng.integers(2, 10)
    ho, wo = rng.integers(1, 8), rng.integers(1, 8)
    image = rng.random((b, h, w, c), dtype="float32")
    grid = rng.uniform(-3.0, 3.0, size=(b, ho, wo, 2)).astype("float32")
    return image, grid


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
@pytest.mark.parametrize("mode,padding_mode,align_corners", COMBINATIONS)
def test_grid_sample_matches_torch(mode, padding_mode, align_corners, implementation):
    sample = IMPLEMENTATIONS[implementation]
    rng = np.random.default_rng(abs(hash((mode, padding_mode, align_corners))) % 2**32)
    for _ in range(5):
        image, grid = random_case(rng)
        ours = run(lambda i, g: sample(i, g, mode, padding_mode, align_corners), image, grid)
        ref = torch_grid_sample(image, grid, mode, padding_mode, align_corners)
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
@pytest.mark.parametrize("mode,padding_mode,align_corners", COMBINATIONS)
def test_grid_sample_gradients_match_torch_autograd(mode, padding_mode, align_corners, implementation):
    sample = IMPLEMENTATIONS[implementation]
    rng = np.random.default_rng(7 + abs(hash((mode, padding_mode, align_corners))) % 2**32)
    for _ in range(3):
        image, grid = random_case(rng)
        weight = rng.normal(size=(grid.shape[0], grid.shape[1], grid.shape[2], image.shape[3]))
        weight = weight.astype("float32")

        def loss(img, grd):
            return sample(img, grd, mode, padding_mode, align_corners) * ops.convert_to_tensor(weight)

        _, (grad_image, grad_grid) = value_and_grads(loss, image, grid)

        timage = nhwc_to_torch(image).requires_grad_()
        tgrid = torch.tensor(grid, requires_grad=True)
        tout = F.grid_sample(timage, tgrid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
        (tout.permute(0, 2, 3, 1) * torch.tensor(weight)).sum().backward()
        ref_image = timage.grad.permute(0, 2, 3, 1).numpy()
        ref_grid = tgrid.grad.numpy()
        np.testing.assert_allclose(grad_image, ref_image, atol=1e-5, rtol=0)
        scale = max(1.0, np.abs(ref_grid).max())
        np.testing.assert_allclose(grad_grid / scale, ref_grid / scale, atol=2e-5, rtol=0)


@pytest.mark.parametrize("mode,padding_mode,align_corners", COMBINATIONS)
def test_compiled_grid_sample_equals_eager(mode, padding_mode, align_corners):
    rng = np.random.default_rng(3)
    image, grid = random_case(rng)
    eager = to_numpy(grid_sample(image, grid, mode, padding_mode, align_corners))
    fast = compiled(lambda i, g: grid_sample(i, g, mode, padding_mode, align_corners))
    np.testing.assert_allclose(to_numpy(fast(image, grid)), eager, atol=1e-6, rtol=0)


def torch_value_and_grads(image, grid, weight, mode="bilinear", padding_mode="zeros", align_corners=True):
    timage = nhwc_to_torch(image).requires_grad_()
    tgrid = torch.tensor(grid, requires_grad=True)
    tout = F.grid_sample(timage, tgrid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    (tout.permute(0, 2, 3, 1) * torch.tensor(weight)).sum().backward()
    return (
        tout.permute(0, 2, 3, 1).detach().numpy(),
        timage.grad.permute(0, 2, 3, 1).numpy(),
        tgrid.grad.numpy(),
    )


@pytest.mark.parametrize("padding_mode,align_corners", [("zeros", True), ("zeros", False), ("border", True)])
def test_backward_in_groups_of_images_matches_torch(monkeypatch, padding_mode, align_corners):
    """The backward pass runs group by group of images once a batch is large; force small groups."""
    monkeypatch.setattr(sampling, "_CHUNK_ELEMENTS", 2 * 5 * 4 * 3)  # groups of 2 of the 6 images
    rng = np.random.default_rng(21)
    image = rng.random((6, 7, 9, 3), dtype="float32")
    grid = rng.uniform(-1.4, 1.4, size=(6, 5, 4, 2)).astype("float32")
    weight = rng.normal(size=(6, 5, 4, 3)).astype("float32")

    def loss(img, grd):
        return grid_sample_keras(img, grd, "bilinear", padding_mode, align_corners) * ops.convert_to_tensor(weight)

    _, (grad_image, grad_grid) = value_and_grads(loss, image, grid)
    _, ref_image, ref_grid = torch_value_and_grads(image, grid, weight, "bilinear", padding_mode, align_corners)
    np.testing.assert_allclose(grad_image, ref_image, atol=1e-5, rtol=0)
    np.testing.assert_allclose(grad_grid, ref_grid, atol=1e-5 * max(1.0, np.abs(ref_grid).max()), rtol=0)


def test_compiled_forward_and_backward_match_torch(monkeypatch):
    """Output and both gradients of the compiled vector-Jacobian product (what training runs)."""
    monkeypatch.setattr(sampling, "_CHUNK_ELEMENTS", 3 * 6 * 6 * 2)  # groups of 3 of the 6 images
    rng = np.random.default_rng(22)
    image = rng.random((6, 8, 10, 2), dtype="float32")
    grid = rng.uniform(-1.3, 1.3, size=(6, 6, 6, 2)).astype("float32")
    weight = rng.normal(size=(6, 6, 6, 2)).astype("float32")
    if BACKEND == "jax":
        import jax

        def vjp(img, grd, cot):
            out, pullback = jax.vjp(grid_sample_keras, img, grd)
            return (out, *pullback(cot))

        out, grad_image, grad_grid = jax.jit(vjp)(image, grid, weight)
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def vjp(img, grd, cot):
            with tf.GradientTape() as tape:
                tape.watch([img, grd])
                out = grid_sample_keras(img, grd)
            return (out, *tape.gradient(out, [img, grd], output_gradients=cot))

        out, grad_image, grad_grid = vjp(*(tf.constant(a) for a in (image, grid, weight)))
    else:
        timage = torch.tensor(image, requires_grad=True)
        tgrid = torch.tensor(grid, requires_grad=True)
        out = grid_sample_keras(timage, tgrid)
        grad_image, grad_grid = torch.autograd.grad(out, [timage, tgrid], grad_outputs=torch.tensor(weight))
    ref_out, ref_image, ref_grid = torch_value_and_grads(image, grid, weight)
    np.testing.assert_allclose(to_numpy(out), ref_out, atol=1e-5, rtol=0)
    np.testing.assert_allclose(to_numpy(grad_image), ref_image, atol=1e-5, rtol=0)
    np.testing.assert_allclose(to_numpy(grad_grid), ref_grid, atol=1e-5 * max(1.0, np.abs(ref_grid).max()), rtol=0)


@pytest.mark.parametrize("align_corners", [True, False])
def test_gradients_on_pixel_centres_edges_and_just_outside_match_torch(align_corners):
    """Positions on integers, where corners enter and leave the image, and a pixel or two outside."""
    h, w = 4, 5
    xs = np.array([-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, -2.0, -1.5, 4.5, 0.5, 3.25])  # pixel units
    ys = np.array([-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, -0.5, 3.5, -2.0, 1.5, 2.75, 0.25])
    xx, yy = np.meshgrid(xs, ys)
    if align_corners:
        grid = np.stack([2 * xx / (w - 1) - 1, 2 * yy / (h - 1) - 1], axis=-1)
    else:
        grid = np.stack([(2 * xx + 1) / w - 1, (2 * yy + 1) / h - 1], axis=-1)
    grid = grid[None].astype("float32")
    rng = np.random.default_rng(23)
    image = rng.random((1, h, w, 3), dtype="float32")
    weight = rng.normal(size=grid.shape[:3] + (3,)).astype("float32")

    def loss(img, grd):
        return grid_sample_keras(img, grd, align_corners=align_corners) * ops.convert_to_tensor(weight)

    out, (grad_image, grad_grid) = value_and_grads(loss, image, grid)
    ref_out, ref_image, ref_grid = torch_value_and_grads(image, grid, weight, align_corners=align_corners)
    np.testing.assert_allclose(out, ref_out * weight, atol=1e-5, rtol=0)
    np.testing.assert_allclose(grad_image, ref_image, atol=1e-5, rtol=0)
    np.testing.assert_allclose(grad_grid, ref_grid, atol=1e-5 * max(1.0, np.abs(ref_grid).max()), rtol=0)


def test_large_batch_matches_torch():
    rng = np.random.default_rng(11)
    image = rng.random((4, 33, 47, 3), dtype="float32")
    theta = np.array([[0.8, 0.3, 0.1], [-0.2, 1.1, -0.05]], dtype="float32")
    base = to_numpy(make_coordinate_grid((40, 29)))
    grid = np.concatenate([base, np.ones(base.shape[:2] + (1,), "float32")], -1) @ theta.T
    grid = np.broadcast_to(grid, (4,) + grid.shape).astype("float32")
    for align_corners in (True, False):
        ours = to_numpy(grid_sample(image, grid, align_corners=align_corners))
        ref = torch_grid_sample(image, grid, "bilinear", "zeros", align_corners)
        np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


def test_identity_grid_reproduces_the_image_with_align_corners():
    rng = np.random.default_rng(5)
    image = rng.random((2, 6, 9, 3), dtype="float32")
    grid = np.broadcast_to(to_numpy(make_coordinate_grid((6, 9))), (2, 6, 9, 2))
    for mode in warping.GRID_SAMPLE_MODES:
        out = to_numpy(grid_sample(image, grid, mode=mode, align_corners=True))
        np.testing.assert_allclose(out, image, atol=1e-6)


def test_make_coordinate_grid_values():
    grid = to_numpy(make_coordinate_grid((3, 5)))
    assert grid.shape == (3, 5, 2)
    np.testing.assert_allclose(grid[0, 0], [-1, -1])
    np.testing.assert_allclose(grid[-1, -1], [1, 1])
    np.testing.assert_allclose(grid[0, :, 0], [-1, -0.5, 0, 0.5, 1])
    np.testing.assert_allclose(grid[:, 0, 1], [-1, 0, 1])
    assert np.all(grid[:, :, 0] == grid[0:1, :, 0])  # x depends on the column only


@pytest.mark.parametrize(
    "image_shape,grid_shape,kwargs,message",
    [
        ((4, 4, 3), (1, 4, 4, 2), {}, r"`image` must be a rank-4 NHWC tensor .* got shape \(4, 4, 3\)"),
        ((2, 4, 4, 3), (3, 4, 4, 2), {}, r"same batch size; got image shape \(2, 4, 4, 3\) and grid shape \(3, 4, 4, 2\)"),
        ((1, 4, 4, 3), (1, 4, 4, 3), {}, r"`grid` must have shape \(batch, out_height, out_width, 2\).* got shape \(1, 4, 4, 3\)"),
        ((1, 4, 4, 3), (1, 4, 4), {}, r"`grid` must have shape .* got shape \(1, 4, 4\)"),
        ((1, 4, 4, 3), (1, 4, 4, 2), {"mode": "bicubic"}, r"`mode` must be one of \('bilinear', 'nearest'\); got 'bicubic'"),
        ((1, 4, 4, 3), (1, 4, 4, 2), {"padding_mode": "wrap"}, r"`padding_mode` must be one of .* got 'wrap'"),
    ],
)
def test_grid_sample_rejects_bad_input(image_shape, grid_shape, kwargs, message):
    image = np.zeros(image_shape, "float32")
    grid = np.zeros(grid_shape, "float32")
    with pytest.raises(ValueError, match=message):
        grid_sample(image, grid, **kwargs)


def test_grid_sample_rejects_integer_images():
    image = np.zeros((1, 4, 4, 3), "uint8")
    with pytest.raises(ValueError, match=r"`image` must be a floating-point tensor; got dtype uint8"):
        grid_sample(image, np.zeros((1, 2, 2, 2), "float32"))


def test_make_coordinate_grid_rejects_bad_sizes():
    with pytest.raises(ValueError, match=r"spatial_size must be \(height, width\)"):
        make_coordinate_grid((4, 4, 4))
    with pytest.raises(ValueError, match=r"at least \(2, 2\).* got \(1, 4\)"):
        make_coordinate_grid((1, 4))


def test_upsample_nearest_2x_matches_interpolate():
    x = np.random.default_rng(0).random((2, 3, 5, 4), dtype="float32")
    ref = F.interpolate(nhwc_to_torch(x), scale_factor=2).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(to_numpy(upsample_nearest_2x(x)), ref)


@pytest.mark.parametrize("size", [(7, 11), (3, 2), (16, 16), (5, 9)])
def test_resize_bilinear_matches_interpolate(size):
    x = np.random.default_rng(1).random((2, 8, 6, 3), dtype="float32")
    ref = F.interpolate(nhwc_to_torch(x), size=size, mode="bilinear", align_corners=False)
    ours = to_numpy(resize_bilinear(x, size))
    np.testing.assert_allclose(ours, ref.permute(0, 2, 3, 1).numpy(), atol=1e-6)


def test_resize_bilinear_gradient_matches_torch():
    rng = np.random.default_rng(2)
    x = rng.random((1, 5, 7, 2), dtype="float32")
    weight = rng.normal(size=(1, 9, 4, 2)).astype("float32")
    _, (grad,) = value_and_grads(lambda t: resize_bilinear(t, (9, 4)) * ops.convert_to_tensor(weight), x)
    tx = nhwc_to_torch(x).requires_grad_()
    out = F.interpolate(tx, size=(9, 4), mode="bilinear", align_corners=False)
    (out.permute(0, 2, 3, 1) * torch.tensor(weight)).sum().backward()
    np.testing.assert_allclose(grad, tx.grad.permute(0, 2, 3, 1).numpy(), atol=1e-6)


def torch_anti_alias(x, scale):
    """The reference's band-limited downsampling written directly in PyTorch, for comparison."""
    sigma = (1 / scale - 1) / 2
    size = 2 * round(sigma * 4) + 1
    axis = torch.arange(size, dtype=torch.float64)
    taps = torch.exp(-((axis - (size - 1) / 2) ** 2) / (2 * sigma**2))
    kernel = (taps[:, None] * taps[None, :]) / (taps.sum() ** 2)
    channels = x.shape[1]
    kernel = kernel.float()[None, None].repeat(channels, 1, 1, 1)
    half = size // 2
    out = F.conv2d(F.pad(x, (half, half, half, half)), kernel, groups=channels)
    step = int(1 / scale)
    return out[:, :, ::step, ::step]


@pytest.mark.parametrize("scale", [0.5, 0.25, 0.125])
@pytest.mark.parametrize("hw", [(32, 32), (27, 40)])
def test_anti_alias_matches_reference_definition(scale, hw):
    x = np.random.default_rng(4).random((2,) + hw + (3,), dtype="float32")
    layer = AntiAliasInterpolation2d(3, scale)
    ours = to_numpy(layer(x))
    ref = torch_anti_alias(nhwc_to_torch(x), scale).permute(0, 2, 3, 1).numpy()
    assert ours.shape == ref.shape
    assert layer.compute_output_shape(x.shape) == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_anti_alias_scale_one_is_identity():
    x = np.random.default_rng(0).random((1, 5, 5, 2), dtype="float32")
    np.testing.assert_array_equal(to_numpy(AntiAliasInterpolation2d(2, 1.0)(x)), x)


def test_anti_alias_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"`scale` must be in \(0, 1\]; got 1.5"):
        AntiAliasInterpolation2d(3, 1.5)
    layer = AntiAliasInterpolation2d(3, 0.5)
    with pytest.raises(ValueError, match=r"`x` must have 3 channels .* got shape \(1, 8, 8, 4\)"):
        layer(np.zeros((1, 8, 8, 4), "float32"))


@pytest.mark.parametrize("fixture_name", ["fomm_tiny", "fomm_tiny_align_corners"])
def test_image_pyramid_matches_fixture(fixture_name, request):
    data = request.getfixturevalue(fixture_name)
    source = np.transpose(data["inputs/source"], (0, 2, 3, 1))
    pyramid = ImagePyramid([1, 0.5, 0.25, 0.125], channels=source.shape[-1])
    out = pyramid(source)
    assert sorted(out) == sorted(k.split("/", 1)[1] for k in data.files if k.startswith("pyramid/"))
    for key, value in out.items():
        ref = np.transpose(data[f"pyramid/{key}"], (0, 2, 3, 1))
        # Pyramid values are simple enough for 1e-5 relative (fixtures README).
        np.testing.assert_allclose(to_numpy(value), ref, atol=1e-5 * max(1.0, np.abs(ref).max()), rtol=0)


def test_layers_round_trip_through_their_config():
    for layer in (AntiAliasInterpolation2d(3, 0.25, name="aa"), ImagePyramid([1, 0.5], 3, name="pyr")):
        restored = keras.layers.deserialize(keras.layers.serialize(layer))
        assert type(restored) is type(layer)
        assert restored.get_config() == layer.get_config()
    x = np.random.default_rng(0).random((1, 16, 16, 3), dtype="float32")
    a = ImagePyramid([1, 0.5], 3)
    b = keras.layers.deserialize(keras.layers.serialize(a))
    for key in a(x):
        np.testing.assert_array_equal(to_numpy(a(x)[key]), to_numpy(b(x)[key]))


def test_gradient_descent_through_grid_sample_recovers_an_affine_warp():
    """The grid gradient is usable: fitting theta by gradient descent finds the true shift."""
    base = to_numpy(make_coordinate_grid((16, 16)))
    blobs = np.exp(-((base[..., 0] - 0.3) ** 2 + (base[..., 1] + 0.2) ** 2) / 0.1)
    blobs += 0.5 * np.exp(-((base[..., 0] + 0.4) ** 2 + (base[..., 1] - 0.3) ** 2) / 0.05)
    image = blobs[None, :, :, None].astype("float32")
    homogeneous = np.concatenate([base, np.ones((16, 16, 1), "float32")], -1)
    true_theta = np.array([[1.0, 0.0, 0.15], [0.0, 1.0, -0.1]], "float32")
    target = to_numpy(grid_sample(image, (homogeneous @ true_theta.T)[None], padding_mode="border"))

    def loss_of(theta):
        grid = ops.einsum("hwk,jk->hwj", ops.convert_to_tensor(homogeneous), theta)[None]
        warped = grid_sample(ops.convert_to_tensor(image), grid, padding_mode="border")
        return ops.mean((warped - ops.convert_to_tensor(target)) ** 2)

    theta = np.eye(2, 3, dtype="float32")
    start, _ = value_and_grads(loss_of, theta)
    for _ in range(150):
        loss, (grad,) = value_and_grads(loss_of, theta)
        theta = theta - 2.0 * grad
    assert float(loss) < 0.01 * float(start)
    np.testing.assert_allclose(theta, true_theta, atol=0.02)


def test_each_backend_reports_its_grid_sample_implementation():
    expected = {
        "torch": "torch.nn.functional.grid_sample",
        "tensorflow": "kmt.warping.grid_sample_keras",
        "jax": "kmt.warping.grid_sample_keras",
    }
    assert warping.grid_sample_implementation() == expected[BACKEND]
