"""kmt.layers against PyTorch: BatchNorm, the conv blocks, the residual block and the hourglass."""

import keras
import numpy as np
import pytest

from fomm_reference import call, nchw, nhwc
from helpers import run, to_numpy, value_and_grads
from kmt.layers import (
    BatchNorm,
    Decoder,
    DownBlock2d,
    Encoder,
    Hourglass,
    ResBlock2d,
    SameBlock2d,
    TorchUniform,
    UpBlock2d,
    conv2d,
)
from kmt.fast_layers import (
    conv_nhwc,
    conv_norm_relu,
    convolution_dtype,
    current_convolution_dtype,
    folding_pays,
    phases_pay,
    upsample_conv3x3,
)

import torch  # noqa: E402 - the test environment has PyTorch (requirements-dev.txt)
F = torch.nn.functional


def t(x):
    return torch.tensor(np.asarray(x))


def conv_weights(conv):
    """A kmt Conv2D's kernel (as OIHW) and bias, as torch tensors."""
    return t(np.transpose(to_numpy(conv.kernel), (3, 2, 0, 1))), t(to_numpy(conv.bias))


def randomize(layer, rng):
    """Give every variable random values (BatchNorm variances positive), so the tests see all of them."""
    for variable in layer.variables:
        value = rng.normal(size=variable.shape).astype("float32")
        if "variance" in variable.path:
            value = np.abs(value) + 0.5
        variable.assign(value)


def torch_conv_bn_relu(x, block, training):
    weight, bias = conv_weights(block.conv)
    out = F.conv2d(x, weight, bias, padding=block.padding)
    out = torch_batch_norm(out, block.norm, training)
    return F.relu(out)


def torch_batch_norm(x, norm, training):
    return F.batch_norm(
        x,
        t(to_numpy(norm.moving_mean)).clone(),
        t(to_numpy(norm.moving_variance)).clone(),
        t(to_numpy(norm.gamma)),
        t(to_numpy(norm.beta)),
        training=training,
        momentum=0.1,
        eps=1e-5,
    )


@pytest.mark.parametrize("training", [False, True])
def test_batch_norm_matches_torch_outputs_and_running_statistics(rng, training):
    x = rng.normal(2.0, 3.0, size=(3, 5, 4, 6)).astype("float32")
    norm = BatchNorm()
    norm.build(x.shape)
    randomize(norm, rng)
    running_mean = t(to_numpy(norm.moving_mean)).clone()
    running_var = t(to_numpy(norm.moving_variance)).clone()
    expected = F.batch_norm(
        t(nchw(x)), running_mean, running_var, t(to_numpy(norm.gamma)), t(to_numpy(norm.beta)),
        training=training, momentum=0.1, eps=1e-5,
    )
    ours = call(norm, x, training=training)
    np.testing.assert_allclose(ours, nhwc(expected.numpy()), atol=2e-5, rtol=1e-5)
    # PyTorch updates the running variance with the unbiased batch variance.
    np.testing.assert_allclose(to_numpy(norm.moving_mean), running_mean.numpy(), atol=1e-5, rtol=1e-6)
    np.testing.assert_allclose(to_numpy(norm.moving_variance), running_var.numpy(), atol=1e-5, rtol=1e-6)


def test_batch_norm_defaults_are_pytorch_ones():
    norm = BatchNorm()
    assert norm.epsilon == 1e-5 and norm.momentum == 0.9
    restored = BatchNorm.from_config(norm.get_config())
    assert (restored.epsilon, restored.momentum) == (1e-5, 0.9)


