"""Diagrams of chapters 1 to 5: sampling, the keypoint detector, first-order motion, dense motion, generator.

Each function takes no argument and returns a ``matplotlib.figure.Figure`` 10 inches wide
(see ``kmt.book.diagrams.chapter_diagram``). Units inside are inches (``kmt.book.diagram_parts``).
"""

import numpy as np
from matplotlib.patches import Circle, Rectangle

from kmt.book.diagram_parts import (FONT, GREY_INK, INK, LIGHT, PALETTE, arrow, blocks, box, canvas, gaussian,
                                    hourglass, image, label, mix, path_arrow, toy_face)


def bilinear_sampling():
    """Chapter 1: one sample point between four pixel centres, the four weights as areas, and the two axes."""
    fig, ax = canvas(4.8)
    left, right, bottom, top = 1.2, 4.2, 0.75, 3.75
    a, b = 0.35, 0.4
    px, py = left + a * (right - left), top - b * (top - bottom)
    corners = {"tl": (left, top, PALETTE["blue"], "$I_{i,\\,j}$", "$(1-a)(1-b)$"),
               "tr": (right, top, PALETTE["orange"], "$I_{i,\\,j+1}$", "$a\\,(1-b)$"),
               "bl": (left, bottom, PALETTE["green"], "$I_{i+1,\\,j}$", "$(1-a)\\,b$"),
               "br": (right, bottom, PALETTE["purple"], "$I_{i+1,\\,j+1}$", "$a\\,b$")}
    # The rectangle opposite a corner has that corner's weight as its area.
    opposite = {"tl": (px, bottom, right, py), "tr": (left, bottom, px, py),
                "bl": (px, py, right, top), "br": (left, py, px, top)}
    for name, (x0, y0, x1, y1) in opposite.items():
        color, weight = corners[name][2], corners[name][4]
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=mix(color, 0.3), edgecolor="none", zorder=1))
        label(ax, (x0 + x1) / 2, (y0 + y1) / 2, weight, size=FONT + 1)
    ax.add_patch(Rectangle((left, bottom), right - left, top - bottom, facecolor="none", edgecolor=INK, lw=1.0,
                           zorder=2))
    ax.plot([px, px], [bottom, top], color=INK, lw=0.8, ls="--", zorder=2)
    ax.plot([left, right], [py, py], color=INK, lw=0.8, ls="--", zorder=2)
    for name, (x, y, color, text, _) in corners.items():
        ax.add_patch(Circle((x, y), 0.09, facecolor=color, edgecolor=INK, lw=1.0, zorder=4))
        dx = -0.18 if x == left else 0.18
        dy = 0.2 if y == top else -0.2
        label(ax, x + dx, y + dy, text, ha="right" if x == left else "left", size=FONT + 1)
    ax.add_patch(Circle((px, py), 0.08, facecolor="white", edgecolor=PALETTE["vermillion"], lw=2.2, zorder=5))
    label(ax, px + 0.12, py + 0.16, "sample point", ha="left", size=FONT - 1, ink=PALETTE["vermillion"])
    # Distances along the edges.
    label(ax, (left + px) / 2, top + 0.17, "$a$", size=FONT + 1)
    label(ax, (px + right) / 2, top + 0.17, "$1-a$", size=FONT + 1)
    label(ax, left - 0.2, (py + top) / 2, "$b$", ha="right", size=FONT + 1)
    label(ax, left - 0.2, (bottom + py) / 2, "$1-b$", ha="right", size=FONT + 1)
    label(ax, (left + right) / 2, 0.32, "pixel centres: column $j$, $j+1$ (right), row $i$, $i+1$ (down)",
          size=FONT - 1, ink=GREY_INK)
    label(ax, (left + right) / 2, 4.5, "each weight = the area opposite its pixel", size=FONT, weight="bold")

    # The two axes: normalised x in [-1, 1] and pixel columns.
    x0, x1, y = 5.35, 9.55, 3.55
    n = 5
    step = (x1 - x0) / n
    label(ax, (x0 + x1) / 2, 4.5, "normalised and pixel coordinates ($W = 5$)", size=FONT, weight="bold")
    for c in range(n):
        ax.add_patch(Rectangle((x0 + c * step, y - step / 2), step, step, facecolor=LIGHT["sky"], edgecolor=INK,
                               lw=1.0, zorder=1))
        cx = x0 + (c + 0.5) * step
        ax.add_patch(Circle((cx, y), 0.05, facecolor=INK, zorder=3))
        label(ax, cx, y + step / 2 + 0.18, f"{c}", size=FONT)
        label(ax, cx, y - step / 2 - 0.2, f"{-1 + 2 * c / (n - 1):g}", size=FONT)
    label(ax, x0 - 0.08, y + step / 2 + 0.18, "column", ha="right", size=FONT - 1, ink=GREY_INK)
    label(ax, x0 - 0.08, y - step / 2 - 0.2, "$x$", ha="right", size=FONT, ink=GREY_INK)
    lines = ["$-1$ and $1$ lie on the centres of the edge pixels:",
             "column $= (x + 1)(W - 1)/2$,   row $= (y + 1)(H - 1)/2$",
             "",
             "a point $z = (x, y)$ at column $j + a$, row $i + b$ takes",
             "$(1-a)(1-b)\\,I_{i,j} + a(1-b)\\,I_{i,j+1}$",
             "$+\\ (1-a)\\,b\\,I_{i+1,j} + a\\,b\\,I_{i+1,j+1}$"]
    for k, text in enumerate(lines):
        label(ax, x0 - 0.1, 2.45 - 0.36 * k, text, ha="left", size=FONT)
    return fig


