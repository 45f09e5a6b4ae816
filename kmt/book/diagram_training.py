"""Diagrams of chapters 6 to 9: the losses, one training step, relative motion transfer, the real-video path.

Each function takes no argument and returns a ``matplotlib.figure.Figure`` 10 inches wide
(see ``kmt.book.diagrams.chapter_diagram``). Units inside are inches (``kmt.book.diagram_parts``).
"""

import numpy as np
from matplotlib.patches import Circle, Polygon

from kmt.book.diagram_parts import (FONT, GREY_EDGE, GREY_INK, INK, LIGHT, PALETTE, arrow, blocks, box, canvas,
                                    gaussian, image, label, path_arrow, region, toy_face)


def _dots(ax, points, color=PALETTE["vermillion"], radius=0.045):
    for x, y in points:
        ax.add_patch(Circle((x, y), radius, facecolor=color, edgecolor=INK, lw=0.7, zorder=6))


def losses():
    """Chapter 6: perceptual pyramid, equivariance under a random TPS warp, multi-scale discriminator."""
    fig, ax = canvas(6.2)
    region(ax, 0.2, 3.25, 4.85, 6.0, "perceptual pyramid $L_{rec}$", ink=INK)
    region(ax, 5.0, 3.25, 9.8, 6.0, "equivariance $L_{eq}$, $L^J_{eq}$", ink=INK)
    region(ax, 0.2, 0.2, 9.8, 3.1, "discriminator: $L_{gan}$ (LSGAN), $L_{fm}$ (feature matching)", ink=INK)

    # Perceptual pyramid: D and D hat at four scales through VGG19.
    sides, xs = (0.62, 0.46, 0.34, 0.25), (0.75, 1.4, 1.93, 2.37)
    for row_y, name, shift in ((5.1, "$D$", (0.0, 0.0)), (4.3, "$\\hat{D}$", (0.06, 0.04))):
        for x, side in zip(xs, sides):
            image(ax, x, row_y, side, toy_face(int(64 * side), shift=shift))
        label(ax, 0.3, row_y, name, ha="left", size=FONT + 1)
        arrow(ax, (2.55, row_y), (2.9, 4.6 + (row_y - 4.6) * 0.3))
    for x, text in zip(xs, ("1", "1/2", "1/4", "1/8")):
        label(ax, x, 3.8, text, size=FONT - 1)
    box(ax, 3.35, 4.6, 0.85, 0.9, "VGG19\n$\\mathrm{VGG}_i$", face=LIGHT["blue"], edge=PALETTE["blue"],
        size=FONT - 1)
    arrow(ax, (3.78, 4.6), (3.98, 4.6))
    box(ax, 4.4, 4.6, 0.75, 0.9, "L1,\nsum", face=LIGHT["orange"], edge=PALETTE["orange"], size=FONT - 1)
    label(ax, 0.35, 3.47, "$L_{rec} = \\sum_{s,\\,i} \\lambda_i\\,|\\mathrm{VGG}_i(\\downarrow_s D) - \\mathrm{VGG}_i"
          "(\\downarrow_s \\hat{D})|$", ha="left", size=FONT - 1, va="center")
    label(ax, 2.75, 5.6, "$\\hat{D}$: $S$ animated by the\nmotion of $D$", ha="left", size=FONT - 1,
          ink=GREY_INK)

    # Equivariance: D warped by a random thin-plate spline W gives Y.
    ye = 4.9
    image(ax, 5.75, ye, 0.8, toy_face(48))
    label(ax, 5.25, ye + 0.28, "$D$", ha="right", size=FONT + 1)
    _dots(ax, [(5.75 - 0.4 * 0.22, ye + 0.4 * 0.15), (5.75 + 0.4 * 0.22, ye + 0.4 * 0.15), (5.75, ye - 0.4 * 0.35)])
    arrow(ax, (6.2, ye), (7.3, ye), text="random TPS\nwarp $W$", size=FONT - 1, text_offset=(0, 0.06))
    image(ax, 7.75, ye, 0.8, toy_face(48, shift=(0.12, 0.08), angle=0.35, scale=0.9))
    label(ax, 8.22, ye + 0.28, "$Y$", ha="left", size=FONT + 1)
    _dots(ax, [(7.64, ye + 0.2), (7.9, ye + 0.08), (7.67, ye - 0.26)], color=PALETTE["sky"])
    label(ax, 5.75, ye - 0.58, "$p^D_k,\\ J^D_k$", size=FONT)
    label(ax, 7.75, ye - 0.58, "$p^Y_k,\\ J^Y_k$", size=FONT)
    label(ax, 8.45, ye - 0.05, "$Y$ = $D$ warped\nby $W$; keypoints\nmust move with\nthe image", ha="left",
          size=FONT - 1, ink=GREY_INK)
    label(ax, 5.2, 3.85, "$L_{eq} = \\sum_k |p^D_k - W(p^Y_k)|$", ha="left", size=FONT)
    label(ax, 5.2, 3.47, "$L^J_{eq} = \\sum_k |\\mathbb{1} - (J^D_k)^{-1}\\,\\nabla W(p^Y_k)\\,J^Y_k|$", ha="left",
          size=FONT)

    # Discriminator.
    y = 1.55
    image(ax, 0.8, y + 0.35, 0.6, toy_face(32))
    image(ax, 0.8, y - 0.45, 0.6, toy_face(32, shift=(0.06, 0.04)))
    label(ax, 0.38, y + 0.35, "$D$", ha="right", size=FONT)
    label(ax, 0.38, y - 0.45, "$\\hat{D}$", ha="right", size=FONT)
    image(ax, 1.75, y, 0.6, gaussian(32, (0.2, -0.1)) + gaussian(32, (-0.3, 0.2)), cmap="Greys")
    label(ax, 1.75, y - 0.55, "heatmaps of $p^D_k$", size=FONT - 1)
    label(ax, 0.8, y - 0.05, "or", size=FONT - 1, ink=GREY_INK)
    label(ax, 1.3, y, "$+$", size=FONT + 3)
    arrow(ax, (2.1, y), (2.35, y))
    blocks(ax, 2.4, 3.6, y, [1.0, 0.8, 0.62, 0.48], LIGHT["purple"], width=0.2)
    label(ax, 3.0, y - 0.78, "$\\mathrm{Disc}$: down blocks at\nscales $1, \\frac{1}{2}, \\dots$",
          size=FONT - 1)
    arrow(ax, (3.65, y), (3.95, y))
    rng = np.random.default_rng(3)
    image(ax, 4.35, y, 0.6, rng.uniform(0.2, 0.9, (6, 6)), cmap="Greys", vmin=0, vmax=1)
    label(ax, 4.35, y + 0.5, "patch scores", size=FONT - 1)
    lines = ("generator: $L_{gan} = \\sum_{\\mathrm{patches}} (1 - \\mathrm{Disc}(\\hat{D}))^2$",
             "$\\mathrm{Disc}$: $(1 - \\mathrm{Disc}(D))^2 + \\mathrm{Disc}(\\hat{D})^2$",
             "feature matching: $L_{fm} = \\sum_i |\\mathrm{Disc}_i(D) - \\mathrm{Disc}_i(\\hat{D})|$",
             "$\\mathrm{Disc}_i$: the features of its block $i$")
    for k, text in enumerate(lines):
        label(ax, 5.0, 2.3 - 0.5 * k, text, ha="left", size=FONT if k < 3 else FONT - 1,
              ink=INK if k < 3 else GREY_INK)
    return fig


