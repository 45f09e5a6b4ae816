"""Keypoints as heatmaps, and the keypoint detector (chapter 2).

Conventions: images NHWC in [0, 1]; keypoints ``(B, K, 2)`` hold **(x, y)** in
[-1, 1] (x along the width, -1 at the centre of the first pixel, see
:func:`kmt.warping.make_coordinate_grid`); Jacobians ``(B, K, 2, 2)`` with
``J[b, k, i, j] = d(coordinate i) / d(coordinate j)``; heatmaps are
channels-last, ``(B, h, w, K)``.

* :func:`kp2gaussian` turns keypoints into Gaussian bumps (the reverse way);
* :func:`spatial_softmax` and :func:`soft_argmax` turn the detector's raw maps
  into a probability per pixel and its expected position;
* :class:`KPDetector` is the reference's keypoint detector: an hourglass, a
  7 x 7 head giving one heatmap per keypoint, and an optional 7 x 7 head giving
  the four Jacobian entries per pixel, averaged under each heatmap.
"""

import keras
import numpy as np
from keras import ops

from kmt.layers import Conv2D, Hourglass, conv2d
from kmt.warping import AntiAliasInterpolation2d, make_coordinate_grid

__all__ = ["KP_VARIANCE", "kp2gaussian", "spatial_softmax", "soft_argmax", "KPDetector"]

KP_VARIANCE = 0.01
"""Variance of the Gaussians the dense motion network and the discriminator draw (the reference's default)."""


def _keypoint_values(kp, name="kp"):
    value = kp["value"] if isinstance(kp, dict) else kp
    value = ops.convert_to_tensor(value)
    if len(value.shape) < 2 or value.shape[-1] != 2:
        raise ValueError(
            f"`{name}` must be keypoints of shape (batch, num_kp, 2) holding (x, y), or a dict "
            f"with such a 'value'; got shape {tuple(value.shape)}."
        )
    return value


def kp2gaussian(kp, spatial_size, kp_variance=KP_VARIANCE):
    """Draw each keypoint as an unnormalised Gaussian on an ``(h, w)`` grid.

    ``out[b, i, j, k] = exp(-|z_ij - kp[b, k]|**2 / (2 * kp_variance))`` where
    ``z_ij`` is the normalised position of pixel ``(i, j)``.

    Args:
        kp: keypoints ``(B, K, 2)`` as (x, y), or a dict whose ``"value"`` they are.
            Any number of leading axes is accepted: ``(..., K, 2)``.
        spatial_size: ``(h, w)`` of the heatmaps.
        kp_variance: variance of every Gaussian, in normalised units.

    Returns:
        ``(B, h, w, K)`` (generally ``(..., h, w, K)``), peak value 1.
    """
    mean = _keypoint_values(kp)
    grid = ops.cast(make_coordinate_grid(spatial_size), mean.dtype)  # (h, w, 2)
    leading = len(mean.shape) - 2
    mean = ops.expand_dims(ops.expand_dims(mean, -3), -3)  # (..., 1, 1, K, 2)
    grid = ops.reshape(grid, (1,) * leading + tuple(grid.shape[:2]) + (1, 2))
    squared = ops.sum(ops.square(grid - mean), axis=-1)
    return ops.exp(-0.5 * squared / kp_variance)


def spatial_softmax(logits, temperature=1.0):
    """Softmax over all pixels of each channel: ``(B, h, w, K) -> (B, h, w, K)``, each map sums to 1.

    The logits are divided by ``temperature`` first: lower temperatures give
    sharper maps.
    """
    h, w, k = logits.shape[1:]
    flat = ops.reshape(logits, (-1, h * w, k))
    return ops.reshape(ops.softmax(flat / temperature, axis=1), (-1, h, w, k))


def soft_argmax(heatmap):
    """Expected (x, y) position under each map: ``(B, h, w, K) -> (B, K, 2)``.

    ``heatmap`` should be a distribution over pixels (e.g. from
    :func:`spatial_softmax`); the result is ``sum_ij heatmap[b, i, j, k] * z_ij``.
    """
    grid = ops.cast(make_coordinate_grid(heatmap.shape[1:3]), heatmap.dtype)
    return ops.einsum("bhwk,hwc->bkc", heatmap, grid)


