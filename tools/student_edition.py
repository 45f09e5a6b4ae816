"""Write the student edition of the book's chapters, and the autograder that grades them.

    python tools/student_edition.py                  # every chapter in _toc.yml, into _build/student
    python tools/student_edition.py --out DIR book/01_coordinates_and_warping.ipynb

The chapters are the instructor version. In the student edition (``DIR/release/``):

* the code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes a stub: a function
  keeps its signature and docstring and its body raises
  ``NotImplementedError("exercise 1.2: write my_function (ex-label)")``; other solution code
  becomes one such ``raise`` (inside an indented block, the ``raise`` takes the block's place);
  what follows ``### END SOLUTION`` (the call to the checker) stays, without the ``assert`` with
  which the instructor version makes its own solution pass (``report = kmt.check.X(f)``,
  ``assert report, report``, ``report`` becomes ``kmt.check.X(f)``), so that an unfinished
  function shows its report instead of stopping the notebook;
* the solutions' text (everything between ``{solution-start}`` and ``{solution-end}``, or in a
  ``{solution}`` directive) is removed; where it held a written answer, a "YOUR ANSWER HERE"
  cell takes its place, and other code cells inside a solution are removed;
* cells tagged ``hidden-tests`` are removed (the grader puts them back);
* every output is cleared, and the MyST exercise and admonition blocks become plain Markdown,
  so the notebook reads well in Jupyter and Colab;
* every kept cell keeps its id and metadata: the grader finds a student's exercise cells by their
  ``kmt`` metadata, and leaves out a cell marked ``{"kmt": {"autograde": "skip"}}`` only while the
  submission holds it with the instructor's id and source.

``DIR/autograder/`` holds ``autograde.py`` and ``source/`` (the instructor notebooks it reads the
grading metadata and hidden tests from): see ``book/instructors.md``.
"""

import argparse
import ast
import copy
import re
import shutil
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from autograde import HIDDEN_TAG, exercise_numbers  # noqa: E402

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_RE = re.compile(r"^([ \t]*)### BEGIN SOLUTION[ \t]*$")
DIRECTIVE_RE = re.compile(r"^(`{3,}|:{3,})\{([\w-]+)\}[ \t]*(.*)$")
ADMONITIONS = {"admonition", "note", "tip", "hint", "important", "warning", "caution", "attention",
               "danger", "error", "seealso"}
ANSWER_PLACEHOLDER = "YOUR ANSWER HERE"
CHECK_CALL = r"kmt\.check\.\w+\(\w+\)"
ASSERTED_REPORT_RE = re.compile(rf"^(\w+) = ({CHECK_CALL})[ \t]*\nassert \1\b[^\n]*\n\1[ \t]*$", re.M)
ASSERTED_CALL_RE = re.compile(rf"^assert ({CHECK_CALL})[^\n]*$", re.M)


def chapters(root=ROOT):
    """The notebooks the table of contents lists, in its order (else every ``book/*.ipynb``)."""
    book = root / "book"
    toc_path = root / "_toc.yml"
    if not toc_path.exists():
        return sorted(book.glob("*.ipynb"))
    toc = yaml.safe_load(toc_path.read_text())
    files = [toc.get("root")]
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            files.append(chapter.get("file"))
            files += [section.get("file") for section in chapter.get("sections", [])]
    found = [book / f"{name}.ipynb" for name in files if name and (book / f"{name}.ipynb").exists()]
    return found or sorted(book.glob("*.ipynb"))


# ---------------------------------------------------------------------------------- code stubs

