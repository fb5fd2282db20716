"""What a run will do, written down before it starts: the plan file.

The plan (`RUN_DIR/plan.json`) is how a kernel learns, for the block it is about to run, which
upstream blocks to wait for, where each input comes from and which outputs to store. Kept free
of heavy imports: every kernel of a run reads it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from pipelines.params import json_params
from pipelines.rundir.location import RunFolder, run_folder_at
from pipelines.rundir.state import write_json_atomic

PLAN_FILE = "plan.json"
RUN_CONTEXT_NAME = "__blockbook_run__"
SECRETS_ENV = "BLOCKBOOK_SECRETS"


@dataclass(frozen=True, slots=True)
class BlockPlan:
    name: str
    source_notebook: str
    run_notebook: str
    """Executed notebook holding the block, relative to the run folder."""
    upstream: tuple[str, ...]
    sources: dict[str, str]
    stored: dict[str, list[str]]
    """Output name -> the blocks that read it; these outputs are materialized."""
    run: bool = True
    """False for blocks this run reuses or leaves out (`--resume`, `--only`)."""
    schema: dict[str, Any] | None = None
    """What the block's stored frames are compared with (`schema_drift.Baseline.to_json`);
    None: nothing (`--schema off`, no earlier success, plans written before drift checks)."""
    map: str | None = None
    """A mapped block: the input whose items its children run for (`--map`)."""


@dataclass(frozen=True, slots=True)
class RunPlan:
    run_id: str
    pipeline: str
    pipeline_folder: str
    run_dir: str
    blocks: dict[str, BlockPlan]
    order: tuple[str, ...]
    params: dict[str, Any]
    """Parameters as shown to people: secrets masked."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["params"] = json_params(self.params)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunPlan:
        blocks = {
            name: BlockPlan(**{**block, "upstream": tuple(block["upstream"])})
            for name, block in data["blocks"].items()
        }
        return cls(**{**data, "blocks": blocks, "order": tuple(data["order"])})


def write_plan(plan: RunPlan) -> None:
    write_json_atomic(run_folder_at(plan.run_dir) / PLAN_FILE, plan.to_json())


def load_plan(run_dir: RunFolder) -> RunPlan:
    return RunPlan.from_json(json.loads((run_dir / PLAN_FILE).read_text(encoding="utf-8")))
