"""The classroom kit: the student edition (``make student``) and the autograder, in both directions.

The instructor version of every chapter must score full marks, the untouched student edition
zero, and the grader must report a score per exercise without crashing. The grader runs each
notebook in a fresh kernel (about half a minute per chapter at the smoke size); all gradings
of the module happen in one call of the grader, two at a time.
"""

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools"
sys.path.insert(0, str(TOOLS))

import autograde  # noqa: E402
import student_edition  # noqa: E402

CHAPTERS = student_edition.chapters()
CHECK_CALL = re.compile(r"kmt\.check\.(\w+)\((\w+)\)")


def solution_regions(source):
    """The lines between each ``### BEGIN SOLUTION`` and ``### END SOLUTION`` of a cell."""
    return re.findall(r"^[ \t]*### BEGIN SOLUTION[ \t]*\n(.*?)^[ \t]*### END SOLUTION", source, re.M | re.S)


def graded_cells(notebook):
    return [c for c in notebook.cells if c.cell_type == "code" and "function" in c.metadata.get("kmt", {})]


def exercise_labels(notebook):
    markdown = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    return re.findall(r"^:label: (\S+)", markdown, re.M)


def student(path):
    return student_edition.student_notebook(nbformat.read(path, as_version=4), path.name)


# ----------------------------------------------------------------- the chapters' grading metadata

@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_checked_solution_carries_grading_metadata(path):
    """A solution cell that calls a checker says which exercise, checker, function and points it grades."""
    import kmt.check

    notebook = nbformat.read(path, as_version=4)
    labels = exercise_labels(notebook)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or "### END SOLUTION" not in cell.source:
            continue
        after = cell.source.rsplit("### END SOLUTION", 1)[1]
        calls = CHECK_CALL.findall(after)
        meta = cell.metadata.get("kmt", {})
        where = f"{path.name}, cell {index} ({cell.get('id')})"
        if not calls:
            assert "checker" not in meta, f"{where}: grading metadata but no checker call after ### END SOLUTION"
            continue
        assert meta, f"{where}: calls kmt.check.{calls[-1][0]} but has no kmt grading metadata"
        assert (meta.get("checker"), meta.get("function")) == calls[-1], f"{where}: metadata {meta} vs call {calls[-1]}"
        assert meta.get("exercise") in labels, f"{where}: exercise {meta.get('exercise')!r} is not one of {labels}"
        assert isinstance(meta.get("points"), int) and meta["points"] > 0, f"{where}: points must be a positive int"
        assert callable(getattr(kmt.check, meta["checker"], None)), f"{where}: kmt.check has no {meta['checker']}"
        defined = {
            node.name
            for region in solution_regions(cell.source)
            for node in ast.parse(region).body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))
        }
        assert meta["function"] in defined, f"{where}: {meta['function']} is not defined between the markers"
    graded = [c.metadata["kmt"]["exercise"] for c in graded_cells(notebook)]
    assert len(graded) == len(set(graded)), f"{path.name}: an exercise is graded twice: {graded}"


def test_the_book_has_graded_exercises():
    assert sum(len(graded_cells(nbformat.read(p, as_version=4))) for p in CHAPTERS) >= 3


# ------------------------------------------------------------------------ the student edition

