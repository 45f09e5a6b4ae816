"""The occlusion-aware generator (chapter 5).

An encoder-decoder in the style of Johnson et al.: a 7 x 7
:class:`~kmt.layers.SameBlock2d`, ``num_down_blocks`` downsampling blocks,
then, in the middle, the source features are warped by the dense motion of
:class:`~kmt.dense_motion.DenseMotionNetwork` and multiplied by its occlusion
map, before ``num_bottleneck_blocks`` residual blocks, as many upsampling
blocks, a 7 x 7 convolution and a sigmoid give the predicted frame.
"""

import keras
from keras import ops

from kmt.coordinates import hourglass_width
from kmt.dense_motion import DenseMotionNetwork
from kmt.layers import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d, conv2d
from kmt.warping import grid_sample, resize_bilinear

__all__ = ["deform_input", "OcclusionAwareGenerator"]


def deform_input(inputs, deformation, align_corners=True):
    """Warp ``inputs`` ``(B, H, W, C)`` by ``deformation`` ``(B, h, w, 2)``.

    A deformation of another size is first resized bilinearly to ``(H, W)``
    (half-pixel centres, as ``F.interpolate(align_corners=False)``, whatever
    ``align_corners`` is); ``align_corners`` is the ``grid_sample`` convention.
    The warp is computed in the deformation's dtype (float32, also under a
    mixed precision policy: a 16-bit grid would misplace samples by pixels).
    """
    inputs = ops.cast(inputs, deformation.dtype)
    h, w = inputs.shape[1:3]
    if tuple(deformation.shape[1:3]) != (h, w):
        deformation = resize_bilinear(deformation, (h, w))
    return grid_sample(inputs, deformation, align_corners=align_corners)


