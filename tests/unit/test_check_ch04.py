"""The chapter 4 checkers accept right answers, reject wrong ones and explain why in words."""

import numpy as np

from kmt import check


def right_motion_inputs(heatmaps, deformed):
    per_slot = np.concatenate([np.asarray(heatmaps)[..., None], np.moveaxis(np.asarray(deformed), 1, 3)], -1)
    return per_slot.reshape(per_slot.shape[:3] + (-1,))


def right_hard_deformation(mask, motions):
    best = np.argmax(mask, axis=-1)
    return np.take_along_axis(np.moveaxis(motions, 1, 3), best[..., None, None], axis=3)[..., 0, :]


def test_dense_motion_inputs_accepts_the_reference_layout():
    report = check.dense_motion_inputs(right_motion_inputs)
    assert report and report.score == 1.0
    assert str(report) == "dense_motion_inputs: all 3 cases pass."


def test_dense_motion_inputs_explains_the_usual_layout_mistakes():
    def blocks(heatmaps, deformed):
        deformed = np.moveaxis(np.asarray(deformed), 1, 3)
        return np.concatenate([heatmaps, deformed.reshape(deformed.shape[:3] + (-1,))], -1)

    report = check.dense_motion_inputs(blocks)
    assert not report and report.passed == 0
    assert "all the heatmaps first" in str(report)
    report = check.dense_motion_inputs(lambda h, d: right_motion_inputs(h[..., 1:], d[:, 1:]))
    assert "expected shape (1, 8, 8, 12), got (1, 8, 8, 8)" in str(report)
    assert "keep the background slot 0" in str(report)


def test_dense_motion_inputs_reports_exceptions():
    report = check.dense_motion_inputs(lambda h, d: h.undefined)
    assert report.score == 0.0 and "your function raised AttributeError" in str(report)


def test_hard_deformation_accepts_argmax_and_rejects_the_soft_sum():
    assert check.hard_deformation(right_hard_deformation)
    report = check.hard_deformation(lambda m, t: np.einsum("bhwk,bkhwc->bhwc", m, t))
    assert not report and "that is the soft combination" in str(report)
    report = check.hard_deformation(lambda m, t: right_hard_deformation(m[..., 1:], t[:, 1:]))
    assert "slot 0, the background, is a slot like the others" in str(report)
    report = check.hard_deformation(lambda m, t: right_hard_deformation(m, t)[..., ::-1])
    assert "must hold (x, y)" in str(report)
