"""The training losses of FOMM (chapter 6): perceptual pyramid, equivariance, LSGAN, feature matching.

Conventions: images NHWC in [0, 1]; keypoints ``(B, K, 2)`` as (x, y) in [-1, 1];
Jacobians ``(B, K, 2, 2)`` with entry ``[i, j] = d x_i / d z_j``. Every loss is a
scalar and is returned **unweighted**; :func:`weighted_losses` applies the
``loss_weights`` of a training config the way the reference does.
"""

import numpy as np
from keras import ops

from kmt import warping
from kmt.coordinates import inverse_2x2
# The perceptual network lives in kmt.vgg; these names stay importable from here.
from kmt.vgg import (  # noqa: F401
    CAFFE_BGR_MEAN,
    IMAGENET_MEAN,
    IMAGENET_STD,
    VGG19_LAYERS,
    VGG19Features,
    vgg19_weights_path,
)

__all__ = [
    "EquivarianceTransform",
    "sample_transform_parameters",
    "equivariance_value_loss",
    "equivariance_jacobian_loss",
    "VGG19Features",
    "vgg19_weights_path",
    "perceptual_loss",
    "vgg_layers_needed",
    "generator_gan_loss",
    "discriminator_gan_loss",
    "feature_matching_losses",
]

TPS_EPSILON = 1e-6


