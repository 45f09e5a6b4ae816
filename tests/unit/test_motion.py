"""kmt.motion: sparse motions (Eq. 4), heatmap representations (Eq. 6), deformed sources (Eq. 7)."""

import numpy as np
import pytest

from fomm_reference import fixture_config, nhwc, relative_error
from helpers import run, to_numpy
from kmt.keypoints import kp2gaussian
from kmt.motion import deformed_sources, heatmap_representations, inverse_2x2, relative_jacobians, sparse_motions
from kmt.warping import AntiAliasInterpolation2d, grid_sample, make_coordinate_grid


def random_kp(rng, batch=2, num_kp=3, jacobian=True):
    kp = {"value": rng.uniform(-0.8, 0.8, size=(batch, num_kp, 2)).astype("float32")}
    if jacobian:
        kp["jacobian"] = (np.eye(2) + 0.3 * rng.normal(size=(batch, num_kp, 2, 2))).astype("float32")
    return kp


def test_inverse_2x2_matches_numpy(rng):
    matrices = (np.eye(2) + rng.normal(size=(3, 4, 2, 2))).astype("float32")
    np.testing.assert_allclose(run(inverse_2x2, matrices), np.linalg.inv(matrices), rtol=1e-4, atol=1e-4)


def test_inverse_2x2_has_no_epsilon():
    singular = np.array([[[1.0, 2.0], [2.0, 4.0]]], "float32")
    assert not np.all(np.isfinite(run(inverse_2x2, singular)))


def test_sparse_motions_follow_eq_4(rng):
    kp_s, kp_d = random_kp(rng), random_kp(rng)
    motions = run(lambda s, d: sparse_motions((5, 6), d, s), kp_s, kp_d)
    assert motions.shape == (2, 4, 5, 6, 2)
    z = to_numpy(make_coordinate_grid((5, 6)))
    np.testing.assert_allclose(motions[:, 0], np.broadcast_to(z, (2, 5, 6, 2)), atol=1e-6)
    jacobian = kp_s["jacobian"] @ np.linalg.inv(kp_d["jacobian"])
    offsets = z[None, None] - kp_d["value"][:, :, None, None]
    expected = np.einsum("bkij,bkhwj->bkhwi", jacobian, offsets) + kp_s["value"][:, :, None, None]
    np.testing.assert_allclose(motions[:, 1:], expected, atol=2e-5)
    np.testing.assert_allclose(
        run(lambda s, d: relative_jacobians(s, d), kp_s, kp_d), jacobian, rtol=1e-4, atol=1e-5
    )


def test_zero_order_motions_are_translations(rng):
    kp_s, kp_d = random_kp(rng, jacobian=False), random_kp(rng, jacobian=False)
    motions = run(lambda s, d: sparse_motions((4, 4), d, s), kp_s, kp_d)
    z = to_numpy(make_coordinate_grid((4, 4)))
    expected = z[None, None] - kp_d["value"][:, :, None, None] + kp_s["value"][:, :, None, None]
    np.testing.assert_allclose(motions[:, 1:], expected, atol=1e-6)


def test_identical_keypoints_give_identity_motions(rng):
    kp = random_kp(rng)
    motions = run(lambda k: sparse_motions((6, 6), k, k), kp)
    z = to_numpy(make_coordinate_grid((6, 6)))
    np.testing.assert_allclose(motions, np.broadcast_to(z, motions.shape), atol=1e-5)


def test_sparse_motions_reject_bad_keypoints(rng):
    kp = random_kp(rng)
    with pytest.raises(ValueError, match="kp_driving"):
        sparse_motions((4, 4), kp["value"], kp)
    with pytest.raises(ValueError, match=r"kp_source\['jacobian'\]"):
        sparse_motions((4, 4), kp, {"value": kp["value"], "jacobian": kp["jacobian"][:, :2]})


def test_heatmap_representations_follow_eq_6(rng):
    kp_s, kp_d = random_kp(rng), random_kp(rng)
    heatmaps = run(lambda s, d: heatmap_representations((7, 5), d, s, 0.02), kp_s, kp_d)
    assert heatmaps.shape == (2, 7, 5, 4)
    np.testing.assert_array_equal(heatmaps[..., 0], 0.0)
    expected = to_numpy(kp2gaussian(kp_d, (7, 5), 0.02)) - to_numpy(kp2gaussian(kp_s, (7, 5), 0.02))
    np.testing.assert_allclose(heatmaps[..., 1:], expected, atol=1e-6)


def test_deformed_sources_follow_eq_7(rng):
    source = rng.random((2, 6, 6, 3), dtype="float32")
    motions = rng.uniform(-1.2, 1.2, size=(2, 4, 6, 6, 2)).astype("float32")
    for align_corners in (True, False):
        ours = run(lambda s, m: deformed_sources(s, m, align_corners), source, motions)
        assert ours.shape == (2, 4, 6, 6, 3)
        for k in range(4):
            expected = to_numpy(grid_sample(source, motions[:, k], align_corners=align_corners))
            np.testing.assert_allclose(ours[:, k], expected, atol=1e-6)


def test_identity_motion_reproduces_the_source(rng):
    source = rng.random((1, 5, 7, 2), dtype="float32")
    identity = np.broadcast_to(to_numpy(make_coordinate_grid((5, 7))), (1, 2, 5, 7, 2)).copy()
    np.testing.assert_allclose(run(deformed_sources, source, identity)[:, 1], source, atol=1e-6)


@pytest.mark.parametrize("fixture", ["fomm_tiny", "fomm_tiny_align_corners"])
def test_deformed_sources_match_the_official_ones(fixture, request):
    """Eq. 4 and 7 alone, on the fixture's keypoints and downsampled source.

    Tolerance: 10x the README floor of generator/sparse_deformed (2.3e-5).
    """
    npz = request.getfixturevalue(fixture)
    config = fixture_config(npz)
    kp_s = {k: npz[f"eval/kp_source/{k}"] for k in ("value", "jacobian")}
    kp_d = {k: npz[f"eval/kp_driving/{k}"] for k in ("value", "jacobian")}
    down = AntiAliasInterpolation2d(3, config["gen"]["dense_motion_params"]["scale_factor"])

    def deform(source, s_value, s_jacobian, d_value, d_jacobian):
        source = down(source)
        motions = sparse_motions(
            source.shape[1:3], {"value": d_value, "jacobian": d_jacobian}, {"value": s_value, "jacobian": s_jacobian}
        )
        return deformed_sources(source, motions, config["align_corners"])

    ours = run(deform, nhwc(npz["inputs/source"]), kp_s["value"], kp_s["jacobian"], kp_d["value"], kp_d["jacobian"])
    reference = np.transpose(npz["eval/generator/sparse_deformed"], (0, 1, 3, 4, 2))
    assert relative_error(ours, reference) < 2.3e-4
