"""The rest of the behaviour matrix on Dask: trigger rules, conditions, sensors and resume, with
each notebook a task on a real LocalCluster's worker processes, decided exactly as on the local
executor (tests/runs/test_sensors_conditions.py, test_resume_only.py say how that is); and the
pre-flight against real `dask worker` processes, one of them without pandas."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")

from pipelines.api import Project  # noqa: E402
from pipelines.assembly.pipeline import assemble  # noqa: E402
from pipelines.runs.executors import ExecutorUnavailable  # noqa: E402
from pipelines.runs.executors.choice import (  # noqa: E402
    EXECUTOR_ENV,
    ExecutorChoice,
    parse_executor,
)
from pipelines.runs.runner import RunResult  # noqa: E402
from pipelines.status import BlockStatus, RunStatus  # noqa: E402
from pipelines.store.run_store import RunStore  # noqa: E402
from tests.helpers.dask_processes import WorkerSpec, dask_processes  # noqa: E402
from tests.helpers.notebooks import make_pipeline, nb  # noqa: E402
from tests.helpers.runs import load_output, run_options, statuses  # noqa: E402


@pytest.fixture(scope="module")
def on_dask() -> Iterator[ExecutorChoice]:
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=2,
        processes=True,
        resources={"kernels": 3},
        dashboard_address=":0",
    ) as local:
        with distributed.Client(local) as client:
            client.wait_for_workers(2, timeout=60)
        yield parse_executor(local.scheduler_address.replace("tcp://", "dask://"), "test")


@pytest.fixture(autouse=True)
def no_executor_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EXECUTOR_ENV, raising=False)


def execute(
    project: Path, store: RunStore, folder: Path, choice: ExecutorChoice, **options: Any
) -> RunResult:
    """One run through `Project.execute`, the path `blockbook run --executor` takes."""
    return Project(project, store=store).execute(
        assemble(folder), run_options(**options), executor=choice
    )


def executed(log: Path) -> list[str]:
    """The blocks whose body ran since the last call (the log is emptied)."""
    names = sorted(log.read_text().split()) if log.exists() else []
    log.unlink(missing_ok=True)
    return names


def logged(name: str, log: Path) -> str:
    return f"with open({str(log)!r}, 'a') as _log:\n    _log.write({name!r} + '\\n')\n"


def test_trigger_rules_and_a_false_condition_across_workers(
    project: Path, store: RunStore, on_dask: ExecutorChoice
) -> None:
    folder = make_pipeline(
        project,
        {
            "a.ipynb": nb(
                "%%block good\nvalue = 41",
                "%%block bad\nraise RuntimeError('bad broke')",
                "%%block gate --kind condition\nrows = 0\nrows > 0",
            ),
            "b.ipynb": nb(
                "%%block cleanup --upstream good bad --trigger-rule all_done --out done\n"
                "done = True",
                "%%block either --upstream good bad --trigger-rule one_success --out answer\n"
                "answer = value + 1",
                "%%block strict --upstream good bad\nnever = value",
            ),
            "c.ipynb": nb("%%block gated --upstream gate\nx = rows + 1"),
        },
    )
    result = execute(project, store, folder, on_dask)

    assert result.status is RunStatus.FAILED, "a failed block fails the run"
    assert result.blocks["bad"].status is BlockStatus.FAILED
    assert result.blocks["cleanup"].status is BlockStatus.SUCCESS, statuses(result)
    assert result.blocks["either"].status is BlockStatus.SUCCESS, statuses(result)
    assert load_output(result, "either", "answer") == 42
    assert result.blocks["strict"].status is BlockStatus.UPSTREAM_FAILED, statuses(result)
    assert result.blocks["gate"].condition_result is False
    assert result.blocks["gated"].status is BlockStatus.SKIPPED, statuses(result)
    assert result.blocks["gated"].error == "skipped: condition `gate` was false"
    recorded = store.get_run(result.run_id)
    assert recorded is not None
    assert recorded.block("strict").status is BlockStatus.UPSTREAM_FAILED


def test_a_sensor_pokes_on_its_worker_and_its_reader_waits_on_another(
    project: Path, store: RunStore, on_dask: ExecutorChoice
) -> None:
    folder = make_pipeline(
        project,
        {
            "a.ipynb": nb(
                "%%block count_up --kind sensor --poke-interval 0.05 --sensor-timeout 60\n"
                'tries = globals().get("tries", 0) + 1\n'
                "ready = tries >= 3"
            ),
            "b.ipynb": nb("%%block report --out seen\nseen = tries"),
        },
    )
    result = execute(project, store, folder, on_dask)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert result.blocks["count_up"].attempts[0].pokes == 3
    assert load_output(result, "report", "seen") == 3


def test_resume_on_dask_runs_only_what_did_not_succeed(
    project: Path, store: RunStore, on_dask: ExecutorChoice, tmp_path: Path
) -> None:
    log, fixed = tmp_path / "executions.log", tmp_path / "fixed"
    folder = make_pipeline(
        project,
        {
            "a.ipynb": nb(f"%%block load\n{logged('load', log)}rows = [1, 2, 3]"),
            "b.ipynb": nb(
                f"%%block total --out total\n{logged('total', log)}import pathlib\n"
                f"assert pathlib.Path({str(fixed)!r}).exists(), 'not fixed yet'\n"
                "total = sum(rows)"
            ),
        },
    )
    first = execute(project, store, folder, on_dask)
    assert first.status is RunStatus.FAILED, statuses(first)
    assert executed(log) == ["load", "total"]

    fixed.touch()
    second = execute(project, store, folder, on_dask, resume=first.run_id)

    assert second.status is RunStatus.SUCCESS, statuses(second)
    assert executed(log) == ["total"], "resume re-ran a block that had succeeded"
    assert second.blocks["load"].reused_from == first.run_id
    assert load_output(second, "total", "total") == 6


def test_a_worker_without_pandas_is_named_by_the_pre_flight_and_nothing_runs(
    project: Path, store: RunStore, tmp_path: Path
) -> None:
    """Real `dask scheduler` and `dask worker` processes; one worker's environment lacks pandas
    (a package on its path that fails to import, as a missing one does)."""
    shadow = tmp_path / "no-pandas" / "pandas"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named pandas')\n")
    without = {**os.environ, "PYTHONPATH": str(shadow.parent)}
    workers = [WorkerSpec(), WorkerSpec(env=without)]
    with dask_processes(tmp_path, workers) as (address, (healthy, broken)):
        with distributed.Client(address, set_as_default=False) as client:
            by_pid = {pid: where for where, pid in client.run(os.getpid).items()}
        folder = make_pipeline(project, {"a.ipynb": nb("%%block one\nx = 1")})

        with pytest.raises(ExecutorUnavailable) as raised:
            execute(project, store, folder, parse_executor(f"dask://{address[6:]}", "test"))

        message = raised.value.message
        assert f"worker {by_pid[broken.pid]}: cannot import `pandas`" in message, message
        assert f"worker {by_pid[healthy.pid]}" not in message, message
        assert store.list_runs("pipe") == []