def sample_transform_parameters(rng, batch_size, sigma_affine, sigma_tps=None, points_tps=None):
    """Random parameters of the equivariance transform, as the reference draws them.

    ``theta = I + N(0, sigma_affine)`` of shape ``(B, 2, 3)``; when both
    ``sigma_tps`` and ``points_tps`` are given, ``control_params ~ N(0, sigma_tps)``
    of shape ``(B, 1, points_tps ** 2)`` on a ``points_tps x points_tps`` grid of
    control points. ``rng`` is a ``numpy.random.Generator`` (sampling outside the
    compiled training step keeps the step a pure function of its inputs).
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1; got {batch_size!r}.")
    theta = np.eye(2, 3, dtype="float32")[None] + rng.normal(0.0, sigma_affine, (batch_size, 2, 3))
    params = {"theta": theta.astype("float32")}
    if (sigma_tps is None) != (points_tps is None):
        raise ValueError(
            "`sigma_tps` and `points_tps` go together: give both for a thin-plate-spline warp "
            f"or neither; got sigma_tps={sigma_tps!r}, points_tps={points_tps!r}."
        )
    if sigma_tps is not None:
        params["control_params"] = rng.normal(0.0, sigma_tps, (batch_size, 1, points_tps**2)).astype("float32")
        params["control_points"] = ops.convert_to_numpy(
            warping.make_coordinate_grid((points_tps, points_tps))
        )[None].astype("float32")
    return params


class EquivarianceTransform:
    """A random affine + thin-plate-spline warp of normalised coordinates (paper Sec. 3.3).

    ``warp_coordinates(z) = theta[:, :2] z + theta[:, 2] + tps(z)`` where the
    thin-plate-spline term adds the *same* scalar to x and y:
    ``tps(z) = sum_k w_k r_k^2 log(r_k + 1e-6)`` with ``r_k = |z - p_k|_1``, the L1
    distance to control point ``p_k`` (the reference uses the L1 norm here, not the
    Euclidean radius of a textbook thin-plate spline; kmt keeps that quirk).

    Args:
        theta: ``(B, 2, 3)`` affine part.
        control_points: ``(1, P, P, 2)`` or ``(1, P*P, 2)`` control points, or ``None``.
        control_params: ``(B, 1, P*P)`` spline weights, or ``None`` (affine only).
    """

    def __init__(self, theta, control_points=None, control_params=None):
        self.theta = ops.convert_to_tensor(theta, "float32")
        if tuple(self.theta.shape[1:]) != (2, 3):
            raise ValueError(f"`theta` must have shape (batch, 2, 3); got {tuple(self.theta.shape)}.")
        self.tps = control_points is not None
        if self.tps != (control_params is not None):
            raise ValueError("`control_points` and `control_params` must be given together.")
        if self.tps:
            self.control_points = ops.reshape(ops.convert_to_tensor(control_points, "float32"), (1, 1, -1, 2))
            self.control_params = ops.convert_to_tensor(control_params, "float32")
            if self.control_params.shape[-1] != self.control_points.shape[2]:
                raise ValueError(
                    f"`control_params` has {self.control_params.shape[-1]} weights for "
                    f"{self.control_points.shape[2]} control points."
                )

    @classmethod
    def from_parameters(cls, params):
        """Build from the dict :func:`sample_transform_parameters` returns."""
        return cls(params["theta"], params.get("control_points"), params.get("control_params"))

    def _distances(self, coordinates):
        """``(B, N, P*P, 2)`` offsets to every control point and their L1 lengths ``(B, N, P*P)``."""
        offsets = coordinates[:, :, None, :] - self.control_points
        return offsets, ops.sum(ops.abs(offsets), axis=-1)

    def warp_coordinates(self, coordinates):
        """``(B, N, 2)`` normalised (x, y) -> their images under the transform, ``(B, N, 2)``."""
        coordinates = ops.convert_to_tensor(coordinates, "float32")
        warped = ops.einsum("bij,bnj->bni", self.theta[:, :, :2], coordinates) + self.theta[:, None, :, 2]
        if self.tps:
            _, radius = self._distances(coordinates)
            basis = radius**2 * ops.log(radius + TPS_EPSILON)
            warped = warped + ops.sum(basis * self.control_params, axis=-1, keepdims=True)
        return warped

    def jacobian(self, coordinates):
        """``(B, N, 2, 2)``: entry ``[i, j]`` is d warped_i / d coordinate_j, computed analytically."""
        coordinates = ops.convert_to_tensor(coordinates, "float32")
        batch, points = ops.shape(coordinates)[0], coordinates.shape[1]
        jac = ops.broadcast_to(self.theta[:, None, :, :2], (batch, points, 2, 2))
        if self.tps:
            offsets, radius = self._distances(coordinates)
            slope = 2.0 * radius * ops.log(radius + TPS_EPSILON) + radius**2 / (radius + TPS_EPSILON)
            # d r / d z is sign(z - p) (zero where z_j = p_j, as autograd reports for |.| at 0).
            row = ops.sum((slope * self.control_params)[..., None] * ops.sign(offsets), axis=2)
            jac = jac + row[:, :, None, :]
        return jac

    def transform_frame(self, frame, align_corners=True):
        """Warp an NHWC ``frame`` by the transform, reading with reflection padding."""
        frame = ops.convert_to_tensor(frame)
        h, w = frame.shape[1], frame.shape[2]
        grid = ops.reshape(warping.make_coordinate_grid((h, w)), (1, h * w, 2))
        grid = ops.broadcast_to(grid, (ops.shape(self.theta)[0], h * w, 2))
        grid = ops.reshape(self.warp_coordinates(grid), (-1, h, w, 2))
        return warping.grid_sample(frame, grid, padding_mode="reflection", align_corners=align_corners)


def equivariance_value_loss(kp_driving, kp_transformed, transform):
    """Mean |kp(D) - T(kp(T^-1 D))|: keypoints must move with the frame (unweighted)."""
    warped = transform.warp_coordinates(kp_transformed["value"])
    return ops.mean(ops.abs(ops.subtract(kp_driving["value"], warped)))


def equivariance_jacobian_loss(kp_driving, kp_transformed, transform):
    """Mean |I - J_D^-1 (dT J_T)|: local affine frames must move with the frame (unweighted).

    As in the reference, the inverse has no epsilon: a singular driving Jacobian
    gives an infinite loss rather than a silently regularised one.
    """
    moved = ops.matmul(transform.jacobian(kp_transformed["value"]), kp_transformed["jacobian"])
    product = ops.matmul(inverse_2x2(kp_driving["jacobian"]), moved)
    return ops.mean(ops.abs(ops.eye(2, dtype=product.dtype) - product))


def vgg_layers_needed(layer_weights):
    """How many VGG layers a perceptual loss with these weights reads (the last non-zero one)."""
    nonzero = [i for i, w in enumerate(layer_weights) if w]
    return nonzero[-1] + 1 if nonzero else 0


def perceptual_loss(vgg, generated_pyramid, real_pyramid, layer_weights):
    """Sum over scales and VGG layers of ``weight_i * mean |vgg_i(generated) - vgg_i(real)|``.

    The pyramids are the dicts :class:`kmt.warping.ImagePyramid` returns; the real
    features are held constant (no gradient), as in the reference. The layer
    weights are the config's ``loss_weights["perceptual"]`` (five numbers).
    """
    if len(layer_weights) != len(VGG19_LAYERS):
        raise ValueError(
            f"`layer_weights` must have {len(VGG19_LAYERS)} entries (relu1_1 .. relu5_1); got {list(layer_weights)}."
        )
    if any(layer_weights[vgg.num_layers:]):
        raise ValueError(
            f"`vgg` computes {vgg.num_layers} layers but `layer_weights` {list(layer_weights)} weights deeper ones."
        )
    total = 0.0
    for key in generated_pyramid:
        height, width = generated_pyramid[key].shape[1:3]
        smallest = 2 ** (vgg.num_layers - 1)
        if min(height, width) < smallest:
            raise ValueError(
                f"The pyramid level {key!r} is {height} x {width} pixels; VGG19 up to relu{vgg.num_layers}_1 "
                f"needs at least {smallest} x {smallest}. Drop the smallest entries of train_params['scales'] "
                "for images this small."
            )
        fake = vgg(generated_pyramid[key])
        real = vgg(real_pyramid[key])
        for weight, a, b in zip(layer_weights, fake, real):
            if weight:
                a, b = ops.cast(a, "float32"), ops.cast(b, "float32")  # 16-bit features under mixed precision
                total = total + weight * ops.mean(ops.abs(a - ops.stop_gradient(b)))
    return total


def generator_gan_loss(generated_maps):
    """LSGAN generator loss: sum over scales of mean (1 - D(G))^2 (``prediction_map_<s>`` keys)."""
    keys = [k for k in generated_maps if k.startswith("prediction_map_")]
    return sum(ops.mean((1.0 - ops.cast(generated_maps[k], "float32")) ** 2) for k in keys)


def discriminator_gan_loss(real_maps, generated_maps):
    """LSGAN discriminator loss: sum over scales of mean((1 - D(real))^2 + D(fake)^2)."""
    keys = [k for k in real_maps if k.startswith("prediction_map_")]
    real, fake = ({k: ops.cast(maps[k], "float32") for k in keys} for maps in (real_maps, generated_maps))
    return sum(ops.mean((1.0 - real[k]) ** 2 + fake[k] ** 2) for k in keys)


def feature_matching_losses(real_maps, generated_maps):
    """Per-layer mean |D_i(real) - D_i(fake)|, summed over scales: a list, one entry per layer."""
    keys = [k for k in real_maps if k.startswith("feature_maps_")]
    per_layer = None
    for key in keys:
        pairs = zip(real_maps[key], generated_maps[key])
        values = [ops.mean(ops.abs(ops.cast(a, "float32") - ops.cast(b, "float32"))) for a, b in pairs]
        per_layer = values if per_layer is None else [p + v for p, v in zip(per_layer, values)]
    return per_layer or []
