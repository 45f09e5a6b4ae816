"""The dense motion network: from sparse keypoint motions to one dense motion field (chapter 4).

Given the source image and the keypoints of the source and driving frames,
the network sees, for every slot ``k`` (slot 0 the background, then one per
keypoint), the heatmap difference of Eq. (6) and the source warped by the
keypoint's motion of Eq. (4) (Sec. 3.1). An hourglass turns them into

* ``mask``: a softmax over the ``K + 1`` slots at every pixel, saying which
  keypoint's motion (or the background's) moves that pixel; the dense motion
  is the mask-weighted sum of the sparse motions (Eq. 7);
* ``occlusion_map`` (optional): a sigmoid map, near 0 where the driving frame
  shows something the source does not (Sec. 3.2).

Everything runs at ``scale_factor`` times the image resolution.
"""

import keras
from keras import ops

from kmt.keypoints import KP_VARIANCE
from kmt.layers import Hourglass, conv2d
from kmt.motion import deformed_sources, heatmap_representations, sparse_motions
from kmt.warping import AntiAliasInterpolation2d

__all__ = ["DenseMotionNetwork"]


@keras.saving.register_keras_serializable(package="kmt")
class DenseMotionNetwork(keras.layers.Layer):
    """Predicts the dense motion ``T_{S<-D}`` and the occlusion map from keypoints.

    Args (those of the reference, plus ``align_corners``):
        block_expansion, num_blocks, max_features: the hourglass.
        num_kp, num_channels: keypoints and image channels.
        estimate_occlusion_map: also predict the occlusion map.
        scale_factor: resolution of the motion relative to the image.
        kp_variance: variance of the keypoint Gaussians (Eq. 6).
        align_corners: the ``grid_sample`` convention of the deformed sources.

    ``call(source_image, kp_driving, kp_source)`` with the source ``(B, H, W, C)``
    and keypoint dicts returns, at ``(h, w) = scale_factor * (H, W)``:

    * ``"sparse_deformed"`` ``(B, K + 1, h, w, C)``: the deformed sources;
    * ``"mask"`` ``(B, h, w, K + 1)``: channel 0 is the background;
    * ``"deformation"`` ``(B, h, w, 2)``: (x, y) where each driving pixel reads the source;
    * ``"occlusion_map"`` ``(B, h, w, 1)`` when ``estimate_occlusion_map``.
    """

    def __init__(
        self,
        block_expansion,
        num_blocks,
        max_features,
        num_kp,
        num_channels,
        estimate_occlusion_map=False,
        scale_factor=1,
        kp_variance=KP_VARIANCE,
        align_corners=True,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")  # float32 interface under a mixed policy; the blocks inside follow it
        super().__init__(**kwargs)
        self.block_expansion = int(block_expansion)
        self.num_blocks = int(num_blocks)
        self.max_features = int(max_features)
        self.num_kp = int(num_kp)
        self.num_channels = int(num_channels)
        self.estimate_occlusion_map = bool(estimate_occlusion_map)
        self.scale_factor = float(scale_factor)
        self.kp_variance = float(kp_variance)
        self.align_corners = bool(align_corners)

        self.down = (
            AntiAliasInterpolation2d(self.num_channels, self.scale_factor, name="down")
            if self.scale_factor != 1
            else None
        )
        self.in_features = (self.num_kp + 1) * (self.num_channels + 1)
        self.hourglass = Hourglass(
            block_expansion=self.block_expansion,
            in_features=self.in_features,
            max_features=self.max_features,
            num_blocks=self.num_blocks,
            name="hourglass",
        )
        features = self.hourglass.out_filters
        # The heads compute in float32 under a mixed precision policy: softmax, deformation and occlusion stay exact.
        self.mask = conv2d(features, self.num_kp + 1, 7, 3, name="mask", dtype="float32")
        self.occlusion = (conv2d(features, 1, 7, 3, name="occlusion", dtype="float32")
                          if self.estimate_occlusion_map else None)

    def build(self, input_shape=None):
        self.hourglass.build((None, None, None, self.in_features))
        features = (None, None, None, self.hourglass.out_filters)
        self.mask.build(features)
        if self.occlusion is not None:
            self.occlusion.build(features)

    def motion_inputs(self, source_image, kp_driving, kp_source):
        """The hourglass input and the sparse motions, at the source's resolution.

        Returns ``(inputs, motions, deformed)``: ``inputs`` ``(B, h, w, (K + 1) * (C + 1))``
        holds per slot ``k`` the heatmap difference then the ``C`` channels of the
        deformed source (channel ``k * (C + 1) + c``); ``motions`` is
        ``(B, K + 1, h, w, 2)`` and ``deformed`` ``(B, K + 1, h, w, C)``.
        """
        h, w = source_image.shape[1:3]
        heatmaps = heatmap_representations((h, w), kp_driving, kp_source, self.kp_variance)
        motions = sparse_motions((h, w), kp_driving, kp_source)
        deformed = deformed_sources(source_image, motions, self.align_corners)
        per_slot = ops.concatenate(
            [ops.expand_dims(heatmaps, -1), ops.transpose(deformed, (0, 2, 3, 1, 4))], axis=-1
        )  # (B, h, w, K + 1, C + 1)
        inputs = ops.reshape(per_slot, (-1, h, w, self.in_features))
        return inputs, motions, deformed

    def call(self, source_image, kp_driving, kp_source, training=None):
        if len(source_image.shape) != 4 or source_image.shape[-1] != self.num_channels:
            raise ValueError(
                f"DenseMotionNetwork expects `source_image` of shape (batch, height, width, "
                f"{self.num_channels}); got {tuple(source_image.shape)}."
            )
        if kp_driving["value"].shape[1] != self.num_kp:
            raise ValueError(
                f"DenseMotionNetwork was built for {self.num_kp} keypoints; got `kp_driving['value']` "
                f"of shape {tuple(kp_driving['value'].shape)}."
            )
        if self.down is not None:
            source_image = self.down(source_image)
        inputs, motions, deformed = self.motion_inputs(source_image, kp_driving, kp_source)
        features = self.hourglass(inputs, training=training)
        mask = ops.softmax(self.mask(features), axis=-1)
        deformation = ops.einsum("bhwk,bkhwc->bhwc", mask, motions)
        out = {"sparse_deformed": deformed, "mask": mask, "deformation": deformation}
        if self.occlusion is not None:
            out["occlusion_map"] = ops.sigmoid(self.occlusion(features))
        return out

    def get_config(self):
        return {
            **super().get_config(),
            "block_expansion": self.block_expansion,
            "num_blocks": self.num_blocks,
            "max_features": self.max_features,
            "num_kp": self.num_kp,
            "num_channels": self.num_channels,
            "estimate_occlusion_map": self.estimate_occlusion_map,
            "scale_factor": self.scale_factor,
            "kp_variance": self.kp_variance,
            "align_corners": self.align_corners,
        }
