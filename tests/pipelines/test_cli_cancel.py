"""`blockbook cancel` on runs recorded straight in a project's store (no kernels): what it says,
and its exit codes. tests/runs/test_cancel_across_processes.py cancels a real run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pipelines.cli.cancel import requester
from pipelines.cli.main import main
from pipelines.status import BlockStatus, RunStatus, Trigger
from pipelines.store.queue import request_cancel
from pipelines.store.run_store import DATABASE_URL_ENV, RunStore

T0 = datetime(2026, 12, 1, 9, 30, 0, tzinfo=UTC)
QUEUED = "20261201T093000Z-aaaaaa"
RUNNING = "20261201T093000Z-bbbbbb"
ENDED = "20261201T093000Z-cccccc"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    (tmp_path / "blockbook.toml").write_text("", encoding="utf-8")
    return tmp_path


@pytest.fixture
def store(project: Path) -> Iterator[RunStore]:
    with RunStore.open(project) as opened:
        for run_id in (QUEUED, RUNNING, ENDED):
            opened.create_run(
                run_id, "sales", "sales", Trigger.MANUAL, {}, "runs", [("load", "a.ipynb")]
            )
        opened.start_run(RUNNING, T0)
        opened.start_run(ENDED, T0)
        opened.finish_run(ENDED, RunStatus.SUCCESS, T0)
        yield opened


def cancel(project: Path, run_id: str) -> Result:
    return CliRunner().invoke(main, ["--project", str(project), "cancel", run_id])


def test_a_queued_run_is_cancelled(project: Path, store: RunStore) -> None:
    result = cancel(project, QUEUED)

    assert result.exit_code == 0, result.output
    assert result.stdout == f"run {QUEUED} was queued: cancelled\n"
    record = store.get_run(QUEUED)
    assert record is not None
    assert record.status is RunStatus.CANCELLED
    assert [b.status for b in record.blocks] == [BlockStatus.CANCELLED]
    assert record.cancel_requested_by == requester()
    assert record.error is not None
    assert record.error.startswith(f"cancelled by {requester()} at 20")


def test_a_running_run_gets_the_request_and_a_second_one_says_who_asked_first(
    project: Path, store: RunStore
) -> None:
    request_cancel(store, RUNNING, "server", T0)

    again = cancel(project, RUNNING[:-2])

    assert again.exit_code == 0, again.output
    assert again.stdout == (
        f"cancel of run {RUNNING} was already requested by server at "
        "2026-12-01T09:30:00+00:00; it stops within a few seconds\n"
    )


def test_a_running_run_gets_the_request(project: Path, store: RunStore) -> None:
    result = cancel(project, RUNNING)

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"cancel requested for run {RUNNING} (running); it stops within a few seconds\n"
    )
    record = store.get_run(RUNNING)
    assert record is not None
    assert (record.status, record.cancel_requested_by) == (RunStatus.RUNNING, requester())


@pytest.mark.parametrize(
    ("run_id", "message", "hint"),
    [
        (ENDED, f"error: run {ENDED} already ended: success", f"blockbook show {ENDED}"),
        ("20991231T000000Z-ffffff", "error: no run `20991231T000000Z-ffffff`", "blockbook runs"),
        ("20261201T093000Z-", "error: run id prefix `20261201T093000Z-` is ambiguous", "more"),
    ],
)
def test_what_cannot_be_cancelled_exits_1_with_the_reason_and_a_hint(
    project: Path, store: RunStore, run_id: str, message: str, hint: str
) -> None:
    result = cancel(project, run_id)

    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(message)
    assert "hint:" in result.stderr
    assert hint in result.stderr.split("hint:", 1)[1]
    assert all(r.cancel_requested_at is None for r in store.list_runs())


def test_the_requester_is_user_at_host_or_cli() -> None:
    who = requester()
    assert who == "cli" or ("@" in who and not who.startswith("@"))
