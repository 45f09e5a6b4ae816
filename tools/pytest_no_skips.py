"""A pytest plugin that makes a skipped (or expected-to-fail) test fail the run.

`make test` loads it (``-p pytest_no_skips`` with ``tools/`` on ``PYTHONPATH``) beside ``-rs``, so a
test that skips, for example because an import broke, is listed with its reason and turns the
run red instead of passing silently. A test here either runs and asserts, or fails.
"""

import pytest

NOT_RUN = ("skipped", "xfailed", "xpassed")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    counts = {kind: len(reporter.stats.get(kind, [])) for kind in NOT_RUN}
    if any(counts.values()) and session.exitstatus == pytest.ExitCode.OK:
        listed = ", ".join(f"{count} {kind}" for kind, count in counts.items() if count)
        reporter.write_line(f"FAILED: {listed}: every test must run (see the reasons above, from -rs)", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
