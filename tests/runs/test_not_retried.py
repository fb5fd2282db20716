"""`NotRetried`: block code that knows a retry cannot help ends its retries at once."""

from __future__ import annotations

from pipelines.status import BlockStatus, RunStatus
from tests.helpers.notebooks import nb
from tests.helpers.runs import statuses

COUNT_ATTEMPT = """import pathlib
from kernel_magics import NotRetried

_counter = pathlib.Path({counter!r})
_attempt = int(_counter.read_text()) + 1 if _counter.exists() else 1
_counter.write_text(str(_attempt))
"""


def test_not_retried_ends_the_retries(pipeline, run, store, tmp_path) -> None:
    at_once, later = tmp_path / "at_once.txt", tmp_path / "later.txt"
    gives_up = (
        "%%block gives_up --retries 3 --retry-delay 0\n"
        + COUNT_ATTEMPT.format(counter=str(at_once))
        + 'raise NotRetried("the API key was rejected")\n'
    )
    # A failure worth retrying first, then one that is not: the second attempt is the last.
    second_try = (
        "%%block second_try --retries 3 --retry-delay 0\n"
        + COUNT_ATTEMPT.format(counter=str(later))
        + "if _attempt == 1:\n"
        + '    raise ConnectionError("the server hung up")\n'
        + "try:\n"
        + '    raise PermissionError("no access to the bucket")\n'
        + "except PermissionError as exc:\n"
        + '    raise NotRetried("the bucket is not ours") from exc\n'
    )
    folder = pipeline(
        {"a.ipynb": nb(gives_up, "%%block neighbour\nfine = 1"), "b.ipynb": nb(second_try)}
    )
    result = run(folder)

    assert result.status is RunStatus.FAILED
    assert result.blocks["neighbour"].status is BlockStatus.SUCCESS, statuses(result)
    assert at_once.read_text() == "1"
    assert later.read_text() == "2"

    record = store.get_run(result.run_id)
    first = record.block("gives_up")
    assert first.status is BlockStatus.FAILED
    assert first.attempts == 1
    assert "the API key was rejected" in first.error
    (only,) = first.attempt_records
    assert only.status is BlockStatus.FAILED
    assert "NotRetried" in only.traceback

    second = record.block("second_try")
    assert second.status is BlockStatus.FAILED
    assert second.attempts == 2
    retried, stopped = second.attempt_records
    assert "the server hung up" in retried.error
    assert "the bucket is not ours" in stopped.error
    assert "PermissionError: no access to the bucket" in stopped.traceback, "the cause shows"
    assert "the bucket is not ours" in second.error