def training_step():
    """Chapter 7: one step's data flow from a pair of frames to the three optimisers; the learning-rate schedule."""
    fig, ax = canvas(5.0)
    top, mid, low = 4.0, 2.45, 0.9
    for i in range(3):
        image(ax, 0.55 + 0.1 * i, top - 0.1 * i, 0.6, toy_face(32, shift=(0.1 * i, 0.0), angle=0.1 * i))
    label(ax, 0.65, top + 0.58, "a video", size=FONT - 1)
    arrow(ax, (1.05, top), (1.3, top))
    stages = (("pair $(S, D)$:\ntwo random frames,\naugmented alike", 2.1, 1.5),
              ("detector\non $S$ and on $D$", 3.8, 1.4), ("dense motion", 5.3, 1.2),
              ("generator", 6.65, 1.1))
    for k, (text, x, w) in enumerate(stages):
        box(ax, x, top, w, 0.95, text, face=LIGHT["sky"], edge=PALETTE["blue"], size=FONT - 1)
        if k:
            prev_x, prev_w = stages[k - 1][1:]
            arrow(ax, (prev_x + prev_w / 2, top), (x - w / 2, top))
    arrow(ax, (7.2, top), (7.5, top), text="$\\hat{D}$", size=FONT + 1)
    box(ax, 3.5, mid, 4.6, 0.8, "$\\lambda_{rec} L_{rec} + \\lambda_{eq}(L_{eq} + L^J_{eq}) + "
        "\\lambda_{gan} L_{gan} + \\lambda_{fm} L_{fm}$", face=LIGHT["orange"], edge=PALETTE["orange"])
    path_arrow(ax, [(7.5, top), (7.7, top), (7.7, 3.15), (3.5, 3.15), (3.5, mid + 0.41)])
    arrow(ax, (5.8, mid), (6.47, mid), text="gradients", size=FONT - 1, text_offset=(0.0, 0.1))
    box(ax, 7.2, mid, 1.45, 0.8, "Adam: detector,\nAdam: generator", face=LIGHT["green"], edge=PALETTE["green"],
        size=FONT - 1)
    path_arrow(ax, [(7.1, mid + 0.41), (7.1, 3.0), (7.95, 3.0), (7.95, 4.68), (6.65, 4.68), (6.65, top + 0.48)],
               color=PALETTE["green"], linestyle="--")
    arrow(ax, (3.8, 4.68), (3.8, top + 0.48), color=PALETTE["green"], linestyle="--")
    ax.plot([3.8, 6.65], [4.68, 4.68], color=PALETTE["green"], lw=1.3, ls="--", zorder=4)
    label(ax, 5.2, 4.8, "update", size=FONT - 1, ink=PALETTE["green"])
    box(ax, 3.5, low, 4.6, 0.8, "$\\mathrm{Disc}$'s own step, $\\hat{D}$ held fixed:\n"
        "$(1 - \\mathrm{Disc}(D))^2 + \\mathrm{Disc}(\\hat{D})^2$", face=LIGHT["purple"], edge=PALETTE["purple"],
        size=FONT - 1)
    arrow(ax, (1.6, mid - 0.41), (1.6, low + 0.41), color=GREY_INK)
    label(ax, 1.72, (mid + low) / 2, "then, with the same $\\hat{D}$", ha="left", size=FONT - 1, ink=GREY_INK)
    arrow(ax, (5.8, low), (6.47, low))
    box(ax, 7.2, low, 1.45, 0.8, "Adam: $\\mathrm{Disc}$", face=LIGHT["green"], edge=PALETTE["green"],
        size=FONT - 1)

    # Learning-rate schedule (official configs: 2e-4, times 0.1 at epochs 60 and 90 of 100).
    x0, x1, y0, y1 = 8.35, 9.7, 0.7, 2.5
    label(ax, (x0 + x1) / 2, y1 + 0.4, "learning rate", size=FONT - 1)
    ax.plot([x0, x0, x1], [y1 + 0.15, y0, y0], color=INK, lw=1.0, zorder=3)
    def ex(epoch):
        return x0 + (x1 - x0) * epoch / 100
    levels = (y0 + 1.6, y0 + 0.8, y0 + 0.15)
    ax.plot([ex(0), ex(60), ex(60), ex(90), ex(90), ex(100)],
            [levels[0], levels[0], levels[1], levels[1], levels[2], levels[2]], color=PALETTE["vermillion"],
            lw=2.0, zorder=4)
    for epoch in (60, 90):
        label(ax, ex(epoch), y0 - 0.17, str(epoch), size=FONT - 1)
    label(ax, (x0 + x1) / 2, y0 - 0.45, "epoch; $\\times 0.1$ at 60, 90", size=FONT - 1)
    label(ax, x0 + 0.05, levels[0] + 0.15, "$2\\cdot 10^{-4}$", ha="left", size=FONT - 1)
    return fig