@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_student_edition_hides_every_solution(path):
    instructor = nbformat.read(path, as_version=4)
    edition = student(path)
    nbformat.validate(edition)
    assert edition.metadata["kmt"] == {"edition": "student", "chapter": path.stem}
    code = "\n".join(c.source for c in edition.cells if c.cell_type == "code")
    markdown = "\n".join(c.source for c in edition.cells if c.cell_type == "markdown")
    assert "BEGIN SOLUTION" not in code and "END SOLUTION" not in code
    assert not re.search(r"\{solution", markdown), "a solution directive is left in the student edition"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in edition.cells if c.cell_type == "code")
    assert not [c for c in edition.cells if "hidden-tests" in c.metadata.get("tags", [])]
    assert len({c["id"] for c in edition.cells}) == len(edition.cells)

    outside = "\n".join(
        re.sub(r"### BEGIN SOLUTION.*?### END SOLUTION", "", c.source, flags=re.S)
        for c in instructor.cells
        if c.cell_type == "code"
    )
    for cell in instructor.cells:
        for region in solution_regions(cell.source) if cell.cell_type == "code" else []:
            docstrings = set()
            for node in ast.walk(ast.parse(region)) if not region.startswith((" ", "\t")) else []:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(node, clean=False):
                    docstrings |= {l.strip() for l in ast.get_docstring(node, clean=False).splitlines()}
            for line in region.splitlines():
                text = line.strip()
                if len(text) < 12 or text.startswith(("def ", "class ", "@", "import ", "from ", "#")):
                    continue
                if text in docstrings or text.strip("\"'") in docstrings or text in outside:
                    continue
                assert text not in code, f"{path.name}: solution line {text!r} is in the student edition"

    solution_text = re.findall(
        r"\{solution-start\}[^\n]*\n(?::[^\n]*\n)*`{3,}\n(.*?)(?:`{3,}|:{3,})\{solution-end\}",
        "\n\n".join(c.source for c in instructor.cells if c.cell_type == "markdown"),
        re.S,
    )
    for block in solution_text:
        for line in block.splitlines():
            if len(line.strip()) >= 20:
                assert line.strip() not in markdown, f"{path.name}: solution text {line.strip()!r} is in the student edition"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_student_stubs_define_the_graded_functions_and_raise(path):
    instructor = nbformat.read(path, as_version=4)
    numbers = autograde.exercise_numbers(instructor, path.name)
    edition = student(path)
    cells = {c["id"]: c for c in edition.cells}
    for cell in graded_cells(instructor):
        meta = cell.metadata["kmt"]
        stub = cells[cell["id"]]
        assert stub.metadata["kmt"] == meta
        tree = ast.parse(stub.source)
        (function,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == meta["function"]]
        raises = [n for n in ast.walk(function) if isinstance(n, ast.Raise)]
        assert raises and raises[-1].exc.func.id == "NotImplementedError"
        message = raises[-1].exc.args[0].value
        assert message.startswith(f"exercise {numbers[meta['exercise']]}: write {meta['function']}"), message
        assert f"kmt.check.{meta['checker']}({meta['function']})" in stub.source, "the checker call must stay"


def test_stubs_of_each_kind_of_solution():
    functions = '### BEGIN SOLUTION\nimport numpy as np\n\n\ndef f(x, *, k: int = 2):\n    """Doc."""\n    return x * k\n### END SOLUTION\nprint(f(1))'
    assert student_edition.stub_source(functions, "2.1", "ex-f") == (
        "def f(x, *, k: int=2):\n"
        '    """Doc."""\n'
        "    # YOUR CODE HERE\n"
        "    raise NotImplementedError('exercise 2.1: write f (ex-f)')\n"
        "print(f(1))"
    )
    script = "x = 1\n### BEGIN SOLUTION\ndef g():\n    return 2\ny = g() + x\n### END SOLUTION\n"
    assert student_edition.stub_source(script, "2.2", "ex-g") == (
        "x = 1\n# YOUR CODE HERE\nraise NotImplementedError('exercise 2.2: write your code here (ex-g)')"
    )
    graded = student_edition.stub_source(script, "2.2", "ex-g", graded=True)
    assert graded.startswith("x = 1\ndef g():\n    # YOUR CODE HERE\n    raise NotImplementedError('exercise 2.2: write g")
    indented = "def h(x):\n    y = x + 1\n    ### BEGIN SOLUTION\n    y = y * 2\n    ### END SOLUTION\n    return y"
    assert student_edition.stub_source(indented, "2.3", "ex-h") == (
        "def h(x):\n    y = x + 1\n    # YOUR CODE HERE\n"
        "    raise NotImplementedError('exercise 2.3: write your code here (ex-h)')\n    return y"
    )
    layer = "### BEGIN SOLUTION\nclass L(Base):\n    scale = 2\n\n    def call(self, x):\n        return x\n### END SOLUTION"
    assert "class L(Base):\n\n    def call(self, x):\n        # YOUR CODE HERE\n        raise NotImplementedError('exercise 2.4: write L.call" in (
        student_edition.stub_source(layer, "2.4", "ex-l")
    )
    with pytest.raises(ValueError, match="without its"):
        student_edition.stub_source("### BEGIN SOLUTION\nx = 1\n", "2.5", "ex-x")


