"""GET runs/{run_id} on a real Jupyter server: a block whose stored frame changed a column's
dtype since its last success carries the drift in its record (answers checked against the
OpenAPI document)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pipelines.assembly.pipeline import assemble
from pipelines.runs.runner import Runner, RunOptions
from pipelines.status import RunStatus
from pipelines.store.run_store import RunStore
from tests.server.conftest import Api, write_pipeline

LOAD = """%%block load
import pandas as pd
trips = pd.DataFrame({"km": [1, 2, 3]}).astype({"km": km_type})
"""
REPORT = "%%block report\nlongest = trips.km.max()"


def two_runs(root: Path) -> tuple[str, str]:
    folder = root / "trips"
    with RunStore.open(root) as store:
        runner = Runner(root, store)
        first = runner.run(assemble(folder))
        second = runner.run(assemble(folder), RunOptions(params={"km_type": "float64"}))
    assert first.status is RunStatus.SUCCESS, first.blocks
    assert second.status is RunStatus.SUCCESS, second.blocks
    return first.run_id, second.run_id


async def test_a_run_s_blocks_carry_their_schema_drift(api: Api, root: Path) -> None:
    write_pipeline(root, "trips", {"etl.ipynb": [LOAD, REPORT]}, '[params]\nkm_type = "int64"\n')
    first, second = await asyncio.to_thread(two_runs, root)

    before = await api.get("runs/{run_id}", run_id=first)
    after = await api.get("runs/{run_id}", run_id=second)

    assert before.code == 200, before.body
    assert after.code == 200, after.body
    assert all(block["schema_drift"] == [] for block in before.body["blocks"])
    blocks = {block["name"]: block for block in after.body["blocks"]}
    assert blocks["load"]["status"] == "success"
    assert blocks["load"]["schema_drift"] == [
        {
            "output": "trips",
            "kind": "retyped",
            "column": "km",
            "before": "int64",
            "after": "float64",
            "baseline": f"run {first}",
            "message": "`trips`: column `km` changed type int64 -> float64",
        }
    ]
    assert blocks["report"]["schema_drift"] == []