def keypoint_detector():
    """Chapter 2: frame -> hourglass -> K heatmaps -> softmax with temperature -> soft-argmax; the Jacobian head."""
    fig, ax = canvas(4.4)
    y, low = 2.95, 1.0
    image(ax, 0.65, y, 0.85, toy_face(40))
    label(ax, 0.65, y + 0.62, "frame $X$", size=FONT)
    arrow(ax, (1.12, y), (1.35, y))
    hourglass(ax, 1.4, 3.3, y, 1.2, LIGHT["blue"], text="hourglass: encoder,\ndecoder, skips")
    arrow(ax, (3.35, y), (3.75, y))
    for i, center in enumerate(((-0.3, -0.2), (0.25, -0.1), (0.0, 0.35))):
        logits = gaussian(24, center, 0.06)
        image(ax, 4.15 + 0.1 * (2 - i), y + 0.1 * (2 - i), 0.62, logits, cmap="Greys")
    label(ax, 4.35, y + 0.72, "$K$ heatmap logits $h_k(z)$", size=FONT - 1)
    arrow(ax, (4.62, y), (4.95, y))
    box(ax, 5.75, y, 1.55, 0.95, "softmax over $z$\nwith temperature $\\tau$", face=LIGHT["orange"],
        edge=PALETTE["orange"], size=FONT - 1)
    label(ax, 5.75, y - 0.75, "$P_k(z) = \\exp(h_k(z)/\\tau)\\,/\\,\\sum_{z'} \\exp(h_k(z')/\\tau)$", size=FONT)
    arrow(ax, (6.55, y), (6.8, y))
    image(ax, 7.2, y, 0.72, gaussian(32, (0.25, -0.1), 0.025), cmap="viridis")
    label(ax, 7.2, y + 0.6, "$P_k(z)$, sums to 1", size=FONT - 1)
    arrow(ax, (7.58, y), (7.9, y))
    box(ax, 8.85, y, 1.7, 0.95, "", face=LIGHT["green"], edge=PALETTE["green"])
    label(ax, 8.85, y + 0.2, "soft-argmax", size=FONT)
    label(ax, 8.85, y - 0.18, "$p^X_k = \\sum_z P_k(z)\\,z$", size=FONT + 1)
    label(ax, 8.85, y - 0.7, "$(B, K, 2)$, as $(x, y)$", size=FONT - 1, ink=GREY_INK)
    # Jacobian head.
    path_arrow(ax, [(3.19, y - 0.6), (3.19, low), (3.57, low)], color=INK)
    box(ax, 4.45, low, 1.75, 0.8, "Jacobian head (conv):\n4 numbers $j_k(z)$ per $k$", face=LIGHT["sky"],
        edge=PALETTE["blue"], size=FONT - 1)
    arrow(ax, (5.33, low), (6.45, low))
    box(ax, 7.35, low, 1.75, 0.8, "", face=LIGHT["sky"], edge=PALETTE["blue"])
    label(ax, 7.35, low + 0.18, "weighted by $P_k$:", size=FONT - 1)
    label(ax, 7.35, low - 0.16, "$\\sum_z P_k(z)\\,j_k(z)$", size=FONT)
    arrow(ax, (7.2, y - 0.37), (7.2, low + 0.41), color=GREY_INK)
    arrow(ax, (8.23, low), (8.3, low))
    box(ax, 8.85, low, 1.1, 0.8, "$J^X_k$\n$2 \\times 2$", face=LIGHT["green"], edge=PALETTE["green"])
    label(ax, 8.85, low - 0.58, "$(B, K, 2, 2)$", size=FONT - 1, ink=GREY_INK)
    return fig


