"""The run store's schema: the SQLAlchemy tables of runs, block runs, attempts and schedules.

Alembic revisions (`pipelines/store/migrations/`) are generated from `Base.metadata`: after
changing a table here, add one as `pipelines/store/migrations/env.py` explains.
Statuses and triggers are stored as their strings: adding a status later needs no migration.
Timestamps go in and come out timezone-aware in UTC whatever the backend keeps.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

_STATUS_LENGTH = 32
_ID_LENGTH = 64
REQUESTER_LENGTH = 255
"""Longest `cancel_requested_by` kept (PostgreSQL refuses longer text; SQLite would keep it)."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    SQLite keeps no zone at all, so values are converted to UTC before they are written (a local
    wall time would otherwise be stored as if it were UTC) and tagged UTC when read. PostgreSQL
    returns them in the session's zone, which is converted back too.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: the run store needs aware times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    # Named constraints let later migrations drop or alter them, SQLite batch mode included.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {  # noqa: RUF012 (read by SQLAlchemy at class creation)
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[dict[str, Any]]: JSON,
    }


class RunRow(Base):
    __tablename__ = "runs"
    # Exactly one run per (pipeline, fire time, crash retry): what makes two schedulers on one
    # database, or a restarted one, unable to start a fire time twice. NULLs (runs that no
    # schedule fired) never collide.
    __table_args__ = (UniqueConstraint("pipeline", "scheduled_for", "attempt"),)

    run_id: Mapped[str] = mapped_column(String(_ID_LENGTH), primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(255), index=True)
    pipeline_path: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(_STATUS_LENGTH))
    trigger: Mapped[str] = mapped_column(String(_STATUS_LENGTH))
    params: Mapped[dict[str, Any]]
    sealed_params: Mapped[str | None] = mapped_column(Text)
    """The secret parameters of a queued run, encrypted (`store/sealed.py`); emptied when its
    runner adopts it."""
    run_dir: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(index=True)
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    resumed_from: Mapped[str | None] = mapped_column(String(_ID_LENGTH))
    scheduled_for: Mapped[datetime | None]
    attempt: Mapped[int] = mapped_column(default=0, server_default="0")
    heartbeat_at: Mapped[datetime | None]
    launched_at: Mapped[datetime | None]
    """When a scheduler handed the queued run to a runner process (claimed, so only once)."""
    cancel_requested_at: Mapped[datetime | None]
    """When someone first asked the run to stop; its runner sees it on its next heartbeat."""
    cancel_requested_by: Mapped[str | None] = mapped_column(String(REQUESTER_LENGTH))
    """Who asked: `user@host` from the command line, `api`, `server`."""
    runner_pid: Mapped[int | None]
    """The process that runs (or will run) the run, on `runner_host`: a scheduler that finds it
    gone on its own host marks the run crashed at once instead of waiting for heartbeats."""
    runner_host: Mapped[str | None] = mapped_column(String(255))
    runner_started_at: Mapped[datetime | None]
    """The runner process's start time, so a pid the system has given to another process since
    is not mistaken for the runner."""
    audit: Mapped[dict[str, Any] | None]
    """Who started the run and with what code: user, host, trigger, each notebook's code hash
    and Blockbook's version (the audit trail `show --format json` gives)."""

    blocks: Mapped[list[BlockRunRow]] = relationship(
        back_populates="run",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="BlockRunRow.position",
    )


class BlockRunRow(Base):
    __tablename__ = "block_runs"
    __table_args__ = (UniqueConstraint("run_id", "block"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"))
    block: Mapped[str] = mapped_column(String(255), index=True)
    notebook: Mapped[str] = mapped_column(Text)
    position: Mapped[int]
    status: Mapped[str] = mapped_column(String(_STATUS_LENGTH))
    attempts: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    reused_from: Mapped[str | None] = mapped_column(String(_ID_LENGTH))
    fingerprint: Mapped[dict[str, Any] | None]
    """What the block's result depends on (code, inputs' hashes, parameters read, settings),
    each part hashed: an unchanged fingerprint lets a later run reuse the outputs, and the
    parts that differ say why a block runs again."""
    schema_drift: Mapped[list[dict[str, Any]] | None]
    """How its stored frames differ from their baseline (`rundir.schema_drift.Drift.to_json`):
    warnings, or the error `--schema fail` failed it with; None when nothing drifted."""

    run: Mapped[RunRow] = relationship(back_populates="blocks")
    attempt_rows: Mapped[list[AttemptRow]] = relationship(
        back_populates="block_run",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="AttemptRow.number",
    )


class AttemptRow(Base):
    __tablename__ = "block_attempts"
    __table_args__ = (UniqueConstraint("block_run_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    block_run_id: Mapped[int] = mapped_column(ForeignKey("block_runs.id", ondelete="CASCADE"))
    number: Mapped[int]
    status: Mapped[str] = mapped_column(String(_STATUS_LENGTH))
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    tests: Mapped[list[dict[str, Any]]]
    outputs: Mapped[list[dict[str, Any]]]

    block_run: Mapped[BlockRunRow] = relationship(back_populates="attempt_rows")


class ScheduleRow(Base):
    """What the scheduler knows of one pipeline's schedule across restarts."""

    __tablename__ = "schedules"

    pipeline: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(Text)
    """The schedule's settings; when they change the schedule starts over from that moment."""
    first_seen_at: Mapped[datetime]
    last_fired: Mapped[datetime | None]
