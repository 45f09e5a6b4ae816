"""Measuring animation quality the way the paper does (chapter 8): L1, AKD, MKR and AED.

Video reconstruction: every test video is animated from its own first frame with
*absolute* keypoints (as the reference's ``reconstruction.py``), so the result should be
the video itself. Then

* **L1**: mean absolute difference of pixel values in [0, 1], over every pixel, channel
  and frame (frames at the dataset's resolution);
* **AKD** (average keypoint distance): an external landmark detector runs on the
  generated frame and on the ground-truth frame; the mean distance, in pixels of the
  dataset's frames, between the landmarks it finds in both;
* **MKR** (missing keypoint rate): the fraction of landmarks found in the ground-truth
  frame that it does not find in the generated one;
* **AED** (average Euclidean distance): the mean distance between identity embeddings of
  the generated and the ground-truth frame.

This module holds the measures themselves, on arrays. Running them over a dataset (reading
the test videos, reconstructing them, the baseline and the floor, the table) is
:mod:`kmt.evaluation`; the external networks are :mod:`kmt.evaluators` (trained on synthetic
ground truth) and :mod:`kmt.face_evaluators` (dlib's, for real faces).

Keypoints are ``(N, K, 2)`` (x, y) in [-1, 1], -1 at the centre of the first pixel, so one
unit is ``(W - 1) / 2`` pixels along x and ``(H - 1) / 2`` along y.
"""

import numpy as np

from kmt.coordinates import pixels_per_unit

__all__ = ["reconstruction_l1", "keypoint_distances", "average_keypoint_distance", "missing_keypoint_rate",
           "average_euclidean_distance"]


def _same_shape(a, b, name_a, name_b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"`{name_a}` and `{name_b}` must have the same shape; got {a.shape} and {b.shape}.")
    return a, b


def _detected(mask, threshold=0.5):
    mask = np.asarray(mask)
    return mask if mask.dtype == bool else mask > threshold


def reconstruction_l1(prediction, target):
    """Mean absolute difference of two arrays of frames (any equal shapes), as a float."""
    prediction, target = _same_shape(prediction, target, "prediction", "target")
    return float(np.mean(np.abs(prediction.astype("float64") - target.astype("float64"))))


def _keypoint_args(generated, target, image_size):
    generated, target = _same_shape(generated, target, "generated", "target")
    if generated.ndim < 2 or generated.shape[-1] != 2:
        raise ValueError(f"keypoints must be (..., num_kp, 2) holding (x, y); got shape {generated.shape}.")
    if len(tuple(image_size)) != 2 or min(image_size) < 2:
        raise ValueError(f"`image_size` must be (height, width) of at least 2 pixels; got {image_size!r}.")
    return generated, target


def keypoint_distances(generated, target, image_size):
    """Distances in pixels ``(..., K)`` between two sets of keypoints ``(..., K, 2)`` in [-1, 1]."""
    generated, target = _keypoint_args(generated, target, image_size)
    scale = pixels_per_unit(*image_size)
    return np.linalg.norm((generated.astype("float64") - target.astype("float64")) * scale, axis=-1)


def average_keypoint_distance(generated, target, image_size, generated_detected=None, target_detected=None):
    """AKD: mean distance in pixels between keypoints found in both frames.

    Args:
        generated, target: keypoints ``(N, K, 2)`` a detector found in the generated and the
            ground-truth frames.
        image_size: ``(height, width)`` in pixels of the frames the distance is counted in.
        generated_detected, target_detected: ``(N, K)`` booleans (or probabilities,
            detected above 0.5) of which keypoints the detector found; a keypoint counts when
            found in both. Left out, every keypoint counts.

    Returns:
        the mean distance, or ``nan`` when no keypoint is found in both.
    """
    distances = keypoint_distances(generated, target, image_size)
    both = np.ones(distances.shape, bool)
    for mask, name in ((generated_detected, "generated_detected"), (target_detected, "target_detected")):
        if mask is not None:
            mask = _detected(mask)
            if mask.shape != distances.shape:
                raise ValueError(f"`{name}` must have shape {distances.shape} (one flag per keypoint); "
                                 f"got {mask.shape}.")
            both &= mask
    return float(distances[both].mean()) if both.any() else float("nan")


def missing_keypoint_rate(generated_detected, target_detected):
    """MKR: the fraction of keypoints found in the target frames and not in the generated ones.

    Both are ``(N, K)`` booleans, or probabilities (found above 0.5). ``nan`` when the
    target frames show no keypoint.
    """
    generated_detected, target_detected = _same_shape(generated_detected, target_detected, "generated_detected",
                                                      "target_detected")
    generated_detected, target_detected = _detected(generated_detected), _detected(target_detected)
    found = target_detected.sum()
    return float((target_detected & ~generated_detected).sum() / found) if found else float("nan")


def average_euclidean_distance(generated, target):
    """AED: mean Euclidean distance between matching rows of two ``(N, D)`` embedding arrays."""
    generated, target = _same_shape(generated, target, "generated", "target")
    if generated.ndim != 2 or not len(generated):
        raise ValueError(f"embeddings must be (N, D) with N >= 1; got shape {generated.shape}.")
    return float(np.mean(np.linalg.norm(generated.astype("float64") - target.astype("float64"), axis=-1)))
