"""The run queue, on top of the run store: fire times claimed exactly once, queued runs handed
to one runner each, heartbeats, cancel requests, and crash recovery.

Every guarantee here is a database guarantee (a unique constraint, a conditional UPDATE), so
it holds across processes and across schedulers sharing one PostgreSQL database.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, Table, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pipelines.rundir.state import now
from pipelines.status import BlockStatus, RunStatus, Trigger
from pipelines.store.db import RunConflict, RunNotFound
from pipelines.store.records import RunRecord
from pipelines.store.rows import cancel_reason, pending_blocks, prefix_match, set_runner
from pipelines.store.run_store import RunId, RunStore
from pipelines.store.runner_process import RunnerProcess
from pipelines.store.schema import REQUESTER_LENGTH, BlockRunRow, RunRow, ScheduleRow

_T = TypeVar("_T")
_ACTIVE = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)
_ROWS_PER_STATEMENT = 500
"""Rows of one multi-row INSERT or UPDATE: well under SQLite's and PostgreSQL's limits on bound
parameters, whatever the number of columns."""


@dataclass(frozen=True, slots=True)
class QueuedRun:
    run_id: RunId
    pipeline: str
    pipeline_path: str
    trigger: Trigger
    params: dict[str, Any]
    run_dir: str
    scheduled_for: datetime | None = None
    attempt: int = 0
    resumed_from: str | None = None
    sealed_params: str | None = None
    """The secret parameters, encrypted (`store/sealed.py`); `params` holds them masked."""


@dataclass(frozen=True, slots=True)
class ScheduleState:
    pipeline: str
    fingerprint: str
    first_seen_at: datetime
    last_fired: datetime | None


def enqueue(store: RunStore, run: QueuedRun) -> bool:
    """Record a queued run; False when its (pipeline, fire time, attempt) is already taken."""
    row = RunRow(**_row_values(run, now()), blocks=[])
    try:
        with store.writing() as session:
            session.add(row)
    except IntegrityError:
        return False
    return True


def enqueue_many(store: RunStore, runs: Sequence[QueuedRun]) -> set[RunId]:
    """Record many queued runs in one transaction; returns the ids of those recorded.

    A run whose (pipeline, fire time, attempt) is already taken is left out, as by `enqueue`:
    the unique constraint decides row by row (INSERT ... ON CONFLICT DO NOTHING), so schedulers
    racing on one database queue each fire time once. Rows go in sorted by that key, so two
    PostgreSQL transactions inserting the same fire times wait for each other in one order and
    never deadlock.
    """
    if not runs:
        return set()
    created = now()
    ordered = sorted(runs, key=_fire_key)
    with store.writing() as session:
        dialect = session.get_bind().dialect.name
        if dialect in ("sqlite", "postgresql"):
            insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
            table = cast(Table, RunRow.__table__)
            # One statement compiled once and run for all rows, in their order, in pages of
            # multi-row INSERTs (SQLAlchemy's "insertmanyvalues").
            statement = insert(table).on_conflict_do_nothing().returning(table.c.run_id)
            rows = [_row_values(run, created) for run in ordered]
            result = session.connection().execute(statement, rows)
            return {RunId(run_id) for run_id in result.scalars()}
    # Another database: one transaction per run, the constraint still deciding.
    return {run.run_id for run in ordered if enqueue(store, run)}


def _chunks(items: Sequence[_T], size: int) -> Iterator[list[_T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _fire_key(run: QueuedRun) -> tuple[str, datetime, int]:
    return (run.pipeline, run.scheduled_for or datetime.min.replace(tzinfo=UTC), run.attempt)


def _row_values(run: QueuedRun, created: datetime) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "pipeline": run.pipeline,
        "pipeline_path": run.pipeline_path,
        "status": RunStatus.QUEUED.value,
        "trigger": Trigger(run.trigger).value,
        "params": run.params,
        "sealed_params": run.sealed_params,
        "run_dir": run.run_dir,
        "created_at": created,
        "scheduled_for": run.scheduled_for,
        "attempt": run.attempt,
        "resumed_from": run.resumed_from,
    }


def claim_launch(store: RunStore, run_id: str, limit: int | None = None) -> bool:
    """Take a queued run for one runner; only one caller ever gets True for a run.

    With a `limit` (the pipeline's max_active_runs), the run is taken only while fewer than
    `limit` runs of its pipeline are active: counted and taken in one transaction that holds
    the pipeline's lock, so schedulers sharing a database never start more between them.
    """
    with store.writing() as session:
        if limit is not None:
            pipeline = session.scalar(select(RunRow.pipeline).where(RunRow.run_id == run_id))
            if pipeline is None:
                return False
            _lock_pipeline(session, pipeline)
            if _active_count(session, pipeline) >= limit:
                return False
        result = session.execute(
            update(RunRow)
            .where(
                RunRow.run_id == run_id,
                RunRow.status == RunStatus.QUEUED.value,
                RunRow.launched_at.is_(None),
            )
            .values(launched_at=now())
        )
        return bool(getattr(result, "rowcount", 0) == 1)


def claim_launches(
    store: RunStore, runs: Sequence[tuple[str, str]], limits: Mapping[str, int]
) -> set[str]:
    """Take many queued runs for runners in one transaction: `runs` are (run id, pipeline)
    pairs, oldest first; returns the ids taken. Each is taken as by `claim_launch` with its
    pipeline's limit from `limits`: only while fewer than that many runs of its pipeline are
    active, counted and taken while holding the locks of all the pipelines involved."""
    if not runs:
        return set()
    pipelines = sorted({pipeline for _, pipeline in runs})
    with store.writing() as session:
        _lock_pipelines(session, pipelines)
        active = _active_counts(session, pipelines)
        chosen: list[str] = []
        for run_id, pipeline in runs:
            if active.get(pipeline, 0) < limits[pipeline]:
                chosen.append(run_id)
                active[pipeline] = active.get(pipeline, 0) + 1
        taken: set[str] = set()
        moment = now()
        for chunk in _chunks(chosen, _ROWS_PER_STATEMENT):
            statement = (
                update(RunRow)
                .where(
                    RunRow.run_id.in_(chunk),
                    RunRow.status == RunStatus.QUEUED.value,
                    RunRow.launched_at.is_(None),
                )
                .values(launched_at=moment)
                .returning(RunRow.run_id)
                .execution_options(synchronize_session=False)
            )
            taken.update(session.scalars(statement))
        return taken


def _lock_pipeline(session: Session, pipeline: str) -> None:
    """Serialise claims of one pipeline until the transaction ends.

    SQLite's write transactions (BEGIN IMMEDIATE) are serialised already. PostgreSQL takes a
    transaction-scoped advisory lock on the pipeline's name: no row to create or migrate, and
    a claim that waits for it then counts what the other claim committed.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(pipeline))))


