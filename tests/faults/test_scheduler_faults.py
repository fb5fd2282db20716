"""The scheduler under faults: a store error while queueing, a pipeline.toml that breaks the
schedule arithmetic, a scheduler killed with its runners, several schedulers racing for one
`max_active_runs` slot, a runner paused past the heartbeat timeout.

Real scheduler and runner processes, real kernels, SQLite and PostgreSQL. Every wait is on a
condition with a deadline meant for a loaded machine, never a pace.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

import pipelines.scheduling.queueing as queueing_module
from pipelines.scheduling.scheduler import Scheduler, SchedulerOptions
from pipelines.status import RunStatus, Trigger
from pipelines.store.db import StoreError
from pipelines.store.queue import QueuedRun, claim_launch, enqueue, enqueue_many
from pipelines.store.records import RunRecord
from pipelines.store.run_store import DATABASE_URL_ENV, RunId, RunStore, new_run_id
from tests.helpers.notebooks import make_pipeline, nb
from tests.helpers.runs import (
    BLOCKBOOK,
    blockbook,
    cli_env,
    kernels_in,
    start_scheduler,
    wait_for,
)

# Tests that start scheduler processes share one worker: several schedulers and their kernels
# at once would starve a 2-core machine.
processes = pytest.mark.xdist_group("scheduler_processes")

SLEEP = "%%block work\nimport time\nwindow = (interval_start, interval_end)\ntime.sleep({sleep})"


# ---- helpers -----------------------------------------------------------------------------------


def scheduled_pipeline(root: Path, schedule: str, sleep: float, name: str = "tick") -> Path:
    return make_pipeline(root, {"a.ipynb": nb(SLEEP.format(sleep=sleep))}, schedule, name=name)


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def kill_kernels(root: Path) -> None:
    """Kernels a killed runner left behind (the runner that would stop them is gone)."""
    for kernel in kernels_in(root):
        try:
            kernel.kill()
        except psutil.Error:
            continue


def scheduler_logs(root: Path) -> str:
    return "".join(p.read_text() for p in root.glob("scheduler-*.log"))


def gone(process: subprocess.Popen[Any] | psutil.Process) -> bool:
    if isinstance(process, subprocess.Popen):
        return process.poll() is not None
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(params=["sqlite", "postgresql"])
def store_env(request: pytest.FixtureRequest, project: Path) -> Iterator[dict[str, str]]:
    """The environment of CLI processes for the parametrized store (the project's SQLite file,
    or a fresh PostgreSQL schema)."""
    if request.param == "sqlite":
        yield cli_env()
    else:
        yield cli_env(**{DATABASE_URL_ENV: request.getfixturevalue("pg_url")})


@pytest.fixture
def shared_store(project: Path, store_env: dict[str, str]) -> Iterator[RunStore]:
    """The store the processes started with `store_env` use, opened by the test."""
    url = store_env.get(DATABASE_URL_ENV)
    with RunStore(url) if url else RunStore.open(project) as opened:
        yield opened


class RecordingLauncher:
    """Starts nothing: its runners run until `finish()` (these tests are about queueing)."""

    def __init__(self) -> None:
        self.started: list[RunRecord] = []
        self.finished = threading.Event()

    def start(self, run: RunRecord) -> RecordingLauncher:
        self.started.append(run)
        return self

    def poll(self) -> int | None:
        return 0 if self.finished.is_set() else None

    def finish(self) -> None:
        self.finished.set()


# ---- 1: a failed enqueue is retried at the next tick ------------------------------------------


def test_a_failed_enqueue_is_retried_at_the_next_tick(
    project: Path, shared_store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    scheduled_pipeline(project, '[schedule]\nevery = "1s"\nmax_active_runs = 100\n', sleep=0)
    failures: list[QueuedRun] = []

    def enqueue_failing_once(store: RunStore, runs: Sequence[QueuedRun]) -> set[RunId]:
        # The database goes away for one statement: what a restarted PostgreSQL looks like.
        if not failures and runs:
            failures.append(runs[0])
            raise StoreError("the run store is unreachable (injected)", "try again")
        return enqueue_many(store, runs)

    monkeypatch.setattr(queueing_module, "enqueue_many", enqueue_failing_once)
    launcher = RecordingLauncher()
    daemon = Scheduler(
        project, shared_store, SchedulerOptions(tick_seconds=0.05, rescan_seconds=600), launcher
    )
    serving = threading.Thread(target=daemon.serve, daemon=True)
    serving.start()
    try:
        wait_for(lambda: failures, 60, "the injected enqueue failure")
        wait_for(
            lambda: len(shared_store.list_runs(limit=1000)) >= 3, 60, "fire times after the failure"
        )
    finally:
        daemon.stop()
        launcher.finish()
        serving.join(timeout=60)
    fire_times = [r.scheduled_for for r in shared_store.list_runs(limit=1000)]
    assert failures[0].scheduled_for in fire_times  # the failed one was queued on a later tick
    assert len(fire_times) == len(set(fire_times))


# ---- 2: one bad pipeline.toml stops no other pipeline -----------------------------------------


@pytest.mark.parametrize("every", ["999999999d", "1000000000000d"])
def test_an_every_too_long_is_a_located_error(project: Path, every: str) -> None:
    scheduled_pipeline(project, f'[schedule]\nevery = "{every}"\n', sleep=0, name="bad")
    for command in (["validate", "bad"], ["run", "bad"], ["scheduler", "--once"]):
        result = blockbook(project, *command)
        output = result.stdout + result.stderr
        assert "Traceback" not in output, (command, output)
        if command[0] != "scheduler":
            assert result.returncode != 0, (command, output)
            assert "pipeline.toml:line 2" in output, (command, output)
            assert "366d" in output, (command, output)


def test_a_schedule_whose_arithmetic_fails_leaves_the_others_firing(
    project: Path, shared_store: RunStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Near the end of the calendar a valid `every` overflows datetime: the same failure as an
    # absurd interval, reached through a valid file.
    scheduled_pipeline(project, '[schedule]\nevery = "300d"\n', sleep=0, name="bad")
    scheduled_pipeline(project, '[schedule]\nevery = "1s"\nmax_active_runs = 100\n', 0, "good")
    clock = [datetime(9999, 6, 1, tzinfo=UTC)]
    daemon = Scheduler(
        project,
        shared_store,
        SchedulerOptions(rescan_seconds=0),
        RecordingLauncher(),
        clock=lambda: clock[0],
    )
    with caplog.at_level(logging.ERROR):
        for _ in range(5):
            daemon.tick()
            clock[0] += timedelta(seconds=1)
    assert {r.pipeline for r in shared_store.list_runs(limit=1000)} == {"good"}
    assert len(shared_store.list_runs(limit=1000)) >= 3
    assert any("bad" in record.getMessage() for record in caplog.records)


@processes
def test_a_bad_every_stops_no_other_pipeline_in_the_scheduler(project: Path) -> None:
    scheduled_pipeline(project, '[schedule]\nevery = "999999999d"\n', sleep=0, name="bad")
    scheduled_pipeline(project, '[schedule]\nevery = "1s"\nmax_active_runs = 5\n', 0, "good")
    with RunStore.open(project) as store:
        daemon = start_scheduler(project)
        try:
            wait_for(
                lambda: (
                    sum(r.status is RunStatus.SUCCESS for r in store.list_runs(limit=1000)) >= 2
                ),
                120,
                "two runs of the healthy pipeline",
            )
        finally:
            stop(daemon)
        assert {r.pipeline for r in store.list_runs(limit=1000)} == {"good"}
    logs = scheduler_logs(project)
    assert "bad: not scheduling" in logs
    assert "Traceback" not in logs


# ---- 3: a restarted scheduler crashes its dead runners' runs at once -------------------------


@processes
def test_a_restarted_scheduler_marks_the_killed_runners_run_crashed_at_once(
    project: Path, shared_store: RunStore, store_env: dict[str, str]
) -> None:
    scheduled_pipeline(project, '[schedule]\nevery = "2s"\nmax_active_runs = 1\n', sleep=600)
    # A heartbeat timeout far beyond the test's deadlines: only the pid check can end the run.
    timeout = ("--heartbeat-timeout", "3600")
    daemon = start_scheduler(project, *timeout, env=store_env)
    try:
        wait_for(
            lambda: any(r.status is RunStatus.RUNNING for r in shared_store.list_runs(limit=1000)),
            120,
            "a running run",
        )
        runners = psutil.Process(daemon.pid).children()
    finally:
        daemon.kill()  # kill -9: no clean-up of any kind
        daemon.wait(timeout=30)
    [orphan] = [r for r in shared_store.list_runs(limit=1000) if r.status is RunStatus.RUNNING]
    wait_for(lambda: all(gone(p) for p in runners), 60, "the runners to die with the scheduler")
    kill_kernels(project)

    restarted = start_scheduler(project, *timeout, env=store_env)
    try:
        wait_for(
            lambda: shared_store.get_run(orphan.run_id).status is RunStatus.CRASHED,  # type: ignore[union-attr]
            90,
            "the orphaned run to be marked crashed",
        )
        # max_active_runs = 1 no longer holds the pipeline up.
        wait_for(
            lambda: any(
                r.status is RunStatus.RUNNING and r.created_at > orphan.created_at
                for r in shared_store.list_runs(limit=1000)
            ),
            120,
            "a later run to start",
        )
    finally:
        restarted.kill()
        restarted.wait(timeout=30)
        kill_kernels(project)
    crashed = shared_store.get_run(orphan.run_id)
    assert crashed is not None
    assert f"pid {crashed.runner_pid}" in (crashed.error or "")


# ---- 5: max_active_runs holds across schedulers -----------------------------------------------


def overlapping(records: list[RunRecord]) -> list[tuple[str, str]]:
    """Pairs of runs whose [started, ended] intervals overlap (a running run has no end)."""
    spans = sorted(
        (r.started_at, r.ended_at or datetime.max.replace(tzinfo=UTC), r.run_id)
        for r in records
        if r.started_at is not None
    )
    return [
        (first[2], second[2])
        for i, first in enumerate(spans)
        for second in spans[i + 1 :]
        if second[0] < first[1]
    ]


@processes
def test_max_active_runs_holds_across_three_schedulers(
    project: Path, shared_store: RunStore, store_env: dict[str, str]
) -> None:
    scheduled_pipeline(
        project, '[schedule]\nevery = "1s"\ncatchup = "all"\nmax_active_runs = 1\n', sleep=1
    )
    daemons = [start_scheduler(project, env=store_env) for _ in range(3)]
    try:
        wait_for(
            lambda: (
                sum(r.status is RunStatus.SUCCESS for r in shared_store.list_runs(limit=1000)) >= 4
            ),
            240,
            "four finished runs",
        )
    finally:
        for daemon in daemons:
            daemon.send_signal(signal.SIGTERM)
        for daemon in daemons:
            daemon.wait(timeout=120)
    records = shared_store.list_runs(limit=1000)
    assert not overlapping(records), overlapping(records)
    assert {r.status for r in records if r.started_at} == {RunStatus.SUCCESS}


# ---- 6: no crash retry while the old runner may still be alive ---------------------------------


@processes
def test_no_crash_retry_starts_while_the_paused_runner_is_alive(
    project: Path, store: RunStore
) -> None:
    folder = scheduled_pipeline(
        project, '[schedule]\nevery = "1h"\nrun_retries = 1\nmax_active_runs = 2\n', sleep=600
    )
    # What another scheduler (or `Project.start`) does: queue a fire time, claim it, start it.
    run_id = new_run_id()
    fire_time = datetime.now(UTC) - timedelta(days=1)
    queued = QueuedRun(
        run_id, "tick", str(folder), Trigger.SCHEDULE, {}, "", scheduled_for=fire_time
    )
    assert enqueue(store, queued)
    assert claim_launch(store, run_id)
    command = [sys.executable, "-m", "pipelines", "--project", str(project), "run", str(folder)]
    runner = subprocess.Popen(
        [*command, "--run-id", run_id],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=cli_env(),
    )
    daemon = None
    try:
        wait_for(
            lambda: store.get_run(run_id).status is RunStatus.RUNNING,  # type: ignore[union-attr]
            120,
            "the run to start",
        )
        os.kill(runner.pid, signal.SIGSTOP)  # paused: alive, silent
        daemon = start_scheduler(project, "--heartbeat-timeout", "2")
        wait_for(
            lambda: any(r.attempt == 1 for r in store.list_runs(limit=1000)), 120, "the crash retry"
        )
        # The retry is queued only once the old runner is gone.
        assert runner.poll() is not None, "a crash retry was queued while its old runner lives"
        original = store.get_run(run_id)
        assert original is not None
        assert original.status is RunStatus.CRASHED
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(timeout=30)
        if daemon is not None:
            daemon.kill()
            daemon.wait(timeout=30)
        kill_kernels(project)


# ---- 7: `blockbook runs` shows a killed manual run as crashed ---------------------------------


def test_runs_shows_a_manual_run_whose_runner_was_killed_as_crashed(
    project: Path, store: RunStore
) -> None:
    make_pipeline(project, {"a.ipynb": nb("%%block work\nimport time\ntime.sleep(600)")})
    runner = subprocess.Popen(
        [str(BLOCKBOOK), "--project", str(project), "run", "pipe"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=cli_env(),
    )
    try:
        wait_for(
            lambda: any(r.status is RunStatus.RUNNING for r in store.list_runs(limit=1000)),
            120,
            "the manual run to start",
        )
    finally:
        runner.kill()  # kill -9
        runner.wait(timeout=30)
        kill_kernels(project)
    result = blockbook(project, "runs", "--format", "json")
    assert result.returncode == 0, result.stderr
    [listed] = json.loads(result.stdout)
    assert listed["status"] == "crashed", listed
    assert f"pid {runner.pid}" in listed["error"]


def test_a_run_whose_runner_cannot_start_is_crashed_at_once(
    project: Path, shared_store: RunStore
) -> None:
    scheduled_pipeline(project, '[schedule]\nevery = "1s"\nmax_active_runs = 100\n', sleep=0)

    class Failing:
        def start(self, run: RunRecord) -> RecordingLauncher:
            raise OSError("no such interpreter (injected)")

    clock = [datetime(2026, 3, 1, tzinfo=UTC)]
    daemon = Scheduler(
        project, shared_store, SchedulerOptions(rescan_seconds=600), Failing(), lambda: clock[0]
    )
    daemon.tick()
    clock[0] += timedelta(seconds=2)
    daemon.tick()
    records = shared_store.list_runs(limit=1000)
    assert records
    assert {r.status for r in records} == {RunStatus.CRASHED}
    assert all("could not be started" in (r.error or "") for r in records)
