"""The classroom kit: the student edition (``make student``) and the autograder, in both directions.

The instructor version of every chapter must score full marks, the untouched student edition
zero, and the grader must report a score per exercise without crashing, nor be fooled by a
submission that hands in kmt's own function, patches kmt, or never returns. The grader runs each
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


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_instructor_checks_assert_their_solution_and_student_checks_only_report(path):
    """nbval fails when a solution of the book fails its checker; a student's unfinished function must not stop the notebook."""
    cells = {c["id"]: c for c in student(path).cells}
    for cell in graded_cells(nbformat.read(path, as_version=4)):
        meta = cell.metadata["kmt"]
        call = f"kmt.check.{meta['checker']}({meta['function']})"
        after = cell.source.rsplit("### END SOLUTION", 1)[1].strip()
        assert after == f"report = {call}\nassert report, report  # the book's own solution passes its checker\nreport", after
        stub = cells[cell["id"]].source
        assert not re.search(r"^\s*assert\b", stub, re.M), stub
        assert stub.rstrip().endswith(f"\n{call}"), stub
    assert student_edition.unasserted_checks("assert kmt.check.f(g)  # passes\nx = 1") == "kmt.check.f(g)\nx = 1"


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
    """A small instructor chapter with two graded exercises, a hidden test and two cells the grader may skip."""
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
        code('raise RuntimeError("a long demonstration that no exercise needs")', metadata={"kmt": {"autograde": "skip"}}),
        code('demo = "a demonstration the student rewrites"', metadata={"kmt": {"autograde": "skip"}}),
    ]
    for index, cell in enumerate(cells):
        cell["id"] = f"c{index:03d}"
    nb.cells = cells
    return nb


CLASSROOM = ROOT / "_build" / "classroom-test"
# The chapters that train take minutes a run where the others take seconds: the grader starts its
# submissions in the order given, so these go first and the two workers finish about together.
SLOWEST_FIRST = ("09_real_videos", "07_training")
EXERCISE_TIMEOUT = 15

# Submissions that try to score without writing the exercise, each beside an honest solution.
# Chapter 2: kmt's function handed in under the student's name, a wrapper that calls it, a loop.
CHEATS_02 = {
    "ex-soft-argmax": "from kmt.keypoints import soft_argmax as my_soft_argmax\n\nkmt.check.soft_argmax(my_soft_argmax)",
    "ex-kp2gaussian": (
        "def my_kp2gaussian(kp, spatial_size, kp_variance):\n"
        "    return kmt.keypoints.kp2gaussian(kp, spatial_size, kp_variance)\n\n"
        "kmt.check.kp2gaussian(my_kp2gaussian)"
    ),
    "ex-temperature-gradient": (
        "def my_soft_argmax_gradient(logits, temperature):\n    while True:\n        pass\n\n"
        "kmt.check.soft_argmax_gradient(my_soft_argmax_gradient)"
    ),
}
# Chapter 1: a loop that swallows every interruption (the kernel must be restarted), and a patch of
# kmt that would make zeros the expected answer if the answers were computed in the student's kernel.
CHEATS_01 = {
    "ex-affine-grid": (
        "def my_affine_grid(theta, size):\n    while True:\n        try:\n            while True:\n"
        "                pass\n        except BaseException:\n            pass"
    ),
    "ex-nearest": (
        "import kmt.warping\n\nkmt.warping.grid_sample_keras = lambda image, grid, **kwargs: np.zeros(\n"
        "    grid.shape[:3] + image.shape[3:], 'float32')\n\n\n"
        "def my_grid_sample_nearest(image, grid):\n    return np.zeros(grid.shape[:3] + image.shape[3:], 'float32')"
    ),
}


