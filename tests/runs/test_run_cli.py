"""`blockbook run`, `runs` and `show` as a user types them: the installed command, in a
subprocess, on a project in tmp_path with its default SQLite store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import nbformat
import pytest

from tests.helpers.notebooks import nb
from tests.helpers.runs import assert_no_kernels, blockbook, blockbook_json


@pytest.fixture
def cli_project(project: Path, pipeline) -> Path:
    pipeline(
        {
            "a.ipynb": nb("%%block first\nnumbers = [1, 2, 3]", "%%block second\nn = len(numbers)"),
            "b.ipynb": nb("%%block third\ntotal = sum(numbers)"),
        },
        name="good",
    )
    pipeline(
        {
            "a.ipynb": nb(
                "%%block fine\nx = 1",
                # `child` reads `broken_value`, so it depends on `broken`.
                "%%block broken\nraise KeyError('missing column')\nbroken_value = 1",
            ),
            "b.ipynb": nb("%%block child\ny = broken_value", "%%block uses_x\nz = x"),
        },
        name="bad",
    )
    pipeline(
        {"a.ipynb": nb("%%block ping\np = q + 1"), "b.ipynb": nb("%%block pong\nq = p + 1")},
        name="cyclic",
    )
    return project


def test_run_exit_codes_and_run_listing(cli_project: Path) -> None:
    good = blockbook(cli_project, "run", "good")
    assert good.returncode == 0, good.stdout + good.stderr
    bad = blockbook(cli_project, "run", str(cli_project / "bad"))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "broken" in bad.stdout
    assert "missing column" in bad.stdout

    runs = blockbook_json(cli_project, "runs")
    assert [r["pipeline"] for r in runs] == ["bad", "good"], "newest first"
    for entry in runs:
        assert {"run_id", "pipeline", "status", "trigger", "started_at", "ended_at"} <= set(entry)
        assert entry["trigger"] == "manual"
        assert datetime.fromisoformat(entry["started_at"]) <= datetime.fromisoformat(
            entry["ended_at"]
        )
    assert [r["status"] for r in runs] == ["failed", "success"]
    assert runs[0]["started_at"] >= runs[1]["ended_at"]
    assert [r["pipeline"] for r in blockbook_json(cli_project, "runs", "good")] == ["good"]

    shown = blockbook_json(cli_project, "show", runs[0]["run_id"])
    assert shown["run_id"] == runs[0]["run_id"]
    assert shown["status"] == "failed"
    assert shown["params"] == {}
    blocks = {b["name"]: b for b in shown["blocks"]}
    assert list(blocks) == ["fine", "broken", "child", "uses_x"]
    assert {name: b["status"] for name, b in blocks.items()} == {
        "fine": "success",
        "broken": "failed",
        "child": "upstream_failed",
        "uses_x": "success",
    }
    assert blocks["broken"]["attempts"] == 1
    assert "KeyError" in blocks["broken"]["error"]
    assert "missing column" in blocks["broken"]["error"]
    assert blocks["fine"]["error"] is None
    assert "broken" in blocks["child"]["error"]
    for name, block in blocks.items():
        path = Path(block["notebook"])
        assert path.is_file(), path
        executed = nbformat.read(path, as_version=4)
        cells = [c for c in executed.cells if c.metadata.get("blockbook", {}).get("block") == name]
        assert len(cells) == 1
        assert cells[0].source.startswith(f"%%block {name}")
    broken_cell = next(
        c
        for c in nbformat.read(blocks["broken"]["notebook"], as_version=4).cells
        if c.metadata.get("blockbook", {}).get("block") == "broken"
    )
    assert any(o.output_type == "error" and o.ename == "KeyError" for o in broken_cell.outputs)

    prefix = blockbook_json(cli_project, "show", runs[1]["run_id"][:-2])
    assert prefix["run_id"] == runs[1]["run_id"]
    assert {b["status"] for b in prefix["blocks"]} == {"success"}
    assert_no_kernels(cli_project)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["good", "-p", "novalue"], "bad parameter `-p novalue`"),
        (["good", "--only", "nosuch"], "unknown block"),
        (["cyclic"], "cycle"),
        (["no_such_pipeline"], "no pipeline"),
    ],
)
def test_run_usage_errors_exit_2(cli_project: Path, args: list[str], message: str) -> None:
    result = blockbook(cli_project, "run", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert blockbook_json(cli_project, "runs") == []


def test_show_unknown_run_is_a_usage_error(cli_project: Path) -> None:
    result = blockbook(cli_project, "show", "20990101T000000Z-000000")
    assert result.returncode == 2
    assert "no run" in result.stderr
