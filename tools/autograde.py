"""Grade completed notebooks of the kmt book, offline: a score for every exercise.

    python autograde.py SUBMISSION.ipynb [SUBMISSION.ipynb ...] [--csv grades.csv] [--json grades.json]
                        [--feedback DIR] [--jobs N] [--size smoke] [--source DIR] [--timeout SECONDS]
                        [--exercise-timeout SECONDS]

Each submission is a chapter of the student edition (``make student``) that a student completed.
The grader finds the instructor version of the same chapter (``--source``; by default the
``source/`` folder beside this script, else the book's ``book/`` folder) and reads its grading
metadata (solution cells carry ``{"kmt": {"exercise", "checker", "function", "points"}}``) and its
hidden-test cells (tagged ``hidden-tests``). A code cell of the instructor version with the
metadata ``{"kmt": {"autograde": "skip"}}`` (a long demonstration no exercise depends on: a training
run, a benchmark) is not run when the submission holds it unchanged (same cell id, same source); its
feedback says so. A student who edited such a cell has it run.

Before any student code runs, the grader computes in its own process every checker's cases, inputs
and expected answers (``kmt.check.<checker>.exercise()``). Each submission then runs in a fresh
kernel: the student's cells in order (a cell that raises is recorded and the run goes on), the
hidden tests after the exercise they test, and per exercise one cell that calls the function the
*student* defined on the stored inputs (through :mod:`kmt.check.guard`: the ``kmt`` functions the
exercise re-implements are disabled meanwhile, and the exercise has ``--exercise-timeout`` seconds)
and writes back what it returned, as data. The grader's process compares that with the expected
answers: patching ``kmt`` or numpy in the notebook cannot change what a submission is graded against.

An exercise scores ``points * passed / total`` (the checker's cases); zero when the function is
missing, calls (or is) the ``kmt`` function the exercise asks for, does not finish within
``--exercise-timeout``, or when one of its hidden tests fails. Nothing the student wrote can stop
the grader: errors, a cell that runs past ``--timeout`` (interrupted; a kernel that ignores the
interrupt is restarted and the notebook run again without that cell) and a kernel that dies end as
lines of the report. The grader is not a sandbox: it runs the student's code with the rights of
whoever runs it (as nbgrader does); book/instructors.md says what it guards against and what not.

Exit status: 0 when every submission was graded (whatever the scores), 1 when one could not be
(unreadable file, unknown chapter), 2 for bad arguments.
"""

import argparse
import concurrent.futures
import copy
import csv
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

HIDDEN_TAG = "hidden-tests"
SKIP = "skip"  # {"kmt": {"autograde": "skip"}}: a cell of the instructor version the grader need not run
SKIPPED_NOTE = "not run by the autograder: the instructor marked this cell as one no exercise depends on.\n"
DEFAULT_TIMEOUT = 600
DEFAULT_EXERCISE_TIMEOUT = 60
GRACE = 15  # seconds a grading cell may take beyond its exercise's limit (loading, writing back)
PROBE_TIMEOUT = 15  # seconds an idle kernel has to answer after an interrupted cell
HERE = Path(__file__).resolve().parent

EXERCISE_RE = re.compile(r"^(`{3,}|:{3,})\{exercise(?:-start)?\}[ \t]*(.*)$")
LABEL_RE = re.compile(r"^:label:[ \t]*(\S+)")


def chapter_number(name):
    """``1`` for ``01_coordinates_and_warping``; ``None`` when the name has no number."""
    match = re.match(r"(\d+)_", Path(name).name)
    return int(match.group(1)) if match else None


def exercise_numbers(notebook, name):
    """``{label: "1.2"}`` for the ``{exercise}`` directives of a chapter, in the order they appear."""
    number = chapter_number(name)
    labels = []
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.splitlines()
        for index, line in enumerate(lines):
            if EXERCISE_RE.match(line):
                label = next((LABEL_RE.match(l).group(1) for l in lines[index + 1:] if LABEL_RE.match(l)), None)
                labels.append(label or f"exercise-{len(labels) + 1}")
    prefix = f"{number}." if number is not None else ""
    return {label: f"{prefix}{position}" for position, label in enumerate(labels, start=1)}


