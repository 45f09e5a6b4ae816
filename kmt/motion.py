"""First-order motion around keypoints: the equations of Sec. 3 of the paper (chapter 3).

Plain functions, usable on their own and by :class:`kmt.dense_motion.DenseMotionNetwork`.
Keypoints are dicts ``{"value": (B, K, 2), "jacobian": (B, K, 2, 2)}`` in the
conventions of :mod:`kmt.keypoints` (``"jacobian"`` may be absent: zero-order
motion). Every result has ``K + 1`` slots, slot 0 being the background (the
identity motion, a zero heatmap):

* :func:`sparse_motions`, Eq. (4): for each keypoint ``k``, the coordinate map
  ``T_k(z) = kp_s[k] + J_k (z - kp_d[k])`` with ``J_k = J_s[k] J_d[k]^-1``,
  which tells each driving-frame pixel ``z`` where to read the source;
* :func:`heatmap_representations`, Eq. (6): Gaussians at the driving
  keypoints minus Gaussians at the source keypoints;
* :func:`deformed_sources`: the source image warped by each ``T_k`` of Eq. (4), the
  inputs of the dense motion's Eq. (7) (Sec. 3.1).
"""

from keras import ops

from kmt.coordinates import inverse_2x2
from kmt.keypoints import KP_VARIANCE, kp2gaussian
from kmt.warping import grid_sample, make_coordinate_grid

__all__ = ["inverse_2x2", "relative_jacobians", "sparse_motions", "heatmap_representations", "deformed_sources"]


def _check_kp(kp, name):
    """``kp`` with its arrays as tensors, after checking its keys and shapes."""
    if not isinstance(kp, dict) or "value" not in kp:
        raise ValueError(
            f"`{name}` must be a dict with 'value' (batch, num_kp, 2) and optionally "
            f"'jacobian' (batch, num_kp, 2, 2); got {type(kp).__name__}."
        )
    kp = {k: ops.convert_to_tensor(v) for k, v in kp.items() if k in ("value", "jacobian") and v is not None}
    value = kp["value"]
    if len(value.shape) != 3 or value.shape[-1] != 2:
        raise ValueError(
            f"`{name}['value']` must have shape (batch, num_kp, 2); got {tuple(value.shape)}."
        )
    jacobian = kp.get("jacobian")
    if jacobian is not None and tuple(jacobian.shape[1:]) != (value.shape[1], 2, 2):
        raise ValueError(
            f"`{name}['jacobian']` must have shape (batch, {value.shape[1]}, 2, 2); got "
            f"{tuple(jacobian.shape)}."
        )
    return kp


def relative_jacobians(kp_source, kp_driving):
    """``J_s J_d^-1`` for each keypoint: ``(B, K, 2, 2)``, the linear part of Eq. (4)."""
    return ops.matmul(kp_source["jacobian"], inverse_2x2(kp_driving["jacobian"]))


def sparse_motions(spatial_size, kp_driving, kp_source):
    """Eq. (4): where each pixel of the driving frame reads the source, once per keypoint.

    Args:
        spatial_size: ``(h, w)`` of the motion fields.
        kp_driving, kp_source: keypoint dicts (see the module docstring). When
            ``kp_driving`` has a ``"jacobian"``, both must.

    Returns:
        ``(B, K + 1, h, w, 2)`` sampling grids of (x, y): slot 0 is the identity
        grid (the background does not move), slot ``k + 1`` is
        ``kp_s[k] + J_s[k] J_d[k]^-1 (z - kp_d[k])``.
    """
    kp_driving = _check_kp(kp_driving, "kp_driving")
    kp_source = _check_kp(kp_source, "kp_source")
    value_d, value_s = kp_driving["value"], kp_source["value"]
    identity = ops.cast(make_coordinate_grid(spatial_size), value_s.dtype)  # (h, w, 2)
    offsets = identity[None, None] - value_d[:, :, None, None, :]  # (B, K, h, w, 2)
    if kp_driving.get("jacobian") is not None:
        if kp_source.get("jacobian") is None:
            raise ValueError("`kp_source` needs a 'jacobian' when `kp_driving` has one.")
        jacobian = relative_jacobians(kp_source, kp_driving)
        offsets = ops.einsum("bkij,bkhwj->bkhwi", jacobian, offsets)
    driving_to_source = offsets + value_s[:, :, None, None, :]
    background = ops.zeros_like(value_s[:, :1, None, None, :]) + identity  # (B, 1, h, w, 2)
    return ops.concatenate([background, driving_to_source], axis=1)


def heatmap_representations(spatial_size, kp_driving, kp_source, kp_variance=KP_VARIANCE):
    """Eq. (6): ``H_k(z) = G(z; kp_d[k]) - G(z; kp_s[k])``, with a zero background map first.

    Returns ``(B, h, w, K + 1)``: channel 0 is zeros, channel ``k + 1`` the
    difference of the Gaussians (:func:`kmt.keypoints.kp2gaussian`) of keypoint ``k``.
    """
    kp_driving = _check_kp(kp_driving, "kp_driving")
    kp_source = _check_kp(kp_source, "kp_source")
    heatmap = kp2gaussian(kp_driving, spatial_size, kp_variance) - kp2gaussian(
        kp_source, spatial_size, kp_variance
    )
    return ops.pad(heatmap, ((0, 0), (0, 0), (0, 0), (1, 0)))


def deformed_sources(source_image, motions, align_corners=True):
    """The source image warped by each motion of :func:`sparse_motions` (Eq. 4; an input of Eq. 7).

    Args:
        source_image: ``(B, h, w, C)``.
        motions: ``(B, K + 1, h, w, 2)`` sampling grids.
        align_corners: passed to :func:`kmt.warping.grid_sample` (bilinear, zero padding).

    Returns:
        ``(B, K + 1, h, w, C)``: slot ``k`` is ``source_image`` read at ``motions[:, k]``.
    """
    source_image = ops.convert_to_tensor(source_image)
    motions = ops.convert_to_tensor(motions)
    if len(source_image.shape) != 4:
        raise ValueError(
            f"`source_image` must be (batch, height, width, channels); got {tuple(source_image.shape)}."
        )
    if len(motions.shape) != 5 or motions.shape[-1] != 2:
        raise ValueError(
            f"`motions` must be (batch, num_kp + 1, height, width, 2); got {tuple(motions.shape)}."
        )
    slots, h, w = motions.shape[1:4]
    channels = source_image.shape[-1]
    repeated = ops.repeat(source_image, slots, axis=0)  # b-major: row b * slots + k
    grids = ops.reshape(motions, (-1, h, w, 2))
    warped = grid_sample(repeated, grids, align_corners=align_corners)
    return ops.reshape(warped, (-1, slots, h, w, channels))
