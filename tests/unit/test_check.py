"""The exercise checkers accept right answers, reject wrong ones and explain why in words."""

import json

import numpy as np
import pytest
from keras import ops

from kmt import check, warping


def unguarded(checker, candidate):
    """Run a checker without disabling the kmt functions its exercise re-implements: kmt itself is the right answer."""
    return check.check_candidate(checker.exercise(), candidate)


def right_affine_grid(theta, size):
    base = ops.convert_to_numpy(warping.make_coordinate_grid(size))
    homogeneous = np.concatenate([base, np.ones(base.shape[:2] + (1,), "float32")], -1)
    return np.einsum("hwk,bjk->bhwj", homogeneous, theta)


def test_affine_grid_accepts_a_correct_solution():
    report = check.affine_grid(right_affine_grid)
    assert report and report.score == 1.0
    assert str(report) == "affine_grid: all 3 cases pass."


def test_affine_grid_explains_swapped_axes():
    report = check.affine_grid(lambda t, s: right_affine_grid(t, s)[..., ::-1])
    assert not report and report.passed == 0
    assert "must hold (x, y), not (y, x)" in str(report)


def test_affine_grid_reports_wrong_shapes_and_exceptions():
    report = check.affine_grid(lambda t, s: right_affine_grid(t, s)[0])
    assert "expected shape (1, 4, 4, 2), got (4, 4, 2)" in str(report)
    report = check.affine_grid(lambda t, s: 1 / 0)
    assert "your function raised ZeroDivisionError" in str(report)
    assert report.score == 0.0


def test_grid_sample_nearest_accepts_kmt_and_hints_at_conventions():
    assert unguarded(check.grid_sample_nearest, lambda i, g: warping.grid_sample(i, g, mode="nearest"))
    report = unguarded(check.grid_sample_nearest, 
        lambda i, g: warping.grid_sample(i, g, mode="nearest", align_corners=False)
    )
    assert not report and "align_corners=False convention" in str(report)
    report = unguarded(check.grid_sample_nearest, 
        lambda i, g: warping.grid_sample(i, g, mode="nearest", padding_mode="border")
    )
    assert "must read zeros" in str(report)


def test_identity_grid_unaligned():
    def right(h, w):
        x = (np.arange(w) + 0.5) * 2 / w - 1
        y = (np.arange(h) + 0.5) * 2 / h - 1
        return np.stack(np.meshgrid(x, y), -1)

    assert check.identity_grid_unaligned(right)
    report = check.identity_grid_unaligned(lambda h, w: warping.make_coordinate_grid((h, w)))
    assert "that is the align_corners=True grid" in str(report)
    image = np.random.default_rng(0).random((1, 4, 6, 3), dtype="float32")
    grid = right(4, 6)[None].astype("float32")
    out = ops.convert_to_numpy(warping.grid_sample(image, grid, align_corners=False))
    np.testing.assert_allclose(out, image, atol=1e-6)


# ------------------------------------------------- the guard: delegation, time, what comes back

def right_soft_argmax(heatmap):
    heatmap = np.asarray(heatmap, "float64")
    x, y = np.linspace(-1, 1, heatmap.shape[2]), np.linspace(-1, 1, heatmap.shape[1])
    return np.stack([np.einsum("bhwk,w->bk", heatmap, x), np.einsum("bhwk,h->bk", heatmap, y)], -1)


def test_a_function_that_is_or_calls_the_one_to_write_scores_zero_and_is_told_why():
    from kmt import keypoints
    from kmt.keypoints import soft_argmax as captured  # an alias taken before the checker runs

    message = "kmt.keypoints.soft_argmax, the function this exercise asks you to write"
    report = check.soft_argmax(keypoints.soft_argmax)
    assert report.passed == 0 and f"your function is {message}" in str(report)
    report = check.soft_argmax(lambda heatmap: keypoints.soft_argmax(heatmap))
    assert report.passed == 0 and f"your function calls {message}" in str(report)

    def swallowing(heatmap):
        try:
            return captured(heatmap)
        except BaseException:  # the call is recorded even when the function hides the error
            return right_soft_argmax(heatmap)

    report = check.soft_argmax(swallowing)
    assert report.passed == 0 and f"your function calls {message}" in str(report)
    assert check.soft_argmax(right_soft_argmax)
    # kmt's function is back, whole, after each check
    heatmap = np.full((1, 3, 3, 1), 1 / 9, "float32")
    np.testing.assert_allclose(ops.convert_to_numpy(captured(heatmap)), [[[0.0, 0.0]]], atol=1e-6)