def test_markdown_of_the_student_edition():
    editor = student_edition.MarkdownEditor({"ex-a": "3.1", "ex-b": "3.2"})
    exercise = "Text {cite}`siarohin2019first`.\n\n```{exercise} Title\n:label: ex-a\n\nDo {ref}`this <sec-x>`.\n```"
    assert editor.edit(exercise) == "Text [siarohin2019first].\n\n### Exercise 3.1: Title\n\nDo this."
    assert editor.edit("```{solution-start} ex-a\n:class: dropdown\n```\n\nThe answer is 42.") == ""
    assert editor.solution == "ex-a"
    assert editor.edit("More.\n\n```{solution-end}\n```\n\nAfter.") == (
        "**Your answer** (exercise 3.1): YOUR ANSWER HERE\n\n\nAfter."
    )
    assert editor.edit("```{solution} ex-b\n:class: dropdown\nHidden words.\n```") == (
        "**Your answer** (exercise 3.2): YOUR ANSWER HERE"
    )
    assert editor.edit("```{admonition} Learning objectives\n:class: tip\nLearn.\n```") == (
        "> **Learning objectives**\n>\n> Learn."
    )
    assert editor.edit("```{figure} images/x.png\n:width: 50%\nCaption.\n```") == (
        "```{figure} images/x.png\n:width: 50%\nCaption.\n```"
    )


# ----------------------------------------------------------------------- grading, both ways