def _grid(ax, center, matrix, half=0.32, color=INK, n=3):
    """A small square grid around ``center`` mapped by the 2 x 2 ``matrix`` (in figure inches)."""
    ticks = np.linspace(-half, half, n)
    for t in ticks:
        for seg in (np.stack([ticks * 0 + t, ticks]), np.stack([ticks, ticks * 0 + t])):
            pts = matrix @ np.stack([np.linspace(seg[0, 0], seg[0, -1], 2), np.linspace(seg[1, 0], seg[1, -1], 2)])
            ax.plot(center[0] + pts[0], center[1] + pts[1], color=color, lw=1.0, zorder=3)


def first_order_motion():
    """Chapter 3: R, S and D; keypoints mapped from R; the local affine map around p^D_k; the formula."""
    fig, ax = canvas(4.8)
    frames = {"R": (1.25, 2.35, "reference frame $R$\n(abstract)", LIGHT["yellow"]),
              "S": (4.5, 3.45, "source $S$", LIGHT["sky"]), "D": (4.5, 1.15, "driving $D$", LIGHT["green"])}
    side = 1.55
    for x, y, text, face in frames.values():
        box(ax, x, y, side, side, "", face=face, edge=INK, lw=1.0, style="square,pad=0")
    label(ax, 1.25, 2.35 + side / 2 + 0.3, frames["R"][2], size=FONT)
    label(ax, 4.5 - side / 2 - 0.08, 3.45 + side / 2 - 0.14, "$S$", ha="right", size=FONT + 1)
    label(ax, 4.5 - side / 2 - 0.08, 1.15 + side / 2 - 0.14, "$D$", ha="right", size=FONT + 1)
    pk, ps, pd = (1.35, 2.25), (4.75, 3.3), (4.3, 1.3)
    jac = np.array([[0.8, -0.45], [0.35, 0.95]])
    _grid(ax, pd, np.eye(2), color=PALETTE["green"])
    _grid(ax, ps, jac, color=PALETTE["blue"])
    for (x, y), text, off in ((pk, "$p_k$", (-0.12, 0.2)), (ps, "$p^S_k$", (0.05, -0.5)), (pd, "$p^D_k$", (0.5, 0.3))):
        ax.add_patch(Circle((x, y), 0.06, facecolor=PALETTE["vermillion"], edgecolor=INK, lw=0.8, zorder=5))
        label(ax, x + off[0], y + off[1], text, size=FONT + 1)
    arrow(ax, (pk[0] + 0.1, pk[1] + 0.08), (ps[0] - 0.75, ps[1] + 0.02), rad=-0.2, text="$\\mathcal{T}_{S\\leftarrow R}$",
          size=FONT + 1, text_offset=(-0.25, 0.25))
    arrow(ax, (pk[0] + 0.1, pk[1] - 0.08), (pd[0] - 0.55, pd[1] - 0.02), rad=0.2, text="$\\mathcal{T}_{D\\leftarrow R}$",
          size=FONT + 1, text_offset=(-0.2, -0.5))
    arrow(ax, (5.35, 1.3), (5.35, 3.1), rad=0.45, color=PALETTE["vermillion"], lw=1.8)
    label(ax, 5.92, 2.45, "$\\mathcal{T}^k_{S\\leftarrow D}$", ha="left", size=FONT + 2, ink=PALETTE["vermillion"])
    label(ax, 5.92, 2.15, "near $p^D_k$, the\ngrid maps by $J_k$", ha="left", size=FONT - 1, ink=GREY_INK,
          va="top")
    lines = [("$\\mathcal{T}_{S\\leftarrow D} = \\mathcal{T}_{S\\leftarrow R} \\circ \\mathcal{T}_{R\\leftarrow D}$", FONT + 1),
             ("Taylor expansion around $p^D_k$:", FONT),
             ("$\\mathcal{T}^k_{S\\leftarrow D}(z) = p^S_k + J_k\\,(z - p^D_k)$", FONT + 2),
             ("$J_k = J^S_k\\,(J^D_k)^{-1}$", FONT + 1),
             ("$J^X_k$: derivative of $\\mathcal{T}_{X\\leftarrow R}$ at $p_k$", FONT),
             ("background: $\\mathcal{T}^0_{S\\leftarrow D}(z) = z$", FONT)]
    box(ax, 8.5, 2.35, 2.75, 3.2, "", face="white", edge=PALETTE["vermillion"], lw=1.5)
    for k, (text, size) in enumerate(lines):
        label(ax, 7.25, 3.6 - 0.5 * k, text, ha="left", size=size)
    return fig


