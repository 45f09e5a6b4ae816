"""The evaluator networks behind AKD, MKR and AED (chapter 8), trained on synthetic ground truth.

The paper measures animations with networks trained for something else: a face or pose
landmark detector (AKD, MKR) and an identity network (AED). kmt has no real data, so it
trains two small networks on the synthetic videos of :mod:`kmt.data`:

* :class:`LandmarkDetector` sees an image and finds the family's ``K`` named landmarks
  (``(B, K, 2)`` as (x, y) in [-1, 1], the project convention) through one heatmap per
  landmark and a soft-argmax, with a probability ``(B, K)`` that each one is visible. It is
  supervised by the renderer's true landmarks, visibility and part labels, which the FOMM
  keypoint detector never sees.
* :class:`IdentityEmbedding` maps an image to an L2-normalised vector ``(B, D)``; it is
  trained as a classifier over training identities (a cosine head that is then dropped),
  so frames of one identity land close together whatever the pose.

Both are small NHWC convnets in ``keras.ops``. :class:`Evaluators` holds a pair with their
family and image size and runs them batched and compiled on any frame size (frames are
resized to the networks' size; keypoints are resolution-free). One ``.kmt-eval`` file (a
zip of a JSON description and two ``.weights.h5``) stores a pair: :func:`save_evaluators`,
:func:`load_evaluators`. :mod:`kmt.evaluator_training` trains them on the synthetic stream
and measures them on identities and motions never seen in training.
"""

import json
import os

import keras
import numpy as np
from keras import ops

from kmt.archive import open_archive, read_description, write_archive
from kmt.checkpoint import weights_from_bytes, weights_to_bytes
from kmt.keypoints import soft_argmax, spatial_softmax
from kmt.layers import TorchUniform

__all__ = ["LandmarkDetector", "IdentityEmbedding", "Evaluators", "save_evaluators", "load_evaluators",
           "pretrained_path", "train_command", "FORMAT", "VERSION"]

FORMAT = "kmt-evaluators"
VERSION = 1
PRETRAINED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")


def _check_images(x, name="images", multiple=8):
    shape = tuple(x.shape)
    if len(shape) != 4 or shape[-1] != 3 or (shape[1] or 0) % multiple or (shape[2] or 0) % multiple:
        raise ValueError(f"`{name}` must be RGB images (batch, height, width, 3) with height and width "
                         f"multiples of {multiple}; got shape {shape}.")


def _uniform(fan_in, fan_out=0):
    """He-uniform (``fan_out=0``) or Glorot-uniform values, drawn with NumPy: free on every backend."""
    return TorchUniform(float(np.sqrt(6.0 / (fan_in + fan_out))))


def _conv(filters, in_channels, kernel=3, strides=1, use_bias=False, name=None):
    return keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=use_bias, name=name,
                               kernel_initializer=_uniform(kernel * kernel * in_channels),
                               bias_initializer=TorchUniform(0.0))


class _Block(keras.layers.Layer):
    """Convolution, batch norm, ReLU."""

    def __init__(self, filters, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.strides = int(filters), int(strides)
        self.norm = keras.layers.BatchNormalization(momentum=0.9, name="norm")

    def build(self, input_shape):
        self.conv = _conv(self.filters, input_shape[-1], strides=self.strides, name="conv")
        self.conv.build(input_shape)
        self.norm.build(self.conv.compute_output_shape(input_shape))

    def call(self, x, training=None):
        return ops.relu(self.norm(self.conv(x), training=training))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}


def _upsample(x):
    return ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)


