"""Run a reader's function on the inputs of an exercise, and send back only what it returned.

This is the part of a checker that runs the *candidate*; comparing its results with the
expected ones is :mod:`kmt.check.core`'s job. Keeping the two apart lets the autograder
(``tools/autograde.py``) compute the expected results in its own process and run only this
module in the student's kernel. So that the grader can load it from its file alone, it
needs nothing but the standard library and numpy (and Keras, only to read a backend tensor).

While the candidate runs (:func:`run_candidate`):

* the ``kmt`` functions its exercise asks the reader to re-implement (``reimplements``,
  dotted names such as ``"kmt.keypoints.soft_argmax"``) are disabled: each is swapped, in
  place, for a tripwire that records the call and raises :class:`Delegation`, so a call
  through any name (the module attribute, an alias imported earlier, a copy of the function
  in the notebook's namespace) is caught; the original code is put back afterwards. A
  candidate that *is* such a function (or a copy of its code) is refused before it runs.
* the exercise's cases share one time limit: past it the candidate is interrupted
  (:class:`TimeLimit`, raised by ``SIGALRM``; only on the main thread of a POSIX system).

The outcome of a run is a plain JSON-able dict (:func:`encode` turns what the candidate
returned into JSON; :func:`decode` reads it back, accepting nothing but numbers, strings,
numeric arrays and lists, tuples and dicts of them, so reading it cannot run code):

``{"delegated": name or None, "identical": bool, "timed_out": seconds or None,
"cases": [{"status": "ok", "value": ...} | {"status": "raised", "message": ...} | ...]}``.
"""

import base64
import contextlib
import importlib
import json
import math
import os
import pickle
import signal
import threading
import time
import traceback
import types

import numpy as np

DEFAULT_TIME_LIMIT = 60.0
TIME_LIMIT_VARIABLE = "KMT_CHECK_TIME_LIMIT"
_ARRAY_KINDS = "biufc"  # bool, int, unsigned, float, complex: the dtypes an answer may have


_REGISTRY_KEY = "kmt.check.guard:tripwires"


def _registry():
    """What the tripwires report to: a module-like object in ``sys.modules``.

    The autograder loads this file on its own, beside the ``kmt.check.guard`` a notebook may
    have imported: every copy shares the first copy's registry and exception classes.
    """
    import sys

    registry = sys.modules.get(_REGISTRY_KEY)
    if registry is None:
        registry = types.ModuleType(_REGISTRY_KEY)
        registry.calls = []
        registry.Delegation = type("Delegation", (BaseException,), {
            "__doc__": "Raised by a disabled kmt function (a BaseException: `except Exception` lets it through).",
            "__module__": __name__})
        registry.TimeLimit = type("TimeLimit", (BaseException,), {
            "__doc__": "Raised in the candidate when its exercise runs out of time.", "__module__": __name__})

        def tripped(name):
            registry.calls.append(name)
            raise registry.Delegation(name)

        registry.tripped = tripped
        sys.modules[_REGISTRY_KEY] = registry
    return registry


# Delegation: raised by a disabled kmt function; TimeLimit: raised when an exercise runs out of time.
# Both are BaseExceptions (``except Exception`` lets them through), shared by every copy of this file.
Delegation, TimeLimit = _registry().Delegation, _registry().TimeLimit


def time_limit_default():
    """Seconds an exercise may take: ``$KMT_CHECK_TIME_LIMIT``, else 60."""
    value = os.environ.get(TIME_LIMIT_VARIABLE)
    try:
        return float(value) if value else DEFAULT_TIME_LIMIT
    except ValueError:
        raise ValueError(f"{TIME_LIMIT_VARIABLE} must be a number of seconds; got {value!r}.") from None


# ------------------------------------------------------------------------ the functions to disable

def resolve(name):
    """The function ``package.module.name`` or ``package.module.Class.method`` names."""
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            target = getattr(target, attribute)
        return target
    raise ImportError(f"cannot import the module of {name!r}")


def _unwrap(function):
    """The plain Python function behind bound methods, ``functools`` wrappers and partials."""
    seen = set()
    while id(function) not in seen:
        seen.add(id(function))
        if isinstance(function, (types.MethodType, staticmethod, classmethod)):
            function = function.__func__
        elif hasattr(function, "func") and callable(function.func) and type(function).__name__ == "partial":
            function = function.func
        elif getattr(function, "__wrapped__", None) is not None:
            function = function.__wrapped__
        else:
            break
    return function


def fingerprint(code):
    """What makes two code objects the same function, wherever and under whatever file they were compiled."""
    consts = tuple(fingerprint(c) if isinstance(c, types.CodeType) else (type(c).__name__, repr(c)) for c in code.co_consts)
    return (code.co_name, code.co_code, consts, code.co_names, code.co_varnames, code.co_freevars,
            code.co_argcount, code.co_kwonlyargcount, code.co_flags & 0xFFFF)  # not the __future__ flags


