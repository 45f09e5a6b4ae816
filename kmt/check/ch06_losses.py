"""Checkers for the exercises of chapter 6, "Losses and the discriminator"."""

import numpy as np

from kmt import losses
from kmt.check.core import Exercise, as_array, checker, compare, compare_judge

__all__ = ["lsgan_losses", "equivariance_value_loss", "tps_warp"]


def _discriminator_maps(rng, batch, sides, with_features):
    """What a multi-scale discriminator returns: ``prediction_map_<s>`` and, optionally, ``feature_maps_<s>``."""
    maps = {}
    for key, side in sides:
        maps[f"prediction_map_{key}"] = rng.normal(0.4, 0.5, (batch, side, side, 1)).astype("float32")
        if with_features:
            maps[f"feature_maps_{key}"] = [rng.normal(0, 1, (batch, side + 3, side + 3, 4)).astype("float32")]
    return maps


def _prediction_maps(maps):
    return [np.asarray(value, "float64") for key, value in maps.items() if key.startswith("prediction_map_")]


def _reference_lsgan(real, generated):
    return (
        float(as_array(losses.generator_gan_loss(generated))),
        float(as_array(losses.discriminator_gan_loss(real, generated))),
    )


def _lsgan_variant(generator_term, discriminator_term, reduce_maps=np.mean, reduce_scales=np.sum):
    def variant(real, generated):
        fakes, reals = _prediction_maps(generated), _prediction_maps(real)
        gen = reduce_scales([reduce_maps(generator_term(f)) for f in fakes])
        disc = reduce_scales([reduce_maps(discriminator_term(r, f)) for r, f in zip(reals, fakes)])
        return gen, disc

    return variant


@checker("kmt.losses.generator_gan_loss", "kmt.losses.discriminator_gan_loss")
def lsgan_losses():
    """Check ``candidate(real_maps, generated_maps) -> (generator_loss, discriminator_loss)``.

    Both arguments are the dicts a :class:`kmt.discriminator.MultiScaleDiscriminator`
    returns: ``"prediction_map_<s>"`` ``(B, h, w, 1)`` for every scale ``s`` (and
    ``"feature_maps_<s>"`` lists, which the GAN losses do not use). The answers are
    :func:`kmt.losses.generator_gan_loss` of the generated maps and
    :func:`kmt.losses.discriminator_gan_loss` of both: sums over scales of the means
    of ``(1 - D(generated))^2`` and of ``(1 - D(real))^2 + D(generated)^2``.
    """
    rng = np.random.default_rng(6)
    cases = []
    for label, batch, sides, with_features in [
        ("one scale, batch 2", 2, [("1", 5)], False),
        ("two scales (1 and 0.5), batch 3, feature maps in the dicts", 3, [("1", 6), ("0.5", 2)], True),
        ("three scales, batch 1", 1, [("1", 7), ("0.5", 3), ("0.25", 1)], True),
    ]:
        real = _discriminator_maps(rng, batch, sides, with_features)
        generated = _discriminator_maps(rng, batch, sides, with_features)
        cases.append((label, (real, generated), _reference_lsgan(real, generated)))
    hints = [
        (_lsgan_variant(lambda f: f**2, lambda r, f: r**2 + (1 - f) ** 2),
         "the targets are swapped: the discriminator pushes real maps to 1 and generated maps to 0, "
         "and the generator wants its frames scored 1."),
        (_lsgan_variant(lambda f: (1 - f) ** 2, lambda r, f: (1 - r) ** 2 + f**2, reduce_scales=np.mean),
         "add the losses of the scales (one term per prediction_map_<s>); do not average them."),
        (_lsgan_variant(lambda f: (1 - f) ** 2, lambda r, f: (1 - r) ** 2 + f**2, reduce_maps=np.sum),
         "average over the batch and the pixels of each map (a mean), do not sum them."),
        (_lsgan_variant(lambda f: (1 - f) ** 2, lambda r, f: 0.5 * ((1 - r) ** 2 + f**2)),
         "the discriminator loss has no factor 1/2 here: mean((1 - D(real))^2 + D(generated)^2)."),
        (_lsgan_variant(lambda f: np.abs(1 - f), lambda r, f: np.abs(1 - r) + np.abs(f)),
         "LSGAN squares the distances to the targets (least squares), it does not take absolute values."),
    ]

    def judge(args, expected, got):
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            return (f"return a pair (generator_loss, discriminator_loss); got {type(got).__name__}"
                    + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""))
        expected = [np.asarray(value, "float64") for value in expected]
        if compare(expected[0], got[1], 1e-5) is None and compare(expected[1], got[0], 1e-5) is None:
            return "the two losses are right but swapped: return (generator_loss, discriminator_loss)."
        issues = []
        for index, name in enumerate(("generator loss", "discriminator loss")):
            problem = compare(expected[index], got[index], 1e-5)
            if problem is None:
                continue
            for variant, advice in hints:
                if compare(np.asarray(variant(*args)[index], "float64"), got[index], 1e-5) is None:
                    problem = f"{problem}. Hint: {advice}"
                    break
            issues.append(f"the {name}: {problem}")
        return "; ".join(issues) or None

    return Exercise("lsgan_losses", cases, judge)


