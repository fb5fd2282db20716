"""`pipelines.api.Project`, the service layer every entry point uses: real runner processes,
real kernels, the project's own SQLite store."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import pytest

from pipelines.api import Project
from pipelines.choices import RunChoices
from pipelines.errors import (
    AmbiguousError,
    BlockbookError,
    ErrorKind,
    InvalidInputError,
    NotFoundError,
)
from pipelines.status import RunStatus, Trigger
from pipelines.store.records import RunRecord
from tests.helpers.notebooks import nb

LOAD = "%%block load\nrows = [1, 2, 3]"
DOUBLE = "%%block double\ndoubled = [2 * r for r in rows]\nprint(label, sum(doubled))"
BROKEN = "%%block broken\nraise ValueError('no such file: trips.csv')"


def wait_for_end(project: Project, run_id: str, timeout: float = 180) -> RunRecord:
    """The run's record once it reached a terminal status (a generous deadline: loaded CI)."""
    deadline = time.monotonic() + timeout
    while True:
        record = project.run(run_id)
        if record.status.is_terminal:
            return record
        assert time.monotonic() < deadline, f"run {run_id} still {record.status}"
        time.sleep(0.2)


@pytest.fixture
def service(project: Path) -> Project:
    with Project(project) as opened:
        yield opened


def test_start_returns_a_recorded_run_at_once_and_runs_it_in_a_child_process(
    service: Project, pipeline
) -> None:
    folder = pipeline(
        {"a.ipynb": nb(LOAD), "b.ipynb": nb(DOUBLE)}, '[params]\nlabel = "sum"\n', name="chain"
    )
    run_id = service.start("chain", {"label": "total"})

    first = service.run(run_id)  # recorded before start returned
    assert first.status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.SUCCESS)
    assert first.trigger is Trigger.MANUAL
    record = wait_for_end(service, run_id)

    assert record.status is RunStatus.SUCCESS, record.error
    assert {b.block: str(b.status) for b in record.blocks} == {
        "load": "success",
        "double": "success",
    }
    assert record.params["label"] == "total"
    assert service.runner_process(run_id) is None or service.runner_process(run_id).wait() == 0

    located = service.executed_notebook(run_id, "double")
    assert located.path.is_file()
    assert located.path.is_relative_to(Path(record.run_dir))
    cell = nbformat.read(located.path, as_version=4).cells[located.cell_index]
    assert cell.source.startswith("%%block double")
    assert "total 12" in "".join(o.get("text", "") for o in cell.outputs)
    assert service.outputs(run_id, "load") == {"rows": [1, 2, 3]}
    assert folder.is_dir()


def test_pipelines_and_pipeline_show_graph_problems_and_last_statuses(
    service: Project, pipeline
) -> None:
    pipeline({"a.ipynb": nb(LOAD, BROKEN)}, name="flaky")
    pipeline({"a.ipynb": nb("%%block a --upstream nowhere\nx = 1")}, name="invalid")

    summaries = {s.name: s for s in service.pipelines()}
    assert set(summaries) == {"flaky", "invalid"}
    assert summaries["flaky"].pipeline.ok
    assert summaries["flaky"].last_run is None
    assert not summaries["invalid"].pipeline.ok

    run_id = service.start("flaky")
    assert wait_for_end(service, run_id).status is RunStatus.FAILED
    detail = service.pipeline("flaky")
    assert detail.last_run is not None
    assert detail.last_run.run_id == run_id
    assert {name: str(b.status) for name, b in detail.last_blocks.items()} == {
        "load": "success",
        "broken": "failed",
    }
    assert "no such file: trips.csv" in (detail.last_blocks["broken"].error or "")
    assert service.pipelines()[0].last_run is not None


def test_errors_carry_their_kind(service: Project, pipeline) -> None:
    pipeline({"a.ipynb": nb("%%block a --upstream nowhere\nx = 1")}, name="invalid")
    pipeline({"a.ipynb": nb(LOAD)}, name="good")

    with pytest.raises(InvalidInputError, match="not valid") as invalid:
        service.start("invalid")
    assert invalid.value.kind is ErrorKind.INVALID
    assert service.runs() == []  # nothing was recorded for a pipeline that cannot run

    with pytest.raises(NotFoundError) as unknown_pipeline:
        service.start("nope")
    assert "did you mean" in unknown_pipeline.value.hint or "pipelines here" in (
        unknown_pipeline.value.hint
    )
    with pytest.raises(InvalidInputError, match="unknown block"):
        service.start("good", choices=RunChoices(only=("missing",)))
    with pytest.raises(NotFoundError):
        service.run("no-such-run")
    with pytest.raises(NotFoundError):
        service.start("good", choices=RunChoices(resume="no-such-run"))

    first, second = service.trigger("good"), service.trigger("good")
    assert first[:2] == second[:2]  # ids start with the year
    with pytest.raises(AmbiguousError):
        service.run(first[:2])
    with pytest.raises(NotFoundError, match="has no block"):
        service.executed_notebook(first, "nope")
    assert all(isinstance(e, BlockbookError) for e in (invalid.value, unknown_pipeline.value))


def test_runs_filter_by_status_and_page_newest_first(service: Project, pipeline) -> None:
    pipeline({"a.ipynb": nb(LOAD)}, name="good")
    queued = [service.trigger("good") for _ in range(5)]

    newest_first = [r.run_id for r in service.runs("good")]
    assert newest_first == list(reversed(queued))
    assert [r.run_id for r in service.runs(status=RunStatus.QUEUED, limit=2)] == newest_first[:2]
    assert service.runs(status=RunStatus.SUCCESS) == []

    page, seen = service.store.list_runs(limit=2), []
    while page:
        seen += [r.run_id for r in page]
        page = service.store.list_runs(limit=2, before=page[-1].run_id)
    assert seen == newest_first


def test_schedules_give_the_next_fire_time(service: Project, pipeline) -> None:
    pipeline({"a.ipynb": nb(LOAD)}, '[schedule]\ncron = "0 6 * * *"\n', name="daily")
    pipeline({"a.ipynb": nb(LOAD)}, name="unscheduled")
    moment = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)

    (info,) = service.schedules(now=moment)

    assert info.pipeline == "daily"
    assert info.next_fire == datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    assert info.last_fired is None
    assert info.config.catchup == "none"
    assert info.next_fire - moment < timedelta(days=1)
