"""The outputs each block stored in its last success: what schema drift is compared with.

A block run that a later run reused (`cached`, or carried over by `--resume`/`--only`) stored
nothing itself; its outputs are those of the run it reused (`reused_from`), which is where
their manifests are recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from pipelines.status import BLOCK_SUCCEEDED, BlockStatus
from pipelines.store.schema import BlockRunRow, RunRow

if TYPE_CHECKING:
    from pipelines.store.run_store import RunStore


@dataclass(frozen=True, slots=True)
class StoredOutputs:
    block: str
    run_id: str
    """The run that stored them (the newest success's own id, or the run it reused)."""
    manifests: tuple[dict[str, Any], ...]
    """As `OutputManifest.to_json`, from the successful attempt."""


def last_outputs(store: RunStore, pipeline: str, blocks: Iterable[str]) -> dict[str, StoredOutputs]:
    """Per block of `blocks`: the outputs its newest successful (or cached, or reused) block run
    in `pipeline` has. Blocks that never succeeded, or whose success recorded no attempt, are
    left out."""
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
            BlockRunRow.reused_from,
            newest_first.label("rank"),
        )
        .join(RunRow, BlockRunRow.run_id == RunRow.run_id)
        .where(
            RunRow.pipeline == pipeline,
            BlockRunRow.block.in_(names),
            BlockRunRow.status.in_([s.value for s in BLOCK_SUCCEEDED]),
        )
        .subquery()
    )
    with store.reading() as session:
        origins = {
            row.block: row.reused_from or row.run_id
            for row in session.execute(select(ranked).where(ranked.c.rank == 1))
        }
        if not origins:
            return {}
        rows = session.scalars(
            select(BlockRunRow)
            .where(
                BlockRunRow.run_id.in_(set(origins.values())), BlockRunRow.block.in_(list(origins))
            )
            .options(selectinload(BlockRunRow.attempt_rows))
        )
        found: dict[str, StoredOutputs] = {}
        for row in rows:
            if origins[row.block] != row.run_id:
                continue
            succeeded = [a for a in row.attempt_rows if a.status == BlockStatus.SUCCESS.value]
            if succeeded:
                manifests = tuple(dict(m) for m in succeeded[-1].outputs)
                found[row.block] = StoredOutputs(row.block, row.run_id, manifests)
        return found
