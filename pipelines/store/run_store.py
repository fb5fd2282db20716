"""The run store: runs, block runs and their attempts, in SQLite by default or PostgreSQL by URL.

Opening a store brings its database to the newest schema revision (`pipelines.store.migrate`),
so a project upgraded to a newer Blockbook never needs a manual step. The tables are defined in
`pipelines.store.schema`; reads return the frozen records of `pipelines.store.records`.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from pipelines.rundir.state import BlockState
from pipelines.status import BLOCK_SUCCEEDED, BlockStatus, RunStatus, Trigger
from pipelines.store.audit import RunAudit
from pipelines.store.db import (
    DATABASE_FILE,
    DATABASE_URL_ENV,
    READ_ONLY,
    RunConflict,
    RunNotFound,
    StoreError,
    StoreUnavailable,
    create_store_engine,
    mask_url,
    normalise_url,
    project_config,
    store_url,
    unusable,
)
from pipelines.store.migrate import MIGRATIONS, upgrade_schema
from pipelines.store.records import LastResult, RunId, RunRecord, run_record
from pipelines.store.rows import cancel_reason, pending_blocks, prefix_match, set_runner
from pipelines.store.runner_process import RunnerProcess
from pipelines.store.schema import AttemptRow, BlockRunRow, RunRow

__all__ = [
    "DATABASE_FILE",
    "DATABASE_URL_ENV",
    "MIGRATIONS",
    "RunId",
    "RunRecord",
    "RunStore",
    "StoreError",
    "mask_url",
    "new_run_id",
    "store_url",
]

log = logging.getLogger(__name__)


def new_run_id() -> RunId:
    """A run id that sorts by creation time: `20261125T001530Z-3f9a1c`."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return RunId(f"{stamp}-{secrets.token_hex(3)}")


_OPEN_RACE_PATIENCE_S = 30.0
"""How long a SQLite file being switched to WAL by another process may keep refusing us."""

_LOAD_BLOCKS = selectinload(RunRow.blocks).selectinload(BlockRunRow.attempt_rows)


# --- the store ----------------------------------------------------------------------------------


