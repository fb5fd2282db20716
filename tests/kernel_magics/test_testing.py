"""`@test` outside a kernel: how a check's outcome and message are decided and recorded."""

from __future__ import annotations

from typing import Any

from kernel_magics import runtime, testing
from kernel_magics import test as mark_test
from pipelines.rundir import state

# Checks are compiled here rather than defined in this module, so pytest's assertion rewriting
# doesn't change their messages: a kernel runs them as plain Python.
CHECKS = """
def passes(rows, limit):
    assert len(rows) < limit

def fails(rows):
    assert len(rows) > 5, "too few rows"

def bare_assert(rows):
    assert not rows

def raises(rows):
    raise ValueError("broken check")

def needs_missing(missing_value):
    pass

def default_used(rows, scale=2):
    assert scale == 2
"""


def checks() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(CHECKS, "<block>", "exec"), namespace)
    return namespace


def run(name: str, *, warn_only: bool = False) -> state.TestRecord:
    return testing.run_test(name, checks()[name], {"rows": [1, 2], "limit": 3}, warn_only=warn_only)


def test_marker_keeps_the_function() -> None:
    function = checks()["passes"]
    assert mark_test(function) is function
    assert getattr(function, testing.TEST_MARKER) is True


def test_outcomes() -> None:
    passed, failed, warned = (
        state.TestOutcome.PASSED,
        state.TestOutcome.FAILED,
        state.TestOutcome.WARNED,
    )
    assert run("passes") == state.TestRecord("passes", passed)
    assert run("fails") == state.TestRecord("fails", failed, "too few rows")
    assert run("fails", warn_only=True) == state.TestRecord("fails", warned, "too few rows")
    assert run("bare_assert") == state.TestRecord("bare_assert", failed, "assertion failed")
    assert run("raises") == state.TestRecord("raises", failed, "ValueError: broken check")
    missing = run("needs_missing")
    assert missing.outcome is failed
    assert "missing_value" in missing.message
    assert run("needs_missing", warn_only=True).outcome is warned
    assert run("default_used").outcome is passed


def test_failed_checks_keep_their_names_in_the_one_line_error() -> None:
    failed = [
        state.TestRecord("no_nulls", state.TestOutcome.FAILED, "3 nulls in amount"),
        state.TestRecord("unique_ids", state.TestOutcome.FAILED, "id 7 twice"),
    ]
    line = runtime._one_line(runtime.TestsFailed(failed))
    assert "\n" not in line
    assert line.startswith("TestsFailed: 2 test(s) failed")
    assert "no_nulls: 3 nulls in amount" in line
    assert "unique_ids: id 7 twice" in line