def _functions_near(candidate):
    """Python functions the candidate can reach by name: its globals, closure and defaults, one level deep."""
    function = _unwrap(candidate)
    values = []
    if isinstance(function, types.FunctionType):
        values += list(function.__globals__.values())
        values += [cell.cell_contents for cell in function.__closure__ or () if _filled(cell)]
        values += list(function.__defaults__ or ()) + list((function.__kwdefaults__ or {}).values())
    found = []
    for value in values:
        if isinstance(value, type):
            found += [v for v in vars(value).values() if isinstance(v, types.FunctionType)]
        elif isinstance(value, types.FunctionType):
            found.append(value)
    return found


def _filled(cell):
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def disabled_functions(reimplements, candidate=None):
    """``{name: [functions]}``: every function object that runs the code of each name in ``reimplements``.

    Besides ``kmt``'s own function, copies of its code that the candidate can reach (a chapter
    shows, and defines, the implementation in the notebook) count as the same function.
    """
    originals = {name: _unwrap(resolve(name)) for name in reimplements}
    prints = {fingerprint(f.__code__): name for name, f in originals.items() if isinstance(f, types.FunctionType)}
    found = {name: [f] for name, f in originals.items() if isinstance(f, types.FunctionType)}
    for function in _functions_near(candidate) if candidate is not None else ():
        name = prints.get(fingerprint(function.__code__))
        if name and all(function is not f for f in found[name]):
            found[name].append(function)
    return found


def identical_to(candidate, disabled):
    """The name of the disabled function ``candidate`` is (or is a copy of), else ``None``."""
    function = _unwrap(candidate)
    code = getattr(function, "__code__", None)
    for name, functions in disabled.items():
        for original in functions:
            if function is original or (code is not None and fingerprint(code) == fingerprint(original.__code__)):
                return name
    return None


def _tripwire_code(name, freevars):
    """A code object that raises :class:`Delegation` naming ``name``, with the given free variables.

    It runs with the globals of the function it replaces, so it finds this module through
    ``sys.modules`` under the key the guard registered.
    """
    lines = ["def _outer():"]
    lines += [f"    {var} = None" for var in freevars]
    lines += ["    def _tripwire(*args, **kwargs):"]
    if freevars:
        lines += [f"        ({', '.join(freevars)},)"]
    lines += [f"        __import__('sys').modules[{_REGISTRY_KEY!r}].tripped({name!r})", "    return _tripwire"]
    namespace = {}
    exec(compile("\n".join(lines), f"<kmt.check: {name} is disabled>", "exec"), namespace)
    return namespace["_outer"]().__code__


@contextlib.contextmanager
def disabled(functions):
    """Within the block, each function in ``functions`` (``{name: [function]}``) raises :class:`Delegation`."""
    registry = _registry()
    start, saved, calls = len(registry.calls), [], []
    try:
        for name, group in functions.items():
            for function in group:
                code = function.__code__
                function.__code__ = _tripwire_code(name, code.co_freevars)
                saved.append((function, code))
        yield calls
    finally:
        for function, code in reversed(saved):
            function.__code__ = code
        calls += registry.calls[start:]
        del registry.calls[start:]


