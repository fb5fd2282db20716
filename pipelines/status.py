"""The one status vocabulary for runs and blocks, shared by the store, the CLI and the REST API.

Terminal states never change once reached.
"""

from __future__ import annotations

import enum


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CRASHED = "crashed"

    @property
    def is_terminal(self) -> bool:
        return self in RUN_TERMINAL


class BlockStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    UPSTREAM_FAILED = "upstream_failed"
    SKIPPED = "skipped"
    RETRYING = "retrying"
    CANCELLED = "cancelled"
    CACHED = "cached"
    """Not run: nothing it depends on changed since its last success, whose outputs this run
    reuses (`reused_from` names that run)."""

    @property
    def is_terminal(self) -> bool:
        return self in BLOCK_TERMINAL

    @property
    def succeeded(self) -> bool:
        """Success or cached: the block's outputs are there for the blocks that read them."""
        return self in BLOCK_SUCCEEDED


RUN_TERMINAL = frozenset(
    {RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.CRASHED}
)
BLOCK_TERMINAL = frozenset(
    {
        BlockStatus.SUCCESS,
        BlockStatus.FAILED,
        BlockStatus.UPSTREAM_FAILED,
        BlockStatus.SKIPPED,
        BlockStatus.CANCELLED,
        BlockStatus.CACHED,
    }
)
BLOCK_SUCCEEDED = frozenset({BlockStatus.SUCCESS, BlockStatus.CACHED})


class Trigger(enum.StrEnum):
    MANUAL = "manual"
    SCHEDULE = "schedule"
    BACKFILL = "backfill"
    API = "api"
