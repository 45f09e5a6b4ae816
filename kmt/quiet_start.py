"""A quiet start for the ``kmt`` command: TensorFlow's start-up notices kept off the terminal.

TensorFlow prints, from C++ and before its logging is set up, a oneDNN notice, "Could not find
cuda drivers", a CPU-instructions notice and, on machines without a GPU, an ``E0000 ... failed
call to cuInit`` line that reads as an error. ``TF_CPP_MIN_LOG_LEVEL`` cannot silence the first
ones, so :func:`quiet_backend_start` imports TensorFlow (when, and if, Keras does) with file
descriptor 2 held and passes on everything else. Users who set ``TF_CPP_MIN_LOG_LEVEL`` see
TensorFlow's own logs unchanged.
"""

import contextlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile

__all__ = ["quiet_backend_start"]

_TF_NOISE = ("All log messages before absl::InitializeLog() is called", "oneDNN custom operations are on",
             "Could not find cuda drivers on your machine", "This TensorFlow binary is optimized to use",
             "To enable the following instructions:")


@contextlib.contextmanager
def _filtered_stderr():
    """Hold what is written to file descriptor 2, then pass on all but TensorFlow's start-up notices.

    TensorFlow prints them from C++ before its logging is set up, so TF_CPP_MIN_LOG_LEVEL cannot
    silence them. ``failed call to cuInit`` is dropped only where TensorFlow also said that the
    machine has no CUDA driver (a CPU-only machine, where it is expected).
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to filter
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            no_driver = any(_TF_NOISE[2] in line for line in lines)
            sys.stderr.write("".join(line for line in lines if not any(n in line for n in _TF_NOISE)
                                     and not (no_driver and "failed call to cuInit" in line)))
            sys.stderr.flush()


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Imports ``tensorflow`` (when, and if, Keras does) inside :func:`_filtered_stderr`."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with _filtered_stderr():
            self.loader.exec_module(module)
            module.config.list_physical_devices()  # CUDA's probe, otherwise logged at the first operation


def quiet_backend_start():
    """Keep TensorFlow's start-up notices off the terminal, unless the user set TF_CPP_MIN_LOG_LEVEL."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"  # TensorFlow's INFO and WARNING lines; errors still show
    if not any(isinstance(finder, _QuietTensorFlowImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
