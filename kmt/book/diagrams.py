"""The book's figures: an overview of the whole model and one diagram per chapter.

* ``overview(chapter)``: the First Order Motion Model as boxes and arrows (detector,
  keypoints and Jacobians, sparse motions, dense motion network, generator, the training
  losses and loop, animation and the real-video path), with chapter ``chapter``'s boxes
  highlighted and the others greyed out. ``OVERVIEW_CHAPTERS`` says which chapters each box
  belongs to (the box's patch carries the key as its ``gid``).
* ``chapter_diagram(chapter)``: the idea chapter ``chapter`` introduces, drawn on its own.

Both return a ``matplotlib.figure.Figure`` 10 inches wide, made without ``pyplot``: a
notebook cell whose value is the figure shows it once. ``chapter`` is an int from 1 to 9.
Symbols follow the book's notation page (``S``, ``D``, ``p^X_k``, ``J^X_k``,
``T_{S<-D}``, ``M_k``, ``O``, ``Disc``, ...).
"""

import numbers

from kmt.book import diagram_model, diagram_training
from kmt.book.diagram_parts import (FONT, GREY_EDGE, GREY_FACE, GREY_INK, INK, LIGHT, PALETTE, arrow, box, canvas,
                                    enable_notebook_display, label, path_arrow, region)

CHAPTERS = tuple(range(1, 10))
"""The chapters that have figures: 1 (coordinates and warping) to 9 (real videos)."""

OVERVIEW_CHAPTERS = {
    "source": (),
    "driving": (),
    "detector": (2,),
    "keypoints": (3,),
    "sparse_motion": (3,),
    "dense_motion": (4,),
    "dense_warp": (1, 4),
    "masks": (4,),
    "dense_flow": (4,),
    "occlusion": (4,),
    "generator": (5,),
    "encoder": (5,),
    "generator_warp": (1, 5),
    "occlude": (5,),
    "decoder": (5,),
    "output": (5,),
    "pairs": (7,),
    "perceptual": (6,),
    "equivariance": (6,),
    "discriminator": (6,),
    "loop": (7,),
    "animation": (8,),
    "evaluation": (8,),
    "real_videos": (9,),
    "official_weights": (9,),
}
"""Every box of ``overview`` (its patch's ``gid``) -> the chapters that explain it."""

HIGHLIGHT_FACE = LIGHT["orange"]
HIGHLIGHT_EDGE = PALETTE["vermillion"]

_LABEL_AT = {1: (7.2, 3.53), 2: (1.85, 3.6), 3: (3.95, 3.55), 4: (5.95, 3.53), 5: (9.41, 5.25),
             6: (4.65, 1.54), 7: (1.4, 1.54), 8: (7.55, 1.54), 9: (9.05, 1.54)}


def check_chapter(chapter):
    """``chapter`` as an int, or a ValueError naming the argument, the allowed values and the value seen."""
    if isinstance(chapter, bool) or not isinstance(chapter, numbers.Integral) or int(chapter) not in CHAPTERS:
        raise ValueError(f"`chapter` must be an int from 1 to 9 (one of {list(CHAPTERS)}); got {chapter!r}.")
    return int(chapter)


