"""Run records: the frozen, read-only view of a stored run that the rest of Blockbook works with.

`RunStore` (and the run queue, through `RunStore.record`) makes them from the rows of
`pipelines.store.schema` with `run_record` while the session is open, so a record needs no
session to read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NewType

from pipelines.errors import NotFoundError
from pipelines.status import BlockStatus, RunStatus, Trigger
from pipelines.store.audit import RunAudit
from pipelines.store.runner_process import RunnerProcess
from pipelines.store.schema import BlockRunRow, RunRow

RunId = NewType("RunId", str)


@dataclass(frozen=True)
class AttemptRecord:
    number: int
    status: BlockStatus
    started_at: datetime | None
    ended_at: datetime | None
    error: str | None
    traceback: str | None
    tests: list[dict[str, Any]]
    outputs: list[dict[str, Any]]


@dataclass(frozen=True)
class BlockRunRecord:
    block: str
    notebook: str
    status: BlockStatus
    attempts: int
    started_at: datetime | None
    ended_at: datetime | None
    error: str | None
    reused_from: str | None
    attempt_records: tuple[AttemptRecord, ...]
    fingerprint: dict[str, Any] | None = None
    """What the block's result depends on, each part hashed, and why it ran or was cached
    (`pipelines.runs.caching.Fingerprint`); None for runs before incremental runs."""
    schema_drift: tuple[dict[str, Any], ...] = ()
    """How its stored frames differed from their baseline (`rundir.schema_drift.Drift`)."""

    @property
    def cache_note(self) -> str:
        """Why the block ran (what changed) or was cached, as the run decided it; "" if
        unknown."""
        note = (self.fingerprint or {}).get("reason", "")
        return note if isinstance(note, str) else ""


@dataclass(frozen=True)
class LastResult:
    """A block's newest successful (or cached) result in a pipeline's runs, with the fingerprint
    it was recorded with: what a later run compares with to decide whether to reuse it."""

    block: str
    run_id: str
    """The run whose block run this is; its folder holds the outputs (linked when cached)."""
    run_dir: str
    origin: str
    """The run that executed the block (`run_id` itself unless that run reused it)."""
    fingerprint: dict[str, Any]


@dataclass(frozen=True)
class RunRecord:
    run_id: RunId
    pipeline: str
    pipeline_path: str
    status: RunStatus
    trigger: Trigger
    params: dict[str, Any]
    run_dir: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    error: str | None
    resumed_from: str | None
    blocks: tuple[BlockRunRecord, ...]
    """In the global order given to `RunStore.create_run`."""
    scheduled_for: datetime | None = None
    """The fire time of a scheduled or backfill run."""
    attempt: int = 0
    """0 for a run's first try; n for the n-th restart after it crashed."""
    heartbeat_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    """When someone first asked the run to stop (kept once it ended, whatever it ended as)."""
    cancel_requested_by: str | None = None
    """Who asked: `user@host` from the command line, `api`, `server`."""
    runner_pid: int | None = None
    runner_host: str | None = None
    runner_started_at: datetime | None = None
    audit: RunAudit | None = None
    """Who started the run, with which code and Blockbook; None for runs recorded before."""

    @property
    def runner(self) -> RunnerProcess | None:
        """The process that runs (or will run) the run, when one was recorded."""
        if self.runner_pid is None or self.runner_host is None or self.runner_started_at is None:
            return None
        return RunnerProcess(self.runner_pid, self.runner_host, self.runner_started_at)

    def block(self, name: str) -> BlockRunRecord | None:
        return next((block for block in self.blocks if block.block == name), None)

    def known_block(self, name: str) -> BlockRunRecord:
        """The block `name` of this run; NotFoundError naming the run's blocks otherwise."""
        found = self.block(name)
        if found is None:
            known = ", ".join(b.block for b in self.blocks) or "none"
            raise NotFoundError(
                f"run `{self.run_id}` has no block `{name}`", hint=f"its blocks: {known}"
            )
        return found


def run_record(row: RunRow) -> RunRecord:
    return RunRecord(
        run_id=RunId(row.run_id),
        pipeline=row.pipeline,
        pipeline_path=row.pipeline_path,
        status=RunStatus(row.status),
        trigger=Trigger(row.trigger),
        params=dict(row.params),
        run_dir=row.run_dir,
        created_at=row.created_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        error=row.error,
        resumed_from=row.resumed_from,
        blocks=tuple(_block_record(block) for block in row.blocks),
        scheduled_for=row.scheduled_for,
        attempt=row.attempt,
        heartbeat_at=row.heartbeat_at,
        cancel_requested_at=row.cancel_requested_at,
        cancel_requested_by=row.cancel_requested_by,
        runner_pid=row.runner_pid,
        runner_host=row.runner_host,
        runner_started_at=row.runner_started_at,
        audit=None if row.audit is None else RunAudit.from_json(row.audit),
    )


def _block_record(row: BlockRunRow) -> BlockRunRecord:
    return BlockRunRecord(
        block=row.block,
        notebook=row.notebook,
        status=BlockStatus(row.status),
        attempts=row.attempts,
        started_at=row.started_at,
        ended_at=row.ended_at,
        error=row.error,
        reused_from=row.reused_from,
        attempt_records=tuple(
            AttemptRecord(
                number=attempt.number,
                status=BlockStatus(attempt.status),
                started_at=attempt.started_at,
                ended_at=attempt.ended_at,
                error=attempt.error,
                traceback=attempt.traceback,
                tests=list(attempt.tests),
                outputs=list(attempt.outputs),
            )
            for attempt in row.attempt_rows
        ),
        fingerprint=row.fingerprint,
        schema_drift=tuple(row.schema_drift or ()),
    )