def test_a_copy_of_kmt_code_in_the_notebook_counts_as_kmt():
    import inspect

    from kmt import keypoints

    namespace = {}
    cell = "from keras import ops\nfrom kmt.warping import make_coordinate_grid\n" + inspect.getsource(keypoints.soft_argmax)
    exec(compile(cell, "<a chapter cell>", "exec"), namespace)  # what a chapter's kmt-source cell does
    exec(compile("def my_soft_argmax(h):\n    return soft_argmax(h)\n", "<the reader's cell>", "exec"), namespace)
    report = check.soft_argmax(namespace["my_soft_argmax"])
    assert report.passed == 0 and "your function calls kmt.keypoints.soft_argmax" in str(report)
    assert "your function is kmt.keypoints.soft_argmax" in str(check.soft_argmax(namespace["soft_argmax"]))
    assert namespace["soft_argmax"](np.full((1, 2, 2, 1), 0.25, "float32")).shape == (1, 1, 2)


def test_other_kmt_functions_stay_available():
    def with_kmt_grid(heatmap):
        grid = ops.convert_to_numpy(warping.make_coordinate_grid(heatmap.shape[1:3]))
        return np.einsum("bhwk,hwc->bkc", np.asarray(heatmap, "float64"), grid)

    assert check.soft_argmax(with_kmt_grid)


def test_an_exercise_that_runs_too_long_scores_zero(monkeypatch):
    import time

    monkeypatch.setenv("KMT_CHECK_TIME_LIMIT", "0.5")
    started = time.monotonic()

    def forever(heatmap):
        while True:
            pass

    report = check.soft_argmax(forever)
    assert time.monotonic() - started < 10
    assert report.passed == 0 and "did not finish within 0.5 s" in str(report)
    assert check.soft_argmax(right_soft_argmax)  # the next check runs as usual


def test_every_checker_names_functions_that_exist():
    import types

    from kmt.check import guard

    assert check.CHECKERS and check.CHECKERS["soft_argmax"] is check.soft_argmax
    for name, checker in check.CHECKERS.items():
        assert checker.__doc__ and checker.__name__ == name
        for target in checker.reimplements:
            assert isinstance(guard._unwrap(guard.resolve(target)), types.FunctionType), (name, target)


def test_results_travel_as_data_only():
    from kmt.check import guard

    value = {"a": (np.arange(6, dtype="float32").reshape(2, 3), 2, float("nan")), "b": [True, None, "x"]}
    back = guard.decode(json.loads(json.dumps(guard.encode(value))))
    np.testing.assert_array_equal(back["a"][0], value["a"][0])
    assert isinstance(back["a"], tuple) and back["a"][1] == 2 and np.isnan(back["a"][2]) and back["b"] == [True, None, "x"]
    assert guard.decode(guard.encode(ops.ones((2,))) ).dtype == np.float32
    for bad in (object(), np.array([object()]), {1: 2}):
        with pytest.raises(TypeError):
            guard.encode(bad)
    for forged in ({"array": "", "dtype": "|O", "shape": [0]}, {"__reduce__": 1}, {"dict": 5}):
        with pytest.raises((ValueError, TypeError)):
            guard.decode(forged)
    report = check.affine_grid(lambda theta, size: object())
    assert report.passed == 0 and "your function returned a object" in str(report)


def test_the_grading_pipeline_compares_in_the_graders_process(tmp_path):
    """prepare() keeps the answers and writes the inputs; the kernel's side sends back data; judge_run compares."""
    import pickle

    from kmt.check import grading, guard

    specs = [{"exercise": "ex-aff", "checker": "affine_grid"}, {"exercise": "ex-x", "checker": "no_such_checker"}]
    references = grading.prepare(specs, tmp_path / "inputs.pkl")
    assert "kmt.check has no checker 'no_such_checker'" in references["ex-x"]
    stored = pickle.loads((tmp_path / "inputs.pkl").read_bytes())
    assert set(stored) == {"ex-aff"} and set(stored["ex-aff"]) == {"args", "reimplements"}  # no answers
    assert len(stored["ex-aff"]["args"]) == 3 and stored["ex-aff"]["reimplements"] == []
    harness = grading.copy_harness(tmp_path)
    assert harness.read_text() == open(guard.__file__).read()

    def graded(candidate):
        guard.grade_in_kernel(tmp_path / "inputs.pkl", "ex-aff", candidate, tmp_path / "out.json", 10)
        return grading.judge_run(references["ex-aff"], "my_affine_grid", {"text": (tmp_path / "out.json").read_text()})

    assert graded(right_affine_grid) == (3, 3, "affine_grid: all 3 cases pass.")
    passed, total, report = graded(lambda theta, size: right_affine_grid(theta, size)[..., ::-1])
    assert (passed, total) == (0, 3) and "not (y, x)" in report
    assert graded(None) == (0, 3, "no function named my_affine_grid is defined in the notebook.")
    forged = grading.judge_run(references["ex-aff"], "f", {"text": '{"cases": [{"status": "ok", "value": {"x": 1}}]}'})
    assert forged[:2] == (0, 3) and "could not be read" in forged[2]
    assert grading.judge_run(references["ex-aff"], "f", {"problem": "the kernel died"})[2] == "affine_grid: the kernel died"
