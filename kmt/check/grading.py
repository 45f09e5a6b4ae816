"""The autograder's side of a checker (``tools/autograde.py``): the cases before, the judging after.

The grader calls :func:`prepare` in its own process before any student code runs: it builds
every checker's :class:`~kmt.check.core.Exercise` (inputs and expected answers) and writes
only the inputs, with the names of the ``kmt`` functions each exercise re-implements, to a
pickle the student's kernel reads (:func:`kmt.check.guard.grade_in_kernel`). What the kernel
sends back is JSON, which :func:`judge_run` reads as data and compares, in the grader's
process, with the answers that never left it.
"""

import pickle
import shutil
from pathlib import Path

from kmt.check import CHECKERS, core, guard

__all__ = ["prepare", "judge_run"]


def prepare(exercises, inputs_path):
    """Build the exercises of one chapter; write their inputs to ``inputs_path``.

    ``exercises`` is a list of dicts with the keys ``exercise`` (a label) and ``checker``.
    Returns ``{label: Exercise}``, or the text of the problem where a checker cannot be built.
    """
    references, inputs = {}, {}
    for spec in exercises:
        checker = CHECKERS.get(spec["checker"])
        try:
            if checker is None:
                raise LookupError(f"kmt.check has no checker {spec['checker']!r}")
            exercise = checker.exercise()
        except Exception as error:  # noqa: BLE001 - reported on the exercise, not raised
            references[spec["exercise"]] = f"the checker could not run: {type(error).__name__}: {error}"
            continue
        references[spec["exercise"]] = exercise
        inputs[spec["exercise"]] = {"args": [args for _, args, _ in exercise.cases],
                                    "reimplements": list(checker.reimplements)}
    with open(inputs_path, "wb") as handle:
        pickle.dump(inputs, handle)
    return references


def copy_harness(folder):
    """Copy the code the student's kernel runs (:mod:`kmt.check.guard`) into ``folder``; return its path."""
    path = Path(folder) / "guard.py"
    shutil.copyfile(guard.__file__, path)
    return path


def judge_run(reference, function, run):
    """``(passed, total, report)`` of one exercise.

    ``reference`` is what :func:`prepare` returned for it; ``run`` is ``{"text": <the kernel's
    JSON>}`` or ``{"problem": <why nothing came back>}``; ``function`` is the name the student
    had to define.
    """
    if isinstance(reference, str):
        return 0, 0, reference
    total = len(reference.cases)
    if "problem" in run:
        return 0, total, f"{reference.name}: {run['problem']}"
    try:
        outcome = guard.decode_outcome(run["text"])
    except Exception as error:  # noqa: BLE001 - a forged or broken result scores zero
        return 0, total, f"{reference.name}: the result could not be read ({type(error).__name__})."
    if outcome["missing"]:
        return 0, total, f"no function named {function} is defined in the notebook."
    report = core.judge(reference, outcome)
    return report.passed, report.total, str(report)
