"""The JSON forms of graphs, runs and blocks: one shape each, for `--format json`, the REST
server and `%pipeline`. Keys are stable; new keys may be added, none removed or renamed."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.assembly.blocks import Block
from pipelines.assembly.code_hash import block_code_hash
from pipelines.assembly.config import ScheduleConfig
from pipelines.assembly.pipeline import Pipeline
from pipelines.assembly.templates import Template
from pipelines.params import json_params, masked
from pipelines.rundir.fanout import count_children, parent_of
from pipelines.rundir.layout import executed_notebook
from pipelines.rundir.state import seconds_between

if TYPE_CHECKING:
    from pipelines.store.latest import LatestBlock, LatestBlocks
    from pipelines.store.records import BlockRunRecord, RunRecord


def graph_json(pipeline: Pipeline) -> dict[str, Any]:
    """The stable machine interface of `blockbook graph --format json`."""
    return {
        "pipeline": pipeline.name,
        "blocks": [_block_json(pipeline, block) for block in pipeline.blocks.values()],
        "order": list(pipeline.order),
        "problems": [problem.to_json() for problem in pipeline.problems],
    }


def _block_json(pipeline: Pipeline, block: Block) -> dict[str, Any]:
    return {
        "name": block.name,
        "notebook": block.notebook,
        "cell": block.cell,
        "cell_id": block.cell_id,
        "kind": str(block.header.kind),
        "upstream": list(pipeline.upstream.get(block.name, ())),
        "outputs": list(block.outputs),
        "inputs": list(block.inputs),
        "sources": dict(sorted(pipeline.sources.get(block.name, {}).items())),
        "stored_outputs": list(pipeline.stored_outputs(block.name)),
        "tests": list(block.analysis.tests),
        # A mapped block: the upstream output whose items it runs once each for; else None.
        "map": block.header.map,
    }


def run_json(record: RunRecord, *, with_blocks: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "run_id": record.run_id,
        "pipeline": record.pipeline,
        "pipeline_path": record.pipeline_path,
        "status": str(record.status),
        "trigger": str(record.trigger),
        "params": record.params,
        "created_at": _iso(record.created_at),
        "started_at": _iso(record.started_at),
        "ended_at": _iso(record.ended_at),
        "resumed_from": record.resumed_from,
        "scheduled_for": _iso(record.scheduled_for),
        "attempt": record.attempt,
        "error": record.error,
        "cancel_requested_at": _iso(record.cancel_requested_at),
        "cancel_requested_by": record.cancel_requested_by,
        "run_dir": record.run_dir,
        "duration": seconds_between(record.started_at, record.ended_at),
    }
    if with_blocks:
        data["blocks"] = [block_run_json(record, block) for block in record.blocks]
    return data


def block_run_json(record: RunRecord, block: BlockRunRecord) -> dict[str, Any]:
    """One block of a run: an entry of `run_json`'s blocks, and of a pipeline's `last_blocks`."""
    return {
        "name": block.block,
        "status": str(block.status),
        "attempts": block.attempts,
        "error": block.error,
        "notebook": str(executed_notebook(Path(record.run_dir), block.notebook)),
        "started_at": _iso(block.started_at),
        "ended_at": _iso(block.ended_at),
        "duration": seconds_between(block.started_at, block.ended_at),
        "reused_from": block.reused_from,
        # Why the block ran (what changed) or was cached; "" for runs that didn't decide.
        "cache_note": block.cache_note,
        "tests": block.attempt_records[-1].tests if block.attempt_records else [],
        "outputs": block.attempt_records[-1].outputs if block.attempt_records else [],
        # How its stored frames differ from their baseline: warnings, or why it failed.
        "schema_drift": list(block.schema_drift),
        # A fan-out child (`per_day[3]`): its mapped block and its item's position; else null.
        **_child_json(block.block),
    }


def _child_json(name: str) -> dict[str, Any]:
    found = parent_of(name)
    parent, index = found if found is not None else (None, None)
    return {"child_of": parent, "item_index": index}


def pipeline_json(
    pipeline: Pipeline, last_run: RunRecord | None, *, with_graph: bool
) -> dict[str, Any]:
    """A pipeline and its newest run: a line of a listing, or (`with_graph`) the whole graph of
    `graph_json` with how each block went in that run (`last_blocks`, by block name)."""
    data: dict[str, Any] = {
        "pipeline": pipeline.name,
        "folder": str(pipeline.folder),
        "ok": pipeline.ok,
        "errors": len(pipeline.errors),
        "warnings": len(pipeline.warnings),
        "block_count": len(pipeline.blocks),
        # pipeline.toml `[params]` defaults (a run form starts from them), secrets masked.
        "params": json_params(masked(pipeline.config.params)),
        "schedule": _schedule_config_json(pipeline.config.schedule),
        "last_run": None if last_run is None else run_json(last_run, with_blocks=False),
    }
    if with_graph:
        data.update(graph_json(pipeline))
        data["last_blocks"] = _blocks_by_name(last_run) if last_run is not None else {}
        data["stale"] = stale_blocks(pipeline, last_run) if last_run is not None else []
        # Mapped block -> how many children that run gave it: the graph shows `per_day ×5`.
        data["map_counts"] = (
            count_children(block.block for block in last_run.blocks) if last_run else {}
        )
    return data


def stale_blocks(pipeline: Pipeline, last_run: RunRecord) -> list[str]:
    """The blocks whose code changed since `last_run` recorded it (in its fingerprints), in
    the global order: a run would run them again. A block the run recorded no code for is
    not known to be stale."""
    stale = []
    for name in pipeline.order:
        recorded = last_run.block(name)
        code = (recorded.fingerprint or {}).get("code") if recorded is not None else None
        if code is not None and code != block_code_hash(pipeline.blocks[name].source):
            stale.append(str(name))
    return stale


def _blocks_by_name(record: RunRecord) -> dict[str, dict[str, Any]]:
    return {block.block: block_run_json(record, block) for block in record.blocks}


def latest_json(latest: LatestBlocks) -> dict[str, Any]:
    """Each block's latest status (`Project.latest`), for a badge on its cell."""
    return {
        "pipeline": latest.pipeline,
        "blocks": {name: _latest_block_json(block) for name, block in latest.blocks.items()},
    }