@keras.saving.register_keras_serializable(package="kmt")
class LandmarkDetector(keras.Model):
    """Landmarks and their visibility: images ``(B, H, W, 3)`` in [0, 1] -> a dict.

    A three-level encoder (strides 2, 4, 8) and a decoder back to stride 2 give, at
    ``h x w = H/2 x W/2``, two maps per landmark: logits of where it is, and logits that a
    pixel shows the part the landmark belongs to (its *part map*). Each landmark is the
    soft-argmax of its first map's spatial softmax; its visibility is its part map averaged
    under that distribution: the probability that the pixel at the landmark shows the
    landmark's own part, not something in front of it.

    ``call(images)`` returns ``{"keypoints": (B, K, 2), "visibility": (B, K),
    "parts": (B, h, w, K)}``: (x, y) in [-1, 1] with -1 at the centre of the top-left
    pixel, and probabilities in [0, 1]. ``H`` and ``W`` must be multiples of 8.
    """

    def __init__(self, num_kp, width=16, **kwargs):
        super().__init__(**kwargs)
        self.num_kp, self.width = int(num_kp), int(width)
        if self.num_kp < 1 or self.width < 1:
            raise ValueError(f"`num_kp` and `width` must be positive; got {num_kp!r} and {width!r}.")
        w = self.width
        self.enc1 = [_Block(w, 2, name="enc1_0"), _Block(w, name="enc1_1")]
        self.enc2 = [_Block(2 * w, 2, name="enc2_0"), _Block(2 * w, name="enc2_1")]
        self.enc3 = [_Block(8 * w // 3, 2, name="enc3_0"), _Block(8 * w // 3, name="enc3_1")]
        self.dec2 = _Block(2 * w, name="dec2")
        self.dec1 = _Block(w, name="dec1")
        self.heat = _conv(self.num_kp, w, kernel=1, use_bias=True, name="heat")
        self.parts = _conv(self.num_kp, w, use_bias=True, name="parts")

    def _features(self, images, training=None):
        _check_images(images)
        f1 = images
        for block in self.enc1:
            f1 = block(f1, training=training)
        f2 = f1
        for block in self.enc2:
            f2 = block(f2, training=training)
        f3 = f2
        for block in self.enc3:
            f3 = block(f3, training=training)
        d2 = self.dec2(ops.concatenate([_upsample(f3), f2], axis=-1), training=training)
        return self.dec1(ops.concatenate([_upsample(d2), f1], axis=-1), training=training)

    def heatmaps(self, images, training=None):
        """Each landmark's distribution over positions, ``(B, H/2, W/2, K)``, each map sums to one."""
        return spatial_softmax(self.heat(self._features(images, training)))

    def call(self, images, training=None):
        features = self._features(images, training)
        heatmap = spatial_softmax(self.heat(features))
        parts = ops.sigmoid(self.parts(features))
        visibility = ops.clip(ops.sum(heatmap * parts, axis=(1, 2)), 0.0, 1.0)
        return {"keypoints": soft_argmax(heatmap), "visibility": visibility, "parts": parts}

    def get_config(self):
        return {**super().get_config(), "num_kp": self.num_kp, "width": self.width}


@keras.saving.register_keras_serializable(package="kmt")
class IdentityEmbedding(keras.Model):
    """Who is in the image: ``(B, H, W, 3)`` in [0, 1] -> ``(B, embedding_dim)`` unit vectors.

    Five convolution blocks (strides 2, 2, 1, 2, 1), global average pooling and a dense
    projection, L2-normalised, so the Euclidean distance between two embeddings lies in
    [0, 2]. ``H`` and ``W`` must be multiples of 8.
    """

    def __init__(self, embedding_dim=64, width=24, **kwargs):
        super().__init__(**kwargs)
        self.embedding_dim, self.width = int(embedding_dim), int(width)
        if self.embedding_dim < 1 or self.width < 1:
            raise ValueError(f"`embedding_dim` and `width` must be positive; got {embedding_dim!r} and {width!r}.")
        w = self.width
        self.blocks = [_Block(w, 2, name="block0"), _Block(4 * w // 3, 2, name="block1"),
                       _Block(2 * w, name="block2"), _Block(8 * w // 3, 2, name="block3"),
                       _Block(8 * w // 3, name="block4")]
        self.project = keras.layers.Dense(self.embedding_dim, name="project",
                                          kernel_initializer=_uniform(8 * w // 3, self.embedding_dim),
                                          bias_initializer=TorchUniform(0.0))

    def call(self, images, training=None):
        _check_images(images)
        x = images
        for block in self.blocks:
            x = block(x, training=training)
        x = self.project(ops.mean(x, axis=(1, 2)))
        return x / ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True) + 1e-12)

    def get_config(self):
        return {**super().get_config(), "embedding_dim": self.embedding_dim, "width": self.width}


def _build(model, image_size):
    if not model.built:
        model(keras.Input(tuple(image_size) + (3,), batch_size=1))


def _without_parts(outputs):
    return {"keypoints": outputs["keypoints"], "visibility": outputs["visibility"]}


class Evaluators:
    """A landmark detector and an identity embedding for one family, run batched and compiled.

    Args:
        landmarks: a :class:`LandmarkDetector`.
        identity: an :class:`IdentityEmbedding`.
        family: the synthetic family they were trained on (``"faces"``, ``"figures"``).
        image_size: ``(height, width)`` they were trained at; other frames are resized.
        info: what the ``.kmt-eval`` file records (training settings, measured accuracy).
        batch_size: frames per compiled call (the last batch is padded).
    """

    def __init__(self, landmarks, identity, family, image_size, info=None, path=None, batch_size=32, jit=True):
        from kmt.compile import compile_function

        self.landmarks, self.identity, self.family = landmarks, identity, family
        self.image_size = tuple(int(s) for s in image_size)
        self.info, self.path, self.batch_size = dict(info or {}), path, int(batch_size)
        for model in (landmarks, identity):
            _build(model, self.image_size)

        def detect(images):
            return _without_parts(landmarks(images, training=False))

        def embed(images):
            return identity(images, training=False)

        self._detect = compile_function(detect, jit, landmarks.variables)
        self._embed = compile_function(embed, jit, identity.variables)

    def _frames(self, frames, name):
        frames = np.asarray(frames, dtype="float32")
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"`{name}` must be frames (N, height, width, 3); got shape {frames.shape}.")
        if frames.shape[1:3] != self.image_size:
            from kmt.media import resize_frames

            frames = resize_frames(frames, self.image_size)
        return frames

    def _batched(self, fn, frames):
        outputs = []
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start:start + self.batch_size]
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch_size - len(chunk), axis=0)])
            out = fn(padded)
            out = out if isinstance(out, dict) else {"out": out}
            outputs.append({k: np.asarray(ops.convert_to_numpy(v))[:len(chunk)] for k, v in out.items()})
        return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]} if outputs else {}

    def detect(self, frames):
        """Landmarks of ``(N, H, W, 3)`` frames: keypoints ``(N, K, 2)`` and visibility probabilities ``(N, K)``."""
        frames = self._frames(frames, "frames")
        if not len(frames):
            return np.zeros((0, self.landmarks.num_kp, 2), "float32"), np.zeros((0, self.landmarks.num_kp), "float32")
        out = self._batched(self._detect, frames)
        return out["keypoints"], out["visibility"]

    def embed(self, frames):
        """Identity embeddings ``(N, D)`` (unit vectors) of ``(N, H, W, 3)`` frames."""
        frames = self._frames(frames, "frames")
        if not len(frames):
            return np.zeros((0, self.identity.embedding_dim), "float32")
        return self._batched(self._embed, frames)["out"]

    def __repr__(self):
        return f"Evaluators(family={self.family!r}, image_size={self.image_size}, path={self.path!r})"