def mini_chapter():
    """A small instructor chapter with two graded exercises and a hidden test."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    affine = (
        "### BEGIN SOLUTION\ndef my_affine_grid(theta, size):\n"
        "    base = ops.convert_to_numpy(warping.make_coordinate_grid(size))\n"
        "    homogeneous = np.concatenate([base, np.ones(base.shape[:2] + (1,), base.dtype)], -1)\n"
        '    return np.einsum("hwk,bjk->bhwj", homogeneous, np.asarray(theta, base.dtype))\n'
        "### END SOLUTION\n\nkmt.check.affine_grid(my_affine_grid)"
    )
    identity = (
        "### BEGIN SOLUTION\ndef my_identity_grid(h, w):\n"
        "    x = (2 * np.arange(w) + 1) / w - 1\n    y = (2 * np.arange(h) + 1) / h - 1\n"
        '    return np.stack(np.meshgrid(x, y), -1).astype("float32")\n'
        "### END SOLUTION\n\nkmt.check.identity_grid_unaligned(my_identity_grid)"
    )
    hidden = code('assert my_identity_grid(2, 3).dtype == np.float32, "the grid must be float32"')
    hidden.metadata.update(tags=["hidden-tests", "remove-cell"], kmt={"exercise": "ex-id"})
    cells = [
        md("# 9. Mini"),
        code("import numpy as np\nfrom keras import ops\n\nimport kmt\nfrom kmt import warping"),
        md("```{exercise} Affine\n:label: ex-aff\nWrite it.\n```"),
        md("```{solution-start} ex-aff\n:class: dropdown\n```"),
        code(affine, metadata={"kmt": {"exercise": "ex-aff", "checker": "affine_grid", "function": "my_affine_grid", "points": 4}}),
        md("```{solution-end}\n```"),
        md("```{exercise} Identity\n:label: ex-id\nWrite it.\n```"),
        md("```{solution-start} ex-id\n:class: dropdown\n```"),
        code(identity, metadata={"kmt": {"exercise": "ex-id", "checker": "identity_grid_unaligned", "function": "my_identity_grid", "points": 2}}),
        hidden,
        md("```{solution-end}\n```"),
        md("```{exercise} Explore\n:label: ex-explore\nLook.\n```"),
        md("```{solution-start} ex-explore\n:class: dropdown\n```"),
        code("### BEGIN SOLUTION\nprint(my_identity_grid(1, 2))\n### END SOLUTION"),
        md("Words of the answer.\n```{solution-end}\n```"),
    ]
    for index, cell in enumerate(cells):
        cell["id"] = f"c{index:03d}"
    nb.cells = cells
    return nb


CLASSROOM = ROOT / "_build" / "classroom-test"


@pytest.fixture(scope="module")
def graded():
    """Grade, in one call: every chapter as written, its student edition, and a partly done mini chapter.

    Everything stays in _build/classroom-test (the editions, grades.txt, grades.csv, the feedback
    notebooks); tools/run_tests.sh prints grades.txt after the repository checks.
    """
    out = CLASSROOM
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    release, autograder = student_edition.write_edition(CHAPTERS, out)
    source = autograder / "source"
    nbformat.write(mini_chapter(), source / "09_mini.ipynb")
    partial = student_edition.student_notebook(mini_chapter(), "09_mini.ipynb")
    solutions = {c["id"]: c.source for c in mini_chapter().cells}
    for cell in partial.cells:
        if cell["id"] == "c004":  # the student solves the first exercise
            cell.source = solutions["c004"]
        if cell["id"] == "c008":  # and the second, but in float64, which its hidden test rejects
            cell.source = solutions["c008"].replace('.astype("float32")', "")
    submissions = out / "submissions"
    submissions.mkdir()
    nbformat.write(partial, submissions / "09_mini.ipynb")
    runs = [str(p) for p in CHAPTERS] + [str(release / p.name) for p in CHAPTERS] + [str(submissions / "09_mini.ipynb")]
    report = out / "grades.json"
    completed = subprocess.run(
        [sys.executable, str(autograder / "autograde.py"), *runs, "--jobs", "2", "--json", str(report),
         "--csv", str(out / "grades.csv"), "--feedback", str(out / "feedback")],
        capture_output=True, text=True, timeout=3000,
    )
    (out / "grades.txt").write_text(completed.stdout)
    results = json.loads(report.read_text()) if report.exists() else []
    return {"process": completed, "results": {r["submission"]: r for r in results}, "release": release, "out": out}


def test_the_grader_finishes_and_prints_a_score_per_exercise(graded):
    process = graded["process"]
    assert process.returncode == 0, process.stdout + process.stderr
    for path in CHAPTERS:
        result = graded["results"][str(path)]
        assert result["problem"] is None, result["problem"]
        for exercise in result["exercises"]:
            assert re.search(rf"exercise {re.escape(exercise['number'])} +{exercise['exercise']} ", process.stdout)
    rows = (graded["out"] / "grades.csv").read_text().splitlines()
    assert rows[0].startswith("submission,chapter,exercise")
    assert len(rows) == 1 + sum(len(r["exercises"]) for r in graded["results"].values())


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_the_instructor_version_scores_full_marks(graded, path):
    result = graded["results"][str(path)]
    expected = {c.metadata["kmt"]["exercise"]: c.metadata["kmt"]["points"] for c in graded_cells(nbformat.read(path, as_version=4))}
    assert {e["exercise"]: e["score"] for e in result["exercises"]} == expected, json.dumps(result, indent=1)
    assert all(e["passed"] == e["total"] > 0 for e in result["exercises"])


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_the_untouched_student_edition_scores_zero(graded, path):
    result = graded["results"][str(graded["release"] / path.name)]
    assert result["problem"] is None, result["problem"]
    assert len(result["exercises"]) == len(graded_cells(nbformat.read(path, as_version=4)))
    for exercise in result["exercises"]:
        assert exercise["score"] == 0 and exercise["total"] > 0, exercise
        assert "NotImplementedError" in exercise["report"] and f"exercise {exercise['number']}" in exercise["report"]


def test_a_partly_done_submission_gets_a_score_per_exercise(graded):
    result = graded["results"][str(graded["out"] / "submissions" / "09_mini.ipynb")]
    scores = {e["exercise"]: e for e in result["exercises"]}
    assert scores["ex-aff"]["score"] == 4 and scores["ex-aff"]["passed"] == 3
    assert scores["ex-id"]["score"] == 0 and scores["ex-id"]["passed"] == 3  # right values, wrong dtype
    assert "hidden test failed (AssertionError: the grid must be float32)" in scores["ex-id"]["report"]
    feedback = nbformat.read(graded["out"] / "feedback" / "09_mini.ipynb", as_version=4)
    assert any("hidden-tests" in c.metadata.get("tags", []) for c in feedback.cells), "hidden tests are re-inserted"
    errors = [o for c in feedback.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert [e["ename"] for e in errors] == ["AssertionError", "NotImplementedError"]


def test_a_submission_of_an_unknown_chapter_is_reported_not_graded(tmp_path):
    stray = tmp_path / "homework.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), stray)
    completed = subprocess.run(
        [sys.executable, str(TOOLS / "autograde.py"), str(stray), "--source", str(ROOT / "book")],
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 1
    assert "not graded" in completed.stdout and "cannot tell which chapter" in completed.stdout


def test_make_student_writes_the_edition_and_the_grader():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^student:.*\n(\t.*\n)*\t.*tools/student_edition\.py", makefile, re.M)