# Wide inputs on small maps keep BatchNorm apart from the kernel in inference; narrow ones fold it.
@pytest.mark.parametrize("channels,size", [(3, (6, 8)), (16, (2, 4))], ids=["folded", "unfolded"])
@pytest.mark.parametrize("cls,scale", [(SameBlock2d, 1), (DownBlock2d, 0.5), (UpBlock2d, 2)])
@pytest.mark.parametrize("training", [False, True])
def test_conv_blocks_match_torch(rng, cls, scale, training, channels, size):
    block = cls(channels, 5, kernel_size=3, padding=1)
    block.build((None, None, None, channels))
    randomize(block, rng)
    x = rng.normal(size=(2, *size, channels)).astype("float32")
    expected = t(nchw(x))
    if cls is UpBlock2d:
        expected = F.interpolate(expected, scale_factor=2)
    expected = torch_conv_bn_relu(expected, block, training)
    if cls is DownBlock2d:
        expected = F.avg_pool2d(expected, 2)
    ours = call(block, x, training=training)
    assert ours.shape == (2, int(size[0] * scale), int(size[1] * scale), 5)
    np.testing.assert_allclose(ours, nhwc(expected.numpy()), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("padding,kernel_size", [("same", 3), ("same", 7), ("valid", 4), ("same", 4)])
def test_conv_nhwc_matches_keras_conv_and_its_gradients(rng, padding, kernel_size):
    x = rng.normal(size=(2, 9, 8, 3)).astype("float32")
    kernel = rng.normal(size=(kernel_size, kernel_size, 3, 5)).astype("float32")
    out_shape = (2, 9, 8, 5) if padding == "same" else (2, 9 - kernel_size + 1, 8 - kernel_size + 1, 5)
    weight = keras.ops.convert_to_tensor(rng.normal(size=out_shape).astype("float32"))
    out, grads = value_and_grads(lambda a, b: conv_nhwc(a, b, padding) * weight, x, kernel)
    expected, expected_grads = value_and_grads(lambda a, b: keras.ops.conv(a, b, padding=padding) * weight, x, kernel)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    for grad, expected_grad in zip(grads, expected_grads):
        np.testing.assert_allclose(grad, expected_grad, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 1, 1, 2), (1, 32, 33, 4)])
