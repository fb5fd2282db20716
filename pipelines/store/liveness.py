"""Runs whose runner process is gone: found at once, by pid, on the runner's own host.

A runner records its process with its run (`RunStore.create_run`, `queue.adopt`; a scheduler
records the child it launched too). On that host, a run whose runner process no longer lives
under its pid and start time can never end by itself, so it is marked crashed immediately,
rather than after the heartbeat timeout that runners on other hosts still get.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from pipelines.status import RunStatus
from pipelines.store.queue import mark_crashed
from pipelines.store.records import RunRecord
from pipelines.store.rows import set_runner
from pipelines.store.run_store import RunStore
from pipelines.store.runner_process import RunnerProcess, this_host
from pipelines.store.schema import RunRow

log = logging.getLogger(__name__)

_UNFINISHED = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)


def record_runner(store: RunStore, run_id: str, runner: RunnerProcess) -> None:
    """Record the process a run was handed to (while the run is still active)."""
    with store.writing() as session:
        run = session.get(RunRow, run_id, with_for_update=True)
        if run is not None and not RunStatus(run.status).is_terminal:
            set_runner(run, runner)


def runs_without_runner(store: RunStore) -> list[RunRecord]:
    """Active runs whose runner was a process of this host that is gone (dead, or its pid now
    belongs to another process)."""
    # Queued runs count once a runner recorded itself: `create_run` queues a manual run that
    # its runner may die before starting.
    query = select(RunRow).where(
        RunRow.status.in_(_UNFINISHED),
        RunRow.runner_host == this_host(),
        RunRow.runner_pid.is_not(None),
    )
    with store.reading() as session:
        records = [store.record(row) for row in session.scalars(query)]
    return [r for r in records if r.runner is not None and not r.runner.is_alive()]


def runner_gone(record: RunRecord) -> str:
    """The error of a run whose runner process is gone."""
    runner = record.runner
    where = runner.describe() if runner is not None else "unknown"
    return f"its runner process ({where}) is gone: it died or was killed before the run ended"


def crash_runs_without_runner(store: RunStore, at: datetime | None = None) -> list[RunRecord]:
    """Mark crashed the runs `runs_without_runner` finds; the ones this call ended.

    For readers that must not show a dead run as running (`blockbook runs`) when no scheduler
    is there to do it; a scheduler also alerts and retries (`Scheduler.tick`)."""
    return [
        record
        for record in runs_without_runner(store)
        if mark_crashed(store, record.run_id, runner_gone(record), at)
    ]


def runner_stopped(record: RunRecord, wait: timedelta) -> bool:
    """Make sure the run's old runner runs no more before its crash retry starts: a live runner
    of this host (paused, or hung) is killed, and this waits until it is gone. True unless it
    survives `wait`. A runner on another host is left to stop itself when its heartbeat finds
    the run ended."""
    runner = record.runner
    if runner is None or not runner.is_local or not runner.is_alive():
        return True
    log.warning("run %s: killing its silent runner (%s)", record.run_id, runner.describe())
    return runner.kill(wait_seconds=wait.total_seconds())