def _raise_lines(indent, message):
    return [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError({message!r})"]


def _stub_function(node, message):
    """A copy of a function definition whose body is its docstring, then ``raise NotImplementedError``."""
    stub = copy.deepcopy(node)
    docstring = ast.get_docstring(node, clean=False)
    body = [ast.Expr(ast.Constant(docstring))] if docstring is not None else []
    body.append(ast.Raise(ast.Call(ast.Name("NotImplementedError", ast.Load()), [ast.Constant(message)], []), None))
    stub.body = body
    return stub


def _with_comment(code):
    """Put ``# YOUR CODE HERE`` above every ``raise NotImplementedError`` of unparsed stub code."""
    lines = []
    for line in code.splitlines():
        if line.lstrip().startswith("raise NotImplementedError("):
            lines.append(line[: len(line) - len(line.lstrip())] + "# YOUR CODE HERE")
        lines.append(line)
    return lines


def stub_region(region, indent, number, label, graded=False):
    """The stub that replaces the lines of one solution region.

    Definitions become stubs; a region that also runs statements (a script) becomes one
    ``raise``, unless the cell is graded, whose functions the grader calls: then only the
    stubs of its definitions remain.
    """
    where = f"exercise {number}" if number else "exercise"
    tail = f" ({label})" if label else ""
    if indent:
        return _raise_lines(indent, f"{where}: write your code here{tail}")
    try:
        tree = ast.parse("\n".join(region))
    except SyntaxError:
        return _raise_lines("", f"{where}: write your code here{tail}")
    definitions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
    if not graded and not all(isinstance(node, definitions) for node in tree.body):
        return _raise_lines("", f"{where}: write your code here{tail}")  # a script: no hint of its shape
    pieces = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            pieces.append(_stub_function(node, f"{where}: write {node.name}{tail}"))
        elif isinstance(node, ast.ClassDef):
            stub = copy.deepcopy(node)
            docstring = ast.get_docstring(node, clean=False)
            methods = [_stub_function(n, f"{where}: write {node.name}.{n.name}{tail}")
                       for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
            stub.body = ([ast.Expr(ast.Constant(docstring))] if docstring is not None else []) + methods
            if not stub.body:
                stub.body = [ast.Pass()]
            pieces.append(stub)
    lines = []
    for piece in pieces:
        if lines:
            lines += ["", ""]
        lines += _with_comment(ast.unparse(ast.fix_missing_locations(piece)))
    return lines or _raise_lines("", f"{where}: write your code here{tail}")


def stub_source(source, number=None, label=None, graded=False):
    """The source of a code cell with every solution region replaced by its stub."""
    lines, out, index = source.splitlines(), [], 0
    while index < len(lines):
        match = BEGIN_RE.match(lines[index])
        if not match:
            out.append(lines[index])
            index += 1
            continue
        end = next((j for j in range(index + 1, len(lines)) if lines[j].strip() == END), None)
        if end is None:
            raise ValueError(f"a {BEGIN!r} line without its {END!r}:\n{source}")
        out += stub_region(lines[index + 1:end], match.group(1), number, label, graded)
        index = end + 1
    return "\n".join(out)


def unasserted_checks(source):
    """The checker calls of the instructor version without their ``assert``: the report alone."""
    return ASSERTED_CALL_RE.sub(r"\1", ASSERTED_REPORT_RE.sub(r"\2", source))


# ------------------------------------------------------------------------------- markdown

def _plain_role(match):
    role, text = match.group(1), match.group(2)
    if role.startswith("cite"):
        return "[" + ", ".join(key.strip() for key in text.split(",")) + "]"
    titled = re.match(r"(.*?)\s*<[^>]+>$", text)
    return titled.group(1) if titled else text


def plain_markdown(text):
    """MyST roles that Jupyter does not render (``{cite}``, ``{ref}``, ...) as plain text."""
    return re.sub(r"\{([\w:-]+)\}`([^`]*)`", _plain_role, text)


class MarkdownEditor:
    """Walks the Markdown of a chapter, cell after cell, dropping solutions and rewriting directives.

    The state (inside a solution or not, and whether it held a written answer) carries from one
    cell to the next, since a gated solution opens in one cell and closes in a later one.
    """

    def __init__(self, numbers):
        self.numbers = numbers
        self.solution = None  # the label of the solution being skipped
        self.answered = False  # the skipped solution held text
        self.last_label = None

    def edit(self, source):
        lines, out, index = source.splitlines(), [], 0
        while index < len(lines):
            line = lines[index]
            directive = DIRECTIVE_RE.match(line)
            if directive:
                start = index
                fence, name, argument = directive.groups()
                close = next((j for j in range(index + 1, len(lines)) if lines[j].strip() == fence), len(lines))
                body = lines[index + 1:close]
                options = {}
                while body and re.match(r"^:[\w-]+:", body[0]):
                    key, _, value = body.pop(0)[1:].partition(":")
                    options[key] = value.strip()
                index = close + 1
                if name == "solution-start":
                    self.solution, self.answered = argument.strip() or self.last_label, False
                elif name == "solution-end":
                    if self.answered:
                        out += ["", f"**Your answer** (exercise {self.numbers.get(self.solution, '')}): "
                                    f"{ANSWER_PLACEHOLDER}", ""]
                    self.solution = None
                elif name == "solution":
                    if any(l.strip() for l in body):
                        label = argument.strip() or self.last_label
                        out += ["", f"**Your answer** (exercise {self.numbers.get(label, '')}): {ANSWER_PLACEHOLDER}", ""]
                elif self.solution:
                    self.answered = True
                elif name in ("exercise", "exercise-start"):
                    self.last_label = options.get("label", self.last_label)
                    number = self.numbers.get(self.last_label, "")
                    title = f": {argument.strip()}" if argument.strip() else ""
                    while body and not body[0].strip():
                        body.pop(0)
                    out += [f"### Exercise {number}{title}", ""] + [plain_markdown(l) for l in body]
                elif name == "exercise-end":
                    pass
                elif name in ADMONITIONS:
                    while body and not body[0].strip():
                        body.pop(0)
                    title = argument.strip() if name == "admonition" else (argument.strip() or name.capitalize())
                    out += [f"> **{title}**", ">"] + [f"> {plain_markdown(l)}".rstrip() for l in body]
                else:
                    out += lines[start:index]  # any other directive stays as it is
                continue
            if self.solution:
                if line.strip():
                    self.answered = True
            else:
                out.append(plain_markdown(line))
            index += 1
        return "\n".join(out).strip("\n")


# ------------------------------------------------------------------------------- notebooks

def student_notebook(notebook, name):
    """The student edition of one chapter (a new notebook; ``notebook`` is left as it was)."""
    numbers = exercise_numbers(notebook, name)
    editor = MarkdownEditor(numbers)
    cells = []
    for cell in copy.deepcopy(notebook.cells):
        meta = cell.get("metadata", {})
        if HIDDEN_TAG in meta.get("tags", []):
            continue
        if cell.cell_type == "markdown":
            cell.source = editor.edit(cell.source)
            if cell.source.strip():
                cells.append(cell)
            continue
        if cell.cell_type != "code":
            cells.append(cell)
            continue
        cell.outputs, cell.execution_count = [], None
        marked = BEGIN in cell.source
        if editor.solution and not marked:
            continue  # code that belongs to a solution and has nothing for the student to fill in
        if marked:
            label = meta.get("kmt", {}).get("exercise") or editor.solution or editor.last_label
            graded = "function" in meta.get("kmt", {})
            cell.source = stub_source(cell.source, numbers.get(label), label, graded)
        cell.source = unasserted_checks(cell.source)
        cells.append(cell)
    student = copy.deepcopy(notebook)
    student.cells = cells
    student.metadata.pop("widgets", None)
    student.metadata["kmt"] = {"edition": "student", "chapter": Path(name).stem}
    nbformat.validate(student)
    return student


def write_edition(notebooks, out):
    """Write ``out/release`` (the student edition) and ``out/autograder`` (grader and instructor notebooks)."""
    out = Path(out)
    release, autograder = out / "release", out / "autograder"
    for folder in (release, autograder):
        if folder.exists():
            shutil.rmtree(folder)
    (autograder / "source").mkdir(parents=True)
    release.mkdir(parents=True)
    for path in notebooks:
        path = Path(path)
        notebook = nbformat.read(path, as_version=4)
        nbformat.write(student_notebook(notebook, path.name), release / path.name)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(notebook, autograder / "source" / path.name)
    images = ROOT / "book" / "images"
    if images.is_dir():
        shutil.copytree(images, release / "images", ignore=shutil.ignore_patterns("*.html"))
    shutil.copy2(Path(__file__).resolve().parent / "autograde.py", autograder / "autograde.py")
    return release, autograder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every chapter in _toc.yml")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "student", help="default: _build/student")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or chapters()
    release, autograder = write_edition(notebooks, args.out)
    print(f"Student edition of {len(notebooks)} chapter(s): {release}")
    print(f"Autograder: python {autograder / 'autograde.py'} SUBMISSION.ipynb ... (see book/instructors.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