def grading_spec(notebook, name):
    """The graded exercises of an instructor notebook, in order, and its hidden tests by exercise.

    Returns ``(exercises, hidden)``: ``exercises`` is a list of dicts with ``exercise``
    (the label), ``number``, ``checker``, ``function`` and ``points``; ``hidden`` maps a
    label to the list of its hidden-test cells.
    """
    numbers = exercise_numbers(notebook, name)
    exercises, hidden = [], {}
    for index, cell in enumerate(notebook.cells):
        meta = cell.get("metadata", {}).get("kmt", {})
        if cell.cell_type != "code" or "exercise" not in meta:
            continue
        if HIDDEN_TAG in cell.get("metadata", {}).get("tags", []):
            hidden.setdefault(meta["exercise"], []).append(cell)
            continue
        missing = [key for key in ("checker", "function", "points") if key not in meta]
        if missing:
            raise ValueError(f"{name}: cell {index} (exercise {meta['exercise']!r}) lacks grading metadata {missing}.")
        exercises.append({
            "exercise": meta["exercise"],
            "number": numbers.get(meta["exercise"], "?"),
            "checker": meta["checker"],
            "function": meta["function"],
            "points": meta["points"],
        })
    unknown = sorted(set(hidden) - {e["exercise"] for e in exercises})
    if unknown:
        raise ValueError(f"{name}: hidden tests for exercises that are not graded: {unknown}.")
    return exercises, hidden


def skipped_sources(notebook):
    """``{cell id: source}`` of the code cells of an instructor notebook marked ``{"kmt": {"autograde": "skip"}}``.

    A graded exercise's cell or a hidden test cannot be skipped (``ValueError``).
    """
    marked = {}
    for index, cell in enumerate(notebook.cells):
        meta = cell.get("metadata", {}).get("kmt", {})
        if cell.cell_type != "code" or meta.get("autograde") is None:
            continue
        if meta["autograde"] != SKIP:
            raise ValueError(f"cell {index}: kmt metadata autograde must be {SKIP!r}; got {meta['autograde']!r}")
        if "exercise" in meta:
            raise ValueError(f"cell {index} grades exercise {meta['exercise']!r}: it cannot be marked autograde {SKIP!r}")
        if HIDDEN_TAG in cell.get("metadata", {}).get("tags", []):
            raise ValueError(f"cell {index} is a hidden test: it cannot be marked autograde {SKIP!r}")
        marked[cell.get("id")] = cell.source
    return marked


def graded_notebook(submission, hidden, skip=None):
    """The notebook the grader runs before the grading cells: the student's cells and the hidden tests.

    ``skip`` (from :func:`skipped_sources`) names the instructor's cells the grader need not run;
    the cells of the submission that are those cells unchanged get ``{"kmt_autograde": "skip"}``
    in the returned notebook's cell metadata (any such key the student wrote is removed).
    """
    notebook = copy.deepcopy(submission)
    cells = []
    for cell in notebook.cells:
        cell.get("metadata", {}).pop("kmt_autograde", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if skip and cell.get("id") in skip and cell.source == skip[cell.get("id")]:
                cell.metadata["kmt_autograde"] = SKIP
        if HIDDEN_TAG in cell.get("metadata", {}).get("tags", []):
            continue  # a student cannot bring hidden tests of their own
        cells.append(cell)
    for label, tests in hidden.items():
        anchors = [i for i, c in enumerate(cells) if c.get("metadata", {}).get("kmt", {}).get("exercise") == label]
        position = anchors[-1] + 1 if anchors else len(cells)
        for offset, test in enumerate(tests):
            test = copy.deepcopy(test)
            test.outputs, test.execution_count = [], None
            cells.insert(position + offset, test)
    for index, cell in enumerate(cells):
        cell["id"] = f"g{index:03d}"
    notebook.cells = cells
    return notebook


# ------------------------------------------------------------------- the grader's side: scores

def score_submission(result, references, feedback_dir=None):
    """Turn the kernel's raw results into scores and reports (in place); write the feedback notebook."""
    from kmt.check.grading import judge_run

    refs = references.get(result["chapter"], {})
    for row in result["exercises"]:
        run = result["runs"].get(row["exercise"], {"problem": result["problem"] or "the grading cell did not run."})
        passed, total, report = judge_run(refs.get(row["exercise"], "no reference"), row["function"], run)
        fraction = passed / total if total else 0.0
        if row["exercise"] in result["failed_hidden"]:
            fraction, report = 0.0, f"a hidden test failed ({result['failed_hidden'][row['exercise']]}). {report}"
        row.update(score=round(row["points"] * fraction, 2), passed=passed, total=total, report=report)
    notebook = result.pop("notebook", None)
    if feedback_dir and notebook:
        notebook = nbformat.reads(notebook, as_version=4)
        lines = ["## Grades", ""] + [f"**Exercise {e['number']}** ({e['score']:g} / {e['points']:g}):\n\n```text\n"
                                     f"{e['report']}\n```\n" for e in result["exercises"]]
        notebook.cells.append(nbformat.v4.new_markdown_cell("\n".join(lines)))
        target = Path(feedback_dir) / result.get("feedback_name", Path(result["submission"]).name)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, target)
    result.pop("runs")
    result.pop("failed_hidden")
    return result