def _lock_pipelines(session: Session, pipelines: Sequence[str]) -> None:
    """`_lock_pipeline` for several pipelines, the locks taken in ascending key order (the
    order every claimer uses, so two never wait for each other in a cycle)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    keys = session.scalars(
        text("SELECT DISTINCT hashtext(name) FROM unnest(CAST(:names AS text[])) AS name"),
        {"names": list(pipelines)},
    )
    for key in sorted(keys):
        session.execute(select(func.pg_advisory_xact_lock(key)))


def active_condition() -> ColumnElement[bool]:
    """Taken by a runner and not finished: running, or queued and launched."""
    return or_(
        RunRow.status == RunStatus.RUNNING.value,
        (RunRow.status == RunStatus.QUEUED.value) & RunRow.launched_at.is_not(None),
    )


def _active_count(session: Session, pipeline: str) -> int:
    query = select(func.count()).where(RunRow.pipeline == pipeline, active_condition())
    return int(session.scalar(query) or 0)


def _active_counts(session: Session, pipelines: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for chunk in _chunks(pipelines, _ROWS_PER_STATEMENT):
        query = (
            select(RunRow.pipeline, func.count())
            .where(RunRow.pipeline.in_(chunk), active_condition())
            .group_by(RunRow.pipeline)
        )
        counts.update({pipeline: int(count) for pipeline, count in session.execute(query)})
    return counts


def queued_runs(store: RunStore, limit: int = 100) -> list[RunRecord]:
    """Queued runs no runner has taken yet, oldest first (fire time, then creation)."""
    query = (
        select(RunRow)
        .where(RunRow.status == RunStatus.QUEUED.value, RunRow.launched_at.is_(None))
        .order_by(RunRow.scheduled_for.is_(None), RunRow.scheduled_for, RunRow.created_at)
        .limit(limit)
    )
    with store.reading() as session:
        return [store.record(row) for row in session.scalars(query)]


def active_counts(store: RunStore) -> dict[str, int]:
    """Pipeline -> runs taken by a runner and not finished (queued-and-launched or running)."""
    query = (
        select(RunRow.pipeline, func.count()).where(active_condition()).group_by(RunRow.pipeline)
    )
    with store.reading() as session:
        return {pipeline: int(count) for pipeline, count in session.execute(query)}


@dataclass(frozen=True, slots=True)
class Beat:
    """What a runner learns from its heartbeat."""

    cancel_requested: bool
    status: RunStatus | None
    """The run's stored status; None when the run is gone from the store."""

    @property
    def ended_elsewhere(self) -> bool:
        """Someone else ended the run (a scheduler marked it crashed while this runner was
        paused): the runner must stop without further side effects."""
        return self.status is None or self.status.is_terminal


