"""What each block's stored frames are compared with (schema drift), and pinning a contract.

The runner works it out once, from the run store or the block's `--schema-file`, and writes it
into the plan (`BlockPlan.schema`), so a kernel compares the manifests it just wrote without a
database driver or another run's folder (`pipelines.rundir.schema_drift`). `pin_schema` writes
the contract a `--schema-file` names (`blockbook schema pin`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from pipelines.assembly.header import BlockName, SchemaPolicy
from pipelines.assembly.pipeline import Pipeline
from pipelines.errors import InvalidInputError, NotFoundError
from pipelines.rundir.plan import RunPlan
from pipelines.rundir.schema_drift import (
    Baseline,
    OutputSchema,
    contract,
    contract_text,
    read_contract,
)
from pipelines.rundir.state import write_bytes_atomic
from pipelines.status import BlockStatus
from pipelines.store.baselines import last_outputs
from pipelines.store.records import RunRecord
from pipelines.store.retry import retrying
from pipelines.store.run_store import RunStore


def schema_file_path(pipeline: Pipeline, block: str) -> Path | None:
    """Where the block's `--schema-file` is: relative to its notebook's folder."""
    found = pipeline.blocks[BlockName(block)]
    if found.header.schema_file is None:
        return None
    return (pipeline.folder / found.notebook).parent / found.header.schema_file


def baselines(pipeline: Pipeline, store: RunStore, blocks: Iterable[str]) -> dict[str, Baseline]:
    """The baseline of each of `blocks` that compares anything: its pinned contract (a
    `SchemaFileError` naming the block and file when that is missing or broken), else the frames
    its last success stored. Blocks with `--schema off` or no earlier success are left out."""
    checked = [
        name
        for name in blocks
        if pipeline.blocks[BlockName(name)].header.schema is not SchemaPolicy.OFF
    ]
    found: dict[str, Baseline] = {}
    from_runs: list[str] = []
    for name in checked:
        header = pipeline.blocks[BlockName(name)].header
        fail = header.schema is SchemaPolicy.FAIL
        path = schema_file_path(pipeline, name)
        if path is None:
            from_runs.append(name)
            continue
        shown = header.schema_file or str(path)
        pinned_outputs = read_contract(path, name)
        found[name] = Baseline(f"schema file {shown}", pinned_outputs, fail, pinned=True)
    if not from_runs:
        return found
    stored = retrying(
        lambda: last_outputs(store, pipeline.name, from_runs),
        f"read the last outputs of {pipeline.name}",
    )
    for name, last in stored.items():
        outputs = {
            str(manifest["name"]): schema
            for manifest in last.manifests
            if (schema := OutputSchema.of_manifest(manifest)) is not None
        }
        if outputs:
            fail = pipeline.blocks[BlockName(name)].header.schema is SchemaPolicy.FAIL
            found[name] = Baseline(f"run {last.run_id}", outputs, fail)
    return found


def with_baselines(plan: RunPlan, found: dict[str, Baseline]) -> RunPlan:
    """`plan` with each block's baseline written in."""
    blocks = {
        name: replace(block, schema=found[name].to_json()) if name in found else block
        for name, block in plan.blocks.items()
    }
    return replace(plan, blocks=blocks)


@dataclass(frozen=True, slots=True)
class PinnedSchema:
    path: Path
    """The schema file written."""
    header_path: str
    """What `--schema-file` says to read it: relative to the block's notebook's folder."""
    outputs: tuple[str, ...]


def pin_schema(
    store: RunStore,
    pipeline: Pipeline,
    record: RunRecord,
    block: str,
    outputs: tuple[str, ...] = (),
    path: Path | None = None,
) -> PinnedSchema:
    """Write the schema of `block`'s stored frames in run `record` (those named in `outputs`,
    or all) as a contract for `--schema-file`; default path: `schemas/BLOCK.json` beside the
    block's notebook. A block the run reused pins the frames of the run that stored them."""
    found = record.known_block(block)
    if not found.status.succeeded:
        raise InvalidInputError(
            f"block `{block}` did not succeed in run `{record.run_id}` ({found.status})",
            hint="pin the schema of a run in which it succeeded (`blockbook runs` lists them)",
        )
    origin = record
    if found.reused_from is not None:
        reused = store.get_run(found.reused_from)
        if reused is None or reused.block(block) is None:
            raise NotFoundError(
                f"run `{found.reused_from}`, whose outputs of `{block}` run `{record.run_id}` "
                "reused, is no longer in the run store",
                hint="pin the schema of a run that executed the block",
            )
        origin, found = reused, reused.known_block(block)
    succeeded = [a for a in found.attempt_records if a.status is BlockStatus.SUCCESS]
    manifests = succeeded[-1].outputs if succeeded else []
    frames = {
        str(manifest["name"]): schema
        for manifest in manifests
        if (schema := OutputSchema.of_manifest(manifest)) is not None
    }
    unknown = [name for name in outputs if name not in frames]
    if unknown or not frames:
        stored = ", ".join(sorted(frames)) or "none"
        raise InvalidInputError(
            f"block `{block}` stored no DataFrame "
            + (f"named {', '.join(f'`{n}`' for n in unknown)} " if unknown else "")
            + f"in run `{origin.run_id}` (its stored frames: {stored})",
            hint="only frames another block reads (or `--out` names) are stored and pinned",
        )
    chosen = {name: frames[name] for name in outputs} if outputs else frames
    if BlockName(block) not in pipeline.blocks:
        raise NotFoundError(
            f"pipeline `{pipeline.name}` has no block `{block}` any more",
            hint=f"its blocks: {', '.join(pipeline.order)}",
        )
    notebook_folder = (pipeline.folder / pipeline.blocks[BlockName(block)].notebook).parent
    target = path if path is not None else notebook_folder / "schemas" / f"{block}.json"
    write_bytes_atomic(target, contract_text(contract(block, origin.run_id, chosen)))
    relative = os.path.relpath(target.resolve(), notebook_folder.resolve())
    return PinnedSchema(target, relative, tuple(chosen))