def cheating_submission(release, path, cheats):
    """The student edition of ``path`` with the ``cheats`` sources; every other graded exercise solved honestly."""
    solutions = {c["id"]: solution_regions(c.source)[0] for c in graded_cells(nbformat.read(path, as_version=4))}
    notebook = nbformat.read(release / path.name, as_version=4)
    for cell in graded_cells(notebook):
        meta = cell.metadata["kmt"]
        honest = f"{solutions[cell['id']]}\nkmt.check.{meta['checker']}({meta['function']})"
        cell.source = cheats.get(meta["exercise"], honest)
    return notebook


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
        if cell["id"] == "c016":  # and edits a cell the grader would skip, which must then run
            cell.source = 'raise ValueError("an edited demonstration")'
    submissions = out / "submissions"
    (submissions / "cheats").mkdir(parents=True)
    nbformat.write(partial, submissions / "09_mini.ipynb")
    cheats = []
    for name, sources in (("01_coordinates_and_warping", CHEATS_01), ("02_keypoints_as_heatmaps", CHEATS_02)):
        cheats.append(submissions / "cheats" / f"{name}.ipynb")
        nbformat.write(cheating_submission(release, ROOT / "book" / f"{name}.ipynb", sources), cheats[-1])
    runs = [str(p) for p in cheats + CHAPTERS] + [str(release / p.name) for p in CHAPTERS]
    runs.append(str(submissions / "09_mini.ipynb"))
    runs.sort(key=lambda run: SLOWEST_FIRST.index(Path(run).stem) if Path(run).stem in SLOWEST_FIRST else len(SLOWEST_FIRST))
    report = out / "grades.json"
    completed = subprocess.run(
        [sys.executable, str(autograder / "autograde.py"), *runs, "--jobs", "2", "--json", str(report),
         "--csv", str(out / "grades.csv"), "--feedback", str(out / "feedback"),
         "--exercise-timeout", str(EXERCISE_TIMEOUT)],
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
    assert [e["ename"] for e in errors] == ["AssertionError", "NotImplementedError", "ValueError"]  # not the skipped RuntimeError
    (skipped,) = [c for c in feedback.cells if c.source.startswith("raise RuntimeError")]
    assert [o.get("text") for o in skipped.outputs] == [autograde.SKIPPED_NOTE] and skipped.execution_count is None


def test_only_an_unmarked_cell_may_be_skipped():
    notebook = mini_chapter()
    assert autograde.skipped_sources(notebook) == {
        "c015": 'raise RuntimeError("a long demonstration that no exercise needs")',
        "c016": 'demo = "a demonstration the student rewrites"',
    }
    notebook.cells[4].metadata["kmt"]["autograde"] = "skip"
    with pytest.raises(ValueError, match="grades exercise 'ex-aff': it cannot be marked"):
        autograde.skipped_sources(notebook)
    notebook.cells[4].metadata["kmt"]["autograde"] = "yes"
    with pytest.raises(ValueError, match="autograde must be 'skip'; got 'yes'"):
        autograde.skipped_sources(notebook)
    hidden = next(c for c in mini_chapter().cells if "hidden-tests" in c.metadata.get("tags", []))
    hidden.metadata["kmt"] = {"autograde": "skip"}
    with pytest.raises(ValueError, match="is a hidden test: it cannot be marked autograde 'skip'"):
        autograde.skipped_sources(nbformat.v4.new_notebook(cells=[hidden]))


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


def cheat_result(graded, name):
    result = graded["results"][str(graded["out"] / "submissions" / "cheats" / f"{name}.ipynb")]
    return {e["exercise"]: e for e in result["exercises"]}, result


def test_handing_in_kmts_own_function_scores_zero_and_says_why(graded):
    scores, _ = cheat_result(graded, "02_keypoints_as_heatmaps")
    alias, wrapper = scores["ex-soft-argmax"], scores["ex-kp2gaussian"]
    assert alias["score"] == 0 and alias["passed"] == 0, alias
    assert "your function is kmt.keypoints.soft_argmax, the function this exercise asks you to write" in alias["report"]
    assert wrapper["score"] == 0 and wrapper["passed"] == 0, wrapper
    assert "your function calls kmt.keypoints.kp2gaussian, the function this exercise asks you to write" in wrapper["report"]
    assert scores["ex-heatmap-size"]["score"] == scores["ex-heatmap-size"]["points"]  # the honest one, same kernel


def test_a_function_that_never_returns_scores_zero_and_the_others_are_graded(graded):
    scores, _ = cheat_result(graded, "02_keypoints_as_heatmaps")
    loop = scores["ex-temperature-gradient"]
    assert loop["score"] == 0 and f"did not finish within {EXERCISE_TIMEOUT} s" in loop["report"], loop
    scores, result = cheat_result(graded, "01_coordinates_and_warping")
    stubborn = scores["ex-affine-grid"]  # it swallows the interrupts: the kernel is restarted
    assert stubborn["score"] == 0 and f"did not finish within {EXERCISE_TIMEOUT} s" in stubborn["report"], stubborn
    honest = scores["ex-identity-unaligned"]
    assert honest["score"] == honest["points"] and honest["passed"] == honest["total"] > 0, result


def test_patching_kmt_in_the_notebook_does_not_change_the_expected_answers(graded):
    scores, _ = cheat_result(graded, "01_coordinates_and_warping")
    patched = scores["ex-nearest"]
    assert patched["score"] == 0 and patched["passed"] == 0, patched
    assert "largest error" in patched["report"], patched


def test_feedback_of_submissions_that_share_a_name_keeps_their_folders(graded):
    names = autograde.feedback_names(["subs/ada/01.ipynb", "subs/bob/01.ipynb", "subs/bob/02.ipynb"])
    assert names == {"subs/ada/01.ipynb": str(Path("ada/01.ipynb")), "subs/bob/01.ipynb": str(Path("bob/01.ipynb")),
                     "subs/bob/02.ipynb": "02.ipynb"}
    feedback = graded["out"] / "feedback"
    for path in CHAPTERS:  # graded as written and as the student edition: two notebooks, neither replaced
        written = sorted(p.relative_to(feedback) for p in feedback.rglob(path.name))
        cheated = path.stem in ("01_coordinates_and_warping", "02_keypoints_as_heatmaps")  # and a cheating copy
        assert len(written) == (3 if cheated else 2), written
