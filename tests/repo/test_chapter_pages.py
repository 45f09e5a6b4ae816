"""What a reader sees in the chapters: no private kmt names, the model's figures, labelled exercises."""

import ast
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
NUMBERED = [path for path in CHAPTERS if not path.name.startswith("00_")]
LEVELS = ("★☆☆", "★★☆", "★★★")
KINDS = ("implementation", "derivation", "debugging", "experiment", "reading")
LABEL_LINE = re.compile(r"^\*\*Level\*\* (\S+) · \*\*Kind\*\* (\w+)$")
EXERCISE_START = re.compile(r"^(`{3,}|:{3,})\{exercise(?:-start)?\}")
PRIVATE_ACCESS = re.compile(r"\b(?:kmt(?:\.\w+)*|self|[a-z_]+)\.(_[A-Za-z]\w*)")


def private_kmt_names():
    """Every ``_name`` kmt defines: functions, classes and methods, and module-level variables."""
    names = set()
    for path in (ROOT / "kmt").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return {n for n in names if n.startswith("_") and not n.startswith("__") and len(n) > 1}


PRIVATE = private_kmt_names()


def chapter_number(path):
    return int(path.name[:2])


def test_private_names_are_collected():
    assert {"_reference_gradient", "_repr_html_"} & PRIVATE or len(PRIVATE) > 50


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_no_private_kmt_name_on_a_page(path):
    """Library internals stay in kmt/: a chapter neither calls nor shows a name kmt keeps private."""
    found = []
    for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
        # (a folder such as _build/ in a command line is not a name)
        for name in set(re.findall(r"(?<![\w./-])_[A-Za-z]\w*(?![\w/])", cell.source)) & PRIVATE:
            found.append(f"cell {index}: {name}")
        for name in PRIVATE_ACCESS.findall(cell.source):
            if name in PRIVATE:
                found.append(f"cell {index}: .{name}")
    assert not found, f"{path.name} shows private kmt names: {sorted(set(found))}"


def _code_sources(path):
    return [(cell.source.strip(), cell.metadata) for cell in nbformat.read(path, as_version=4).cells
            if cell.cell_type == "code"]


@pytest.mark.parametrize("path", NUMBERED, ids=lambda p: p.name)
def test_chapter_opens_with_the_overview_and_has_its_diagram(path):
    number = chapter_number(path)
    cells = nbformat.read(path, as_version=4).cells
    first_code = next(cell for cell in cells if cell.cell_type == "code")
    overview = [(s, m) for s, m in _code_sources(path) if s == f"kmt.book.diagrams.overview({number})"]
    diagram = [(s, m) for s, m in _code_sources(path) if s == f"kmt.book.diagrams.chapter_diagram({number})"]
    assert len(overview) == 1 and len(diagram) == 1, f"{path.name}: expected one overview({number}) cell and " \
        f"one chapter_diagram({number}) cell, found {len(overview)} and {len(diagram)}"
    for (source, metadata), name in ((overview[0], f"overview-ch{number}"), (diagram[0], f"diagram-ch{number}")):
        figure = metadata.get("mystnb", {}).get("figure", {})
        assert figure.get("name") == name and figure.get("caption"), f"{path.name}: {source} needs a captioned figure named {name}"
        assert "remove-input" in metadata.get("tags", []), f"{path.name}: {source} should show the figure, not the call"
    # The overview comes first: only imports may run before it.
    order = [cell for cell in cells if cell.cell_type == "code"]
    assert order.index(next(c for c in order if c.source.strip() == overview[0][0])) <= 1, \
        f"{path.name}: the overview figure should open the chapter (right after the imports)"
    assert first_code is not None


def exercises(path):
    """``(title, level, kind)`` for every exercise of a chapter; level and kind None when unlabelled."""
    found = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.splitlines()
        for index, line in enumerate(lines):
            if EXERCISE_START.match(line):
                body = [l for l in lines[index + 1:] if l.strip() and not l.startswith(":")]
                match = LABEL_LINE.match(body[0].strip()) if body else None
                title = line.split("}", 1)[1].strip()
                found.append((title, *(match.groups() if match else (None, None))))
    return found


@pytest.mark.parametrize("path", NUMBERED, ids=lambda p: p.name)
def test_exercises_are_labelled_and_not_only_reimplementation(path):
    found = exercises(path)
    assert len(found) >= 3, f"{path.name}: {len(found)} exercises, at least three expected"
    bad = [title for title, level, kind in found if level not in LEVELS or kind not in KINDS]
    assert not bad, (f"{path.name}: exercises without a first line `**Level** ★★☆ · **Kind** derivation` "
                     f"(levels {LEVELS}, kinds {KINDS}): {bad}")
    assert any(kind != "implementation" for _, _, kind in found), \
        f"{path.name}: every exercise is an implementation; add a derivation, a debugging task or an experiment"


def test_the_label_line_is_recognised():
    assert LABEL_LINE.match("**Level** ★★☆ · **Kind** derivation").groups() == ("★★☆", "derivation")
    assert LABEL_LINE.match("Level 2, derivation") is None
