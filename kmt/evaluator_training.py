"""Training and measuring the evaluator networks of :mod:`kmt.evaluators` on synthetic frames.

Frames come from :func:`kmt.data.render_frames`: each one draws an identity, a motion and
a time of the training split, and comes with its true landmarks, their visibility and the
map of which part each pixel shows. :func:`train_landmark_detector` and
:func:`train_identity_embedding` fit one network each with ``model.fit`` (compiled on every
backend; a progress bar with ``verbose=1``), deterministic from ``seed``;
:func:`train_evaluators` trains both, measures them on the test split (identities and
motions never seen in training) with :func:`landmark_accuracy` and
:func:`identity_accuracy`, and writes the ``.kmt-eval`` file.
"""

import keras
import numpy as np
from keras import ops

from kmt.coordinates import pixels_per_unit
from kmt.data.synthetic import TEST_OFFSET, get_family, render_frames, sample_identity, sample_motion
from kmt.evaluators import Evaluators, IdentityEmbedding, LandmarkDetector, save_evaluators, train_command
from kmt.layers import TorchUniform

__all__ = ["FrameSampler", "degrade", "train_landmark_detector", "train_identity_embedding", "train_evaluators",
           "landmark_accuracy", "identity_accuracy"]

NUM_FRAMES = 64
"""Frame times are drawn in [0, NUM_FRAMES), the length of the videos kmt writes by default."""


class FrameSampler:
    """Batches of single synthetic frames, each of its own identity, motion and time.

    ``batch(step, count)`` is a pure function of the settings and its arguments: a dict with
    ``frames (N, H, W, 3)``, ``keypoints (N, K, 2)``, ``visible (N, K)``, ``identity (N,)``
    (the id, from :data:`~kmt.data.synthetic.TEST_OFFSET` on for ``split="test"``) and, with
    ``with_labels``, ``labels (N, H, W)`` (index into the family's ``PART_NAMES``).
    """

    def __init__(self, family, size=64, num_identities=4096, num_motions=4096, seed=0, split="train",
                 with_labels=False):
        get_family(family)
        if split not in ("train", "test"):
            raise ValueError(f"`split` must be 'train' or 'test'; got {split!r}.")
        self.family, self.size, self.seed, self.split = family, _size(size), int(seed), split
        self.num_identities, self.num_motions, self.with_labels = int(num_identities), int(num_motions), with_labels
        self._cache = {}

    def _drawn(self, kind, index):
        key = (kind, int(index))
        if key not in self._cache:
            draw = sample_identity if kind == "identity" else sample_motion
            self._cache[key] = draw(self.family, int(index), self.seed)
        return self._cache[key]

    def batch(self, step, count):
        rng = np.random.default_rng([self.seed, 11 if self.split == "train" else 13, int(step)])
        offset = TEST_OFFSET if self.split == "test" else 0
        identities = offset + rng.integers(self.num_identities, size=count)
        motions = offset + rng.integers(self.num_motions, size=count)
        times = rng.uniform(0, NUM_FRAMES, size=count)
        chunk = max(1, 32768 // (self.size[0] * self.size[1]))
        parts = []
        for start in range(0, count, chunk):
            sel = slice(start, min(start + chunk, count))
            parts.append(render_frames(self.family, [self._drawn("identity", i) for i in identities[sel]],
                                       [self._drawn("motion", m) for m in motions[sel]], times[sel], self.size,
                                       self.with_labels))
        out = {name: np.concatenate([p[i] for p in parts]) for i, name in enumerate(("frames", "keypoints", "visible"))}
        if self.with_labels:
            out["labels"] = np.concatenate([p[3] for p in parts])
        out["identity"] = identities.astype("int64")
        return out


def _size(size):
    return (int(size), int(size)) if np.ndim(size) == 0 else (int(size[0]), int(size[1]))


def degrade(images, rng):
    """Blur half of ``(N, H, W, 3)`` images (Gaussian, sigma 0.3 to 1.2 px) and add noise (std up to 0.02).

    Generated frames are softer than rendered ones; training on both keeps the evaluators'
    judgement about landmarks and identity, not about sharpness.
    """
    n, h, w = images.shape[:3]
    sigma = np.where(rng.random(n) < 0.5, rng.uniform(0.3, 1.2, n), 1e-3)
    kernel = np.exp(-np.arange(-2, 3)[None] ** 2 / (2 * sigma[:, None] ** 2))
    kernel = (kernel / kernel.sum(axis=1, keepdims=True)).astype("float32")[:, :, None, None, None]
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
    rows = sum(kernel[:, t] * padded[:, t:t + h] for t in range(5))
    out = sum(kernel[:, t] * rows[:, :, t:t + w] for t in range(5))
    noise = rng.normal(size=images.shape) * rng.uniform(0, 0.02, (n, 1, 1, 1))
    return np.clip(out + noise.astype("float32"), 0.0, 1.0).astype("float32")


def _part_targets(labels, owners):
    """``(N, H/2, W/2, K)``: does the pixel show a part landmark ``k`` belongs to (at the heatmap's cells)."""
    h, w = labels.shape[1] // 2, labels.shape[2] // 2
    rows = np.round(np.arange(h) * (labels.shape[1] - 1) / (h - 1)).astype(int)
    cols = np.round(np.arange(w) * (labels.shape[2] - 1) / (w - 1)).astype(int)
    return owners.T[labels[:, rows][:, :, cols]].astype("float32")


def _batches(sampler, batch_size, steps, seed, target, hidden_weight=0.25):
    from kmt.data.batching import prefetch

    owners = get_family(sampler.family).OWNERS

    def make(step):
        batch = sampler.batch(step, batch_size)
        images = degrade(batch["frames"], np.random.default_rng([seed, 7, step]))
        if target == "identity":
            return images, batch["identity"].astype("int32")
        visible = batch["visible"].astype("float32")
        inside = (np.abs(batch["keypoints"]) <= 1).all(axis=-1)
        weight = np.where(visible > 0, 1.0, np.where(inside, hidden_weight, 0.0)).astype("float32")
        return images, {"keypoints": np.concatenate([batch["keypoints"], weight[..., None]], axis=-1),
                        "visibility": visible, "parts": _part_targets(batch["labels"], owners)}

    return prefetch(make, range(steps), buffer=2, workers=1)


def _keypoint_loss(size):
    scale = ops.convert_to_tensor(pixels_per_unit(*size), "float32")

    def loss(y_true, y_pred):
        weight = y_true[..., 2]
        error = ops.sum(ops.abs(y_true[..., :2] - y_pred) * scale, axis=-1)
        return ops.sum(error * weight, axis=-1) / ops.maximum(ops.sum(weight, axis=-1), 1.0)

    return loss


class _CosineHead(keras.layers.Layer):
    """Logits ``scale * cos(angle)`` between unit embeddings and one learned direction per class."""

    def __init__(self, num_classes, scale=16.0, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.scale = int(num_classes), float(scale)

    def build(self, input_shape):
        bound = float(np.sqrt(6.0 / (input_shape[-1] + self.num_classes)))
        self.directions = self.add_weight(shape=(input_shape[-1], self.num_classes), initializer=TorchUniform(bound),
                                          name="directions")

    def call(self, embeddings):
        directions = self.directions / ops.sqrt(ops.sum(ops.square(self.directions), axis=0, keepdims=True) + 1e-12)
        return self.scale * ops.matmul(embeddings, directions)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "scale": self.scale}


def _fit(model, loss, data, steps, learning_rate, verbose, loss_weights=None):
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, loss_weights=loss_weights)
    model.fit(data, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=verbose)