@keras.saving.register_keras_serializable(package="kmt")
class KPDetector(keras.Model):
    """The keypoint detector of FOMM: image ``(B, H, W, num_channels)`` -> keypoints and Jacobians.

    The image is first downsampled by ``scale_factor`` (anti-aliased), then an
    :class:`~kmt.layers.Hourglass` gives features; a 7 x 7 convolution padded
    by ``pad`` gives one map per keypoint, turned into a distribution by
    :func:`spatial_softmax` (with ``temperature``) and into a position by
    :func:`soft_argmax`. With ``estimate_jacobian``, a second 7 x 7 convolution
    gives four maps per keypoint (one shared set when
    ``single_jacobian_map``), whose heatmap-weighted sums are the Jacobian
    entries; it starts at zero weights and the identity as bias, so an
    untrained detector predicts identity Jacobians.

    The arguments are those of the reference's ``KPDetector`` (so
    ``KPDetector(**kp_detector_params, **common_params)`` builds it from an
    official config).

    ``call(x)`` returns a dict: ``"value"`` ``(B, K, 2)``; ``"jacobian"``
    ``(B, K, 2, 2)`` when ``estimate_jacobian``; ``"heatmap"`` ``(B, h, w, K)``,
    the distributions the keypoints are the means of.
    """

    def __init__(
        self,
        block_expansion,
        num_kp,
        num_channels,
        max_features,
        num_blocks,
        temperature,
        estimate_jacobian=False,
        scale_factor=1,
        single_jacobian_map=False,
        pad=0,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")  # float32 interface under a mixed policy; the blocks inside follow it
        super().__init__(**kwargs)
        self.block_expansion = int(block_expansion)
        self.num_kp = int(num_kp)
        self.num_channels = int(num_channels)
        self.max_features = int(max_features)
        self.num_blocks = int(num_blocks)
        self.temperature = float(temperature)
        self.estimate_jacobian = bool(estimate_jacobian)
        self.scale_factor = float(scale_factor)
        self.single_jacobian_map = bool(single_jacobian_map)
        self.pad = int(pad)
        if self.temperature <= 0:
            raise ValueError(f"`temperature` must be positive; got {temperature!r}.")
        if self.pad < 0:
            raise ValueError(f"`pad` must be a non-negative int; got {pad!r}.")

        self.down = (
            AntiAliasInterpolation2d(self.num_channels, self.scale_factor, name="down")
            if self.scale_factor != 1
            else None
        )
        self.predictor = Hourglass(
            self.block_expansion,
            in_features=self.num_channels,
            max_features=self.max_features,
            num_blocks=self.num_blocks,
            name="predictor",
        )
        features = self.predictor.out_filters
        self.kp = conv2d(features, self.num_kp, 7, 0, name="kp", dtype="float32")  # heads in float32 (mixed precision)
        self.num_jacobian_maps = 0
        self.jacobian = None
        if self.estimate_jacobian:
            self.num_jacobian_maps = 1 if self.single_jacobian_map else self.num_kp
            self.jacobian = Conv2D(
                4 * self.num_jacobian_maps,
                7,
                padding="valid",
                kernel_initializer="zeros",
                bias_initializer="zeros",
                name="jacobian",
                dtype="float32",
            )

    def build(self, input_shape=None):
        if input_shape is not None and input_shape[-1] not in (None, self.num_channels):
            raise ValueError(
                f"KPDetector expects images of shape (batch, height, width, {self.num_channels}); "
                f"got shape {tuple(input_shape)}."
            )
        self.predictor.build((None, None, None, self.num_channels))
        features = (None, None, None, self.predictor.out_filters)
        self.kp.build(features)
        if self.jacobian is not None:
            self.jacobian.build(features)
            identity = np.tile(np.array([1.0, 0.0, 0.0, 1.0], "float32"), self.num_jacobian_maps)
            self.jacobian.bias.assign(identity)

    def _head(self, layer, features):
        if self.pad:
            p = self.pad
            features = ops.pad(features, ((0, 0), (p, p), (p, p), (0, 0)))
        return layer(features)

    def call(self, x, training=None):
        if len(x.shape) != 4 or x.shape[-1] != self.num_channels:
            raise ValueError(
                f"KPDetector expects images of shape (batch, height, width, {self.num_channels}); "
                f"got shape {tuple(x.shape)}."
            )
        if self.down is not None:
            x = self.down(x)
        features = self.predictor(x, training=training)
        heatmap = spatial_softmax(self._head(self.kp, features), self.temperature)
        out = {"value": soft_argmax(heatmap), "heatmap": heatmap}
        if self.jacobian is not None:
            jacobian_map = self._head(self.jacobian, features)
            h, w = jacobian_map.shape[1:3]
            jacobian_map = ops.reshape(jacobian_map, (-1, h, w, self.num_jacobian_maps, 4))
            jacobian = ops.sum(ops.expand_dims(heatmap, -1) * jacobian_map, axis=(1, 2))
            out["jacobian"] = ops.reshape(jacobian, (-1, self.num_kp, 2, 2))
        return out

    def get_config(self):
        return {
            **super().get_config(),
            "block_expansion": self.block_expansion,
            "num_kp": self.num_kp,
            "num_channels": self.num_channels,
            "max_features": self.max_features,
            "num_blocks": self.num_blocks,
            "temperature": self.temperature,
            "estimate_jacobian": self.estimate_jacobian,
            "scale_factor": self.scale_factor,
            "single_jacobian_map": self.single_jacobian_map,
            "pad": self.pad,
        }
