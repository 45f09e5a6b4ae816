"""Drawing pieces the book's diagrams share: a canvas, boxes, arrows, labels and a palette.

Every diagram is one ``matplotlib.figure.Figure`` (built without ``pyplot``, so a notebook
shows it once, as the value of its cell) with one axes filling it. The axes' data units are
inches (``x`` from 0 to the width, ``y`` from 0 at the bottom to the height), so a box of
width 1 is one inch wide on the page whatever the figure's size, and text sizes (points) can
be planned against box sizes. The figure is transparent outside an opaque white rounded
rectangle, so it reads the same on a light and on a dark page.

Colours are the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies); text is near-black on light fills.
"""

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

#: The Okabe-Ito colour-blind-safe palette.
PALETTE = {
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "black": "#000000",
}

INK = "#1a1a1a"
"""Colour of text and of neutral lines."""

GREY_FACE, GREY_EDGE, GREY_INK = "#eeeeee", "#a6a6a6", "#6b6b6b"
"""Fill, edge and text colours of a box that is not the focus of a figure."""

FONT = 10
"""Default font size in points (the site shows a 10 inch figure at about 750 px: >= 9 pt stays legible)."""


def mix(color, amount):
    """``color`` (hex) mixed with white: ``amount`` 1 keeps the colour, 0 gives white."""
    rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)], dtype=float) / 255.0
    out = 1.0 - amount * (1.0 - rgb)
    return "#" + "".join(f"{int(round(v * 255)):02x}" for v in out)


#: Light fills (the palette mixed with white) for boxes that carry text.
LIGHT = {name: mix(value, 0.35) for name, value in PALETTE.items()}


def canvas(height, width=10.0):
    """A new ``(figure, axes)`` of ``width`` x ``height`` inches, axes in inch units, white rounded background."""
    fig = Figure(figsize=(width, height), dpi=100)
    fig.patch.set_alpha(0.0)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    pad = 0.04
    ax.add_patch(FancyBboxPatch((pad, pad), width - 2 * pad, height - 2 * pad,
                                boxstyle="round,pad=0,rounding_size=0.18", facecolor="white",
                                edgecolor="#d0d0d0", linewidth=0.8, zorder=0, gid="background"))
    return fig, ax


def box(ax, x, y, w, h, text="", face="white", edge=INK, lw=1.2, ink=INK, size=FONT, gid=None,
        style="round,pad=0,rounding_size=0.08", weight="normal", linestyle="-", zorder=2, **text_kw):
    """A box centred on ``(x, y)`` of ``w`` x ``h`` inches with centred ``text``; returns the patch."""
    patch = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle=style, facecolor=face, edgecolor=edge,
                           linewidth=lw, linestyle=linestyle, zorder=zorder, gid=gid)
    ax.add_patch(patch)
    if text:
        ax.text(x, y, text, ha="center", va="center", color=ink, fontsize=size, weight=weight,
                zorder=zorder + 1, linespacing=1.35, **text_kw)
    return patch


def region(ax, x0, y0, x1, y1, label=None, color=GREY_EDGE, ink=GREY_INK, size=FONT, where="top left"):
    """A dashed rounded region from ``(x0, y0)`` to ``(x1, y1)`` with an optional corner label."""
    ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0,rounding_size=0.12",
                                facecolor="none", edgecolor=color, linewidth=1.1, linestyle=(0, (4, 3)),
                                zorder=1))
    if label:
        top = "top" in where
        ax.text(x0 + 0.1 if "left" in where else x1 - 0.1, y1 - 0.08 if top else y0 + 0.08, label,
                ha="left" if "left" in where else "right", va="top" if top else "bottom",
                color=ink, fontsize=size, style="italic", zorder=3)


def arrow(ax, start, end, color=INK, lw=1.3, text=None, size=FONT - 1, text_offset=(0.0, 0.1),
          rad=0.0, style="-|>", linestyle="-", ink=None, zorder=4, **text_kw):
    """An arrow from ``start`` to ``end`` (inches), optionally curved (``rad``) and labelled at its middle."""
    patch = FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=12, color=color, linewidth=lw,
                            linestyle=linestyle, connectionstyle=f"arc3,rad={rad}", shrinkA=0, shrinkB=0,
                            zorder=zorder)
    ax.add_patch(patch)
    if text:
        mx, my = (start[0] + end[0]) / 2 + text_offset[0], (start[1] + end[1]) / 2 + text_offset[1]
        text_kw.setdefault("ha", "center")
        text_kw.setdefault("va", "bottom")
        ax.text(mx, my, text, color=ink or color, fontsize=size, zorder=zorder + 1, **text_kw)
    return patch


def path_arrow(ax, points, color=INK, lw=1.3, linestyle="-", zorder=4):
    """A polyline through ``points`` ending in an arrow head (for routed connections)."""
    xs, ys = zip(*points)
    ax.plot(xs[:-1], ys[:-1], color=color, lw=lw, linestyle=linestyle, zorder=zorder, solid_capstyle="round")
    return arrow(ax, points[-2], points[-1], color=color, lw=lw, linestyle=linestyle, zorder=zorder)


def label(ax, x, y, text, size=FONT, ink=INK, ha="center", va="center", **kw):
    """Text at ``(x, y)`` inches."""
    return ax.text(x, y, text, fontsize=size, color=ink, ha=ha, va=va, zorder=5, **kw)


def image(ax, x, y, side, pixels, cmap=None, vmin=None, vmax=None, edge=INK, gid=None):
    """``pixels`` (H, W) or (H, W, 3) drawn as a ``side``-inch square centred on ``(x, y)``, framed."""
    extent = (x - side / 2, x + side / 2, y - side / 2, y + side / 2)
    ax.imshow(pixels, extent=extent, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest", zorder=2)
    ax.add_patch(Rectangle((extent[0], extent[2]), side, side, facecolor="none", edgecolor=edge,
                           linewidth=1.0, zorder=3, gid=gid))
    ax.set_xlim(0, ax.figure.get_figwidth())
    ax.set_ylim(0, ax.figure.get_figheight())
    ax.set_aspect("auto")


def toy_face(size=32, shift=(0.0, 0.0), angle=0.0, scale=1.0, hue="blue"):
    """A small synthetic picture (an ellipse "head" with two "eyes") as ``(size, size, 3)`` floats in [0, 1].

    ``shift`` moves it in normalised units, ``angle`` (radians) turns it, ``scale`` grows it, so the
    diagrams can show a source and driving frames without loading data.
    """
    lin = np.linspace(-1, 1, size)
    x, y = np.meshgrid(lin, lin)
    c, s = np.cos(angle), np.sin(angle)
    u = (c * (x - shift[0]) + s * (y - shift[1])) / scale
    v = (-s * (x - shift[0]) + c * (y - shift[1])) / scale
    rgb = np.ones((size, size, 3)) * np.array([0.93, 0.95, 0.97])
    head = (u / 0.55) ** 2 + (v / 0.7) ** 2 <= 1
    base = np.array([int(PALETTE[hue][i:i + 2], 16) / 255 for i in (1, 3, 5)])
    rgb[head] = 0.45 + 0.55 * base
    for ex in (-0.22, 0.22):
        rgb[(u - ex) ** 2 + (v + 0.15) ** 2 <= 0.09 ** 2] = 0.1
    rgb[(np.abs(u) <= 0.2) & (np.abs(v - 0.35) <= 0.04)] = 0.15
    return rgb


def gaussian(size=32, center=(0.0, 0.0), variance=0.01):
    """``G(z; p) = exp(-|z - p|^2 / (2 variance))`` on a ``size`` x ``size`` grid of [-1, 1]^2, rows = y."""
    lin = np.linspace(-1, 1, size)
    x, y = np.meshgrid(lin, lin)
    return np.exp(-((x - center[0]) ** 2 + (y - center[1]) ** 2) / (2 * variance))


def blocks(ax, x0, x1, y, heights, face, edge=INK, width=0.22):
    """Feature maps as upright rectangles of ``heights`` spread from ``x0`` to ``x1`` at height ``y``.

    Returns the ``(x, top)`` of each block, for skip connections and arrows.
    """
    n = len(heights)
    xs = np.linspace(x0 + width / 2, x1 - width / 2, n)
    for x, h in zip(xs, heights):
        ax.add_patch(Rectangle((x - width / 2, y - h / 2), width, h, facecolor=face, edgecolor=edge,
                               linewidth=1.0, zorder=3))
    return [(x, y + h / 2) for x, h in zip(xs, heights)]


def hourglass(ax, x0, x1, y, height, face, levels=3, text="hourglass", size=FONT - 1):
    """An encoder-decoder with skip connections drawn between ``x0`` and ``x1`` around height ``y``."""
    heights = [height * 0.8 ** i for i in range(levels + 1)]
    heights = heights + heights[-2::-1]
    tops = blocks(ax, x0, x1, y, heights, face)
    for i in range(levels):
        (xa, ta), (xb, tb) = tops[i], tops[-1 - i]
        top = max(ta, tb) + 0.12 + 0.1 * (levels - i)
        ax.plot([xa, xa, xb], [ta, top, top], color=GREY_INK, lw=1.0, zorder=2)
        arrow(ax, (xb, top), (xb, tb), color=GREY_INK, lw=1.0)
    for (xa, _), (xb, _) in zip(tops[:-1], tops[1:]):
        ax.plot([xa + 0.11, xb - 0.11], [y, y], color=INK, lw=1.0, zorder=2)
    if text:
        label(ax, (x0 + x1) / 2, y - height / 2 - 0.2, text, size=size)
    return tops


def enable_notebook_display():
    """Inside IPython, make a returned ``Figure`` display as a PNG even when ``pyplot`` was never imported.

    IPython shows a ``Figure`` as an image only once matplotlib's inline backend has registered
    its formatter, which happens when ``pyplot`` loads it. A chapter that shows a diagram before
    any plot would otherwise print ``<Figure size ...>``. Outside IPython this does nothing; a
    formatter already registered (the inline backend's) is left as it is.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    formatter = shell.display_formatter.formatters["image/png"]
    try:
        formatter.lookup_by_type(Figure)
    except KeyError:
        from IPython.core.pylabtools import print_figure

        formatter.for_type(Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight"))
