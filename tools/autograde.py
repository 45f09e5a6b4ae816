"""Grade completed notebooks of the kmt book, offline: a score for every exercise.

    python autograde.py SUBMISSION.ipynb [SUBMISSION.ipynb ...] [--csv grades.csv] [--json grades.json]
                        [--feedback DIR] [--jobs N] [--size smoke] [--source DIR] [--timeout SECONDS]

Each submission is a chapter of the student edition (``make student``) that a student completed.
The grader finds the instructor version of the same chapter (``--source``; by default the
``source/`` folder beside this script, else the book's ``book/`` folder), reads its grading
metadata (solution cells carry ``{"kmt": {"exercise", "checker", "function", "points"}}``) and its
hidden-test cells (tagged ``hidden-tests``), then runs the submission in a fresh kernel: every cell
of the student's notebook in order (a cell that raises is recorded and the run goes on), the hidden
tests re-inserted after the exercise they test, and at the end one cell that calls the chapter's
checker, ``kmt.check.<checker>``, on the function the *student* defined.

An exercise scores ``points * passed / total`` (the checker's cases); zero when the function is
missing, when the checker finds an exception in it, or when one of its hidden tests fails.
Nothing the student wrote can stop the grader: errors, a cell that runs past ``--timeout``
(interrupted) and a kernel that dies all end as lines of the report. The grader is not a sandbox:
it runs the student's code with the rights of whoever runs it (as nbgrader does), so grade inside
a container or a throw-away account if that matters.

Exit status: 0 when every submission was graded (whatever the scores), 1 when one could not be
(unreadable file, unknown chapter), 2 for bad arguments.
"""

import argparse
import concurrent.futures
import copy
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat

HIDDEN_TAG = "hidden-tests"
RESULT_MIME = "application/vnd.kmt.grade+json"
DEFAULT_TIMEOUT = 600
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


GRADER_CELL = '''\
def _kmt_grade(specs):
    import importlib
    import sys
    from IPython import get_ipython
    from IPython.display import display

    namespace = get_ipython().user_ns
    importlib.reload(importlib.import_module("kmt.check.core"))
    results = []
    for spec in specs:
        result = dict(spec, passed=0, total=0, fraction=0.0, report="")
        try:
            import kmt.check
            module = importlib.reload(sys.modules[getattr(kmt.check, spec["checker"]).__module__])
            checker = getattr(module, spec["checker"])
            function = namespace.get(spec["function"])
            if not callable(function):
                result["report"] = f"no function named {spec['function']} is defined in the notebook."
            else:
                report = checker(function)
                result.update(passed=int(report.passed), total=int(report.total),
                              fraction=float(report.score), report=str(report))
        except BaseException as error:
            result["report"] = f"the checker could not run: {type(error).__name__}: {error}"
        results.append(result)
    display({"%s": results}, raw=True)


_kmt_grade(%s)
'''


def graded_notebook(submission, exercises, hidden):
    """The notebook the grader runs: the student's cells, the hidden tests, the grading cell."""
    notebook = copy.deepcopy(submission)
    cells = []
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
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
    specs = [{k: e[k] for k in ("exercise", "number", "checker", "function", "points")} for e in exercises]
    grader = nbformat.v4.new_code_cell(GRADER_CELL % (RESULT_MIME, json.dumps(specs)))
    grader.metadata["kmt"] = {"grader": True}
    cells.append(grader)
    for index, cell in enumerate(cells):
        cell["id"] = f"g{index:03d}"
    notebook.cells = cells
    return notebook


def _error_text(cell):
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename')}: {output.get('evalue')}"
    return None


def execute(notebook, workdir, timeout):
    """Run the notebook in a fresh kernel; return what stopped it early, or ``None``."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=timeout,
        interrupt_on_timeout=True,
        allow_errors=True,
        record_timing=False,
        resources={"metadata": {"path": str(workdir)}},
    )
    try:
        client.execute(stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    except DeadKernelError as error:
        return f"the kernel died while running the notebook ({error})"
    except Exception as error:  # noqa: BLE001 - anything else is reported, never raised
        return f"the notebook could not be run: {type(error).__name__}: {error}"
    return None


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


def grade(path, source_dir, timeout=DEFAULT_TIMEOUT, feedback_dir=None):
    """Grade one submission; return a dict with the chapter, the exercises' scores and any problem."""
    started = time.time()
    result = {"submission": str(path), "chapter": None, "exercises": [], "problem": None}
    try:
        submission = nbformat.read(path, as_version=4)
        source_path = find_source(submission, path, source_dir)
        result["chapter"] = source_path.stem
        exercises, hidden = grading_spec(nbformat.read(source_path, as_version=4), source_path.name)
    except Exception as error:  # noqa: BLE001 - one bad file must not stop a batch
        result["problem"] = str(error) if isinstance(error, LookupError) else f"{type(error).__name__}: {error}"
        result["seconds"] = round(time.time() - started, 1)
        return result
    notebook = graded_notebook(submission, exercises, hidden)
    stopped = execute(notebook, Path(path).resolve().parent, timeout)
    graded = {}
    for cell in notebook.cells:
        if cell.get("metadata", {}).get("kmt", {}).get("grader"):
            for output in cell.get("outputs", []):
                if RESULT_MIME in output.get("data", {}):
                    graded = {r["exercise"]: r for r in output["data"][RESULT_MIME]}
    failed_hidden = {}
    for cell in notebook.cells:
        label = cell.get("metadata", {}).get("kmt", {}).get("exercise")
        if HIDDEN_TAG in cell.get("metadata", {}).get("tags", []) and _error_text(cell):
            failed_hidden.setdefault(label, _error_text(cell))
    for spec in exercises:
        row = dict(graded.get(spec["exercise"], spec))
        report = row.get("report") or (stopped or "the grading cell did not run.")
        fraction = float(row.get("fraction", 0.0))
        if spec["exercise"] in failed_hidden:
            fraction, report = 0.0, f"a hidden test failed ({failed_hidden[spec['exercise']]}). {report}"
        result["exercises"].append({
            "exercise": spec["exercise"],
            "number": spec["number"],
            "function": spec["function"],
            "points": spec["points"],
            "score": round(spec["points"] * fraction, 2),
            "passed": int(row.get("passed", 0)),
            "total": int(row.get("total", 0)),
            "report": report,
        })
    if stopped:
        result["problem"] = stopped
    if feedback_dir:
        Path(feedback_dir).mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, Path(feedback_dir) / Path(path).name)
    result["seconds"] = round(time.time() - started, 1)
    return result


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
    os.environ["KMT_SIZE"] = args.size
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MPLBACKEND", "Agg")

    jobs = max(1, min(args.jobs, len(args.submissions)))
    with concurrent.futures.ProcessPoolExecutor(jobs) as pool:
        futures = [pool.submit(grade, p, source_dir, args.timeout, args.feedback) for p in args.submissions]
        results = [future.result() for future in futures]
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