# ------------------------------------------------------------- the kernel's side: running cells

GRADING_CELL = '''\
def _kmt_grade(harness, inputs, exercise, function, result, seconds):
    namespace = {"__name__": "_kmt_grading_harness"}
    with open(harness) as handle:
        exec(compile(handle.read(), harness, "exec"), namespace)
    namespace["grade_in_kernel"](inputs, exercise, globals().get(function), result, seconds)


_kmt_grade(%r, %r, %r, %r, %r, %r)
del _kmt_grade
'''


def _error_text(cell):
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename')}: {output.get('evalue')}"
    return None


def _run_cells(notebook, cells, workdir, timeout, grading, done, skip):
    """One kernel: run ``cells`` (indices into ``notebook``), skipping ``skip``; fill ``done`` with graded exercises.

    ``grading`` maps a cell index to ``(label, result_path, seconds)``. Returns ``None`` when
    every cell ran, else ``("stuck", index)`` or ``("dead", index, message)``.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    def cell_timeout(cell):
        return cell.metadata.get("kmt", {}).get("timeout", timeout)

    client = NotebookClient(notebook, kernel_name="python3", timeout=timeout, timeout_func=cell_timeout,
                            interrupt_on_timeout=True, allow_errors=True, record_timing=False,
                            error_on_timeout={"ename": "TimeoutError", "evalue": "the cell ran too long and was "
                                              "interrupted", "traceback": []},
                            resources={"metadata": {"path": str(workdir)}})
    probe = nbformat.v4.new_code_cell("1", metadata={"kmt": {"timeout": PROBE_TIMEOUT}})
    with client.setup_kernel(stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL):
        for index in cells:
            if index in skip or grading.get(index, (None,))[0] in done:
                continue
            cell, started = notebook.cells[index], time.monotonic()
            try:
                client.execute_cell(cell, index)
                if index in grading:
                    label, path, seconds = grading[index]
                    if Path(path).is_file():
                        done[label] = {"text": Path(path).read_text()}
                    elif time.monotonic() - started >= cell_timeout(cell):
                        done[label] = {"text": json.dumps({"timed_out": seconds, "cases": []})}
                    else:
                        done[label] = {"problem": f"the grading cell failed ({_error_text(cell)})."}
                if time.monotonic() - started >= cell_timeout(cell):
                    probe.outputs, tried = [], time.monotonic()
                    notebook.cells.append(probe)  # (nbclient writes the cell back at its index)
                    try:
                        client.execute_cell(probe, len(notebook.cells) - 1)
                    finally:
                        notebook.cells.pop()
                    if time.monotonic() - tried >= PROBE_TIMEOUT:
                        return ("stuck", index)
            except DeadKernelError as error:
                return ("dead", index, f"the kernel died ({error})")
    return None


def run_submission(job):
    """Run one submission in a kernel (restarted when it hangs or dies); return what each exercise sent back."""
    started = time.monotonic()
    notebook, workdir = nbformat.reads(job["notebook"], as_version=4), job["workdir"]
    student_cells = list(range(len(notebook.cells)))
    grading = {}
    for spec in job["exercises"]:
        path = Path(job["scratch"]) / f"{spec['exercise']}.json"
        source = GRADING_CELL % (job["harness"], job["inputs"], spec["exercise"], spec["function"], str(path),
                                 job["exercise_timeout"])
        cell = nbformat.v4.new_code_cell(source, metadata={"kmt": {"grader": spec["exercise"],
                                                                   "timeout": job["exercise_timeout"] + GRACE}})
        cell["id"] = f"grade-{len(grading)}"
        notebook.cells.append(cell)
        grading[len(notebook.cells) - 1] = (spec["exercise"], path, job["exercise_timeout"])
    marked = {i for i, cell in enumerate(notebook.cells) if cell.get("metadata", {}).get("kmt_autograde") == SKIP}
    done, skip, notes, first = {}, set(marked), [], None
    for _ in range(len(notebook.cells) + 1):  # each new kernel skips one more cell
        run = copy.deepcopy(notebook)
        try:
            stopped = _run_cells(run, student_cells + sorted(grading), workdir, job["timeout"], grading, done, skip)
        except Exception as error:  # noqa: BLE001 - anything else is reported, never raised
            stopped = ("broken", None, f"the notebook could not be run: {type(error).__name__}: {error}")
        first = first or run
        if stopped is None:
            break
        index = stopped[1]
        if index in grading:
            label, _, seconds = grading[index]
            done.setdefault(label, {"text": json.dumps({"timed_out": seconds, "cases": []})} if stopped[0] == "stuck"
                            else {"problem": f"{stopped[2]} while this exercise was graded."})
            why = "it ignored the interrupt" if stopped[0] == "stuck" else stopped[2]
            notes.append(f"the kernel was restarted after grading {label} ({why})")
        elif stopped[0] == "stuck":
            notes.append(f"cell {index} ran past {job['timeout']} s and ignored the interrupt; it was skipped "
                         f"in a new kernel")
            skip.add(index)
        else:
            notes.append(stopped[2])
            if stopped[0] == "broken" or index is None:
                break
            skip.add(index)
    for index in marked:
        first.cells[index].outputs = [nbformat.v4.new_output("stream", name="stdout", text=SKIPPED_NOTE)]
    failed_hidden = {}
    for cell in first.cells:
        label = cell.get("metadata", {}).get("kmt", {}).get("exercise")
        if HIDDEN_TAG in cell.get("metadata", {}).get("tags", []) and _error_text(cell):
            failed_hidden.setdefault(label, _error_text(cell))
    return {"runs": done, "failed_hidden": failed_hidden, "problem": "; ".join(notes) or None,
            "notebook": nbformat.writes(first), "seconds": round(time.monotonic() - started, 1)}


# --------------------------------------------------------------------------------- submissions

def find_source(submission, path, source_dir):
    """The instructor notebook a submission belongs to: by the student edition's metadata, else by file name."""
    available = {p.stem: p for p in sorted(Path(source_dir).glob("*.ipynb"))}
    chapter = submission.metadata.get("kmt", {}).get("chapter")
    for key in (chapter, Path(path).stem):
        if key in available:
            return available[key]
    for stem, source in available.items():
        if Path(path).stem.startswith(stem) or stem in Path(path).stem:
            return source
    raise LookupError(
        f"{path}: cannot tell which chapter this is (metadata chapter {chapter!r}); "
        f"the chapters in {source_dir} are {sorted(available)}. Keep the file name of the student edition."
    )