def train_landmark_detector(family="faces", size=64, steps=1500, batch_size=32, width=16, learning_rate=2e-3,
                            seed=0, num_identities=4096, num_motions=4096, verbose=1):
    """A :class:`~kmt.evaluators.LandmarkDetector` trained on frames of ``family``'s training split.

    Losses: the L1 pixel error of the landmarks (hidden ones inside the frame weigh 0.25),
    the binary cross-entropy of the visibility and of the part maps. Adam with a cosine-
    decayed learning rate; each step renders ``batch_size`` new frames (:func:`degrade` d).
    """
    keras.utils.set_random_seed(seed)
    size = _size(size)
    model = LandmarkDetector(len(get_family(family).KEYPOINT_NAMES), width)
    sampler = FrameSampler(family, size, num_identities, num_motions, seed, "train", with_labels=True)
    loss = {"keypoints": _keypoint_loss(size), "visibility": keras.losses.BinaryCrossentropy(),
            "parts": keras.losses.BinaryCrossentropy()}
    _fit(model, loss, _batches(sampler, batch_size, steps, seed, "landmarks"), steps, learning_rate, verbose)
    return model


def train_identity_embedding(family="faces", size=64, steps=1000, batch_size=64, num_identities=512, width=24,
                             embedding_dim=64, learning_rate=2e-3, seed=0, num_motions=4096, verbose=1):
    """An :class:`~kmt.evaluators.IdentityEmbedding` trained to tell ``num_identities`` identities apart.

    A cosine classifier over the training identities (dropped afterwards), softmax
    cross-entropy, on :func:`degrade` d frames of every motion.
    """
    keras.utils.set_random_seed(seed)
    size = _size(size)
    model = IdentityEmbedding(embedding_dim, width)
    classifier = keras.Sequential([keras.Input(size + (3,)), model, _CosineHead(num_identities)])
    sampler = FrameSampler(family, size, num_identities, num_motions, seed, "train")
    _fit(classifier, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
         _batches(sampler, batch_size, steps, seed, "identity"), steps, learning_rate, verbose)
    return model


