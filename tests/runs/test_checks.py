"""`@test` checks in headless runs: a failing check fails its block (and is not retried),
`--tests warn` turns failures into warnings, and every result is recorded in the store."""

from __future__ import annotations

from pipelines.status import BlockStatus, RunStatus
from tests.helpers.notebooks import nb
from tests.helpers.runs import block_cell, cell_text, statuses

STRICT = """%%block strict --retries 2 --retry-delay 0
values = [3, -1, 2]


@test
def all_positive(values):
    assert all(v > 0 for v in values), f"negative values: {[v for v in values if v <= 0]}"


@test
def has_three(values):
    assert len(values) == 3
"""

LENIENT = """%%block lenient --tests warn
scores = [1, 2]


@test
def enough_scores(scores):
    assert len(scores) >= 5, "need at least 5 scores"


@test
def sorted_scores(scores):
    assert scores == sorted(scores)


@test
def needs_unknown(nonexistent_name):
    pass
"""


def test_failing_and_warning_tests(pipeline, run, store) -> None:
    folder = pipeline(
        {
            "a.ipynb": nb(STRICT, "%%block after_strict\ndoubled = [v * 2 for v in values]"),
            "b.ipynb": nb(LENIENT, "%%block reads_scores\nbest = max(scores)"),
        }
    )
    result = run(folder)

    assert result.status is RunStatus.FAILED
    strict = result.blocks["strict"]
    assert strict.status is BlockStatus.FAILED, statuses(result)
    assert "all_positive" in strict.error
    assert "negative values: [-1]" in strict.error
    assert len(strict.attempts) == 1, "a failed check is deterministic: no retry"
    assert result.blocks["after_strict"].status is BlockStatus.UPSTREAM_FAILED
    lenient = result.blocks["lenient"]
    assert lenient.status is BlockStatus.SUCCESS, statuses(result)
    assert result.blocks["reads_scores"].status is BlockStatus.SUCCESS

    record = store.get_run(result.run_id)
    strict_record = record.block("strict")
    assert strict_record.status is BlockStatus.FAILED
    assert "all_positive" in strict_record.error
    assert strict_record.attempt_records[-1].tests == [
        {"name": "all_positive", "outcome": "failed", "message": "negative values: [-1]"},
        {"name": "has_three", "outcome": "passed", "message": ""},
    ]
    lenient_tests = {t["name"]: t for t in record.block("lenient").attempt_records[-1].tests}
    assert lenient_tests["enough_scores"] == {
        "name": "enough_scores",
        "outcome": "warned",
        "message": "need at least 5 scores",
    }
    assert lenient_tests["sorted_scores"]["outcome"] == "passed"
    assert lenient_tests["needs_unknown"]["outcome"] == "warned"
    assert "nonexistent_name" in lenient_tests["needs_unknown"]["message"]
    assert record.block("lenient").error is None

    # Test functions are never outputs: neither stored nor summarized.
    names = {s["name"] for s in lenient.attempts[-1].summaries}
    names |= {o["name"] for o in lenient.attempts[-1].outputs}
    assert names == {"scores"}

    # The executed notebooks say what happened to each check.
    shown = cell_text(block_cell(result.run_dir / strict.notebook, "strict"))
    assert "test all_positive: FAILED - negative values: [-1]" in shown
    assert "TestsFailed" in shown
    shown = cell_text(block_cell(result.run_dir / lenient.notebook, "lenient"))
    assert "test enough_scores: warned - need at least 5 scores" in shown
