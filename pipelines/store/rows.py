"""Small operations on the run store's rows shared by the store and the run queue: finding a
run by id prefix, the block rows of a new run, the error of a run cancelled on request, the
runner process of a run."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipelines.status import BlockStatus
from pipelines.store.db import AmbiguousRunId
from pipelines.store.runner_process import RunnerProcess
from pipelines.store.schema import BlockRunRow, RunRow

_CANDIDATES_SHOWN = 10


def prefix_match(session: Session, prefix: str) -> str | None:
    """The only run id that starts with `prefix`, or None; several raise `AmbiguousRunId`.

    For a `prefix` that is not itself a run id (callers look that up first, with what they need
    of the row). An empty prefix matches nothing rather than every run.
    """
    if not prefix:
        return None
    candidates = [
        candidate
        for candidate in session.scalars(
            select(RunRow.run_id)
            .where(RunRow.run_id.startswith(prefix, autoescape=True))
            .order_by(RunRow.run_id)
            .limit(_CANDIDATES_SHOWN + 1)
        )
        # SQLite's LIKE ignores case; ids are case-sensitive everywhere else.
        if candidate.startswith(prefix)
    ]
    if len(candidates) > 1:
        shown = ", ".join(candidates[:_CANDIDATES_SHOWN])
        more = " and more" if len(candidates) > _CANDIDATES_SHOWN else ""
        raise AmbiguousRunId(
            f"run id prefix `{prefix}` is ambiguous: it matches {shown}{more}",
            "give more characters of the run id",
        )
    return candidates[0] if candidates else None


def cancel_reason(by: str, at: datetime) -> str:
    """The error of a run cancelled on request: `cancelled by cli at 2026-12-01T23:34:56+00:00`."""
    return f"cancelled by {by} at {at.astimezone(UTC).isoformat(timespec='seconds')}"


def pending_blocks(blocks: Sequence[tuple[str, str]]) -> list[BlockRunRow]:
    """The rows of a run's blocks before any ran: (name, run notebook) in run order."""
    return [
        BlockRunRow(
            block=name,
            notebook=notebook,
            position=position,
            status=BlockStatus.PENDING.value,
            attempts=0,
        )
        for position, (name, notebook) in enumerate(blocks)
    ]


def set_runner(row: RunRow, runner: RunnerProcess) -> None:
    """Record the process that runs (or will run) the run: on its host, a scheduler that finds
    it gone marks the run crashed at once instead of waiting for its heartbeats to stop."""
    row.runner_pid = runner.pid
    row.runner_host = runner.host
    row.runner_started_at = runner.started_at
