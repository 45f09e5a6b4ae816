"""The perceptual network of FOMM (chapter 6): VGG19 activations relu1_1 ... relu5_1.

Two families of ImageNet VGG19 weights exist, and each expects its own input:

* Keras' ``keras.applications.VGG19`` weights (Caffe convention): BGR, pixel
  values in [0, 255] minus the ImageNet mean ``(103.939, 116.779, 123.68)``.
* torchvision's ``vgg19`` weights (``vgg19-dcbb9e9d.pth``), which the paper's
  code uses: RGB in [0, 1] minus the mean ``(0.485, 0.456, 0.406)``, divided
  by the standard deviation ``(0.229, 0.224, 0.225)``.

:class:`VGG19Features` takes either and applies the matching normalisation, so
a user with the torchvision file computes the paper's perceptual loss. Images
are NHWC float32 in [0, 1]; conv kernels of a torchvision state dict are OIHW
(``features.<i>.weight``) and become Keras' HWIO.
"""

import os
import re
import warnings
from collections.abc import Mapping

import keras
import numpy as np
from keras import ops

__all__ = [
    "VGG19Features",
    "vgg19_weights_path",
    "seeded_vgg19_state_dict",
    "TORCHVISION_VGG19_CONVS",
    "VGG19_LAYERS",
    "CAFFE_BGR_MEAN",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

VGG19_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG19_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision's ``vgg19().features`` index of each convolution -> the Keras VGG19 layer holding it,
# with the (in, out) channels: 3x3 convs with padding 1, ReLU after each, 2x2 max pools between blocks.
_BLOCKS = ((1, 2, 3, 64), (2, 2, 64, 128), (3, 4, 128, 256), (4, 4, 256, 512), (5, 4, 512, 512))


def _torchvision_convs():
    convs, index = {}, 0
    for block, count, in_channels, out_channels in _BLOCKS:
        for conv in range(1, count + 1):
            convs[index] = (f"block{block}_conv{conv}", in_channels if conv == 1 else out_channels, out_channels)
            index += 2  # conv, ReLU
        index += 1  # max pool
    return convs


TORCHVISION_VGG19_CONVS = _torchvision_convs()
"""``{features index: (Keras layer name, in channels, out channels)}`` of the 16 convolutions."""


def _convs_needed(num_layers):
    """The torchvision indices of the convolutions up to relu``num_layers``_1."""
    last = VGG19_LAYERS[num_layers - 1]
    indices = sorted(TORCHVISION_VGG19_CONVS)
    return [i for i in indices if i <= next(j for j in indices if TORCHVISION_VGG19_CONVS[j][0] == last)]


def vgg19_weights_path():
    """Where Keras keeps the ImageNet VGG19 weights: ``$KERAS_HOME/models`` (``~/.keras/models``)."""
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(home, "models", VGG19_WEIGHTS_FILE)


def _uniform(seed, stream, count):
    """``count`` floats uniform in (-1, 1), the same on every platform: a SplitMix64 hash of a counter."""
    with np.errstate(over="ignore"):
        x = np.arange(count, dtype=np.uint64) + np.uint64(((seed * 1000 + stream) << 32) % 2**64)
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return ((x >> np.uint64(40)).astype(np.float64) + 0.5) / 2.0**23 - 1.0


def seeded_vgg19_state_dict(seed=0, num_layers=5):
    """Random VGG19 weights in torchvision's layout, bit-identical on every platform and NumPy version.

    Keys ``features.<i>.weight`` ``(O, I, 3, 3)`` and ``features.<i>.bias`` ``(O,)``
    of the convolutions up to relu``num_layers``_1; kernels are He-uniform
    (``limit = sqrt(6 / fan_in)``), biases uniform in (-0.05, 0.05). The numbers
    come from an integer hash of ``(seed, key, position)``, not from a random
    number library, so a stored seed stands for the weights themselves: useful to
    compare implementations without shipping 50 MB of random numbers.
    """
    state = {}
    for stream, index in enumerate(_convs_needed(int(num_layers))):
        _, in_channels, out_channels = TORCHVISION_VGG19_CONVS[index]
        shape = (out_channels, in_channels, 3, 3)
        limit = np.sqrt(6.0 / (in_channels * 9))
        weight = _uniform(seed, 2 * stream, int(np.prod(shape))) * limit
        state[f"features.{index}.weight"] = weight.reshape(shape).astype("float32")
        state[f"features.{index}.bias"] = (_uniform(seed, 2 * stream + 1, out_channels) * 0.05).astype("float32")
    return state


def _import_torch(path):
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"Reading the PyTorch file {path!r} needs PyTorch (`pip install torch`, the CPU build is enough); "
            "or load it elsewhere and pass the arrays as a dict: VGG19Features(weights={'features.0.weight': ...})."
        ) from error
    return torch