@keras.saving.register_keras_serializable(package="kmt")
class OcclusionAwareGenerator(keras.Model):
    """Renders the source image as it would look with the driving frame's keypoints.

    The arguments are those of the reference's ``OcclusionAwareGenerator``
    (``OcclusionAwareGenerator(**generator_params, **common_params)`` builds it
    from an official config), plus ``align_corners``, the ``grid_sample``
    convention of every warp (``True``: PyTorch 1.0, what the official
    checkpoints were trained with; ``False``: the official code on PyTorch >= 1.3).
    ``dense_motion_params`` is a dict of :class:`DenseMotionNetwork` arguments,
    or ``None`` for no motion at all (an autoencoder). ``estimate_jacobian`` is
    accepted so that ``common_params`` can be passed unchanged; the dense
    motion uses Jacobians whenever the keypoints carry them.

    ``call(source_image, kp_driving, kp_source)`` with ``source_image``
    ``(B, H, W, C)`` and keypoint dicts returns a dict with ``"prediction"``
    ``(B, H, W, C)`` and, with a dense motion network, ``"deformed"`` (the
    source warped by the dense motion, ``(B, H, W, C)``), ``"mask"``,
    ``"sparse_deformed"``, ``"deformation"`` and, when estimated,
    ``"occlusion_map"``, as :class:`DenseMotionNetwork` returns them.

    Animating many frames of one source image repeats the encoder's work on
    that image: :meth:`encode_source` does it once, and ``call(...,
    source_features=...)`` reuses it (the same numbers, less work per
    frame).
    """

    def __init__(
        self,
        num_channels,
        num_kp,
        block_expansion,
        max_features,
        num_down_blocks,
        num_bottleneck_blocks,
        estimate_occlusion_map=False,
        dense_motion_params=None,
        estimate_jacobian=False,
        align_corners=True,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")  # float32 interface under a mixed policy; the blocks inside follow it
        super().__init__(**kwargs)
        self.num_channels = int(num_channels)
        self.num_kp = int(num_kp)
        self.block_expansion = int(block_expansion)
        self.max_features = int(max_features)
        self.num_down_blocks = int(num_down_blocks)
        self.num_bottleneck_blocks = int(num_bottleneck_blocks)
        self.estimate_occlusion_map = bool(estimate_occlusion_map)
        self.dense_motion_params = None if dense_motion_params is None else dict(dense_motion_params)
        self.estimate_jacobian = bool(estimate_jacobian)
        self.align_corners = bool(align_corners)

        self.dense_motion_network = None
        if self.dense_motion_params is not None:
            self.dense_motion_network = DenseMotionNetwork(
                num_kp=self.num_kp,
                num_channels=self.num_channels,
                estimate_occlusion_map=self.estimate_occlusion_map,
                align_corners=self.align_corners,
                name="dense_motion_network",
                **self.dense_motion_params,
            )
        width = lambda level: hourglass_width(self.block_expansion, self.max_features, level)  # noqa: E731
        self.first = SameBlock2d(self.num_channels, self.block_expansion, 7, 3, name="first")
        self.down_blocks = [
            DownBlock2d(width(i), width(i + 1), 3, 1, name=f"down_block_{i}")
            for i in range(self.num_down_blocks)
        ]
        n = self.num_down_blocks
        self.up_blocks = [
            UpBlock2d(width(n - i), width(n - i - 1), 3, 1, name=f"up_block_{i}") for i in range(n)
        ]
        self.bottleneck = [
            ResBlock2d(width(n), 3, 1, name=f"bottleneck_{i}") for i in range(self.num_bottleneck_blocks)
        ]
        self.final = conv2d(self.block_expansion, self.num_channels, 7, 3, name="final", dtype="float32")

    def build(self, input_shape=None):
        if input_shape is not None and input_shape[-1] not in (None, self.num_channels):
            raise ValueError(
                f"OcclusionAwareGenerator expects `source_image` of shape (batch, height, width, "
                f"{self.num_channels}); got {tuple(input_shape)}."
            )
        if self.dense_motion_network is not None:
            self.dense_motion_network.build()
        self.first.build((None, None, None, self.num_channels))
        for block in self.down_blocks + self.up_blocks + self.bottleneck:
            block.build((None, None, None, block.in_features))
        self.final.build((None, None, None, self.block_expansion))

    def _check_source(self, source_image):
        if len(source_image.shape) != 4 or source_image.shape[-1] != self.num_channels:
            raise ValueError(
                f"OcclusionAwareGenerator expects `source_image` of shape (batch, height, width, "
                f"{self.num_channels}); got {tuple(source_image.shape)}."
            )

    def encode_source(self, source_image, training=None):
        """The encoder's features of ``source_image``, before any warping.

        ``(B, H / 2**n, W / 2**n, min(max_features, block_expansion * 2**n))`` with
        ``n = num_down_blocks``: what ``call`` warps by the dense motion.
        """
        self._check_source(source_image)
        if not self.built:
            self.build(tuple(source_image.shape))
        out = self.first(source_image, training=training)
        for block in self.down_blocks:
            out = block(out, training=training)
        return out

    def call(self, source_image, kp_driving=None, kp_source=None, source_features=None, training=None):
        self._check_source(source_image)
        if source_features is None:
            out = self.encode_source(source_image, training=training)
        else:
            factor = 2**self.num_down_blocks
            expected = (
                source_image.shape[1] // factor,
                source_image.shape[2] // factor,
                hourglass_width(self.block_expansion, self.max_features, self.num_down_blocks),
            )
            if tuple(source_features.shape[1:]) != expected:
                raise ValueError(
                    f"`source_features` must be `encode_source(source_image)`, of shape (batch, "
                    f"{expected[0]}, {expected[1]}, {expected[2]}); got {tuple(source_features.shape)}."
                )
            out = source_features

        outputs = {}
        if self.dense_motion_network is not None:
            if kp_driving is None or kp_source is None:
                raise ValueError(
                    "OcclusionAwareGenerator with a dense motion network needs `kp_driving` and "
                    "`kp_source` (dicts with 'value' and, optionally, 'jacobian')."
                )
            motion = self.dense_motion_network(source_image, kp_driving, kp_source, training=training)
            outputs.update(motion)
            out = deform_input(out, motion["deformation"], self.align_corners)
            occlusion_map = motion.get("occlusion_map")
            if occlusion_map is not None:
                if tuple(occlusion_map.shape[1:3]) != tuple(out.shape[1:3]):
                    occlusion_map = resize_bilinear(occlusion_map, out.shape[1:3])
                out = out * occlusion_map
            outputs["deformed"] = deform_input(source_image, motion["deformation"], self.align_corners)

        for block in self.bottleneck:
            out = block(out, training=training)
        for block in self.up_blocks:
            out = block(out, training=training)
        outputs["prediction"] = ops.sigmoid(self.final(out))
        return outputs

    def get_config(self):
        return {
            **super().get_config(),
            "num_channels": self.num_channels,
            "num_kp": self.num_kp,
            "block_expansion": self.block_expansion,
            "max_features": self.max_features,
            "num_down_blocks": self.num_down_blocks,
            "num_bottleneck_blocks": self.num_bottleneck_blocks,
            "estimate_occlusion_map": self.estimate_occlusion_map,
            "dense_motion_params": self.dense_motion_params,
            "estimate_jacobian": self.estimate_jacobian,
            "align_corners": self.align_corners,
        }