def _weights_bytes(model, image_size):
    # A fresh copy holds the weights alone: a model that was trained carries its optimizer too.
    clean = type(model).from_config(model.get_config())
    _build(clean, image_size)
    clean.set_weights(model.get_weights())
    return weights_to_bytes(clean)


def save_evaluators(path, evaluators):
    """Write ``evaluators`` (an :class:`Evaluators`) to one ``.kmt-eval`` file, atomically; return the path.

    The zip holds ``evaluators.json`` (format, family, image size, both configs, and
    ``evaluators.info``) and ``landmarks.weights.h5``, ``identity.weights.h5``.
    """
    description = {
        "format": FORMAT, "version": VERSION, "family": evaluators.family,
        "image_size": list(evaluators.image_size),
        "landmarks": evaluators.landmarks.get_config(), "identity": evaluators.identity.get_config(),
        "keras_version": keras.__version__, "backend": keras.backend.backend(), **evaluators.info,
    }
    return write_archive(path, {
        "evaluators.json": json.dumps(description, indent=2),
        "landmarks.weights.h5": _weights_bytes(evaluators.landmarks, evaluators.image_size),
        "identity.weights.h5": _weights_bytes(evaluators.identity, evaluators.image_size),
    })


def pretrained_path(family, size=64):
    """Where kmt ships the evaluators of ``family`` at ``size`` pixels (the file may be absent)."""
    return os.path.join(PRETRAINED_DIR, f"evaluators-{family}-{int(size)}.kmt-eval")


def train_command(family, size=64):
    """The command that trains and writes the shipped evaluators of ``family`` at ``size``."""
    return f"python tools/train_evaluators.py --family {family} --size {int(size)}"


def _read(path):
    with open_archive(path, "evaluators.json", "kmt evaluators file (a .kmt-eval zip archive)") as archive:
        description = read_description(archive, path, "evaluators.json", FORMAT, VERSION)
        absent = [name for name in ("landmarks", "identity") if f"{name}.weights.h5" not in archive.namelist()]
        if absent:
            raise ValueError(f"{path!r} holds no weights for {absent}; the file is damaged.")
        weights = {name: archive.read(f"{name}.weights.h5") for name in ("landmarks", "identity")}
    return description, weights


def load_evaluators(family=None, size=64, path=None, batch_size=32, jit=True):
    """The evaluators of ``family`` at ``size`` pixels kmt ships, or those in the file ``path``.

    Raises:
        FileNotFoundError: naming the file looked for and the command that trains it.
        ValueError: an unknown family, a file that is not a ``.kmt-eval``, or a file trained
            on another family than ``family``.
    """
    from kmt.data.synthetic import FAMILIES

    if path is None:
        if family not in FAMILIES:
            raise ValueError(f"`family` must be one of {sorted(FAMILIES)}; got {family!r}.")
        path = pretrained_path(family, size)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"No evaluator networks for family {family!r} at {int(size)} px: {path} does not exist. Train them "
                f"(a few minutes on a CPU) with `{train_command(family, size)}`, or pass the path of a .kmt-eval file.")
    elif not os.path.exists(path):
        raise FileNotFoundError(f"No evaluators file at {path!r}.")
    description, weights = _read(path)
    if family is not None and description["family"] != family:
        raise ValueError(f"{path!r} holds evaluators of family {description['family']!r}, not {family!r}.")
    landmarks = LandmarkDetector.from_config(description["landmarks"])
    identity = IdentityEmbedding.from_config(description["identity"])
    image_size = tuple(description["image_size"])
    for model, name in ((landmarks, "landmarks"), (identity, "identity")):
        _build(model, image_size)
        weights_from_bytes(model, weights[name])
    skip = {"format", "version", "family", "image_size", "landmarks", "identity"}
    info = {k: v for k, v in description.items() if k not in skip}
    return Evaluators(landmarks, identity, description["family"], image_size, info, path, batch_size, jit)