def read_submission(path, source_dir):
    """``(result, notebook, hidden)``: the result skeleton of one submission, or one with its ``problem``."""
    result = {"submission": str(path), "chapter": None, "exercises": [], "problem": None}
    try:
        submission = nbformat.read(path, as_version=4)
        source_path = find_source(submission, path, source_dir)
        result["chapter"] = source_path.stem
        source = nbformat.read(source_path, as_version=4)
        exercises, hidden = grading_spec(source, source_path.name)
        skip = skipped_sources(source)
    except Exception as error:  # noqa: BLE001 - one bad file must not stop a batch
        result["problem"] = str(error) if isinstance(error, LookupError) else f"{type(error).__name__}: {error}"
        return result, None, None
    result["exercises"] = [dict(e, score=0.0, passed=0, total=0, report="") for e in exercises]
    return result, graded_notebook(submission, hidden, skip), hidden


def feedback_names(paths):
    """``{path: name of its feedback notebook}``: the file name, or, where several submissions share
    it (``submissions/ada/01.ipynb``, ``submissions/bob/01.ipynb``), their path below the folder
    they share (``ada/01.ipynb``, ``bob/01.ipynb``), so that no student's feedback replaces another's."""
    folders = {}
    for path in paths:
        folders.setdefault(Path(path).name, set()).add(Path(path).resolve().parent)
    names = {}
    for path in paths:
        shared = folders[Path(path).name]
        common = Path(os.path.commonpath(sorted(shared))) if len(shared) > 1 else None
        names[str(path)] = str(Path(path).resolve().relative_to(common)) if common else Path(path).name
    return names