def heartbeat(store: RunStore, run_id: str, at: datetime | None = None) -> Beat:
    """Record that the run's runner is alive, and tell it whether someone asked the run to stop
    or already ended it.

    Only an active run is touched, so a heartbeat never revives a run marked crashed.
    """
    beat = (
        update(RunRow)
        .where(RunRow.run_id == run_id, RunRow.status.in_(_ACTIVE))
        .values(heartbeat_at=at or now())
    )
    with store.writing() as session:
        session.execute(beat)
        row = session.execute(
            select(RunRow.status, RunRow.cancel_requested_at).where(RunRow.run_id == run_id)
        ).first()
    if row is None:
        return Beat(cancel_requested=False, status=None)
    return Beat(cancel_requested=row.cancel_requested_at is not None, status=RunStatus(row.status))


def request_cancel(store: RunStore, run_id: str, by: str, at: datetime | None = None) -> RunRecord:
    """Ask a run to stop, from any process; `run_id` may be a unique prefix (like `get_run`).

    A queued run that no runner has taken yet is cancelled at once (it and its blocks), so it is
    never launched. A run with a runner (running, or taken and starting) gets the request
    recorded, and its runner stops it on its next heartbeat. The first request wins: asking
    again returns the run as it is. `by` says who asked (`user@host`, `api`, `server`).
    Raises `RunNotFound`, `AmbiguousRunId`, or `RunConflict` for a run that already ended.
    """
    at = at or now()
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at.isoformat()}: pass a timezone-aware time")
    by = by.strip()[:REQUESTER_LENGTH]
    if not by:
        raise ValueError("say who asks to cancel the run (`by`)")
    with store.writing() as session:
        # Locked (FOR UPDATE; BEGIN IMMEDIATE on SQLite) so no runner or scheduler can take,
        # start or finish the run between the check of its status and the change.
        run = session.get(RunRow, run_id, with_for_update=True)
        if run is None:
            match = prefix_match(session, run_id)
            run = session.get(RunRow, match, with_for_update=True) if match else None
        if run is None:
            raise RunNotFound(
                f"no run `{run_id}` in the run store at {store.masked_url}",
                "`blockbook runs` lists run ids",
            )
        status = RunStatus(run.status)
        if status.is_terminal:
            raise RunConflict(
                f"run {run.run_id} already ended: {status}",
                f"nothing is left to cancel; `blockbook show {run.run_id}` tells how it ended",
            )
        if run.cancel_requested_at is not None:
            return store.record(run)
        run.cancel_requested_at = at
        run.cancel_requested_by = by
        if status is RunStatus.QUEUED and run.launched_at is None:
            run.status = RunStatus.CANCELLED.value
            run.ended_at = at
            run.error = cancel_reason(by, at)
            for block in run.blocks:
                if not BlockStatus(block.status).is_terminal:
                    block.status = BlockStatus.CANCELLED.value
                    block.error = "cancelled"
                    block.ended_at = at
        return store.record(run)


def orphans(store: RunStore, at: datetime, timeout: timedelta) -> list[RunRecord]:
    """Runs whose runner stopped beating: running without a heartbeat for `timeout`, or taken
    by a runner that never started them."""
    cutoff = at - timeout
    query = select(RunRow).where(
        or_(
            (RunRow.status == RunStatus.RUNNING.value)
            & (func.coalesce(RunRow.heartbeat_at, RunRow.started_at, RunRow.created_at) < cutoff),
            (RunRow.status == RunStatus.QUEUED.value) & (RunRow.launched_at < cutoff),
        )
    )
    with store.reading() as session:
        return [store.record(row) for row in session.scalars(query)]


