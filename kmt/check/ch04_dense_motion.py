"""Checkers for the exercises of chapter 4, "Dense motion"."""

import functools

import numpy as np
from keras import ops

from kmt import motion
from kmt.check.core import Exercise, as_array, checker, compare_judge
from kmt.compile import compile_where_eager_compiles
from kmt.dense_motion import DenseMotionNetwork

__all__ = ["dense_motion_inputs", "hard_deformation"]


def _random_keypoints(rng, batch, num_kp):
    return {
        "value": rng.uniform(-0.7, 0.7, (batch, num_kp, 2)).astype("float32"),
        "jacobian": (np.eye(2) + 0.3 * rng.normal(size=(batch, num_kp, 2, 2))).astype("float32"),
    }


def _motion_case(rng, batch, size, num_kp, channels):
    """Heatmap differences, deformed sources, sparse motions and kmt's hourglass input for random keypoints."""
    network = DenseMotionNetwork(
        block_expansion=4, num_blocks=1, max_features=8, num_kp=num_kp, num_channels=channels
    )

    def compute(source, value_d, jacobian_d, value_s, jacobian_s):
        kp_driving = {"value": value_d, "jacobian": jacobian_d}
        kp_source = {"value": value_s, "jacobian": jacobian_s}
        inputs, motions, deformed = network.motion_inputs(source, kp_driving, kp_source)
        return motion.heatmap_representations(size, kp_driving, kp_source), deformed, motions, inputs

    # One compiled call on JAX, whose op-by-op mode would compile every primitive for every shape.
    compute = compile_where_eager_compiles(compute)
    source = rng.random((batch,) + tuple(size) + (channels,), dtype="float32")
    kp_driving, kp_source = _random_keypoints(rng, batch, num_kp), _random_keypoints(rng, batch, num_kp)
    heatmaps, deformed, motions, inputs = compute(source, *kp_driving.values(), *kp_source.values())
    return as_array(heatmaps), as_array(deformed), as_array(motions), as_array(inputs).astype("float64")


@functools.lru_cache(maxsize=None)
def _input_cases():
    rng = np.random.default_rng(4)
    cases = []
    for batch, size, num_kp, channels in [(1, (8, 8), 2, 3), (2, (6, 10), 4, 1), (1, (5, 7), 3, 2)]:
        heatmaps, deformed, _, expected = _motion_case(rng, batch, size, num_kp, channels)
        label = f"heatmaps {heatmaps.shape}, deformed {deformed.shape}"
        cases.append((label, (heatmaps, deformed), expected))
    return cases


@checker("kmt.dense_motion.DenseMotionNetwork.motion_inputs")
def dense_motion_inputs():
    """Check ``candidate(heatmaps, deformed)``: the input of the dense motion network's hourglass.

    ``heatmaps`` is ``(B, h, w, K + 1)`` (slot 0 the background's zero map),
    ``deformed`` is ``(B, K + 1, h, w, C)`` (slot 0 the source itself); the
    answer is ``(B, h, w, (K + 1) * (C + 1))`` holding, for each slot ``k``,
    its heatmap then its ``C`` deformed channels: channel ``k * (C + 1) + c``.
    """
    cases = list(_input_cases())  # the candidate gets copies of the arguments

    def per_slot(heatmaps, deformed):
        return np.moveaxis(np.asarray(deformed, "float64"), 1, 3)  # (B, h, w, K + 1, C)

    def flat(x):
        return x.reshape(x.shape[:3] + (-1,))

    def blocks(h, d):
        return np.concatenate([h, flat(per_slot(h, d))], axis=-1)

    def deformed_first(h, d):
        return flat(np.concatenate([per_slot(h, d), np.asarray(h)[..., None]], axis=-1))

    def reshaped_not_transposed(h, d):
        d = np.asarray(d, "float64")
        scrambled = d.reshape((d.shape[0],) + d.shape[2:4] + (d.shape[1], d.shape[-1]))
        return flat(np.concatenate([np.asarray(h)[..., None], scrambled], axis=-1))

    def without_background(h, d):
        return flat(np.concatenate([np.asarray(h)[..., 1:, None], per_slot(h, d)[..., 1:, :]], axis=-1))

    hints = [
        (blocks, "these are all the heatmaps first, then all the deformed sources; the slots must be "
                 "interleaved: channel k * (C + 1) is the heatmap of slot k, followed by its C channels."),
        (deformed_first, "within each slot the heatmap comes first, then the C channels of the deformed source."),
        (reshaped_not_transposed, "`deformed` is (B, K + 1, h, w, C): move the slot axis next to the channels "
                                  "with a transpose (np.moveaxis); a reshape alone mixes up the pixels."),
        (without_background, "keep the background slot 0 (a zero heatmap and the undeformed source): "
                             "the network needs it to leave pixels where they are."),
    ]
    return Exercise("dense_motion_inputs", cases, compare_judge(1e-6, hints))


def _hard(mask, motions, slots=None):
    mask = np.asarray(mask, "float64")
    motions = np.asarray(motions, "float64")
    if slots is not None:
        mask, motions = mask[..., slots], motions[:, slots]
    index = np.argmax(mask, axis=-1)  # (B, h, w)
    moved = np.moveaxis(motions, 1, 3)  # (B, h, w, K + 1, 2)
    return np.take_along_axis(moved, index[..., None, None], axis=3)[..., 0, :]


@functools.lru_cache(maxsize=None)
def _hard_cases():
    rng = np.random.default_rng(5)
    cases = []
    for batch, size, num_kp in [(1, (6, 6), 2), (2, (5, 8), 5), (1, (9, 4), 3)]:
        _, _, motions, _ = _motion_case(rng, batch, size, num_kp, 1)
        logits = rng.normal(0, 2, (batch,) + size + (num_kp + 1,)).astype("float32")
        mask = as_array(ops.softmax(logits, axis=-1))
        label = f"mask {mask.shape}, motions {motions.shape}"
        cases.append((label, (mask, motions), _hard(mask, motions)))
    return cases


@checker()
def hard_deformation():
    """Check ``candidate(mask, motions)``: the dense motion with each pixel given to one slot only.

    ``mask`` is ``(B, h, w, K + 1)`` (a softmax over the slots, slot 0 the
    background), ``motions`` the sparse motions ``(B, K + 1, h, w, 2)``; the
    answer is ``(B, h, w, 2)``: at every pixel, the motion of the slot whose
    mask is largest there.
    """
    cases = list(_hard_cases())

    def without_background(mask, motions):
        return _hard(mask, motions, slots=slice(1, None))

    hints = [
        (lambda m, t: np.einsum("bhwk,bkhwc->bhwc", np.asarray(m, "float64"), np.asarray(t, "float64")),
         "that is the soft combination sum_k M_k T_k (what kmt computes); here each pixel takes the "
         "motion of its most likely slot only (a one-hot mask)."),
        (lambda m, t: _hard(-np.asarray(m), t), "take the slot with the largest mask (argmax), not the smallest."),
        (without_background, "slot 0, the background, is a slot like the others: a pixel whose largest "
                             "mask is the background keeps the identity motion."),
        (lambda m, t: _hard(m, t)[..., ::-1], "the last axis must hold (x, y), as the motions do."),
    ]
    return Exercise("hard_deformation", cases, compare_judge(1e-6, hints))