def _random_transform(rng, batch, sigma_affine, sigma_tps, points_tps=5):
    params = losses.sample_transform_parameters(rng, batch, sigma_affine, sigma_tps, points_tps)
    return losses.EquivarianceTransform.from_parameters(params)


def _keypoints(rng, batch, num_kp):
    jacobian = np.eye(2)[None, None] + rng.normal(0, 0.2, (batch, num_kp, 2, 2))
    return {
        "value": rng.uniform(-0.9, 0.9, (batch, num_kp, 2)).astype("float32"),
        "jacobian": jacobian.astype("float32"),
    }


def _warp(transform, points):
    return as_array(transform.warp_coordinates(points["value"])).astype("float64")


@checker("kmt.losses.equivariance_value_loss")
def equivariance_value_loss():
    """Check ``candidate(kp_driving, kp_transformed, transform)``: the equivariance value loss.

    ``kp_driving`` and ``kp_transformed`` are keypoint dicts (``"value"`` ``(B, K, 2)``,
    ``"jacobian"`` ``(B, K, 2, 2)``) of a frame and of that frame warped by
    ``transform`` (a :class:`kmt.losses.EquivarianceTransform`, whose
    ``warp_coordinates`` maps positions of the warped frame to positions of the
    frame). The answer is the scalar :func:`kmt.losses.equivariance_value_loss`:
    ``mean |kp_driving - T(kp_transformed)|`` over batch, keypoints and x, y.
    """
    rng = np.random.default_rng(16)
    cases = []
    for batch, num_kp in [(1, 3), (2, 5), (4, 10)]:
        transform = _random_transform(rng, batch, sigma_affine=0.2, sigma_tps=0.05)
        driving, transformed = _keypoints(rng, batch, num_kp), _keypoints(rng, batch, num_kp)
        expected = as_array(losses.equivariance_value_loss(driving, transformed, transform)).astype("float64")
        cases.append((f"batch {batch}, {num_kp} keypoints", (driving, transformed, transform), expected))
    hints = [
        (lambda d, t, tr: np.mean(np.abs(d["value"] - t["value"])),
         "the keypoints of the warped frame must be mapped back with transform.warp_coordinates before "
         "they are compared with the keypoints of the frame."),
        (lambda d, t, tr: np.mean(np.abs(_warp(tr, d) - t["value"])),
         "the transform is applied to the wrong keypoints: warp_coordinates maps positions of the warped "
         "frame to the frame, so apply it to kp_transformed and compare with kp_driving."),
        (lambda d, t, tr: np.mean((d["value"] - _warp(tr, t)) ** 2),
         "the loss is the mean absolute difference (L1), not the mean squared difference."),
        (lambda d, t, tr: np.mean(np.linalg.norm(d["value"] - _warp(tr, t), axis=-1)),
         "average the absolute differences of x and y separately, not the Euclidean length of each error."),
        (lambda d, t, tr: np.sum(np.abs(d["value"] - _warp(tr, t))),
         "take the mean over batch, keypoints and coordinates, not the sum."),
    ]
    return Exercise("equivariance_value_loss", cases, compare_judge(1e-5, hints))


