"""The machinery of the exercise checkers (see :mod:`kmt.check`): run a reader's function on
cases with known answers, compare, and explain what is wrong in words.

A checker is built in two halves, so that the autograder can keep them in two processes:

* an :class:`Exercise`: the cases (a description, the arguments, the expected answer, all
  computed with ``kmt``) and a *judge* that says what is wrong with one returned value;
* the run of the candidate on the cases' arguments, :func:`kmt.check.guard.run_candidate`,
  which disables the ``kmt`` functions the exercise re-implements and bounds its time.

:func:`checker` turns a function that builds the :class:`Exercise` into the checker readers
call, ``kmt.check.soft_argmax(my_soft_argmax)``; :func:`judge` turns a run's outcome into a
:class:`CheckReport`.
"""

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from keras import ops

from kmt.check import guard

__all__ = ["CheckReport", "Exercise", "checker", "check_candidate", "judge", "compare_judge", "run_cases", "compare",
           "as_array"]


@dataclass
class CheckReport:
    """The outcome of one checker: how many cases passed and what went wrong."""

    exercise: str
    total: int = 0
    passed: int = 0
    problems: list = field(default_factory=list)

    def __bool__(self):
        return self.total > 0 and self.passed == self.total

    @property
    def score(self):
        """The fraction of cases passed, in [0, 1]."""
        return self.passed / self.total if self.total else 0.0

    def __str__(self):
        if self:
            return f"{self.exercise}: all {self.total} cases pass."
        lines = [f"{self.exercise}: {self.passed} of {self.total} cases pass."]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)

    def __repr__(self):
        return str(self)


@dataclass
class Exercise:
    """What a checker knows: ``cases``, a list of ``(description, args, expected)``, and
    ``judge(args, expected, got)``, which returns ``None`` when ``got`` is right, else what is
    wrong, in words."""

    name: str
    cases: list
    judge: Callable


def as_array(value):
    return np.asarray(ops.convert_to_numpy(value))


def compare(expected, got, atol):
    """``None`` when ``got`` matches ``expected`` within ``atol``, else what is wrong, in words."""
    try:
        got = as_array(got)
    except Exception as error:  # noqa: BLE001 - any failure is reported, not raised
        return f"the result could not be read as an array ({type(error).__name__}: {error})"
    if got.shape != expected.shape:
        return f"expected shape {expected.shape}, got {got.shape}"
    if not np.issubdtype(got.dtype, np.floating):
        return f"expected floating-point values, got dtype {got.dtype}"
    if not np.all(np.isfinite(got)):
        return "the result contains NaN or infinite values"
    error = np.abs(got.astype("float64") - expected)
    worst = float(error.max()) if error.size else 0.0
    if worst > atol:
        where = tuple(int(i) for i in np.unravel_index(int(error.argmax()), error.shape))
        return (
            f"largest error {worst:.3g} (tolerance {atol:g}) at index {where}: "
            f"expected {expected[where]:.6g}, got {got[where]:.6g}"
        )
    return None


def compare_judge(atol, hints=(), convert=None, what="an array"):
    """A judge that compares with :func:`compare`, after ``convert(got)`` when given.

    ``hints`` is a list of ``(reference_variant, advice)``: when a wrong result matches a
    known wrong variant (``variant(*args)``), the advice is added to the numbers.
    """

    def judge_one(args, expected, got):
        if convert is not None:
            try:
                got = convert(got)
            except Exception as error:  # noqa: BLE001 - a result of the wrong kind is reported, not raised
                return f"the result could not be read as {what} ({type(error).__name__}: {error})"
        problem = compare(np.asarray(expected), got, atol)
        if problem is None:
            return None
        for variant, advice in hints:
            try:
                matches = compare(np.asarray(variant(*args), "float64"), got, atol) is None
            except Exception:  # noqa: BLE001 - a variant that does not apply gives no hint
                matches = False
            if matches:
                return f"{problem}. Hint: {advice}"
        return problem

    return judge_one


def delegation_problem(outcome):
    """The report line for a candidate that used the ``kmt`` function it should have written."""
    name = outcome["delegated"]
    verb = "is" if outcome.get("identical") else "calls"
    return (f"your function {verb} {name}, the function this exercise asks you to write: "
            f"write it yourself (with numpy or keras.ops). No case is counted.")


def judge(exercise, outcome):
    """The :class:`CheckReport` of a run (an outcome of :func:`kmt.check.guard.run_candidate`, decoded)."""
    report = CheckReport(exercise.name, total=len(exercise.cases))
    if outcome.get("delegated"):
        report.problems.append(delegation_problem(outcome))
        return report
    if outcome.get("timed_out"):
        done = len(outcome["cases"])
        report.problems.append(
            f"your function did not finish within {outcome['timed_out']:g} s "
            f"(it finished {done} of {len(exercise.cases)} cases): no case is counted."
        )
        return report
    for (description, args, expected), case in zip(exercise.cases, outcome["cases"]):
        if case["status"] == "ok":
            problem = exercise.judge(args, expected, case["value"])
        else:
            problem = case["message"]
        if problem is None:
            report.passed += 1
        else:
            report.problems.append(f"{description}: {problem}")
    missing = len(exercise.cases) - len(outcome["cases"])
    if missing > 0:
        report.problems.append(f"{missing} case(s) did not run.")
    return report


def check_candidate(exercise, candidate, reimplements=(), seconds=None):
    """Run ``candidate`` on the cases of ``exercise`` (guarded, see :mod:`kmt.check.guard`) and judge it."""
    outcome = guard.run_candidate(candidate, [args for _, args, _ in exercise.cases], reimplements, seconds)
    cases = []
    for case in outcome["cases"]:
        if case["status"] == "ok":
            case = {"status": "ok", "value": guard.decode(case["value"])}  # what the grader reads, here too
        cases.append(case)
    return judge(exercise, dict(outcome, cases=cases))


def checker(*reimplements):
    """Decorate a function that builds an :class:`Exercise` into the checker readers call.

    ``reimplements`` names the ``kmt`` functions the exercise asks the reader to write (e.g.
    ``"kmt.keypoints.soft_argmax"``): a candidate that calls one of them scores zero. The
    checker keeps the builder as ``.exercise`` and the names as ``.reimplements``.
    """

    def decorate(build):
        def check(candidate):
            return check_candidate(build(), candidate, reimplements)

        check.__name__, check.__qualname__ = build.__name__, build.__qualname__
        check.__doc__, check.__module__ = build.__doc__, build.__module__
        check.exercise = build
        check.reimplements = tuple(reimplements)
        return check

    return decorate


def run_cases(exercise, candidate, cases, atol, hints=(), reimplements=()):
    """Run ``candidate(*args)`` on every case and collect what goes wrong.

    ``cases`` is a list of ``(description, args, expected)``; ``hints`` is a list
    of ``(reference_variant, advice)`` (see :func:`compare_judge`).
    """
    return check_candidate(Exercise(exercise, cases, compare_judge(atol, hints)), candidate, reimplements)
