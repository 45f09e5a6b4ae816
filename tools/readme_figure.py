"""Draw the picture at the top of README.md: book/images/warping.png.

Usage: python tools/readme_figure.py   (any Keras backend)
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import kmt  # noqa: E402
from kmt import warping  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "book" / "images" / "warping.png"


def main():
    photo = kmt.book.load_sample_image(256)
    angle = np.deg2rad(15)
    theta = 1.7 * np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.15]])
    base = ops.convert_to_numpy(kmt.make_coordinate_grid((256, 256)))
    grid = (np.concatenate([base, np.ones((256, 256, 1), "float32")], -1) @ theta.T)[None].astype("float32")
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.3))
    axes[0].imshow(photo[0])
    axes[0].set_title("input")
    for ax, padding in zip(axes[1:], warping.PADDING_MODES):
        ax.imshow(ops.convert_to_numpy(kmt.grid_sample(photo, grid, padding_mode=padding))[0].clip(0, 1))
        ax.set_title(f'grid_sample, padding_mode="{padding}"', fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(OUT, dpi=80)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
