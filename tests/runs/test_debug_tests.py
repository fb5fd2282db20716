"""`blockbook debug` on a block that failed on a `@test`: the debug notebook calls the block's
tests after its body, as the run did, so the failure reproduces in place (real kernels)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from pipelines.status import BlockStatus
from tests.helpers.notebooks import nb
from tests.helpers.runs import RunHelper, blockbook, statuses
from tests.runs.test_debug import errors, execute

LOAD = "%%block load\nrows = [1, 2, -3]"

# The body succeeds; the check fails (keyword-only default `limit` comes from the notebook).
CHECK = """%%block check
positive = [r for r in rows if r != 0]

@test
def all_positive(positive, rows):
    assert all(r > 0 for r in positive), f"{len(rows)} rows, some negative"

@test
def few_rows(positive, *, limit=10):
    assert len(positive) <= limit
"""

WARNED = """%%block noted --tests warn
noted = len(rows)

@test
def many(noted):
    assert noted > 5, "too few"
"""


def test_debug_notebook_reproduces_a_failed_test(
    project: Path,
    pipeline: Callable[..., Path],
    run: RunHelper,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = pipeline({"a.ipynb": nb(LOAD, CHECK, WARNED)})
    result = run(folder)
    assert result.blocks["check"].status is BlockStatus.FAILED, statuses(result)
    assert result.blocks["noted"].status is BlockStatus.SUCCESS, statuses(result)

    answer = blockbook(project, "debug", str(result.run_id), "check")
    assert answer.returncode == 0, answer.stderr
    path = Path(answer.stdout.strip())
    notebook = nbformat.read(path, as_version=4)
    assert [c.cell_type for c in notebook.cells] == ["markdown", "code", "code", "code", "markdown"]
    tests = notebook.cells[3]
    assert "blockbook-debug-tests" in tests.metadata.tags
    assert "all_positive(positive=positive, rows=rows)" in tests.source
    assert "few_rows(positive=positive)" in tests.source  # `limit` names nothing the block saw

    monkeypatch.chdir(tmp_path)
    executed = execute(path, tmp_path)
    assert [errors(c) for c in executed.cells[1:3]] == [[], []]  # setup and body succeed
    [raised] = errors(executed.cells[3])
    assert (raised["ename"], raised["evalue"]) == ("AssertionError", "3 rows, some negative")
    traceback = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(raised["traceback"]))
    assert "assert all(r > 0 for r in positive)" in traceback  # the test's own line
    assert "all_positive" in str(result.blocks["check"].error)

    # --tests warn: the run only warned, and so does the debug notebook.
    warned = blockbook(project, "debug", str(result.run_id), "noted")
    assert warned.returncode == 0, warned.stderr
    executed = execute(Path(warned.stdout.strip()), tmp_path)
    assert [errors(c) for c in executed.cells if c.cell_type == "code"] == [[], [], []]
    stderr = "".join(o.get("text", "") for o in executed.cells[3].outputs)
    assert "test many failed: AssertionError('too few')" in stderr