def _latest_block_json(block: LatestBlock) -> dict[str, Any]:
    return {
        "status": str(block.status),
        "duration": seconds_between(block.started_at, block.ended_at),
        "started_at": _iso(block.started_at),
        "ended_at": _iso(block.ended_at),
        "error": block.error,
        "source": str(block.source),
        "run_id": block.run_id,
    }


def schedule_json(
    pipeline: str, config: ScheduleConfig, next_fire: datetime, last_fired: datetime | None
) -> dict[str, Any]:
    """A pipeline's `[schedule]` and when it fires next (`Project.schedules`)."""
    return {
        "pipeline": pipeline,
        **(_schedule_config_json(config) or {}),
        "next_fire": _iso(next_fire),
        "last_fired": _iso(last_fired),
    }


def _schedule_config_json(config: ScheduleConfig | None) -> dict[str, Any] | None:
    if config is None:
        return None
    return {
        "cron": config.cron,
        "every": config.every,
        "timezone": config.timezone,
        "catchup": config.catchup,
        "max_active_runs": config.max_active_runs,
        # pipeline.toml may name credentials (`${TOKEN}` expanded or not): never shown.
        "params": json_params(masked(config.params)),
    }


def template_json(template: Template) -> dict[str, Any]:
    """A block template of `%block_new`; `text` is the cell it inserts (default block name)."""
    return {
        "key": template.key,
        "kind": str(template.kind),
        "source": template.source,
        "description": template.description,
        "default_name": template.default_name,
        "parameters": list(template.parameters),
        "text": template.render(),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