@contextlib.contextmanager
def time_limit(seconds):
    """Raise :class:`TimeLimit` in this thread after ``seconds`` (no limit off the main thread or without SIGALRM)."""
    usable = (seconds and seconds > 0 and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def expire(signum, frame):
        raise TimeLimit(seconds)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------------- running

def _fresh(value):
    """``value`` with its arrays copied (in tuples, lists and dicts): a candidate may write into its arguments."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (list, tuple)):
        return type(value)(_fresh(v) for v in value)
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    return value


def _raised(error):
    frames = traceback.extract_tb(error.__traceback__)
    where = ""
    if frames:
        frame = frames[-1]
        where = f" (line {frame.lineno}: `{(frame.line or '').strip()}`)"
    return f"your function raised {type(error).__name__}: {error}{where}"


def run_candidate(candidate, cases_args, reimplements=(), seconds=None):
    """Call ``candidate(*args)`` for each ``args`` of ``cases_args``, guarded; return the outcome (see the module docstring).

    ``seconds`` bounds the whole run (``None``: :func:`time_limit_default`; ``0``: no bound).
    """
    seconds = time_limit_default() if seconds is None else seconds
    outcome = {"delegated": None, "identical": False, "timed_out": None, "cases": []}
    try:
        functions = disabled_functions(reimplements, candidate)
    except Exception as error:  # noqa: BLE001 - a broken kmt install is reported, not raised
        outcome["cases"] = [{"status": "raised", "message": f"the checker could not set up: {error}"}] * len(cases_args)
        return outcome
    same = identical_to(candidate, functions)
    if same:
        outcome.update(delegated=same, identical=True)
        return outcome
    started = time.monotonic()
    with disabled(functions) as calls:
        try:
            with time_limit(seconds):
                for args in cases_args:
                    try:
                        value = candidate(*_fresh(args))
                    except (Delegation, TimeLimit):
                        raise
                    except Exception as error:  # noqa: BLE001 - the reader's bug is reported, not raised
                        outcome["cases"].append({"status": "raised", "message": _raised(error)})
                        continue
                    outcome["cases"].append(_encoded_case(value))
        except Delegation:
            pass
        except TimeLimit:
            outcome["timed_out"] = seconds
    if calls:
        outcome["delegated"] = calls[0]
    if outcome["timed_out"] is None and seconds and time.monotonic() - started > seconds:
        outcome["timed_out"] = seconds  # the alarm was swallowed (a bare except) or could not be set
    return outcome


def _encoded_case(value):
    try:
        return {"status": "ok", "value": encode(value)}
    except (TypeError, ValueError) as error:
        return {"status": "unreadable", "message": f"your function returned {error}"}


# ------------------------------------------------------------------------------ JSON, both ways

def _to_numpy(value):
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, np.generic):
        return np.asarray(value)
    module = type(value).__module__.split(".")[0]
    if module in ("tensorflow", "jax", "jaxlib", "torch", "keras"):
        from keras import ops

        return np.asarray(ops.convert_to_numpy(value))
    return None


def encode(value, depth=0):
    """``value`` as JSON-able data; ``TypeError`` for anything but numbers, strings, arrays, tensors and containers of them."""
    if depth > 20:
        raise ValueError("a structure nested more than 20 levels deep")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    array = _to_numpy(value)
    if array is not None:
        if array.dtype.kind not in _ARRAY_KINDS:
            raise TypeError(f"an array of dtype {array.dtype}, which holds no numbers")
        data = np.ascontiguousarray(array).tobytes()  # (ascontiguousarray makes a 0-d array 1-d: keep the shape)
        return {"array": base64.b64encode(data).decode("ascii"), "dtype": array.dtype.str, "shape": list(array.shape)}
    if isinstance(value, tuple):
        return {"tuple": [encode(v, depth + 1) for v in value]}
    if isinstance(value, list):
        return [encode(v, depth + 1) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("a dict whose keys are not all strings")
        return {"dict": [[k, encode(v, depth + 1)] for k, v in value.items()]}
    raise TypeError(f"a {type(value).__name__}, not an array, a number, a string, or a list, tuple or dict of them")


def decode(data, depth=0):
    """What :func:`encode` wrote, read back (numbers, strings, numpy arrays, lists, tuples, dicts); ``ValueError`` otherwise."""
    if depth > 21:
        raise ValueError("nested too deep")
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v, depth + 1) for v in data]
    if isinstance(data, dict) and set(data) == {"float"}:
        return float(data["float"])
    if isinstance(data, dict) and set(data) == {"tuple"}:
        return tuple(decode(v, depth + 1) for v in data["tuple"])
    if isinstance(data, dict) and set(data) == {"dict"}:
        return {str(k): decode(v, depth + 1) for k, v in data["dict"]}
    if isinstance(data, dict) and set(data) == {"array", "dtype", "shape"}:
        dtype = np.dtype(str(data["dtype"]))
        if dtype.kind not in _ARRAY_KINDS or dtype.hasobject:
            raise ValueError(f"an array of dtype {dtype}")
        shape = tuple(int(n) for n in data["shape"])
        return np.frombuffer(base64.b64decode(data["array"]), dtype=dtype).reshape(shape).copy()
    raise ValueError(f"unexpected data {str(data)[:80]!r}")


def decode_outcome(text):
    """An outcome written by :func:`grade_in_kernel` (JSON text), with the values decoded; ``ValueError`` if malformed."""
    outcome = json.loads(text)
    if not isinstance(outcome, dict) or not isinstance(outcome.get("cases"), list):
        raise ValueError("not an outcome")
    cases = []
    for case in outcome["cases"]:
        status = case.get("status") if isinstance(case, dict) else None
        if status == "ok":
            cases.append({"status": "ok", "value": decode(case.get("value"))})
        elif status in ("raised", "unreadable"):
            cases.append({"status": status, "message": str(case.get("message", ""))})
        else:
            raise ValueError(f"a case with status {status!r}")
    timed_out = outcome.get("timed_out")
    delegated = outcome.get("delegated")
    return {"delegated": str(delegated) if delegated else None, "identical": bool(outcome.get("identical")),
            "timed_out": float(timed_out) if timed_out else None, "missing": bool(outcome.get("missing")),
            "cases": cases}


def grade_in_kernel(inputs_path, exercise, candidate, result_path, seconds):
    """The autograder's entry point in the student's kernel: run ``candidate`` on the stored inputs of ``exercise``.

    ``inputs_path`` is the grader's pickle ``{exercise: {"args": [...], "reimplements": [...]}}``
    (see :mod:`kmt.check.grading`); the outcome is written to ``result_path`` as JSON, with
    ``"missing": true`` when ``candidate`` is not a function (the student did not define it).
    """
    with open(inputs_path, "rb") as handle:
        spec = pickle.load(handle)[exercise]
    if callable(candidate):
        outcome = run_candidate(candidate, spec["args"], tuple(spec["reimplements"]), seconds)
    else:
        outcome = {"missing": True, "cases": []}
    with open(result_path, "w") as handle:
        json.dump(outcome, handle)
    return outcome