def landmark_accuracy(evaluators, num_frames=512, seed=0):
    """The landmark detector against the truth on ``num_frames`` test-split frames.

    Returns ``{"pixel_error"`` (mean Euclidean error in pixels of the evaluators' size, over
    truly visible landmarks), ``"pixel_error_p95"``, ``"visibility_accuracy"``,
    ``"visible_fraction"`` (the accuracy of always answering "visible"), ``"frames"}``.
    """
    sampler = FrameSampler(evaluators.family, evaluators.image_size, 1024, 1024, seed, "test")
    batch = sampler.batch(0, num_frames)
    keypoints, visibility = evaluators.detect(batch["frames"])
    error = np.linalg.norm((keypoints - batch["keypoints"]) * pixels_per_unit(*evaluators.image_size), axis=-1)
    visible = batch["visible"]
    return {"pixel_error": float(error[visible].mean()), "pixel_error_p95": float(np.percentile(error[visible], 95)),
            "visibility_accuracy": float(np.mean((visibility > 0.5) == visible)),
            "visible_fraction": float(visible.mean()), "frames": int(num_frames)}


def identity_accuracy(evaluators, num_identities=64, frames_per_identity=4, seed=0):
    """The identity embedding on test-split identities, each in ``frames_per_identity`` motions.

    Returns ``{"nearest_neighbour_rate"`` (how often a frame's nearest other frame shows the
    same identity), ``"same_identity_distance"``, ``"different_identity_distance"`` (mean
    Euclidean distances), ``"distance_ratio"`` (same / different), ``"identities"}``.
    """
    rng = np.random.default_rng([seed, 17])
    family, count = evaluators.family, num_identities * frames_per_identity
    identities = TEST_OFFSET + np.repeat(np.arange(num_identities), frames_per_identity)
    frames = render_frames(family, [sample_identity(family, i, seed) for i in identities],
                           [sample_motion(family, TEST_OFFSET + m, seed) for m in range(count)],
                           rng.uniform(0, NUM_FRAMES, count), evaluators.image_size)[0]
    embeddings = evaluators.embed(frames).astype("float64")
    distances = np.linalg.norm(embeddings[:, None] - embeddings[None], axis=-1)
    same = identities[:, None] == identities[None]
    np.fill_diagonal(distances, np.inf)
    nearest = identities[np.argmin(distances, axis=1)] == identities
    within = distances[same & np.isfinite(distances)].mean()
    between = distances[~same].mean()
    return {"nearest_neighbour_rate": float(nearest.mean()), "same_identity_distance": float(within),
            "different_identity_distance": float(between), "distance_ratio": float(within / between),
            "identities": int(num_identities)}


def train_evaluators(family="faces", size=64, seed=0, landmark_steps=1500, identity_steps=1000, out=None,
                     verbose=1):
    """Train both evaluator networks of ``family``, measure them, and write them to ``out`` if given.

    The returned :class:`~kmt.evaluators.Evaluators` carries (and the file records) the
    training settings, the command that reproduces the shipped file, and the accuracy
    measured on the test split (:func:`landmark_accuracy`, :func:`identity_accuracy`).
    """
    size = _size(size)
    landmarks = train_landmark_detector(family, size, steps=landmark_steps, seed=seed, verbose=verbose)
    identity = train_identity_embedding(family, size, steps=identity_steps, seed=seed, verbose=verbose)
    info = {"keypoint_names": list(get_family(family).KEYPOINT_NAMES),
            "training": {"seed": seed, "landmark_steps": landmark_steps, "identity_steps": identity_steps,
                         "command": train_command(family, size[0]), "backend": keras.backend.backend()}}
    evaluators = Evaluators(landmarks, identity, family, size, info)
    evaluators.info["accuracy"] = {"landmarks": landmark_accuracy(evaluators),
                                   "identity": identity_accuracy(evaluators)}
    if out is not None:
        evaluators.path = save_evaluators(out, evaluators)
    return evaluators
