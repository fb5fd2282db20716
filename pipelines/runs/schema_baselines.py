"""Before a run: what each block's stored frames will be compared with (schema drift).

The runner works it out once, from the run store or the block's `--schema-file`, and writes it
into the plan (`BlockPlan.schema`), so a kernel compares the manifests it just wrote without a
database driver or another run's folder (`pipelines.rundir.schema_drift`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from pipelines.assembly.header import BlockName, SchemaPolicy
from pipelines.assembly.pipeline import Pipeline
from pipelines.rundir.plan import RunPlan
from pipelines.rundir.schema_drift import Baseline, OutputSchema, read_contract
from pipelines.store.baselines import last_outputs
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
        found[name] = Baseline(f"schema file {shown}", read_contract(path, name), fail)
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