def test_upsample_conv3x3_is_conv_of_the_upsampled_image(rng, shape):
    x = rng.normal(size=shape).astype("float32")
    kernel = rng.normal(size=(3, 3, shape[-1], 6)).astype("float32")
    expected = F.conv2d(F.interpolate(t(nchw(x)), scale_factor=2), t(np.transpose(kernel, (3, 2, 0, 1))), padding=1)
    ours = run(upsample_conv3x3, x, kernel)
    assert ours.shape == (shape[0], 2 * shape[1], 2 * shape[2], 6)
    np.testing.assert_allclose(ours, nhwc(expected.numpy()), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("training", [False, True])
def test_up_block_on_large_inputs_matches_torch(rng, training):
    """From 32 x 32 up, UpBlock2d runs upsample_conv3x3; the numbers stay PyTorch's."""
    block = UpBlock2d(3, 4)
    block.build((None, None, None, 3))
    randomize(block, rng)
    x = rng.normal(size=(2, 32, 40, 3)).astype("float32")
    expected = torch_conv_bn_relu(F.interpolate(t(nchw(x)), scale_factor=2), block, training)
    np.testing.assert_allclose(call(block, x, training=training), nhwc(expected.numpy()), atol=3e-5, rtol=1e-5)


def test_same_block_with_a_7x7_kernel_keeps_the_size(rng):
    block = SameBlock2d(3, 4, kernel_size=7, padding=3)
    assert call(block, rng.normal(size=(1, 9, 9, 3)).astype("float32")).shape == (1, 9, 9, 4)


@pytest.mark.parametrize("size", [5, 8], ids=["unfolded", "folded"])
@pytest.mark.parametrize("training", [False, True])
def test_res_block_is_pre_activation_and_matches_torch(rng, training, size):
    block = ResBlock2d(4, kernel_size=3, padding=1)
    block.build((None, None, None, 4))
    randomize(block, rng)
    x = rng.normal(size=(2, size, size, 4)).astype("float32")
    tx = t(nchw(x))
    w1, b1 = conv_weights(block.conv1)
    w2, b2 = conv_weights(block.conv2)
    out = F.conv2d(F.relu(torch_batch_norm(tx, block.norm1, training)), w1, b1, padding=1)
    out = F.conv2d(F.relu(torch_batch_norm(out, block.norm2, training)), w2, b2, padding=1)
    np.testing.assert_allclose(call(block, x, training=training), nhwc((out + tx).numpy()), atol=3e-5, rtol=1e-5)


def test_encoder_widths_and_resolutions(rng):
    encoder = Encoder(block_expansion=4, in_features=3, num_blocks=3, max_features=10)
    outs = call(encoder, rng.normal(size=(1, 16, 16, 3)).astype("float32"))
    assert [o.shape for o in outs] == [(1, 16, 16, 3), (1, 8, 8, 8), (1, 4, 4, 10), (1, 2, 2, 10)]


def test_decoder_widths_follow_the_reference():
    decoder = Decoder(block_expansion=4, in_features=3, num_blocks=3, max_features=10)
    widths = [(b.in_features, b.out_features) for b in decoder.up_blocks]
    # Coarsest first: its input is the last encoder output, later ones take [upsampled, skip].
    assert widths == [(10, 10), (20, 8), (16, 4)]
    assert decoder.out_filters == 7


def test_hourglass_output_is_upsampled_features_then_the_input(rng):
    hourglass = Hourglass(block_expansion=4, in_features=3, num_blocks=2, max_features=16)
    x = rng.normal(size=(2, 8, 12, 3)).astype("float32")
    out = call(hourglass, x)
    assert out.shape == (2, 8, 12, hourglass.out_filters) and hourglass.out_filters == 7
    # The last concatenation is [upsampled, skip] with the input itself as the top skip.
    np.testing.assert_array_equal(out[..., 4:], x)
    assert np.all(out[..., :4] >= 0)  # the last up block ends in a ReLU


def test_hourglass_rejects_sizes_it_cannot_halve(rng):
    hourglass = Hourglass(block_expansion=4, in_features=3, num_blocks=2)
    with pytest.raises(ValueError, match="divisible by 4"):
        hourglass(rng.normal(size=(1, 6, 8, 3)).astype("float32"))


def test_blocks_reject_the_wrong_number_of_channels():
    block = SameBlock2d(3, 4)
    with pytest.raises(ValueError, match="expects 3 input channels"):
        block.build((None, 8, 8, 5))


def test_conv2d_padding_rules():
    assert conv2d(3, 4, 7, 3).padding == "same"
    assert conv2d(3, 4, (4, 4), 0).padding == "valid"
    with pytest.raises(ValueError, match="padding"):
        conv2d(3, 4, 3, 2)


def test_conv2d_initialisation_is_pytorchs_default():
    conv = conv2d(6, 8, 3, 1)
    conv.build((None, None, None, 6))
    bound = 1 / np.sqrt(6 * 3 * 3)
    kernel, bias = to_numpy(conv.kernel), to_numpy(conv.bias)
    assert 0.8 * bound < np.abs(kernel).max() <= bound
    assert np.abs(bias).max() <= bound and np.unique(bias).size == bias.size


def test_torch_uniform_is_seeded_and_serialisable():
    init = TorchUniform(0.25, seed=3)
    again = TorchUniform.from_config(init.get_config())
    np.testing.assert_array_equal(to_numpy(init((4, 5))), to_numpy(again((4, 5))))
    assert np.abs(to_numpy(init((100,)))).max() <= 0.25


@pytest.mark.parametrize(
    "layer",
    [
        SameBlock2d(3, 5, kernel_size=7, padding=3),
        DownBlock2d(3, 5),
        UpBlock2d(3, 5),
        ResBlock2d(4),
        Encoder(4, 3, 2, 16),
        Decoder(4, 3, 2, 16),
        Hourglass(4, 3, 2, 16),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_get_config_round_trip(layer):
    config = layer.get_config()
    restored = type(layer).from_config(config)
    assert restored.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config


def test_convolution_dtype_runs_the_product_in_bfloat16_and_restores_float32():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2, 9, 7, 5)).astype("float32")
    kernel = rng.normal(size=(3, 3, 5, 4)).astype("float32")
    exact = to_numpy(conv_nhwc(x, kernel, padding="same"))
    with convolution_dtype("bfloat16"):
        assert current_convolution_dtype() == "bfloat16"
        fast = conv_nhwc(x, kernel, padding="same")
    assert current_convolution_dtype() == "float32"
    assert keras.backend.standardize_dtype(fast.dtype) == "float32"
    relative = np.abs(to_numpy(fast) - exact).max() / np.abs(exact).max()
    assert 1e-5 < relative < 2e-2, relative
    np.testing.assert_array_equal(to_numpy(conv_nhwc(x, kernel, padding="same")), exact)
    with pytest.raises(ValueError, match="`dtype` must be one of .*got 'float16'"):
        with convolution_dtype("float16"):
            pass


def test_fast_paths_decide_by_size(rng):
    conv = conv2d(4, 2, 3, 1)
    conv.build((None, None, None, 4))
    assert folding_pays(np.zeros((1, 6, 6, 4), "float32"), conv)  # 36 pixels >= 3 * 3 * 4 kernel taps
    assert not folding_pays(np.zeros((1, 5, 7, 4), "float32"), conv)
    assert phases_pay(np.zeros((1, 32, 32, 1), "float32")) and not phases_pay(np.zeros((1, 31, 32, 1), "float32"))


@pytest.mark.parametrize("size", [(2, 3), (8, 8)], ids=["unfolded", "folded"])
def test_conv_norm_relu_in_inference_is_the_layers_one_after_the_other(rng, size):
    block = SameBlock2d(3, 4)
    block.build((None, None, None, 3))
    randomize(block, rng)
    x = rng.normal(size=(2, *size, 3)).astype("float32")
    fast = run(lambda a: conv_norm_relu(block.conv, block.norm, a, training=False), x)
    plain = run(lambda a: keras.ops.relu(block.norm(block.conv(a), training=False)), x)
    np.testing.assert_allclose(fast, plain, atol=1e-5, rtol=1e-5)


def test_layers_still_export_the_names_that_moved():
    import kmt.fast_layers
    import kmt.layers

    for name in ("Conv2D", "conv_nhwc", "convolution_dtype", "upsample_conv3x3", "batch_norm_affine",
                 "fold_batch_norm"):
        assert getattr(kmt.layers, name) is getattr(kmt.fast_layers, name), name
        assert name in kmt.layers.__all__


def kmt_private_names():
    """Every ``_name`` kmt defines: functions, classes, methods, assigned names and attributes."""
    import ast
    import pathlib

    import kmt

    names = set()
    for path in pathlib.Path(kmt.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_block_classes_use_no_private_kmt_name():
    """The blocks are chapter 2's lesson: their code calls public functions (speed paths in kmt.fast_layers)."""
    import inspect
    import re

    import kmt.layers

    private = kmt_private_names()
    assert "_native_conv" in private  # the scan sees kmt's private names
    classes = [kmt.layers.BatchNorm, kmt.layers.ConvNormBlock, SameBlock2d, DownBlock2d, UpBlock2d, ResBlock2d,
               kmt.layers.HourglassPart, Encoder, Decoder, Hourglass, TorchUniform]
    for cls in classes:
        used = set(re.findall(r"(?<![\w.])_[A-Za-z]\w*|(?<=\.)_[A-Za-z]\w*", inspect.getsource(cls)))
        assert not used & private, (cls.__name__, sorted(used & private))