def grade_all(paths, source_dir, timeout=DEFAULT_TIMEOUT, exercise_timeout=DEFAULT_EXERCISE_TIMEOUT, jobs=1,
              feedback_dir=None):
    """Grade every submission; return their results (dicts with the chapter, the exercises' scores, any problem)."""
    read = [read_submission(p, source_dir) for p in paths]
    names = feedback_names(paths)
    for result, _, _ in read:
        result["feedback_name"] = names[str(result["submission"])]
    chapters = {r["chapter"]: r["exercises"] for r, notebook, _ in read if notebook is not None}
    folder = Path(tempfile.mkdtemp(prefix="kmt-grading-"))
    try:
        from kmt.check import grading  # the expected answers: here, before any student code runs

        references = {chapter: grading.prepare(exercises, folder / f"{chapter}.pkl")
                      for chapter, exercises in chapters.items()}
        harness = grading.copy_harness(folder)
        work = []
        for number, (result, notebook, _) in enumerate(read):
            if notebook is None:
                continue
            scratch = folder / f"submission-{number}"
            scratch.mkdir()
            work.append((result, {
                "notebook": nbformat.writes(notebook), "workdir": str(Path(result["submission"]).resolve().parent),
                "exercises": result["exercises"], "harness": str(harness), "scratch": str(scratch),
                "inputs": str(folder / f"{result['chapter']}.pkl"), "timeout": timeout,
                "exercise_timeout": exercise_timeout,
            }))
        context = multiprocessing.get_context("spawn")  # workers that never imported the grader's kmt
        with concurrent.futures.ProcessPoolExecutor(max(1, min(jobs, len(work) or 1)), mp_context=context) as pool:
            futures = [(result, pool.submit(run_submission, job)) for result, job in work]
            for result, future in futures:
                result.update(future.result())
                score_submission(result, references, feedback_dir)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return [r for r, _, _ in read]


def score(result):
    return sum(e["score"] for e in result["exercises"]), sum(e["points"] for e in result["exercises"])


def summary(result):
    """The report of one submission, in plain words, one exercise a line."""
    lines = [f"{result['submission']}  (chapter {result['chapter'] or '?'}, {result.get('seconds', 0):.0f} s)"]
    if result["problem"] and not result["exercises"]:
        return "\n".join(lines + [f"  not graded: {result['problem']}"])
    for e in result["exercises"]:
        first = e["report"].splitlines()[0] if e["report"] else ""
        detail = e["report"].splitlines()[1].strip(" -") if len(e["report"].splitlines()) > 1 else ""
        words = f"{first} {detail}".strip()
        lines.append(f"  exercise {e['number']:<5} {e['exercise']:<28} {e['score']:>5g} / {e['points']:<3g} {words[:150]}")
    got, total = score(result)
    if result["problem"]:
        lines.append(f"  note: {result['problem']}")
    lines.append(f"  {'total':<43} {got:>5g} / {total:g}")
    return "\n".join(lines)


def default_source():
    beside = HERE / "source"
    return beside if beside.is_dir() else HERE.parent / "book"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submissions", nargs="+", type=Path, help="completed notebooks of the student edition")
    parser.add_argument("--source", type=Path, default=None,
                        help="folder of the instructor notebooks (default: source/ beside this script, else book/)")
    parser.add_argument("--size", default="smoke", choices=["smoke", "laptop", "full"],
                        help="KMT_SIZE while grading (default smoke: the checkers do not depend on it)")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT, help="seconds per cell (default 600)")
    parser.add_argument("--exercise-timeout", type=int, default=DEFAULT_EXERCISE_TIMEOUT,
                        help="seconds the student's function has for all the cases of one exercise (default 60)")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded at the same time (default 1)")
    parser.add_argument("--json", type=Path, help="write every result, with the checkers' reports, to this file")
    parser.add_argument("--csv", type=Path, help="write one row per submission and exercise to this file")
    parser.add_argument("--feedback", type=Path, help="write each executed notebook (the student's feedback) here")
    args = parser.parse_args(argv)

    source_dir = args.source or default_source()
    if not Path(source_dir).is_dir():
        parser.error(f"--source {source_dir} is not a folder of instructor notebooks")
    missing = [str(p) for p in args.submissions if not p.is_file()]
    if missing:
        parser.error(f"no such submission: {', '.join(missing)}")
    for flag, value in (("--timeout", args.timeout), ("--exercise-timeout", args.exercise_timeout), ("--jobs", args.jobs)):
        if value < 1:
            parser.error(f"{flag} must be a positive integer; got {value}")
    os.environ["KMT_SIZE"] = args.size
    os.environ["KMT_CHECK_TIME_LIMIT"] = str(args.exercise_timeout)  # the checker calls in the student's cells too
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MPLBACKEND", "Agg")

    results = grade_all(args.submissions, source_dir, args.timeout, args.exercise_timeout, args.jobs, args.feedback)
    for result in results:
        print(summary(result), flush=True)

    for output in (args.json, args.csv):
        if output:
            output.parent.mkdir(parents=True, exist_ok=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["submission", "chapter", "exercise", "number", "points", "score", "passed", "total"])
            for result in results:
                for e in result["exercises"]:
                    writer.writerow([result["submission"], result["chapter"], e["exercise"], e["number"],
                                     e["points"], e["score"], e["passed"], e["total"]])
    ungraded = [r["submission"] for r in results if not r["exercises"] and r["problem"]]
    return 1 if ungraded else 0


if __name__ == "__main__":
    sys.exit(main())