def overview(chapter):
    """The whole model with chapter ``chapter``'s boxes highlighted: a 10 x 6.2 inch ``Figure``."""
    chapter = check_chapter(chapter)
    enable_notebook_display()
    fig, ax = canvas(6.2)

    def part(name, x, y, w, h, text, size=FONT, **kw):
        on = chapter in OVERVIEW_CHAPTERS[name]
        return box(ax, x, y, w, h, text, gid=name, size=size,
                   face=HIGHLIGHT_FACE if on else GREY_FACE, edge=HIGHLIGHT_EDGE if on else GREY_EDGE,
                   lw=2.6 if on else 1.0, ink=INK if on else GREY_INK, **kw)

    line = dict(color="#7a7a7a", lw=1.2)
    region(ax, 0.15, 3.35, 9.85, 6.05, "one forward pass: animate $S$ with the motion of $D$")
    region(ax, 0.15, 0.15, 6.45, 3.2, "training", where="bottom left")
    region(ax, 6.6, 0.15, 9.85, 3.2)

    # Inputs and the keypoint detector.
    part("source", 0.62, 5.05, 0.7, 0.5, "$S$", size=FONT + 2)
    part("driving", 0.62, 4.05, 0.7, 0.5, "$D$", size=FONT + 2)
    part("detector", 1.85, 4.55, 1.05, 1.2, "keypoint\ndetector")
    arrow(ax, (0.97, 5.0), (1.32, 4.75), **line)
    arrow(ax, (0.97, 4.1), (1.32, 4.35), **line)
    part("keypoints", 3.1, 4.55, 1.1, 1.2, "$p^S_k,\\ J^S_k$\n\n$p^D_k,\\ J^D_k$")
    arrow(ax, (2.38, 4.55), (2.55, 4.55), **line)
    part("sparse_motion", 4.45, 4.55, 1.25, 1.2, "sparse\nmotions\n$\\mathcal{T}^k_{S\\leftarrow D}$")
    arrow(ax, (3.65, 4.55), (3.82, 4.55), **line)

    # Dense motion network and its outputs.
    part("dense_motion", 5.95, 4.55, 1.35, 1.7, "", zorder=1)
    label(ax, 5.95, 5.05, "dense motion\nnetwork", ink=INK if chapter == 4 else GREY_INK)
    part("dense_warp", 5.95, 4.05, 1.15, 0.55, "warp $S$\n(sampling)", size=FONT - 1)
    arrow(ax, (5.08, 4.55), (5.27, 4.55), **line)
    part("masks", 7.2, 5.15, 0.9, 0.46, "$M_k$")
    part("dense_flow", 7.2, 4.55, 0.9, 0.46, "$\\hat{\\mathcal{T}}_{S\\leftarrow D}$")
    part("occlusion", 7.2, 3.95, 0.9, 0.46, "$\\hat{\\mathcal{O}}_{S\\leftarrow D}$")
    for y in (5.15, 4.55, 3.95):
        arrow(ax, (6.63, 4.55 + (y - 4.55) * 0.5), (6.75, y), **line)

    # Generator.
    part("generator", 8.42, 4.525, 1.05, 2.15, "", zorder=1)
    label(ax, 8.42, 5.4, "generator", ink=INK if chapter == 5 else GREY_INK)
    for name, y, text in (("encoder", 5.05, "encoder"), ("generator_warp", 4.6, "warp"),
                          ("occlude", 4.15, "$\\odot\\,\\hat{\\mathcal{O}}$"), ("decoder", 3.7, "decoder")):
        part(name, 8.42, y, 0.85, 0.32, text, size=FONT - 1)
    for y in (4.89, 4.44, 3.99):
        arrow(ax, (8.42, y), (8.42, y - 0.13), **line)
    arrow(ax, (7.65, 4.55), (7.995, 4.6), **line)
    arrow(ax, (7.65, 3.95), (7.995, 4.15), **line)
    part("output", 9.45, 4.55, 0.6, 0.5, "$\\hat{D}$", size=FONT + 2)
    path_arrow(ax, [(8.845, 3.7), (9.03, 3.7), (9.03, 4.45), (9.15, 4.45)], **line)

    # S also feeds the dense motion network and the generator (a bus along the top).
    ax.plot([0.62, 0.62, 8.42], [5.3, 5.76, 5.76], **line)
    arrow(ax, (5.95, 5.76), (5.95, 5.4), **line)
    arrow(ax, (8.42, 5.76), (8.42, 5.6), **line)

    # Training: data pairs, the three losses and the loop.
    part("pairs", 0.95, 2.25, 1.35, 0.8, "pairs $(S, D)$\nof one video", size=FONT - 1)
    arrow(ax, (0.62, 2.65), (0.62, 3.8), **line)
    part("perceptual", 2.45, 2.25, 1.35, 0.8, "perceptual\npyramid $L_{rec}$", size=FONT - 1)
    part("equivariance", 3.9, 2.25, 1.35, 0.8, "equivariance\n$L_{eq},\\ L^J_{eq}$", size=FONT - 1)
    part("discriminator", 5.4, 2.25, 1.45, 0.8, "$\\mathrm{Disc}$: GAN\n$L_{gan}$, $L_{fm}$", size=FONT - 1)
    ax.plot([9.45, 9.45, 2.45], [4.3, 3.27, 3.27], **line)
    arrow(ax, (2.45, 3.27), (2.45, 2.65), **line)
    arrow(ax, (5.4, 3.27), (5.4, 2.65), **line)
    arrow(ax, (3.1, 3.95), (3.7, 2.65), **line)
    part("loop", 3.3, 0.85, 5.7, 0.75,
         "training loop: $\\lambda$-weighted sum of losses $\\rightarrow$ gradients $\\rightarrow$ Adam for\n"
         "detector + generator, Adam for $\\mathrm{Disc}$; learning-rate schedule", size=FONT - 1)
    for x in (2.45, 3.9, 5.4):
        arrow(ax, (x, 1.85), (x, 1.23), **line)

    # Using the model (chapter 8) and real footage (chapter 9).
    part("animation", 7.55, 2.25, 1.55, 0.8, "animation: relative\nmotion of $D_1, \\dots, D_N$",
         size=FONT - 1)
    part("evaluation", 7.55, 0.85, 1.55, 0.75, "evaluation:\nL1, AKD, MKR, AED", size=FONT - 1)
    part("real_videos", 9.05, 2.25, 1.4, 0.8, "real videos: crop,\nprepare, dataset", size=FONT - 1)
    part("official_weights", 9.05, 0.85, 1.4, 0.75, "official weights\n(kmt convert)", size=FONT - 1)

    x, y = _LABEL_AT[chapter]
    box(ax, x, y, 0.88, 0.28, f"chapter {chapter}", face=HIGHLIGHT_EDGE, edge=HIGHLIGHT_EDGE, ink="white",
        size=FONT, weight="bold", lw=1.0, zorder=6, style="round,pad=0,rounding_size=0.12")
    return fig


_DIAGRAMS = {1: diagram_model.bilinear_sampling, 2: diagram_model.keypoint_detector,
             3: diagram_model.first_order_motion, 4: diagram_model.dense_motion,
             5: diagram_model.generator, 6: diagram_training.losses, 7: diagram_training.training_step,
             8: diagram_training.relative_motion, 9: diagram_training.real_video_path}


def chapter_diagram(chapter):
    """The diagram of chapter ``chapter``'s idea, a ``Figure`` 10 inches wide (see the module docstring)."""
    chapter = check_chapter(chapter)
    enable_notebook_display()
    return _DIAGRAMS[chapter]()
