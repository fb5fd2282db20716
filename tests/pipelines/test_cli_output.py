"""What the `blockbook` commands print, as a user's terminal, file or CI log receives it: text in
square brackets kept, ids and paths whole on one line, plain lines when not a terminal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.notebooks import make_pipeline as write_pipeline
from tests.helpers.notebooks import nb
from tests.helpers.runs import ANSI, BLOCKBOOK, blockbook_json, cli_env

# Long enough that a table of runs or blocks is wider than 80 columns.
LONG_NAME = "nightly_green_taxi_trips_export_to_the_warehouse"
FailedRun = tuple[Path, str, subprocess.CompletedProcess[str]]
BRACKETS = "define it in blockbook.toml as [connections.warehouse] with url"


def piped(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed command at 80 columns, its output captured through a pipe (not a tty)."""
    return subprocess.run(
        [str(BLOCKBOOK), "--project", str(project), *args],
        capture_output=True,
        text=True,
        env=cli_env(COLUMNS="80"),
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory: pytest.TempPathFactory) -> FailedRun:
    """A project whose pipeline (long name) failed with `BRACKETS` in its error: the project,
    the run id and what `blockbook run` printed."""
    # One run for the module's tests: each reads it only.
    project = tmp_path_factory.mktemp("output") / "a_project_folder_named_as_real_ones_are"
    project.mkdir()
    (project / "blockbook.toml").write_text("", encoding="utf-8")
    failing = f"%%block export_trips\nraise KeyError({BRACKETS!r})"
    cells = nb("%%block load_trips\ntrips = 1", failing)
    write_pipeline(project, {"export.ipynb": cells}, name=LONG_NAME)
    ran = piped(project, "run", LONG_NAME)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    [listed] = blockbook_json(project, "runs")
    return project, listed["run_id"], ran


def test_error_text_in_square_brackets_is_shown_intact(failed_run: FailedRun) -> None:
    project, run_id, ran = failed_run
    shown = piped(project, "show", run_id)
    assert shown.returncode == 0, shown.stderr
    for output in (ran.stdout, shown.stdout):
        assert "[connections.warehouse]" in output, output


def test_piped_output_keeps_ids_and_paths_whole_on_one_line(failed_run: FailedRun) -> None:
    project, run_id, ran = failed_run
    listed = piped(project, "runs")
    shown = piped(project, "show", run_id)
    path = project / ".blockbook" / "runs" / run_id / "notebooks" / "export.ipynb"
    for output in (ran.stdout, listed.stdout, shown.stdout):
        assert not ANSI.search(output), output
        assert "…" not in output, output
        lines = output.splitlines()
        assert any(run_id in line and LONG_NAME in line for line in lines), output
    for output in (ran.stdout, shown.stdout):
        assert f"executed notebook of export_trips: {path}" in output.splitlines(), output
        lines = output.splitlines()
        assert any(line.startswith("export_trips") and "failed" in line for line in lines)


# ---- start-up: commands that touch no runs import no heavy libraries ---------------------------

HEAVY = ("papermill", "alembic", "pandas", "jupyter_server", "sqlalchemy")


def imported_packages(stderr: str) -> set[str]:
    """Top-level packages named by `python -X importtime` lines (`import time: x | y | name`)."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            module = line.rsplit("|", 1)[1].strip()
            names.add(module.split(".")[0])
    return names


@pytest.mark.parametrize(
    "args", [["--version"], ["list"], ["validate", "small"], ["graph", "small"]]
)
def test_commands_that_touch_no_runs_import_no_heavy_libraries(
    tmp_path: Path, args: list[str]
) -> None:
    (tmp_path / "blockbook.toml").write_text("", encoding="utf-8")
    cells = nb(
        "%%block first\nn = 1", "%%block second\nm = n + 1\n\n@test\ndef ok(m):\n    assert m"
    )
    write_pipeline(tmp_path, {"a.ipynb": cells}, name="small")
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipelines", "--project", str(tmp_path), *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    imported = imported_packages(result.stderr)
    assert "pipelines" in imported, "no importtime output to check"
    assert sorted(set(HEAVY) & imported) == []


# ---- on a terminal -----------------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 200])
def test_terminal_tables_never_cut_ids(width: int) -> None:
    """A terminal too narrow for whole ids gets the plain lines; a wide one gets the table."""
    from rich.console import Console

    from pipelines.cli.progress import runs_table
    from pipelines.rundir.state import now
    from pipelines.status import RunStatus, Trigger
    from pipelines.store.records import RunId, RunRecord

    at = now()
    record = RunRecord(
        RunId("20261201T211011Z-fc0a1b"), LONG_NAME, "", RunStatus.FAILED, Trigger.MANUAL, {},
        "", at, at, at, None, None, (),
    )  # fmt: skip
    console = Console(force_terminal=True, width=width, record=True)
    runs_table(console, [record])
    lines = console.export_text().splitlines()
    assert any(record.run_id in line and LONG_NAME in line for line in lines), lines
    assert "…" not in console.export_text()
