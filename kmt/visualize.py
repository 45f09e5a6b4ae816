"""Drawing keypoints on images: figures for the chapters and the trainer, overlays for videos.

Keypoints are ``(K, 2)`` (or ``(B, K, 2)``) as (x, y) in [-1, 1] with -1 at the
centre of the top-left pixel, so keypoint ``(x, y)`` sits at column
``(x + 1) / 2 * (W - 1)`` and row ``(y + 1) / 2 * (H - 1)``. Colours follow the
reference's visualiser: keypoint ``k`` of ``K`` takes ``gist_rainbow(k / K)``.
"""

import numpy as np
from keras import ops

from kmt import coordinates

__all__ = ["keypoint_colors", "to_pixels", "overlay_keypoints", "draw_keypoints_grid"]


def keypoint_colors(num_kp, colormap="gist_rainbow"):
    """``(num_kp, 3)`` RGB colours in [0, 1], one per keypoint."""
    import matplotlib

    cmap = matplotlib.colormaps[colormap]
    return np.array([cmap(k / max(num_kp, 1))[:3] for k in range(num_kp)], dtype="float32")


def to_pixels(keypoints, height, width):
    """Normalised (x, y) -> pixel (column, row), same shape, float64 (:func:`kmt.coordinates.to_pixels` of any tensor)."""
    return coordinates.to_pixels(np.asarray(ops.convert_to_numpy(keypoints), dtype="float64"), height, width)


def overlay_keypoints(image, keypoints, radius=None, colormap="gist_rainbow"):
    """A copy of ``image`` (``(H, W, C)`` in [0, 1]) with a filled disc at each keypoint.

    ``radius`` defaults to 2% of the image side (at least 1.5 pixels). Used for the
    keypoint overlays of animated videos, where matplotlib would be too slow.
    """
    image = np.array(ops.convert_to_numpy(image), dtype="float32", copy=True)
    if image.ndim != 3:
        raise ValueError(f"`image` must be (height, width, channels); got shape {image.shape}.")
    h, w = image.shape[:2]
    points = to_pixels(keypoints, h, w).reshape(-1, 2)
    radius = max(1.5, 0.02 * min(h, w)) if radius is None else radius
    rows, cols = np.mgrid[0:h, 0:w]
    colors = keypoint_colors(len(points), colormap)
    for (col, row), color in zip(points, colors):
        disc = (rows - row) ** 2 + (cols - col) ** 2 <= radius**2
        image[disc, :3] = color[: image.shape[-1]] if image.shape[-1] < 3 else color
    return image


def draw_keypoints_grid(rows, title=None, size=2.0, colormap="gist_rainbow"):
    """A matplotlib figure: one row per ``(label, images (B, H, W, C), keypoints (B, K, 2) or None)``."""
    import matplotlib.pyplot as plt

    rows = [(label, np.asarray(ops.convert_to_numpy(images)), kp) for label, images, kp in rows]
    columns = max(len(images) for _, images, _ in rows)
    figure, axes = plt.subplots(len(rows), columns, figsize=(size * columns, size * len(rows)), squeeze=False)
    for r, (label, images, kp) in enumerate(rows):
        kp = None if kp is None else np.asarray(ops.convert_to_numpy(kp))
        for c in range(columns):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(images):
                continue
            image = images[c]
            ax.imshow(np.clip(image[..., 0] if image.shape[-1] == 1 else image, 0, 1), cmap="gray" if image.shape[-1] == 1 else None)
            if kp is not None:
                points = to_pixels(kp[c], *image.shape[:2])
                ax.scatter(points[:, 0], points[:, 1], s=18, c=keypoint_colors(len(points), colormap), edgecolors="black", linewidths=0.5)
            if c == 0:
                ax.set_title(label, fontsize=9, loc="left")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure
