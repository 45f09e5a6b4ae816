"""Keep the code the chapters show identical to the code kmt ships.

A chapter shows "the implementation" in code cells whose first line is a directive::

    #| kmt-source: kmt.warping.make_coordinate_grid, kmt.warping._unnormalize

The rest of such a cell is the source of the named functions and classes, copied
from ``kmt/`` by this script, so the notebook runs exactly the shipped code and a
reader sees where it lives. ``kmt/`` is the single source of truth: edit the
module, then run ``python tools/sync_chapters.py`` (``make sync``). With
``--check`` nothing is written and the exit status says whether every cell is
up to date (the test suite runs this).
"""

import argparse
import importlib
import inspect
import sys
import textwrap
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
DIRECTIVE = "#| kmt-source:"


def resolve(qualified_name):
    """The object named ``package.module.name`` (or ``package.module.Class.method``)."""
    parts = qualified_name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError as error:
            raise SystemExit(f"{DIRECTIVE} names {qualified_name!r}, which does not exist: {error}")
        return obj
    raise SystemExit(f"{DIRECTIVE} names {qualified_name!r}, whose module cannot be imported.")


def cell_source(directive_line):
    """The full text a ``kmt-source`` cell must hold: the directive, then each object's source."""
    names = [n.strip() for n in directive_line[len(DIRECTIVE):].split(",") if n.strip()]
    if not names:
        raise SystemExit(f"An empty {DIRECTIVE} directive: {directive_line!r}")
    sources = [textwrap.dedent(inspect.getsource(resolve(name))).rstrip() for name in names]
    return directive_line.rstrip() + "\n" + "\n\n\n".join(sources)


def sync_notebook(path, write):
    """Refresh every ``kmt-source`` cell of one notebook; return the indices of cells that differed."""
    notebook = nbformat.read(path, as_version=4)
    stale = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or not cell.source.startswith(DIRECTIVE):
            continue
        expected = cell_source(cell.source.splitlines()[0])
        if cell.source != expected:
            stale.append(index)
            cell.source = expected
    if stale and write:
        nbformat.write(notebook, path)
    return stale


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale cells, write nothing")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in book/")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted(BOOK.glob("*.ipynb"))
    problems = 0
    for path in notebooks:
        stale = sync_notebook(path, write=not args.check)
        for index in stale:
            verb = "is out of date with kmt/" if args.check else "updated from kmt/"
            print(f"{path.relative_to(ROOT) if path.is_absolute() else path}: cell {index} {verb}")
        problems += len(stale)
    if args.check and problems:
        print(f"{problems} cell(s) differ from kmt/; run `make sync` (python tools/sync_chapters.py).")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