def _read_torch_file(path):
    torch = _import_torch(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"`weights`: {path!r} holds a {type(state).__name__}, not a state dict of VGG19 weights.")
    return {key: value.detach().cpu().numpy() for key, value in state.items() if hasattr(value, "detach")}


def _canonical_keys(state):
    """torchvision keys as they are; the reference's ``Vgg19`` module keys (``slice<k>.<i>.weight``) renamed."""
    renamed = {}
    for key, value in state.items():
        match = re.fullmatch(r"slice\d\.(\d+)\.(weight|bias)", key)
        renamed[f"features.{match.group(1)}.{match.group(2)}" if match else key] = value
    return renamed


@keras.saving.register_keras_serializable(package="kmt")
class VGG19Features(keras.Model):
    """VGG19 activations relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 of NHWC images in [0, 1].

    ``weights`` chooses the features:

    * ``"imagenet"``: the ImageNet weights of ``keras.applications.VGG19``, read from
      ``weights_path`` or the Keras cache (:func:`vgg19_weights_path`). When the file
      is missing this **does not download**: it warns and falls back to random
      features, unless ``download=True`` lets Keras fetch the file.
    * ``"random"``: seeded random features, on purpose (no warning).
    * a path to a ``.h5``/``.weights.h5`` file of the notop Keras VGG19.
    * torchvision's VGG19, the weights the paper's code uses: a path to a ``.pth``
      file (``vgg19-dcbb9e9d.pth``, read with PyTorch) or a dict of arrays
      ``{"features.<i>.weight": (O, I, 3, 3), "features.<i>.bias": (O,), ...}``.
      Only the convolutions up to relu``num_layers``_1 are read; other keys
      (``classifier.*``) are ignored.

    Inputs are normalised the way the weights expect: Keras' weights get BGR x 255
    minus the ImageNet mean (Caffe style); torchvision's weights get RGB minus
    ``IMAGENET_MEAN`` divided by ``IMAGENET_STD``, as the reference's ``Vgg19``
    does. ``input_normalization`` (``"caffe"`` or ``"torchvision"``) overrides the
    choice. ``self.pretrained`` says whether weights were loaded (not drawn at
    random). ``num_layers`` (1 to 5) stops the network after relu``num_layers``_1:
    a loss that weights the deeper layers by zero need not compute them.
    """

    def __init__(self, weights="imagenet", weights_path=None, download=False, seed=0, num_layers=5,
                 input_normalization=None, **kwargs):
        super().__init__(**kwargs)
        if not 1 <= int(num_layers) <= len(VGG19_LAYERS):
            raise ValueError(f"`num_layers` must be between 1 and {len(VGG19_LAYERS)}; got {num_layers!r}.")
        torch_layout = isinstance(weights, Mapping) or (
            isinstance(weights, (str, os.PathLike)) and str(weights).endswith((".pth", ".pt"))
        )
        if input_normalization is None:
            input_normalization = "torchvision" if torch_layout else "caffe"
        if input_normalization not in ("caffe", "torchvision"):
            raise ValueError(
                f"`input_normalization` must be 'caffe' or 'torchvision'; got {input_normalization!r}."
            )
        # A dict of arrays is not kept: once loaded, its values are the model's weights.
        self.weights_choice = os.fspath(weights) if isinstance(weights, (str, os.PathLike)) else "arrays"
        self.weights_path = weights_path
        self.download = bool(download)
        self.seed = int(seed)
        self.num_layers = int(num_layers)
        self.input_normalization = input_normalization
        self.pretrained = False
        if torch_layout:  # read and check the arrays before building anything
            weights = self._torchvision_arrays(weights)
        base = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
        outputs = [base.get_layer(n).output for n in VGG19_LAYERS[: self.num_layers]]
        self.features = keras.Model(base.input, outputs, name="vgg19_relu_x_1")
        if torch_layout:
            self._load_torchvision(base, weights)
        else:
            self._randomize(base)
            self._load(base)
        self.features.trainable = False

    def _randomize(self, base):
        """Glorot-uniform kernels and zero biases drawn from ``seed``: random features, reproducibly."""
        rng = np.random.default_rng(self.seed)
        for layer in base.layers:
            if isinstance(layer, keras.layers.Conv2D):
                kernel, bias = layer.get_weights()
                receptive = kernel.shape[0] * kernel.shape[1]
                fan_in, fan_out = receptive * kernel.shape[2], receptive * kernel.shape[3]
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                layer.set_weights([rng.uniform(-limit, limit, kernel.shape).astype("float32"), np.zeros_like(bias)])

    def _torchvision_arrays(self, weights):
        """``{keras layer name: [HWIO kernel, bias]}`` from a torchvision state dict or ``.pth`` path, checked."""
        if not isinstance(weights, Mapping):
            if not os.path.exists(weights):
                raise ValueError(f"`weights` names a file that does not exist: {os.fspath(weights)!r}.")
            weights = _read_torch_file(os.fspath(weights))
        state, layers = _canonical_keys(weights), {}
        for index in _convs_needed(self.num_layers):
            name, in_channels, out_channels = TORCHVISION_VGG19_CONVS[index]
            arrays = []
            for suffix, expected in (("weight", (out_channels, in_channels, 3, 3)), ("bias", (out_channels,))):
                key = f"features.{index}.{suffix}"
                if key not in state:
                    raise ValueError(
                        f"`weights` lacks {key!r} (shape {expected}), which relu{self.num_layers}_1 needs; "
                        f"a torchvision VGG19 state dict has features.<i>.weight/bias keys. Got keys: "
                        f"{sorted(state)[:6]}{' ...' if len(state) > 6 else ''}."
                    )
                value = np.asarray(state[key], dtype="float32")
                if value.shape != expected:
                    raise ValueError(
                        f"`weights[{key!r}]` must have shape {expected} (torchvision's layout, "
                        f"{'OIHW' if suffix == 'weight' else 'out channels'}); got {value.shape}."
                    )
                arrays.append(value)
            layers[name] = [np.transpose(arrays[0], (2, 3, 1, 0)), arrays[1]]
        return layers

    def _load_torchvision(self, base, layers):
        """Set the checked arrays of :meth:`_torchvision_arrays` into the Keras layers."""
        for name, arrays in layers.items():
            base.get_layer(name).set_weights(arrays)
        self.pretrained = True

    def _load(self, base):
        choice = self.weights_choice
        if choice == "random":
            return
        if choice not in ("imagenet",):
            path = choice
        else:
            path = self.weights_path or vgg19_weights_path()
        if os.path.exists(path):
            base.load_weights(path)
            self.pretrained = True
            return
        if choice == "imagenet" and self.download:
            downloaded = keras.applications.VGG19(include_top=False, weights="imagenet")
            base.set_weights(downloaded.get_weights())
            self.pretrained = True
            return
        if choice != "imagenet":
            raise ValueError(f"`weights` names a file that does not exist: {path!r}.")
        warnings.warn(
            f"VGG19 ImageNet weights not found at {path}: the perceptual loss uses RANDOM VGG19 "
            "features. Pass VGG19Features(download=True) (or run `kmt.losses.VGG19Features("
            "download=True)` once with network access) to fetch them into the Keras cache, "
            "weights_path=... to use a local copy, or weights='vgg19-dcbb9e9d.pth' for torchvision's.",
            stacklevel=3,
        )

    def call(self, images):
        if self.input_normalization == "torchvision":
            mean = ops.convert_to_tensor(IMAGENET_MEAN, images.dtype)
            x = (images - mean) / ops.convert_to_tensor(IMAGENET_STD, images.dtype)
        else:
            x = ops.flip(images, axis=-1) * 255.0 - ops.convert_to_tensor(CAFFE_BGR_MEAN, images.dtype)
        features = self.features(x)
        return list(features) if isinstance(features, (list, tuple)) else [features]

    def get_config(self):
        # A dict of arrays is not configuration: the loaded values travel as the model's weights.
        weights = "random" if self.weights_choice == "arrays" else self.weights_choice
        return {
            **super().get_config(),
            "weights": weights,
            "weights_path": self.weights_path,
            "download": False,
            "seed": self.seed,
            "num_layers": self.num_layers,
            "input_normalization": self.input_normalization,
        }