def _reference_tps(coordinates, theta, control_points, control_params):
    transform = losses.EquivarianceTransform(theta, control_points[None], control_params[:, None, :])
    return as_array(transform.warp_coordinates(coordinates)).astype("float64")


def _tps_variant(radius="l1", basis="r2logr", affine="right", axes="both"):
    def variant(coordinates, theta, control_points, control_params):
        z = np.asarray(coordinates, "float64")
        theta = np.asarray(theta, "float64")
        linear = theta[:, :, :2] if affine == "right" else np.swapaxes(theta[:, :, :2], 1, 2)
        warped = np.einsum("bij,bnj->bni", linear, z) + theta[:, None, :, 2]
        offsets = z[:, :, None, :] - np.asarray(control_points, "float64")[None, None]
        r = np.abs(offsets).sum(-1) if radius == "l1" else np.sqrt((offsets**2).sum(-1))
        phi = r**2 * np.log(r + losses.TPS_EPSILON) if basis == "r2logr" else r * np.log(r + losses.TPS_EPSILON)
        spline = np.einsum("bnp,bp->bn", phi, np.asarray(control_params, "float64"))[..., None]
        if axes == "x":
            spline = np.concatenate([spline, np.zeros_like(spline)], axis=-1)
        return warped + spline

    return variant


@checker("kmt.losses.EquivarianceTransform.warp_coordinates")
def tps_warp():
    """Check ``candidate(coordinates, theta, control_points, control_params)``: the equivariance warp.

    ``coordinates`` ``(B, N, 2)`` (x, y); ``theta`` ``(B, 2, 3)``; ``control_points``
    ``(P, 2)``; ``control_params`` ``(B, P)``. The answer is ``(B, N, 2)``:
    ``theta[:, :, :2] z + theta[:, :, 2] + sum_k w_k r_k^2 log(r_k + 1e-6)``, the
    spline term added to both x and y, with ``r_k = |z - p_k|_1`` (the L1 distance,
    as in the reference): :meth:`kmt.losses.EquivarianceTransform.warp_coordinates`.
    """
    rng = np.random.default_rng(26)
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5)), -1).reshape(-1, 2)
    cases = []
    for label, batch, num_points, control_points, sigma_affine in [
        ("batch 1, 6 points, 3 x 3 control points", 1, 6, grid.reshape(5, 5, 2)[::2, ::2].reshape(-1, 2), 0.1),
        ("batch 2, 9 points, 5 x 5 control points", 2, 9, grid, 0.2),
        ("batch 3, points on control points (r = 0)", 3, 5, grid, 0.2),
    ]:
        control_points = control_points.astype("float32")
        coordinates = rng.uniform(-1, 1, (batch, num_points, 2)).astype("float32")
        if "r = 0" in label:
            coordinates[:, :3] = control_points[[0, 7, 12]]
        theta = (np.eye(2, 3)[None] + rng.normal(0, sigma_affine, (batch, 2, 3))).astype("float32")
        params = rng.normal(0, 0.1, (batch, len(control_points))).astype("float32")
        args = (coordinates, theta, control_points, params)
        cases.append((label, args, _reference_tps(*args)))
    hints = [
        (_tps_variant(radius="l2"),
         "the distance to a control point is the L1 norm |dx| + |dy| in FOMM's warp, not the Euclidean "
         "length (a quirk of the reference that kmt keeps)."),
        (_tps_variant(basis="rlogr"), "the radial basis is r^2 log(r), not r log(r)."),
        (_tps_variant(affine="transposed"),
         "the 2 x 2 part of theta is applied transposed: warped_i = sum_j theta[i, j] z_j + theta[i, 2]."),
        (_tps_variant(axes="x"), "the spline adds the same scalar to x and to y, not to x alone."),
    ]
    compare_one = compare_judge(1e-5, hints)

    def judge(args, expected, got):
        problem = compare_one(args, expected, got)
        if problem and "NaN or infinite" in problem:
            problem += (". Hint: r^2 log(r) tends to 0 as r -> 0, but log(0) is -inf: compute log(r + 1e-6) as the "
                        "reference does.")
        return problem

    return Exercise("tps_warp", cases, judge)
