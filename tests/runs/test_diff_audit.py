"""Run audits and `blockbook diff`, over real runs on SQLite and PostgreSQL: two runs of one
pipeline with a changed parameter (which changes a column's dtype) and an edited cell, compared
as text and as JSON; who started a run and with which code in `show --format json`; a queued
run keeping who queued it once a runner adopts it."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from pipelines import __version__
from pipelines.api import Project
from pipelines.assembly.code_hash import block_code_hash, notebook_code_hash
from pipelines.assembly.pipeline import assemble
from pipelines.runs.runner import Runner, RunOptions
from pipelines.status import RunStatus, Trigger
from pipelines.store.audit import RunAudit, StartedBy, current_user
from pipelines.store.diff import Pair
from pipelines.store.run_store import DATABASE_URL_ENV, RunStore
from tests.helpers.notebooks import LOAD_EXT, nb, write_notebook
from tests.helpers.runs import BLOCKBOOK, cli_env, statuses

LOAD = """%%block load
import pandas as pd
trips = pd.DataFrame({"city": ["Oslo", "Lima", "Pune"], "km": [1, 2, 3]}).astype({"km": km_type})
"""
REPORT = "%%block report\nlongest = trips.km.max()"
REPORT_EDITED = "%%block report\n# the longest ride\nlongest = trips.km.max()"


def cli(project: Path, store: RunStore, *args: str) -> subprocess.CompletedProcess[str]:
    """`blockbook` on `store` (SQLite file or PostgreSQL schema)."""
    return subprocess.run(
        [str(BLOCKBOOK), "--project", str(project), *args],
        capture_output=True,
        text=True,
        env=cli_env(**{DATABASE_URL_ENV: store.url}),
        timeout=120,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    root = tmp_path / "project"
    root.mkdir()
    (root / "blockbook.toml").touch()
    return root


@pytest.fixture
def two_runs(project: Path, any_store: RunStore) -> tuple[str, str]:
    """Run A with the defaults; run B with km_type=float64 and the report cell edited."""
    folder = project / "trips"
    write_notebook(folder / "load.ipynb", nb(LOAD))
    write_notebook(folder / "report.ipynb", nb(REPORT))
    (folder / "pipeline.toml").write_text('[params]\nkm_type = "int64"\n', encoding="utf-8")
    runner = Runner(project, any_store)

    first = runner.run(assemble(folder))
    write_notebook(folder / "report.ipynb", nb(REPORT_EDITED))
    second = runner.run(assemble(folder), RunOptions(params={"km_type": "float64"}))

    assert first.status is RunStatus.SUCCESS, statuses(first)
    assert second.status is RunStatus.SUCCESS, statuses(second)
    return first.run_id, second.run_id


def test_diff_as_json_names_what_changed(
    project: Path, any_store: RunStore, two_runs: tuple[str, str]
) -> None:
    run_a, run_b = two_runs

    done = cli(project, any_store, "diff", run_a, run_b, "--format", "json")

    assert done.returncode == 0, done.stderr
    diff = json.loads(done.stdout)
    assert (diff["a"]["run_id"], diff["b"]["run_id"]) == (run_a, run_b)
    assert diff["params"]["km_type"] == {"a": "int64", "b": "float64", "changed": True}
    assert diff["changed"] == {
        "params": ["km_type"],
        "notebooks": ["report.ipynb"],
        "blocks": ["load", "report"],
    }
    blocks = {block["block"]: block for block in diff["blocks"]}
    load, report = blocks["load"], blocks["report"]
    assert load["code"]["changed"] is False
    assert load["code"]["a"] == block_code_hash(LOAD)
    assert report["code"] == {
        "a": block_code_hash(REPORT),
        "b": block_code_hash(REPORT_EDITED),
        "changed": True,
    }
    assert load["status"] == {"a": "success", "b": "success", "changed": False}
    assert load["duration"]["a"] > 0
    assert load["duration"]["b"] > 0
    (trips,) = load["outputs"]
    assert trips["name"] == "trips"
    assert trips["rows"] == {"a": 3, "b": 3, "changed": False}
    assert trips["sha256"]["changed"] is True
    assert trips["schema"] == {
        "added": [],
        "removed": [],
        "retyped": [{"column": "km", "a": "int64", "b": "float64"}],
        "changed": True,
    }
    assert report["outputs"] == [], "nothing reads `longest`: it is not stored"


def test_diff_as_text_shows_the_changes_side_by_side(
    project: Path, any_store: RunStore, two_runs: tuple[str, str]
) -> None:
    run_a, run_b = two_runs

    done = cli(project, any_store, "diff", run_a, run_b)

    assert done.returncode == 0, done.stderr
    lines = [" ".join(line.split()) for line in done.stdout.splitlines()]
    assert f"A: {run_a} trips success" in " ".join(lines)
    assert "km_type int64 float64 changed" in lines
    assert "km: int64 -> float64" in done.stdout
    assert f"load same {block_code_hash(LOAD)[:12]} success success" in " ".join(lines)
    changed_code = f"{block_code_hash(REPORT)[:12]} -> {block_code_hash(REPORT_EDITED)[:12]}"
    assert any(line.startswith(f"report {changed_code}") for line in lines), done.stdout
    assert any(line.startswith("load.trips 3 3 ") and line.endswith("changed") for line in lines)


def test_blocks_a_run_reused_show_the_outputs_linked_into_its_folder(
    project: Path, any_store: RunStore, two_runs: tuple[str, str]
) -> None:
    folder = project / "trips"
    only_report = Runner(project, any_store).run(
        assemble(folder), RunOptions(params={"km_type": "float64"}, only=("report",))
    )
    with Project(project, store=any_store) as service:
        diff = service.diff(two_runs[1], only_report.run_id)

    load = next(block for block in diff.blocks if block.block == "load")
    assert load.reused_from.b == two_runs[1]
    (trips,) = load.outputs
    assert trips.rows.b == 3
    assert trips.sha256.b is not None
    assert not trips.changed, "the same stored frame, linked"


def test_cached_blocks_show_the_outputs_they_reuse(
    project: Path, any_store: RunStore, two_runs: tuple[str, str]
) -> None:
    again = Runner(project, any_store).run(
        assemble(project / "trips"), RunOptions(params={"km_type": "float64"})
    )
    with Project(project, store=any_store) as service:
        diff = service.diff(two_runs[1], again.run_id)

    load = next(block for block in diff.blocks if block.block == "load")
    assert load.status == Pair("success", "cached")
    (trips,) = load.outputs
    assert trips.rows == Pair(3, 3)
    assert not trips.sha256.changed
    assert diff.blocks[0].code == Pair(block_code_hash(LOAD), block_code_hash(LOAD))


def test_diff_of_an_unknown_run_is_a_usage_error(
    project: Path, any_store: RunStore, two_runs: tuple[str, str]
) -> None:
    done = cli(project, any_store, "diff", two_runs[0], "nope")

    assert done.returncode == 2
    assert "no run `nope`" in done.stderr


def test_show_json_has_the_audit_of_the_run(
    project: Path, any_store: RunStore, two_runs: tuple[str, str]
) -> None:
    done = cli(project, any_store, "show", two_runs[1], "--format", "json")

    assert done.returncode == 0, done.stderr
    audit = json.loads(done.stdout)["audit"]
    assert audit["started_by"] == {
        "user": current_user(),
        "host": socket.gethostname(),
        "trigger": "manual",
    }
    assert audit["blockbook_version"] == __version__
    assert audit["notebooks"] == {
        "load.ipynb": notebook_code_hash([LOAD_EXT, LOAD]),
        "report.ipynb": notebook_code_hash([LOAD_EXT, REPORT_EDITED]),
    }
    assert audit["blocks"] == {
        "load": block_code_hash(LOAD),
        "report": block_code_hash(REPORT_EDITED),
    }


def test_a_queued_run_keeps_who_queued_it_and_records_the_code_it_ran(
    project: Path, any_store: RunStore
) -> None:
    folder = project / "small"
    write_notebook(folder / "load.ipynb", nb("%%block load\nrows = [1]"))
    with Project(project, store=any_store) as service:
        run_id = service.trigger(folder)
        queued = service.run(run_id).audit
        assert queued is not None
        assert queued.started_by == StartedBy(current_user(), socket.gethostname(), Trigger.API)
        assert set(queued.notebooks) == {"load.ipynb"}
        # As if another user on another host had queued it.
        elsewhere = StartedBy("alice", "laptop", Trigger.API)
        any_store.record_audit(run_id, RunAudit(elsewhere, "0.0.1"))
        write_notebook(folder / "load.ipynb", nb("%%block load\nrows = [1, 2]"))

        result = Runner(project, any_store).run(assemble(folder), RunOptions(run_id=run_id))
        audit = service.run(run_id).audit

    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert audit is not None
    assert audit.started_by == elsewhere
    assert audit.blockbook_version == __version__
    assert audit.blocks == {"load": block_code_hash("%%block load\nrows = [1, 2]")}