def relative_motion():
    """Chapter 8: the source follows the driving video's motion relative to its first frame."""
    fig, ax = canvas(4.8)
    base = np.array([(-0.25, -0.15), (0.25, -0.15), (0.0, 0.35), (-0.35, 0.3)])
    y, side = 3.55, 1.0

    def keypoints(x, yc, pts):
        return [(x + side / 2 * px, yc - side / 2 * py) for px, py in pts]

    shifts = [(0.0, 0.0), (0.12, -0.08), (0.25, -0.15)]
    for t, (sx, sy), x in zip(("1", "2", "N"), shifts, (3.0, 4.4, 6.3)):
        image(ax, x, y, side, toy_face(48, shift=(sx, sy), hue="green"))
        pts = keypoints(x, y, base + (sx, sy))
        _dots(ax, pts)
        label(ax, x, y + 0.68, f"$D_{t}$" if t != "N" else "$D_N$", size=FONT + 1)
        if t == "1":
            ax.add_patch(Polygon(pts, closed=True, facecolor=PALETTE["yellow"], alpha=0.45, edgecolor=INK, lw=0.8,
                                 zorder=5))
    label(ax, 5.35, y, "$\\dots$", size=FONT + 4)
    label(ax, 4.65, 4.5, "driving video", size=FONT, weight="bold")
    moved = keypoints(6.3, y, base + shifts[2])
    first = keypoints(6.3, y, base)
    for (ax0, ay0), (ax1, ay1) in zip(first, moved):
        arrow(ax, (ax0, ay0), (ax1, ay1), color=PALETTE["blue"], lw=1.5, zorder=7)
    _dots(ax, first, color="white", radius=0.035)
    label(ax, 6.3, y - 0.68, "$p^{D_t}_k - p^{D_1}_k$ ($t = N$)", size=FONT, ink=PALETTE["blue"])
    arrow(ax, (6.9, y), (7.85, y), text="relative", size=FONT - 1)
    image(ax, 8.6, y, side, toy_face(48, shift=(-0.1 + 1.25 * 0.25, 0.1 - 1.25 * 0.15), scale=1.25, hue="orange"))
    label(ax, 8.6, y + 0.68, "$\\hat{D}_N$", size=FONT + 1)
    label(ax, 8.6, y - 0.68, "$S$ moved as $D_1 \\to D_N$", size=FONT - 1)

    image(ax, 1.0, 1.45, 1.3, toy_face(64, shift=(-0.1, 0.1), scale=1.25, hue="orange"))
    label(ax, 1.0, 2.3, "source $S$", size=FONT)
    s_pts = [(1.0 + 0.65 * (1.25 * px - 0.1), 1.45 - 0.65 * (1.25 * py + 0.1)) for px, py in base]
    ax.add_patch(Polygon(s_pts, closed=True, facecolor=PALETTE["yellow"], alpha=0.45, edgecolor=INK, lw=0.8, zorder=5))
    _dots(ax, s_pts)
    lines = ("keypoints for frame $t$: $p^S_k + \\alpha\\,(p^{D_t}_k - p^{D_1}_k)$",
             "Jacobians: $J^{D_t}_k\\,(J^{D_1}_k)^{-1}\\,J^S_k$",
             "adapt scale: $\\alpha = \\sqrt{\\mathrm{area}(\\mathrm{hull}\\ p^S) / "
             "\\mathrm{area}(\\mathrm{hull}\\ p^{D_1})}$ (else $\\alpha = 1$)",
             "the generator then animates $S$ with them: $\\hat{D}_t$")
    box(ax, 5.65, 1.2, 7.3, 1.85, "", face="white", edge=PALETTE["vermillion"], lw=1.5)
    for k, text in enumerate(lines):
        label(ax, 2.15, 1.85 - 0.43 * k, text, ha="left", size=FONT + 1 if k < 2 else FONT)
    arrow(ax, (8.6, 2.14), (8.6, 2.72))
    label(ax, 1.0, 0.3, "yellow: convex hulls", size=FONT - 1, ink=GREY_INK)
    return fig