def dense_motion():
    """Chapter 4: heatmap differences and deformed sources -> hourglass -> masks (softmax) and occlusion."""
    fig, ax = canvas(4.6)
    top, low = 3.3, 1.25
    diff = gaussian(32, (0.3, -0.15), 0.03) - gaussian(32, (-0.2, 0.15), 0.03)
    image(ax, 0.75, top, 0.8, diff, cmap="PuOr", vmin=-1, vmax=1)
    label(ax, 0.75, top + 0.65, "heatmap differences", size=FONT - 1)
    label(ax, 0.75, top - 0.72, "$H_k = G(z; p^D_k) - G(z; p^S_k)$", size=FONT - 1)
    for i in range(3):
        image(ax, 0.6 + 0.12 * i, low + 0.12 * i, 0.72, toy_face(32, shift=(0.1 * i - 0.1, 0.05 * i), angle=0.2 * i))
    label(ax, 0.75, low + 0.75, "deformed sources", size=FONT - 1)
    label(ax, 0.75, low - 0.65, "$S \\circ \\mathcal{T}^k_{S\\leftarrow D}$, $k = 0..K$", size=FONT - 1)
    label(ax, 1.85, 0.35, "$K + 1$ of each ($H_0 = 0$), concatenated", size=FONT - 1, ink=GREY_INK)
    path_arrow(ax, [(1.25, top), (1.75, top), (1.75, 2.35), (2.05, 2.35)])
    path_arrow(ax, [(1.2, low + 0.12), (1.75, low + 0.12), (1.75, 2.35), (2.05, 2.35)])
    hourglass(ax, 2.1, 4.0, 2.35, 1.3, LIGHT["green"], text="hourglass")
    path_arrow(ax, [(4.05, 2.35), (4.3, 2.35), (4.3, top), (4.55, top)])
    path_arrow(ax, [(4.05, 2.35), (4.3, 2.35), (4.3, low), (4.55, low)])
    box(ax, 5.25, top, 1.35, 0.75, "conv, softmax\nover $k = 0..K$", face=LIGHT["green"], edge=PALETTE["green"],
        size=FONT - 1)
    box(ax, 5.25, low, 1.35, 0.75, "conv, sigmoid", face=LIGHT["green"], edge=PALETTE["green"], size=FONT - 1)
    arrow(ax, (5.93, top), (6.15, top))
    lin = np.linspace(-1, 1, 24)
    xx, yy = np.meshgrid(lin, lin)
    regions = [np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.15) for cx, cy in ((-0.4, -0.3), (0.4, 0.2))]
    masks = [np.clip(1 - sum(regions), 0.05, 1)] + regions
    masks = [m / sum(masks) for m in masks]
    for i, m in enumerate(masks):
        image(ax, 6.35 + 0.45 * i, top, 0.4, m, cmap="Greys", vmin=0, vmax=1)
        label(ax, 6.35 + 0.45 * i, top - 0.36, f"$M_{i}$", size=FONT)
    label(ax, 6.8, top + 0.45, "masks, $\\sum_k M_k(z) = 1$", size=FONT - 1)
    arrow(ax, (7.48, top), (7.64, top))
    box(ax, 8.7, top, 2.1, 1.0, "", face="white", edge=PALETTE["vermillion"], lw=1.5)
    label(ax, 8.7, top + 0.25, "dense motion", size=FONT)
    label(ax, 8.7, top - 0.15, "$\\hat{\\mathcal{T}}_{S\\leftarrow D}(z) = \\sum_k M_k(z)\\,"
          "\\mathcal{T}^k_{S\\leftarrow D}(z)$", size=FONT)
    arrow(ax, (5.93, low), (6.25, low))
    occ = np.clip(1 - 0.9 * np.exp(-((xx - 0.35) ** 2 + (yy + 0.25) ** 2) / 0.08), 0, 1)
    image(ax, 6.7, low, 0.72, occ, cmap="Greys_r", vmin=0, vmax=1)
    label(ax, 6.7, low - 0.52, "black: occluded", size=FONT - 1, ink=GREY_INK)
    arrow(ax, (7.1, low), (7.64, low))
    box(ax, 8.7, low, 2.1, 1.0, "occlusion map\n$\\hat{\\mathcal{O}}_{S\\leftarrow D}(z) \\in [0, 1]$\n"
        "(1 = visible in $S$)", face="white", edge=PALETTE["vermillion"], lw=1.5, size=FONT - 1)
    return fig


