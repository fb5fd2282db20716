"""A project with a `pipelines/` package of its own (issue 10, item 21): the runners that the
scheduler and `Project.start` launch run Blockbook's runner, never the project's code."""

from __future__ import annotations

from pathlib import Path

from pipelines.api import Project
from tests.helpers.notebooks import make_pipeline, nb
from tests.helpers.runs import blockbook

# Imported instead of Blockbook, it leaves a marker and refuses to be a runner.
HIJACK = """\
import pathlib
pathlib.Path(__file__).parent.parent.joinpath("hijacked.txt").write_text("the project's own")
raise SystemExit("the project's pipelines package ran instead of Blockbook")
"""


def _project_with_its_own_pipelines_package(project: Path) -> Path:
    package = project / "pipelines"
    package.mkdir()
    (package / "__init__.py").write_text(HIJACK, encoding="utf-8")
    (package / "__main__.py").write_text(HIJACK, encoding="utf-8")
    return make_pipeline(project, {"a.ipynb": nb("%%block one\nx = 1")}, name="pipe")


def test_a_scheduled_run_runs_blockbooks_runner_not_the_projects_package(project: Path) -> None:
    _project_with_its_own_pipelines_package(project)

    queued = blockbook(project, "trigger", "pipe")
    assert queued.returncode == 0, queued.stderr
    once = blockbook(project, "scheduler", "--once", timeout=180)

    assert once.returncode == 0, once.stderr
    assert not (project / "hijacked.txt").exists(), "the runner imported the project's package"
    shown = blockbook(project, "show", queued.stdout.strip())
    assert "success" in shown.stdout, shown.stdout + shown.stderr


def test_a_run_started_in_the_background_runs_blockbooks_runner(project: Path) -> None:
    folder = _project_with_its_own_pipelines_package(project)

    with Project(project) as opened:
        run_id = opened.start(folder)
        process = opened.runner_process(run_id)
        assert process is not None
        process.wait(timeout=180)  # a deadline for a loaded machine, not a pace
        record = opened.run(run_id)

    assert not (project / "hijacked.txt").exists(), "the runner imported the project's package"
    assert record.status.value == "success", opened.launch_log(run_id).read_text()
