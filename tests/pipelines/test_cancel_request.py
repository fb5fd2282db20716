"""Cancel requests in the run store (`request_cancel`, `heartbeat`), on SQLite and PostgreSQL.

A run is cancelled across processes through its row: a queued run that no runner has taken ends
at once, a run with a runner gets the request recorded and its runner sees it on a heartbeat.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipelines.errors import ErrorKind
from pipelines.status import BlockStatus, RunStatus, Trigger
from pipelines.store.db import AmbiguousRunId, RunConflict, RunNotFound
from pipelines.store.queue import (
    QueuedRun,
    adopt,
    claim_launch,
    enqueue,
    heartbeat,
    queued_runs,
    request_cancel,
)
from pipelines.store.run_store import RunId, RunStore

T0 = datetime(2026, 12, 1, 9, 30, 0, tzinfo=UTC)
BLOCKS = [("load", "a.ipynb"), ("report", "b.ipynb")]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[RunStore]:
    with RunStore(db_url) as opened:
        yield opened


def created(store: RunStore, run_id: str = "20261201T093000Z-aaaaaa") -> RunId:
    """A queued run as `blockbook run` makes it: its blocks listed, all pending."""
    store.create_run(run_id, "sales", "pipelines/sales", Trigger.MANUAL, {}, "runs/x", BLOCKS)
    return RunId(run_id)


def running(store: RunStore, run_id: str = "20261201T093000Z-bbbbbb") -> RunId:
    created(store, run_id)
    store.start_run(run_id, T0)
    return RunId(run_id)


def scheduled(
    store: RunStore, run_id: str = "20261201T093000Z-cccccc", fire_time: datetime = T0
) -> RunId:
    """A queued run as a scheduler or trigger makes it: no blocks until a runner adopts it."""
    queued = QueuedRun(
        RunId(run_id), "sales", "pipelines/sales", Trigger.SCHEDULE, {}, "", fire_time
    )
    assert enqueue(store, queued)
    return RunId(run_id)


def test_a_queued_run_is_cancelled_at_once_and_never_launched(store: RunStore) -> None:
    run_id = created(store)
    at = T0 + timedelta(minutes=1)

    record = request_cancel(store, run_id, "cli", at)

    assert record.status is RunStatus.CANCELLED
    assert (record.cancel_requested_by, record.cancel_requested_at, record.ended_at) == (
        "cli",
        at,
        at,
    )
    assert record.error == "cancelled by cli at 2026-12-01T09:31:00+00:00"
    assert [(b.block, b.status, b.error, b.ended_at) for b in record.blocks] == [
        ("load", BlockStatus.CANCELLED, "cancelled", at),
        ("report", BlockStatus.CANCELLED, "cancelled", at),
    ]
    assert store.get_run(run_id) == record
    assert queued_runs(store) == []
    assert not claim_launch(store, run_id)
    # A runner that looked at the run just before the request loses the race with a reason.
    with pytest.raises(RunConflict, match="cancelled, not queued"):
        adopt(store, run_id, params={}, run_dir="runs/x", blocks=BLOCKS)


def test_a_scheduled_run_not_yet_taken_is_cancelled_and_never_claimed(store: RunStore) -> None:
    run_id = scheduled(store)
    other = scheduled(store, "20261201T103000Z-dddddd", T0 + timedelta(hours=1))
    other_record = store.get_run(other)

    record = request_cancel(store, run_id, "api")

    assert record.status is RunStatus.CANCELLED
    assert record.cancel_requested_by == "api"
    assert record.blocks == ()
    assert queued_runs(store) == [other_record]
    assert not claim_launch(store, run_id)
    assert claim_launch(store, other)


def test_a_running_run_gets_the_request_recorded_and_its_heartbeat_says_so(
    store: RunStore,
) -> None:
    run_id = running(store)
    assert heartbeat(store, run_id).cancel_requested is False

    at = T0 + timedelta(minutes=2)
    record = request_cancel(store, run_id, "ada@lab", at)

    assert record.status is RunStatus.RUNNING
    assert (record.cancel_requested_by, record.cancel_requested_at) == ("ada@lab", at)
    assert record.ended_at is None
    assert record.error is None
    assert {b.status for b in record.blocks} == {BlockStatus.PENDING}
    assert heartbeat(store, run_id).cancel_requested is True
    assert heartbeat(store, run_id).cancel_requested is True, "the request stays until the run ends"


def test_the_first_request_wins(store: RunStore) -> None:
    run_id = running(store)
    first = request_cancel(store, run_id, "cli", T0)

    again = request_cancel(store, run_id, "server", T0 + timedelta(seconds=5))

    assert again == first
    assert (again.cancel_requested_by, again.cancel_requested_at) == ("cli", T0)


def test_requests_at_once_from_several_stores_record_one_of_them(db_url: str) -> None:
    with RunStore(db_url) as store:
        run_id = running(store)
    start = threading.Barrier(4)
    results: dict[str, tuple[str | None, datetime | None]] = {}

    def ask(by: str) -> None:
        with RunStore(db_url) as own:
            start.wait(timeout=30)
            record = request_cancel(own, run_id, by)
            results[by] = (record.cancel_requested_by, record.cancel_requested_at)

    threads = [threading.Thread(target=ask, args=(f"user{n}@host",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(results) == 4
    assert len(set(results.values())) == 1, results
    assert next(iter(results.values()))[0] in results


def test_a_run_taken_by_a_runner_but_not_started_gets_the_request_recorded(
    store: RunStore,
) -> None:
    run_id = scheduled(store)
    assert claim_launch(store, run_id)

    record = request_cancel(store, run_id, "cli")

    # Its runner is starting: cancelling it here would race the runner; the heartbeat won't.
    assert record.status is RunStatus.QUEUED
    assert record.cancel_requested_by == "cli"
    adopt(store, run_id, params={}, run_dir="runs/x", blocks=BLOCKS)
    store.start_run(run_id, T0)
    assert heartbeat(store, run_id).cancel_requested is True


def test_the_finished_run_says_who_cancelled_it_and_when(store: RunStore) -> None:
    run_id = running(store)
    request_cancel(store, run_id, "cli", T0)

    store.finish_run(run_id, RunStatus.CANCELLED, T0 + timedelta(seconds=3))

    record = store.get_run(run_id)
    assert record is not None
    assert record.status is RunStatus.CANCELLED
    assert record.error == "cancelled by cli at 2026-12-01T09:30:00+00:00"
    assert (record.cancel_requested_by, record.cancel_requested_at) == ("cli", T0)


def test_a_failure_before_the_cancel_is_kept_after_the_reason(store: RunStore) -> None:
    run_id = running(store)
    request_cancel(store, run_id, "cli", T0)

    store.finish_run(run_id, RunStatus.CANCELLED, T0, error="block load: boom")

    record = store.get_run(run_id)
    assert record is not None
    assert record.error == "cancelled by cli at 2026-12-01T09:30:00+00:00; block load: boom"


def test_a_run_that_ended_before_its_runner_saw_the_request_keeps_its_status(
    store: RunStore,
) -> None:
    run_id = running(store)
    request_cancel(store, run_id, "cli", T0)

    store.finish_run(run_id, RunStatus.SUCCESS, T0 + timedelta(seconds=1))

    record = store.get_run(run_id)
    assert record is not None
    assert (record.status, record.error) == (RunStatus.SUCCESS, None)
    assert record.cancel_requested_by == "cli", "the request is still on record"


@pytest.mark.parametrize("status", [RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED])
def test_a_run_that_already_ended_cannot_be_cancelled(store: RunStore, status: RunStatus) -> None:
    run_id = running(store)
    store.finish_run(run_id, status, T0)

    with pytest.raises(RunConflict) as caught:
        request_cancel(store, run_id, "cli")

    assert caught.value.message == f"run {run_id} already ended: {status}"
    assert f"blockbook show {run_id}" in caught.value.hint
    assert caught.value.kind is ErrorKind.CONFLICT
    record = store.get_run(run_id)
    assert record is not None
    assert (record.status, record.cancel_requested_at) == (status, None)


def test_an_unknown_run_is_not_found(store: RunStore) -> None:
    created(store)
    for unknown in ("20991231T000000Z-ffffff", "nope", ""):
        with pytest.raises(RunNotFound) as caught:
            request_cancel(store, unknown, "cli")
        assert f"no run `{unknown}`" in caught.value.message
        assert "blockbook runs" in caught.value.hint
        assert caught.value.kind is ErrorKind.NOT_FOUND


def test_run_id_prefixes_work_like_get_run(store: RunStore) -> None:
    first = running(store, "20261201T093000Z-abc111")
    running(store, "20261201T093000Z-abc222")

    record = request_cancel(store, "20261201T093000Z-abc1", "cli")
    assert record.run_id == first
    assert record.cancel_requested_by == "cli"

    with pytest.raises(AmbiguousRunId) as caught:
        request_cancel(store, "20261201T093000Z-abc", "cli")
    assert "20261201T093000Z-abc111, 20261201T093000Z-abc222" in caught.value.message
    assert caught.value.kind is ErrorKind.AMBIGUOUS
    # Run ids are case-sensitive even where SQLite's LIKE is not.
    with pytest.raises(RunNotFound):
        request_cancel(store, "20261201t093000z-ABC1", "cli")


def test_who_asked_is_required_and_kept_short(store: RunStore) -> None:
    run_id = running(store)
    with pytest.raises(ValueError, match="who asks"):
        request_cancel(store, run_id, "  ")
    with pytest.raises(ValueError, match="naive"):
        request_cancel(store, run_id, "cli", datetime(2026, 12, 1, 9, 30))

    record = request_cancel(store, run_id, "x" * 1000)
    assert record.cancel_requested_by == "x" * 255


def test_heartbeat_without_returning_updates_then_reads(
    store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a Python built with SQLite older than 3.35 (no UPDATE ... RETURNING) goes through.
    with store.reading() as session:
        dialect = session.get_bind().dialect
    monkeypatch.setattr(dialect, "update_returning", False)
    run_id = running(store)

    assert heartbeat(store, run_id, T0 + timedelta(seconds=2)).cancel_requested is False
    request_cancel(store, run_id, "cli")
    assert heartbeat(store, run_id, T0 + timedelta(seconds=4)).cancel_requested is True

    record = store.get_run(run_id)
    assert record is not None
    assert record.heartbeat_at == T0 + timedelta(seconds=4)


def test_heartbeat_records_the_beat_and_ignores_unknown_runs(store: RunStore) -> None:
    run_id = running(store)
    assert heartbeat(store, run_id, T0 + timedelta(seconds=2)).cancel_requested is False
    record = store.get_run(run_id)
    assert record is not None
    assert record.heartbeat_at == T0 + timedelta(seconds=2)
    assert heartbeat(store, "20991231T000000Z-ffffff").cancel_requested is False
