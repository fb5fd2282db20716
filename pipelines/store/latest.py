"""The latest status of each block of a pipeline, for a badge on its cell: from the newest run
that has the block, or from running it by hand in a notebook, whichever ended (or started)
later.

A block run by hand leaves its state file in the project's dev area (`rundir.layout.dev_dir`,
written by the `%%block` magic with `rundir.state.write_state`); runs leave theirs in the store.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.rundir.state import BlockState, read_state
from pipelines.status import BlockStatus

if TYPE_CHECKING:
    from pipelines.store.records import BlockRunRecord, RunRecord
    from pipelines.store.run_store import RunStore

RUNS_PAGE = 20
MOST_RUNS = 200
"""Runs looked through, newest first, for blocks the newest runs lack (a block added since)."""
_LONG_AGO = datetime.min.replace(tzinfo=UTC)


class StatusSource(enum.StrEnum):
    RUN = "run"
    INTERACTIVE = "interactive"
    """Run by hand in a notebook (the dev area)."""


@dataclass(frozen=True, slots=True)
class LatestBlock:
    """How a block went the last time it was executed, and where."""

    block: str
    status: BlockStatus
    source: StatusSource
    as_of: datetime
    """When this was last true: its end, else its start (else, in a run, the run's)."""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None
    run_id: str | None = None
    """The run it comes from; None when it was run by hand."""


@dataclass(frozen=True, slots=True)
class LatestBlocks:
    pipeline: str
    blocks: Mapping[str, LatestBlock]
    """Block name -> its latest status, in the order asked for; blocks never executed are left
    out."""


def latest_blocks(
    store: RunStore, pipeline: str, blocks: Iterable[str], dev_area: Path
) -> LatestBlocks:
    """The latest status of each of `blocks` of `pipeline` (its name, as its runs record it)."""
    names = list(blocks)
    latest = _from_runs(store, pipeline, set(names))
    for name in names:
        by_hand = _from_dev_area(dev_area, name)
        if by_hand is not None and (name not in latest or by_hand.as_of > latest[name].as_of):
            latest[name] = by_hand
    return LatestBlocks(pipeline, {name: latest[name] for name in names if name in latest})


def _from_runs(store: RunStore, pipeline: str, wanted: set[str]) -> dict[str, LatestBlock]:
    """Each wanted block as the newest run that has it recorded it (a page of runs at a time,
    most runs have every block, so the first page mostly does)."""
    found: dict[str, LatestBlock] = {}
    before: str | None = None
    looked = 0
    while wanted - found.keys() and looked < MOST_RUNS:
        page = store.list_runs(pipeline, limit=RUNS_PAGE, before=before)
        for record in page:
            for block in record.blocks:
                if block.block in wanted and block.block not in found:
                    found[block.block] = _of_run(record, block)
        looked += len(page)
        if len(page) < RUNS_PAGE:
            break
        before = page[-1].run_id
    return found


def _of_run(record: RunRecord, block: BlockRunRecord) -> LatestBlock:
    return LatestBlock(
        block=block.block,
        status=block.status,
        source=StatusSource.RUN,
        # A block still pending has no times of its own: it is as new as its run.
        as_of=block.ended_at or block.started_at or record.started_at or record.created_at,
        started_at=block.started_at,
        ended_at=block.ended_at,
        error=block.error,
        run_id=record.run_id,
    )


def _from_dev_area(dev_area: Path, block: str) -> LatestBlock | None:
    state = _read(dev_area, block)
    if state is None:
        return None
    return LatestBlock(
        block=block,
        status=state.status,
        source=StatusSource.INTERACTIVE,
        as_of=state.ended_at or state.started_at or _LONG_AGO,
        started_at=state.started_at,
        ended_at=state.ended_at,
        error=state.error,
    )


def _read(dev_area: Path, block: str) -> BlockState | None:
    try:
        return read_state(dev_area, block)
    except (OSError, ValueError, KeyError, TypeError):
        # Not a state file this version can read (edited, or from another version): no
        # status to show, which is no reason to fail the caller.
        return None
