"""The checkers of chapter 6 accept kmt's own losses and warp, reject typical mistakes with a hint."""

import numpy as np
from keras import ops

from kmt import check, losses


def unguarded(checker, candidate):
    """Run a checker without disabling the kmt functions its exercise re-implements: kmt itself is the right answer."""
    return check.check_candidate(checker.exercise(), candidate)


def right_lsgan(real, generated):
    return losses.generator_gan_loss(generated), losses.discriminator_gan_loss(real, generated)


def numpy_lsgan(real, generated, reduce_scales=sum):
    keys = [key for key in generated if key.startswith("prediction_map_")]
    gen = reduce_scales([np.mean((1 - generated[k]) ** 2) for k in keys])
    disc = reduce_scales([np.mean((1 - real[k]) ** 2 + generated[k] ** 2) for k in keys])
    return gen, disc


def test_lsgan_losses_accepts_kmt_and_a_numpy_version():
    report = unguarded(check.lsgan_losses, right_lsgan)
    assert report and report.score == 1.0
    assert str(report) == "lsgan_losses: all 3 cases pass."
    assert check.lsgan_losses(numpy_lsgan)


def test_lsgan_losses_explains_swapped_targets_averaged_scales_and_order():
    swapped_targets = lambda r, g: (  # noqa: E731
        sum(np.mean(g[k] ** 2) for k in g if k.startswith("prediction_map_")),
        sum(np.mean(r[k] ** 2 + (1 - g[k]) ** 2) for k in g if k.startswith("prediction_map_")),
    )
    report = check.lsgan_losses(swapped_targets)
    assert report.passed == 0 and "the targets are swapped" in str(report)
    report = check.lsgan_losses(lambda r, g: numpy_lsgan(r, g, reduce_scales=np.mean))
    # The single-scale case cannot tell a sum from a mean; the others can.
    assert report.passed == 1 and "add the losses of the scales" in str(report)
    report = unguarded(check.lsgan_losses, lambda r, g: right_lsgan(r, g)[::-1])
    assert report.passed == 0 and "right but swapped" in str(report)


def test_lsgan_losses_reports_exceptions_and_wrong_return_values():
    # Every key, feature-map lists included: 1 - list raises where the dicts hold feature maps.
    report = check.lsgan_losses(lambda r, g: (sum(np.mean((1 - v) ** 2) for v in g.values()), 0.0))
    assert report.score == 0.0 and "your function raised TypeError" in str(report)
    report = unguarded(check.lsgan_losses, lambda r, g: right_lsgan(r, g)[0])
    assert "return a pair (generator_loss, discriminator_loss)" in str(report)


def test_equivariance_value_loss_accepts_kmt_and_hints_at_mistakes():
    assert unguarded(check.equivariance_value_loss, losses.equivariance_value_loss)

    def warp(transform, points):
        return np.asarray(ops.convert_to_numpy(transform.warp_coordinates(points)))

    report = check.equivariance_value_loss(lambda d, t, tr: np.mean(np.abs(warp(tr, d["value"]) - t["value"])))
    assert report.passed == 0 and "applied to the wrong keypoints" in str(report)
    report = check.equivariance_value_loss(lambda d, t, tr: np.mean((d["value"] - warp(tr, t["value"])) ** 2))
    assert "not the mean squared difference" in str(report)
    report = check.equivariance_value_loss(lambda d, t, tr: np.mean(np.abs(d["value"] - t["value"])))
    assert "must be mapped back with transform.warp_coordinates" in str(report)
    report = check.equivariance_value_loss(lambda d, t, tr: d["missing"])
    assert report.score == 0.0 and "your function raised KeyError" in str(report)


def right_tps(coordinates, theta, control_points, control_params):
    transform = losses.EquivarianceTransform(theta, control_points[None], control_params[:, None])
    return transform.warp_coordinates(coordinates)


def numpy_tps(coordinates, theta, control_points, control_params, radius="l1", epsilon=1e-6):
    warped = np.einsum("bij,bnj->bni", theta[:, :, :2], coordinates) + theta[:, None, :, 2]
    offsets = coordinates[:, :, None, :] - control_points[None, None]
    r = np.abs(offsets).sum(-1) if radius == "l1" else np.sqrt((offsets**2).sum(-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = r**2 * np.log(r + epsilon)
    return warped + np.einsum("bnp,bp->bn", phi, control_params)[..., None]


def test_tps_warp_accepts_kmt_and_a_numpy_version():
    report = unguarded(check.tps_warp, right_tps)
    assert report and str(report) == "tps_warp: all 3 cases pass."
    assert check.tps_warp(numpy_tps)


def test_tps_warp_hints_at_the_euclidean_radius_and_the_missing_epsilon():
    report = check.tps_warp(lambda *args: numpy_tps(*args, radius="l2"))
    assert report.passed == 0 and "L1 norm |dx| + |dy|" in str(report)
    report = check.tps_warp(lambda *args: numpy_tps(*args, epsilon=0.0))
    # Away from the control points the epsilon does not matter; on them log(0) gives NaN.
    assert report.passed == 2 and "log(r + 1e-6)" in str(report)
    transposed = lambda z, th, cp, w: numpy_tps(z, np.concatenate(  # noqa: E731
        [np.swapaxes(th[:, :, :2], 1, 2), th[:, :, 2:]], axis=-1), cp, w)
    report = check.tps_warp(transposed)
    assert report.passed == 0 and "applied transposed" in str(report)


def test_tps_warp_reports_shapes_and_exceptions():
    report = unguarded(check.tps_warp, lambda z, th, cp, w: np.asarray(right_tps(z, th, cp, w))[0])
    assert "expected shape (1, 6, 2), got (6, 2)" in str(report)
    report = check.tps_warp(lambda z, th, cp, w: th @ z)
    assert report.score == 0.0 and "your function raised" in str(report)
