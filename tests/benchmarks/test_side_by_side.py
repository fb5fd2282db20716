"""The side-by-side benchmark's workload is a valid pipeline, written alike for every tool.

Only the workload builders are checked here, never timings (speed is measured in benchmarks/,
never asserted in tests).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from pipelines.assembly.pipeline import assemble

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "side_by_side.py"


@pytest.fixture(scope="module")
def side_by_side() -> ModuleType:
    spec = importlib.util.spec_from_file_location("side_by_side", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def test_blockbook_workload_is_ten_chained_blocks_over_three_notebooks(
    side_by_side: ModuleType, tmp_path: Path
) -> None:
    places = side_by_side.build_workload(tmp_path)
    pipeline = assemble(places["blockbook"])
    assert pipeline.ok, pipeline.errors
    assert pipeline.order == tuple(f"step{i}" for i in range(10))
    assert {block.notebook for block in pipeline.blocks.values()} == {
        "extract.ipynb",
        "transform.ipynb",
        "report.ipynb",
    }
    for index in range(1, 10):
        assert pipeline.upstream[f"step{index}"] == (f"step{index - 1}",)
    crossings = [
        index
        for index in range(1, 10)
        if pipeline.blocks[f"step{index}"].notebook != pipeline.blocks[f"step{index - 1}"].notebook
    ]
    assert len(crossings) == 2


def test_other_tools_get_the_same_ten_steps(side_by_side: ModuleType, tmp_path: Path) -> None:
    places = side_by_side.build_workload(tmp_path)
    tasks = yaml.safe_load((places["ploomber"] / "pipeline.yaml").read_text())["tasks"]
    assert [task["name"] for task in tasks] == [f"step{i}" for i in range(10)]
    steps = (places["papermill"] / "run_steps.sh").read_text().splitlines()
    assert sum(line.startswith("papermill ") for line in steps) == 10
    (tmp_path / "mage").mkdir()  # what `mage init` makes
    side_by_side.write_mage_pipeline(tmp_path / "mage")
    mage = yaml.safe_load((tmp_path / "mage/pipelines/side_by_side/metadata.yaml").read_text())
    assert [block["upstream_blocks"] for block in mage["blocks"]][:2] == [[], ["step0"]]
    floor = subprocess.run(
        [sys.executable, places["plain"]], capture_output=True, text=True, check=True
    )
    assert floor.stdout.strip() == "7"  # the last step groups the 1,000 rows by id % 7


def test_missing_tools_are_skipped_with_a_reason_and_preparing_starts_no_server(
    side_by_side: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAGE_PYTHON", raising=False)
    prepared = side_by_side.prepare_tools(side_by_side.build_workload(tmp_path))
    warm = prepared[side_by_side.WARM]
    assert isinstance(warm, side_by_side.Command)
    assert warm.argv[2].endswith("warm_trigger.py")
    assert warm.beside() is None, "the warm server starts with the rounds, not before"
    assert "MAGE_PYTHON" in prepared["Mage (mage run)"].reason
    assert isinstance(prepared[side_by_side.COLD], side_by_side.Command)