def mark_crashed(store: RunStore, run_id: str, reason: str, at: datetime | None = None) -> bool:
    """The run and its unfinished blocks end: run `crashed`, blocks `failed` with `reason`."""
    at = at or now()
    with store.writing() as session:
        run = session.get(RunRow, run_id, with_for_update=True)
        if run is None or run.status not in _ACTIVE:
            return False
        run.status = RunStatus.CRASHED.value
        run.ended_at = at
        run.error = reason
        blocks = session.scalars(select(BlockRunRow).where(BlockRunRow.run_id == run_id))
        for block in blocks:
            if not BlockStatus(block.status).is_terminal:
                block.status = BlockStatus.FAILED.value
                block.error = reason
                block.ended_at = at
        return True


def adopt(
    store: RunStore,
    run_id: str,
    *,
    params: dict[str, Any],
    run_dir: str,
    blocks: list[tuple[str, str]],
) -> RunRecord:
    """Fill in a queued run (made by a scheduler or a trigger) that this process, its runner,
    is about to start.

    Raises `RunConflict` when the run is no longer queued: cancelled (`request_cancel`) or
    marked crashed between the runner's look at it and now, so the runner says why it stops.
    """
    with store.writing() as session:
        run = session.get(RunRow, run_id, with_for_update=True)
        if run is None:
            raise RunNotFound(f"no run `{run_id}` to start", "queue it first (`enqueue`)")
        if run.status != RunStatus.QUEUED.value:
            raise RunConflict(
                f"run {run_id} is {run.status}, not queued: it is not started",
                f"`blockbook show {run_id}` tells why it ended",
            )
        run.params = params
        run.sealed_params = None  # opened by the runner: the store need not keep them
        run.run_dir = run_dir
        run.launched_at = run.launched_at or now()
        set_runner(run, RunnerProcess.current())
        if not run.blocks:
            run.blocks = pending_blocks(blocks)
    record = store.get_run(run_id)
    assert record is not None
    return record


def schedule_states(store: RunStore, pipeline: str | None = None) -> dict[str, ScheduleState]:
    """Each schedule's state (or only `pipeline`'s); `last_fired` is the newest fire time that
    has a run, so the scheduler need not write anything but the run when a schedule fires."""
    fired_query = select(RunRow.pipeline, func.max(RunRow.scheduled_for).label("newest")).where(
        RunRow.scheduled_for.is_not(None)
    )
    if pipeline is not None:
        fired_query = fired_query.where(RunRow.pipeline == pipeline)
    fired = fired_query.group_by(RunRow.pipeline).subquery()
    query = select(ScheduleRow, fired.c.newest).outerjoin(
        fired, fired.c.pipeline == ScheduleRow.pipeline
    )
    if pipeline is not None:
        query = query.where(ScheduleRow.pipeline == pipeline)
    with store.reading() as session:
        states: dict[str, ScheduleState] = {}
        for row, newest in session.execute(query):
            candidates = [t for t in (row.last_fired, _aware(newest)) if t is not None]
            last = max(candidates) if candidates else None
            states[row.pipeline] = ScheduleState(
                row.pipeline, row.fingerprint, row.first_seen_at, last
            )
        return states


def _aware(value: datetime | None) -> datetime | None:
    # An aggregate bypasses the column type: SQLite hands back a naive (UTC) datetime or text.
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def adopt_schedule(
    store: RunStore, pipeline: str, fingerprint: str, moment: datetime
) -> ScheduleState:
    """The schedule's state with these settings, recording `moment` as first seen when the
    settings are new. Every scheduler sharing the database gets the same state back (the first
    writer wins), so `every` schedules fire at the same instants whichever scheduler fires them.
    """
    try:
        with store.writing() as session:
            row = session.get(ScheduleRow, pipeline, with_for_update=True)
            if row is None:
                session.add(
                    ScheduleRow(
                        pipeline=pipeline,
                        fingerprint=fingerprint,
                        first_seen_at=moment,
                        last_fired=None,
                    )
                )
            elif row.fingerprint != fingerprint:
                row.fingerprint = fingerprint
                row.first_seen_at = moment
                row.last_fired = None
    except IntegrityError:
        pass  # another scheduler inserted it first: read what it wrote
    state = schedule_states(store, pipeline).get(pipeline)
    if state is None:
        raise RuntimeError(f"schedule of {pipeline} vanished while it was being recorded")
    return state


def forget_schedule(store: RunStore, pipeline: str) -> None:
    with store.writing() as session:
        row = session.get(ScheduleRow, pipeline)
        if row is not None:
            session.delete(row)
