"""The checker of chapter 7 accepts the reference's MultiStepLR schedule and explains typical mistakes."""

from kmt import check, training


def unguarded(checker, candidate):
    """Run a checker without disabling the kmt function its exercise re-implements: kmt itself is the right answer."""
    return check.check_candidate(checker.exercise(), candidate)


def test_learning_rate_schedule_accepts_kmt_and_a_plain_version():
    report = unguarded(check.learning_rate_schedule, training.learning_rate_at)
    assert report and report.score == 1.0
    assert str(report) == "learning_rate_schedule: all 6 cases pass."
    assert check.learning_rate_schedule(lambda base, epoch, milestones, gamma:
                                        base * gamma ** sum(epoch >= m for m in milestones))


def test_learning_rate_schedule_hints_at_an_off_by_one_and_a_product():
    report = check.learning_rate_schedule(lambda base, epoch, milestones, gamma:
                                          base * gamma ** sum(epoch > m for m in milestones))
    assert report.passed == 5 and "the rate drops *at* a milestone" in str(report)
    report = check.learning_rate_schedule(lambda base, epoch, milestones, gamma:
                                          base * gamma * sum(epoch >= m for m in milestones))
    assert not report and "gamma ** count, not gamma * count" in str(report)
    report = check.learning_rate_schedule(lambda base, epoch, milestones, gamma: base * gamma ** len(milestones))
    assert not report and "only the milestones already reached count" in str(report)


def test_learning_rate_schedule_refuses_kmts_own_function_and_reports_exceptions():
    report = check.learning_rate_schedule(training.learning_rate_at)
    assert report.score == 0.0 and "kmt.training.learning_rate_at" in str(report)
    report = check.learning_rate_schedule(lambda base, epoch, milestones, gamma: base / len(milestones))
    assert report.score < 1.0 and "your function raised ZeroDivisionError" in str(report)
