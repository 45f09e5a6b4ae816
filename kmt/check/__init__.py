"""Checkers for the book's coding exercises.

Each checker takes the reader's function, runs it on cases whose answers are
known (computed with ``kmt`` on the current Keras backend) and returns a
:class:`CheckReport` that says, in plain words, what is right and what is
wrong: a wrong shape, the first failing case, the size of the error against
the tolerance, and a hint when the mistake is a common one. A report is truthy
when every case passes, so ``assert kmt.check.affine_grid(my_affine_grid)``
works in scripts and graders; in a notebook it displays itself. Checkers never
raise because of the reader's code: an exception inside the function under
test becomes a line of the report.

A checker also knows which ``kmt`` functions its exercise asks the reader to write
(``kmt.check.soft_argmax.reimplements``): while the reader's function runs they are
disabled, so a function that calls them (or is one of them) scores zero and the report
says why; and the exercise's cases share a time limit (60 s, or ``$KMT_CHECK_TIME_LIMIT``),
past which the report says the function did not finish. ``kmt.check.soft_argmax.exercise()``
gives the cases and their judge (:class:`kmt.check.core.Exercise`), which is what the
autograder uses to compute the expected answers in a process of its own.

The checkers of chapter ``NN`` live in ``kmt/check/chNN_<topic>.py``; every
name they export is available here, e.g. ``kmt.check.affine_grid``.
"""

import importlib
import pkgutil

from kmt.check.core import CheckReport, Exercise, as_array, check_candidate, checker, compare, run_cases

__all__ = ["CheckReport", "Exercise", "as_array", "check_candidate", "checker", "compare", "run_cases", "CHAPTER_MODULES",
           "CHECKERS"]

CHAPTER_MODULES = sorted(
    info.name for info in pkgutil.iter_modules(__path__) if info.name.startswith("ch") and info.name[2:4].isdigit()
)

CHECKERS = {}  # name -> checker, every exercise's

for _name in CHAPTER_MODULES:
    _module = importlib.import_module(f"{__name__}.{_name}")
    for _export in _module.__all__:
        globals()[_export] = CHECKERS[_export] = getattr(_module, _export)
        __all__.append(_export)