def real_video_path():
    """Chapter 9: from your own videos to a trained checkpoint and an animation; official weights via convert."""
    fig, ax = canvas(4.2)
    w, h = 1.65, 0.95
    mono = dict(family="monospace")
    row1 = (("your videos\n(mp4, gif, frames)", None), ("kmt crop", "steady face or\nperson box"),
            ("kmt prepare", "frames; train/test\nsplit by identity"), ("dataset", "train/ and test/"),
            ("kmt train", "one or several\ndevices"))
    xs = (1.0, 2.95, 4.9, 6.85, 8.8)
    y1, y2, y3 = 3.3, 1.95, 0.7

    def stage(x, y, title, detail, command):
        face, edge = (LIGHT["blue"], PALETTE["blue"]) if command else ("white", GREY_EDGE if detail is None else INK)
        box(ax, x, y, w, h, "", face=face, edge=edge, lw=1.4)
        if detail is None:
            label(ax, x, y, title, size=FONT)
        else:
            label(ax, x, y + 0.22, title, size=FONT + 1, weight="bold", **(mono if command else {}))
            label(ax, x, y - 0.17, detail, size=FONT - 1)

    for k, ((title, detail), x) in enumerate(zip(row1, xs)):
        stage(x, y1, title, detail, title.startswith("kmt"))
        if k:
            arrow(ax, (xs[k - 1] + w / 2, y1), (x - w / 2, y1))
    stage(8.8, y2, "checkpoint", "one .kmt file:\nweights + config", False)
    arrow(ax, (8.8, y1 - h / 2), (8.8, y2 + h / 2))
    stage(6.85, y2, "kmt animate", "source image +\ndriving video", True)
    arrow(ax, (8.8 - w / 2, y2), (6.85 + w / 2, y2))
    stage(4.9, y2, "your animation\n(mp4 or gif)", None, False)
    arrow(ax, (6.85 - w / 2, y2), (4.9 + w / 2, y2))
    stage(4.9, y3, "official weights", "vox-cpk.pth.tar, ...", False)
    stage(6.85, y3, "kmt convert", "to a .kmt\ncheckpoint", True)
    arrow(ax, (4.9 + w / 2, y3), (6.85 - w / 2, y3))
    path_arrow(ax, [(6.85 + w / 2, y3), (8.8, y3), (8.8, y2 - h / 2)])
    label(ax, 1.0, 1.6, "blue: commands\nof the kmt tool", size=FONT - 1, ink=GREY_INK)
    return fig
