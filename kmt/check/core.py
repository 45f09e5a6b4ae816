"""The machinery of the exercise checkers (see :mod:`kmt.check`): run a reader's function on
cases with known answers, compare, and explain what is wrong in words."""

import traceback
from dataclasses import dataclass, field

import numpy as np
from keras import ops

__all__ = ["CheckReport", "run_cases", "compare", "as_array"]


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


def run_cases(exercise, candidate, cases, atol, hints=()):
    """Run ``candidate(*args)`` on every case and collect what goes wrong.

    ``cases`` is a list of ``(description, args, expected)``; ``hints`` is a list
    of ``(reference_variant, advice)``: when a failing result matches a known
    wrong variant, the advice is added in place of the raw numbers.
    """
    report = CheckReport(exercise, total=len(cases))
    for description, args, expected in cases:
        try:
            got = candidate(*args)
        except Exception as error:  # noqa: BLE001 - the reader's bug is reported, not raised
            frame = traceback.extract_tb(error.__traceback__)[-1]
            report.problems.append(
                f"{description}: your function raised {type(error).__name__}: {error} "
                f"(line {frame.lineno}: `{(frame.line or '').strip()}`)"
            )
            continue
        problem = compare(expected, got, atol)
        if problem is None:
            report.passed += 1
            continue
        for variant, advice in hints:
            if compare(np.asarray(variant(*args), "float64"), got, atol) is None:
                problem = f"{problem}. Hint: {advice}"
                break
        report.problems.append(f"{description}: {problem}")
    return report