def generator():
    """Chapter 5: S -> encoder -> features xi -> warp by T -> times O -> residual blocks -> decoder -> D hat."""
    fig, ax = canvas(4.0)
    y = 1.75
    image(ax, 0.6, y, 0.8, toy_face(40))
    label(ax, 0.6, y - 0.6, "source $S$", size=FONT)
    arrow(ax, (1.02, y), (1.25, y))
    blocks(ax, 1.3, 2.6, y, [1.3, 1.0, 0.75], LIGHT["purple"])
    label(ax, 1.95, y - 0.95, "encoder:\ndown blocks", size=FONT - 1)
    arrow(ax, (2.62, y), (2.95, y), text="$\\xi$", size=FONT + 1)
    box(ax, 3.7, y, 1.35, 0.75, "warp\n$f_w(\\xi, \\hat{\\mathcal{T}}_{S\\leftarrow D})$", face=LIGHT["sky"],
        edge=PALETTE["blue"], size=FONT - 1)
    arrow(ax, (4.4, y), (4.7, y))
    box(ax, 5.2, y, 0.85, 0.75, "$\\odot\\ \\hat{\\mathcal{O}}_{S\\leftarrow D}$", face=LIGHT["sky"],
        edge=PALETTE["blue"], size=FONT)
    arrow(ax, (5.65, y), (6.0, y), text="$\\xi'$", size=FONT + 1)
    blocks(ax, 6.05, 6.85, y, [0.75, 0.75, 0.75], LIGHT["orange"], width=0.18)
    label(ax, 6.45, y - 0.95, "residual\nblocks", size=FONT - 1)
    arrow(ax, (6.88, y), (7.05, y))
    blocks(ax, 7.1, 8.35, y, [0.75, 1.0, 1.3], LIGHT["purple"])
    label(ax, 7.72, y - 0.95, "decoder: up blocks,\nconv, sigmoid", size=FONT - 1)
    arrow(ax, (8.4, y), (8.75, y))
    image(ax, 9.25, y, 0.8, toy_face(40, shift=(0.15, -0.05), angle=0.25))
    label(ax, 9.25, y - 0.6, "output $\\hat{D}$", size=FONT)
    box(ax, 4.45, 3.4, 3.1, 0.5, "from the dense motion network (chapter 4)", face="white", edge=GREY_INK, lw=1.0,
        size=FONT - 1, linestyle="--")
    arrow(ax, (3.7, 3.15), (3.7, y + 0.39), text="$\\hat{\\mathcal{T}}_{S\\leftarrow D}$ resized", size=FONT - 1,
          text_offset=(-0.08, 0.0), ha="right", va="center")
    arrow(ax, (5.2, 3.15), (5.2, y + 0.39), text="$\\hat{\\mathcal{O}}_{S\\leftarrow D}$ resized", size=FONT - 1,
          text_offset=(0.08, 0.0), ha="left", va="center")
    label(ax, 4.45, 0.35, "$\\xi' = \\hat{\\mathcal{O}}_{S\\leftarrow D} \\odot f_w(\\xi, \\hat{\\mathcal{T}}_{S\\leftarrow D})$:"
          " what $S$ shows where it is visible; the decoder fills in the rest", size=FONT)
    return fig
