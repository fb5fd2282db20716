"""The JSON forms of graphs, runs and blocks: one shape each, for `--format json`, the REST
server and `%pipeline`. Keys are stable; new keys may be added, none removed or renamed."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from pipelines.assembly.blocks import Block
from pipelines.assembly.pipeline import Pipeline
from pipelines.rundir.layout import executed_notebook
from pipelines.store.records import RunRecord


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
    }
    if with_blocks:
        data["blocks"] = [
            {
                "name": block.block,
                "status": str(block.status),
                "attempts": block.attempts,
                "error": block.error,
                "notebook": str(executed_notebook(Path(record.run_dir), block.notebook)),
                "started_at": _iso(block.started_at),
                "ended_at": _iso(block.ended_at),
                "reused_from": block.reused_from,
                "tests": block.attempt_records[-1].tests if block.attempt_records else [],
                "outputs": block.attempt_records[-1].outputs if block.attempt_records else [],
            }
            for block in record.blocks
        ]
    return data


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
