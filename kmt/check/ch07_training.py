"""Checkers for the exercises of chapter 7, "Training"."""

from kmt import training
from kmt.check.core import Exercise, checker, compare_judge

__all__ = ["learning_rate_schedule"]


def _variant(rule):
    def variant(base, epoch, milestones, gamma):
        return base * gamma ** sum(1 for milestone in milestones if rule(epoch, milestone))

    return variant


@checker("kmt.training.learning_rate_at")
def learning_rate_schedule():
    """Check ``candidate(base, epoch, milestones, gamma) -> learning rate``.

    The answer is :func:`kmt.training.learning_rate_at`, the reference's ``MultiStepLR``:
    ``base * gamma ** (number of milestones m with epoch >= m)``, epochs counted from 0.
    """
    cases = []
    for label, args in [
        ("no milestones", (2e-4, 7, [], 0.1)),
        ("before the first milestone", (2e-4, 59, [60, 90], 0.1)),
        ("at the first milestone (epoch 60 of [60, 90])", (2e-4, 60, [60, 90], 0.1)),
        ("past both milestones", (1e-3, 120, [60, 90], 0.1)),
        ("unsorted milestones, gamma 0.5", (1.0, 10, [12, 4, 8], 0.5)),
        ("a repeated milestone counts twice", (1.0, 5, [3, 3], 0.1)),
    ]:
        cases.append((label, args, training.learning_rate_at(*args)))
    hints = [
        (_variant(lambda epoch, milestone: epoch > milestone),
         "the rate drops *at* a milestone: epoch 60 of milestones [60, 90] already uses base * gamma "
         "(count the milestones with epoch >= milestone)."),
        (lambda base, epoch, milestones, gamma: base * gamma * sum(1 for m in milestones if epoch >= m),
         "each milestone passed multiplies the rate by gamma once more: gamma ** count, not gamma * count."),
        (lambda base, epoch, milestones, gamma: base * gamma ** len(milestones),
         "only the milestones already reached count: those with epoch >= milestone."),
    ]
    return Exercise("learning_rate_schedule", cases, compare_judge(1e-12, hints, convert=float, what="a number"))
