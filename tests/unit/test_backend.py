"""kmt.backend: one ops module per Keras backend, the same names in each, and model code free of backend branches."""

import importlib
import inspect
import pathlib
import re

import numpy as np
import pytest
from keras import ops

import kmt
from helpers import BACKEND, to_numpy
from kmt import backend
from kmt.compile import compile_function, compile_where_eager_compiles

OPS_MODULES = {name: importlib.import_module(f"kmt.backend.{name}.ops") for name in backend.SUPPORTED_BACKENDS}
FLAGS = ("custom_sampler_gradient", "eager_compiles_each_op")

KMT_ROOT = pathlib.Path(kmt.__file__).parent
# Modules outside kmt/backend that may name a framework, with the number of places each does and why.
# A new place (or a new module) fails test_model_code_has_no_backend_branches: put it in kmt/backend/.
ALLOWED = {
    "animation.py": (3, "torch.no_grad around eager PyTorch inference; face-alignment's device (a PyTorch package)"),
    "convert.py": (1, "reads official FOMM checkpoints (.pth.tar) with torch.load"),
    "vgg.py": (1, "reads torchvision VGG19 weights (.pth) with torch.load"),
    "onnx_export.py": (2, "traces the models with torch.onnx.export: in process on PyTorch, else in a PyTorch subprocess"),
}
IMPORT = re.compile(r"^\s*(?:import|from)\s+(?:torch|jax|jaxlib|tensorflow)\b", re.M)
_BACKEND_CALL = r"(?:keras\.backend\.backend|keras\.config\.backend|backend\.name)\(\)"
BRANCH = re.compile(rf"{_BACKEND_CALL}\s*(?:==|!=|\bnot\s+in\b|\bin\b)|(?:==|!=|\bin\b|(?<![=!<>:])=)\s*{_BACKEND_CALL}")


def backend_mentions(source):
    """``(line, text)`` of every framework import and every comparison or assignment of the backend name."""
    found = [*IMPORT.finditer(source), *BRANCH.finditer(source)]
    return sorted((source.count("\n", 0, m.start()) + 1, m.group(0).strip()) for m in found)


def test_load_names_the_supported_backends_when_given_another():
    with pytest.raises(RuntimeError) as error:
        backend.load("ops", "numpy")
    message = str(error.value)
    assert "'numpy'" in message
    for name in ("tensorflow", "jax", "torch"):
        assert name in message


def test_load_returns_the_ops_of_the_backend_in_use():
    assert backend.name() == BACKEND
    assert backend.load("ops") is OPS_MODULES[BACKEND]
    assert backend.load("ops", "jax") is OPS_MODULES["jax"]


def test_every_backend_defines_the_same_ops():
    names = {name: list(module.__all__) for name, module in OPS_MODULES.items()}
    assert names["jax"] == names["tensorflow"] == names["torch"], names
    for name, module in OPS_MODULES.items():
        for op in module.__all__:
            value = getattr(module, op)  # AttributeError names a missing one
            if op in FLAGS:
                assert isinstance(value, bool), f"{name}.ops.{op} must be a bool; got {value!r}"
            else:
                assert value is None or callable(value), f"{name}.ops.{op} must be a function or None; got {value!r}"


def test_ops_of_each_name_take_the_same_arguments():
    for op in set(OPS_MODULES["torch"].__all__) - set(FLAGS):
        signatures = {
            name: list(inspect.signature(getattr(module, op)).parameters)
            for name, module in OPS_MODULES.items()
            if callable(getattr(module, op))
        }
        assert len({tuple(s) for s in signatures.values()}) == 1, (op, signatures)


def test_where_each_backend_has_its_own_path():
    """The choices the docstrings state, so that moving one is a visible decision."""
    tf_ops, jax_ops, torch_ops = OPS_MODULES["tensorflow"], OPS_MODULES["jax"], OPS_MODULES["torch"]
    assert tf_ops.custom_sampler_gradient and jax_ops.custom_sampler_gradient
    assert not torch_ops.custom_sampler_gradient
    assert [m.native_grid_sample is not None for m in (tf_ops, jax_ops, torch_ops)] == [False, False, True]
    assert [m.conv_nhwc is not None for m in (tf_ops, jax_ops, torch_ops)] == [False, False, True]
    assert [m.fused_adam_update is not None for m in (tf_ops, jax_ops, torch_ops)] == [False, False, True]
    assert [m.eager_compiles_each_op for m in (tf_ops, jax_ops, torch_ops)] == [False, True, False]


def test_row_gather_and_scatter_add_match_numpy(rng):
    """The fast row ops of the backend in use (or the portable ones) against numpy."""
    from kmt.sampling import _scatter_add_rows, _take_rows

    table = rng.standard_normal((7, 3)).astype("float32")
    rows = [rng.integers(0, 7, size=11).astype("int32") for _ in range(4)]
    updates = [rng.standard_normal((11, 3)).astype("float32") for _ in range(4)]
    np.testing.assert_array_equal(to_numpy(_take_rows(ops.convert_to_tensor(table), ops.convert_to_tensor(rows[0]))),
                                  table[rows[0]])
    expected = np.zeros((7, 3), "float32")
    for index, update in zip(rows, updates):
        np.add.at(expected, index, update)
    got = _scatter_add_rows(7, [ops.convert_to_tensor(r) for r in rows], [ops.convert_to_tensor(u) for u in updates])
    np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-6, atol=1e-6)


def test_compiled_functions_compute_the_same(rng):
    def fn(x):
        return ops.sum(x * x, axis=1)

    x = rng.standard_normal((2, 5)).astype("float32")
    assert compile_function(fn, jit=False) is fn
    lazy = compile_where_eager_compiles(fn)
    assert (lazy is fn) is (not backend.load("ops").eager_compiles_each_op)
    for compiled in (compile_function(fn), lazy):
        np.testing.assert_allclose(to_numpy(compiled(ops.convert_to_tensor(x))), (x * x).sum(axis=1), rtol=1e-6)


def test_the_scan_sees_a_backend_branch():
    source = 'import keras\n\nif keras.backend.backend() == "torch":\n    import torch\nname = keras.backend.backend()\n'
    assert backend_mentions(source) == [
        (3, "keras.backend.backend() =="), (4, "import torch"), (5, "= keras.backend.backend()")]
    assert backend_mentions('info = {"backend": keras.backend.backend()}\n') == []


def test_model_code_has_no_backend_branches():
    """Outside kmt/backend/, kmt neither imports a framework nor compares backend names (save ``ALLOWED``)."""
    unexpected = {}
    for path in sorted(KMT_ROOT.rglob("*.py")):
        relative = path.relative_to(KMT_ROOT).as_posix()
        if relative.startswith("backend/"):
            continue
        mentions = backend_mentions(path.read_text(encoding="utf-8"))
        if len(mentions) != ALLOWED.get(relative, (0, ""))[0]:
            unexpected[relative] = mentions
    assert not unexpected, (
        "backend-specific code outside kmt/backend/ (move it to kmt/backend/<name>/ops.py, or update "
        f"ALLOWED if it is not model code): {unexpected}")