class RunStore:
    """One database of runs. Safe to share between threads; open one per process."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.masked_url = mask_url(self.url)
        self._engine = self._create_engine()
        # Reads begin a plain (deferred) SQLite transaction so they never queue behind a writer.
        reader = self._engine.execution_options(**{READ_ONLY: True})
        self._write_session = sessionmaker(self._engine, expire_on_commit=False)
        self._read_session = sessionmaker(reader, expire_on_commit=False)
        try:
            self._upgrade_schema()
        except BaseException:
            self._engine.dispose()
            raise

    @classmethod
    def open(cls, root: Path) -> RunStore:
        """The store of the project at `root` (see `store_url`)."""
        return cls(store_url(root, project_config(root)))

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunStore({self.masked_url!r})"

    # writes

    def create_run(
        self,
        run_id: RunId | str,
        pipeline: str,
        pipeline_path: str,
        trigger: Trigger,
        params: dict[str, Any],
        run_dir: str,
        blocks: Sequence[tuple[str, str]],
        resumed_from: str | None = None,
        audit: RunAudit | None = None,
    ) -> None:
        """Record a queued run whose blocks (name, notebook; in global order) are all pending,
        run by this process."""
        names = [name for name, _ in blocks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"blocks listed twice: {', '.join(duplicates)}")
        row = RunRow(
            run_id=run_id,
            pipeline=pipeline,
            pipeline_path=pipeline_path,
            status=RunStatus.QUEUED.value,
            trigger=Trigger(trigger).value,
            params=params,
            run_dir=run_dir,
            created_at=datetime.now(UTC),
            resumed_from=resumed_from,
            blocks=pending_blocks(blocks),
            audit=None if audit is None else audit.to_json(),
        )
        set_runner(row, RunnerProcess.current())
        try:
            with self._write() as session:
                if session.get(RunRow, run_id) is not None:
                    raise _run_exists(run_id)
                session.add(row)
        except IntegrityError as exc:
            # Another process created the same id between the check and the insert.
            raise _run_exists(run_id) from exc

    def record_audit(self, run_id: RunId | str, audit: RunAudit) -> None:
        """Keep who started the run and with which code (replacing what was kept before)."""
        with self._write() as session:
            self._locked_run(session, run_id).audit = audit.to_json()

    def start_run(self, run_id: RunId | str, at: datetime) -> None:
        """Mark the run running; the first start time is kept if it is started again."""
        _require_aware(at)
        with self._write() as session:
            run = self._locked_run(session, run_id)
            if RunStatus(run.status).is_terminal:
                log.debug("run %s is already %s; not starting it", run_id, run.status)
                return
            run.status = RunStatus.RUNNING.value
            run.started_at = run.started_at or at

    def finish_run(
        self, run_id: RunId | str, status: RunStatus, at: datetime, error: str | None = None
    ) -> None:
        """Give the run its terminal status, unless it already has one (which is kept)."""
        status = RunStatus(status)
        if not status.is_terminal:
            raise ValueError(f"finish_run needs a terminal status, not {status}")
        _require_aware(at)
        with self._write() as session:
            run = self._locked_run(session, run_id)
            if RunStatus(run.status).is_terminal:
                log.debug("run %s is already %s; ignoring %s", run_id, run.status, status)
                return
            if status is RunStatus.CANCELLED and run.cancel_requested_at is not None:
                # The runner only knows that it stopped; the store knows who asked, and when.
                reason = cancel_reason(run.cancel_requested_by or "?", run.cancel_requested_at)
                error = reason if error is None else f"{reason}; {error}"
            run.status = status.value
            run.ended_at = at
            run.error = error

    def record_block(self, run_id: RunId | str, state: BlockState) -> None:
        """Store a block's state snapshot and each of its attempts (matched by number).

        A block (or attempt) that reached a terminal status keeps it: a snapshot with another
        status is ignored, one with the same status may still fill in details. The notebook given
        to `create_run` is kept (a snapshot names the executed run notebook instead); a block that
        `create_run` did not list is added after the others.
        """
        with self._write() as session:
            self._locked_run(session, run_id)
            row = session.scalar(
                select(BlockRunRow)
                .where(BlockRunRow.run_id == run_id, BlockRunRow.block == state.block)
                .options(selectinload(BlockRunRow.attempt_rows))
            )
            if row is None:
                position = session.scalar(
                    select(func.coalesce(func.max(BlockRunRow.position), -1) + 1).where(
                        BlockRunRow.run_id == run_id
                    )
                )
                row = BlockRunRow(
                    run_id=run_id,
                    block=state.block,
                    notebook=state.notebook,
                    position=position or 0,
                    attempt_rows=[],
                )
                session.add(row)
            elif _frozen(row.status, state.status):
                log.debug("block %s of run %s is already %s", state.block, run_id, row.status)
                return
            row.status = BlockStatus(state.status).value
            row.started_at = state.started_at or row.started_at
            row.ended_at = state.ended_at
            row.error = state.error
            row.reused_from = state.reused_from
            row.schema_drift = [dict(drift) for drift in state.schema_drift] or None
            by_number = {attempt.number: attempt for attempt in row.attempt_rows}
            for attempt in state.attempts:
                stored = by_number.get(attempt.number)
                if stored is None:
                    stored = AttemptRow(number=attempt.number)
                    row.attempt_rows.append(stored)
                    by_number[attempt.number] = stored
                elif _frozen(stored.status, attempt.status):
                    continue
                stored.status = BlockStatus(attempt.status).value
                stored.started_at = attempt.started_at
                stored.ended_at = attempt.ended_at
                stored.error = attempt.error
                stored.traceback = attempt.traceback
                stored.tests = [test.to_json() for test in attempt.tests]
                stored.outputs = [dict(output) for output in attempt.outputs]
            row.attempts = len(by_number)

    def record_fingerprints(
        self, run_id: RunId | str, fingerprints: Mapping[str, dict[str, Any]]
    ) -> None:
        """Keep each block's fingerprint (what its result depends on, and why it ran or was
        cached) with its block run; blocks the run doesn't have are ignored."""
        if not fingerprints:
            return
        with self._write() as session:
            self._locked_run(session, run_id)
            rows = session.scalars(
                select(BlockRunRow).where(
                    BlockRunRow.run_id == run_id, BlockRunRow.block.in_(list(fingerprints))
                )
            )
            for row in rows:
                row.fingerprint = dict(fingerprints[row.block])

    # reads

    def last_results(self, pipeline: str, blocks: Iterable[str]) -> dict[str, LastResult]:
        """Per block of `blocks`: its newest block run in `pipeline` that succeeded (ran or was
        cached) and has a fingerprint. Blocks without one are left out."""
        names = sorted(set(blocks))
        if not names:
            return {}
        newest_first = func.row_number().over(
            partition_by=BlockRunRow.block,
            order_by=(RunRow.created_at.desc(), RunRow.run_id.desc()),
        )
        ranked = (
            select(
                BlockRunRow.block,
                RunRow.run_id,
                RunRow.run_dir,
                BlockRunRow.reused_from,
                BlockRunRow.fingerprint,
                newest_first.label("rank"),
            )
            .join(RunRow, BlockRunRow.run_id == RunRow.run_id)
            .where(
                RunRow.pipeline == pipeline,
                BlockRunRow.block.in_(names),
                BlockRunRow.status.in_([s.value for s in BLOCK_SUCCEEDED]),
                BlockRunRow.fingerprint.is_not(None),
            )
            .subquery()
        )
        query = select(ranked).where(ranked.c.rank == 1)
        with self._read() as session:
            return {
                row.block: LastResult(
                    block=row.block,
                    run_id=row.run_id,
                    run_dir=row.run_dir,
                    origin=row.reused_from or row.run_id,
                    fingerprint=dict(row.fingerprint),
                )
                for row in session.execute(query)
                # JSON null (not SQL NULL) is what an explicit None becomes in some dialects.
                if isinstance(row.fingerprint, dict)
            }

    def get_run(self, run_id: RunId | str) -> RunRecord | None:
        """The run with this id, or with the only id that starts with it (like git)."""
        if not run_id:
            return None
        with self._read() as session:
            row = session.scalar(
                select(RunRow).where(RunRow.run_id == run_id).options(_LOAD_BLOCKS)
            )
            if row is None:
                match = prefix_match(session, run_id)
                if match is None:
                    return None
                row = session.scalar(
                    select(RunRow).where(RunRow.run_id == match).options(_LOAD_BLOCKS)
                )
            return run_record(row) if row is not None else None

    def list_runs(
        self,
        pipeline: str | None = None,
        limit: int = 50,
        *,
        status: RunStatus | None = None,
        before: str | None = None,
    ) -> list[RunRecord]:
        """The newest runs first, of one pipeline or of all; `before` pages on (a run id: the
        runs created before it)."""
        query = select(RunRow).options(_LOAD_BLOCKS)
        if pipeline is not None:
            query = query.where(RunRow.pipeline == pipeline)
        if status is not None:
            query = query.where(RunRow.status == status.value)
        if before is not None:
            # Keyset paging in the listing's own order: (created_at, run_id) descending.
            anchor = select(RunRow.created_at).where(RunRow.run_id == before).scalar_subquery()
            query = query.where(
                or_(
                    RunRow.created_at < anchor,
                    and_(RunRow.created_at == anchor, RunRow.run_id < before),
                )
            )
        query = query.order_by(RunRow.created_at.desc(), RunRow.run_id.desc()).limit(limit)
        with self._read() as session:
            return [run_record(row) for row in session.scalars(query)]

    def last_success(self, pipeline: str, block: str) -> RunRecord | None:
        """The newest run of `pipeline` that executed `block` successfully.

        Block runs reused from an earlier run are passed over: their outputs live in the run
        they were reused from, which this finds instead.
        """
        query = (
            select(RunRow)
            .join(RunRow.blocks)
            .where(
                RunRow.pipeline == pipeline,
                BlockRunRow.block == block,
                BlockRunRow.status == BlockStatus.SUCCESS.value,
                BlockRunRow.reused_from.is_(None),
            )
            .order_by(RunRow.created_at.desc(), RunRow.run_id.desc())
            .limit(1)
            .options(_LOAD_BLOCKS)
        )
        with self._read() as session:
            row = session.scalar(query)
            return run_record(row) if row is not None else None

    # plumbing

    def _create_engine(self) -> Engine:
        return create_store_engine(self.url, self.masked_url)

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A write transaction, for the modules that extend the store (the run queue)."""
        with self._write() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    def record(self, row: RunRow) -> RunRecord:
        return run_record(row)

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._translate_errors(), self._write_session.begin() as session:
            yield session

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._translate_errors(), self._read_session() as session:
            yield session

    def _upgrade_schema(self) -> None:
        """Bring the schema to the newest revision. Processes opening a fresh SQLite file at once
        race to switch it to WAL, and the loser can get "database is locked" without SQLite's
        busy timeout being applied: that one error is retried, briefly. Anything else (a
        database that is down, a file that is no database) is reported at once."""
        delay, deadline = 0.05, time.monotonic() + _OPEN_RACE_PATIENCE_S
        while True:
            try:
                with self._translate_errors():
                    upgrade_schema(self._engine, self.masked_url)
                return
            except StoreUnavailable as exc:
                locked = "database is locked" in str(exc.__cause__)
                if not locked or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(1.0, delay * 2)

    @contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except (OperationalError, InterfaceError) as exc:
            raise unusable(exc, self.url, self.masked_url, self._engine.dialect.name) from exc

    def _locked_run(self, session: Session, run_id: str) -> RunRow:
        # FOR UPDATE serialises writers of one run on PostgreSQL; SQLite's BEGIN IMMEDIATE does.
        run = session.get(RunRow, run_id, with_for_update=True)
        if run is None:
            raise RunNotFound(
                f"no run `{run_id}` in the run store at {self.masked_url}",
                "create the run first (RunStore.create_run)",
            )
        return run


# --- helpers ------------------------------------------------------------------------------------


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at.isoformat()}: pass a timezone-aware time")


def _frozen(stored: str, incoming: BlockStatus) -> bool:
    return BlockStatus(stored).is_terminal and stored != BlockStatus(incoming).value


def _run_exists(run_id: str) -> StoreError:
    return RunConflict(f"run `{run_id}` already exists", "use a new id (`new_run_id`)")
