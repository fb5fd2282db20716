"""Telling whether a run's runner process still lives: pid and start time on this host (a pid
the system handed to another process is not the runner), heartbeats elsewhere."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta

import psutil

from pipelines.rundir.state import now
from pipelines.status import RunStatus, Trigger
from pipelines.store.liveness import crash_runs_without_runner, record_runner
from pipelines.store.queue import QueuedRun, claim_launch, enqueue
from pipelines.store.run_store import RunStore, new_run_id
from pipelines.store.runner_process import RunnerProcess


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


def test_this_process_is_alive_and_a_reused_pid_is_not() -> None:
    me = RunnerProcess.current()
    assert me.is_alive()
    assert me.is_current
    assert not replace(me, started_at=me.started_at - timedelta(minutes=5)).is_alive()


def test_an_exited_process_and_a_zombie_are_dead() -> None:
    child = sleeper()
    runner = RunnerProcess.of_pid(child.pid)
    assert runner is not None
    assert runner.is_alive()
    child.kill()
    # Not waited for yet: a zombie, which runs nothing.
    deadline = time.monotonic() + 60
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the killed child never became a zombie"
        time.sleep(0.05)
    assert not runner.is_alive()
    child.wait(timeout=30)
    assert not runner.is_alive()


def test_a_process_elsewhere_is_left_to_its_heartbeats() -> None:
    me = RunnerProcess.current()
    assert replace(me, host="another-host", pid=2**22 + 1).is_alive()


def test_kill_ends_a_paused_runner_and_its_children() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time;"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']);"
            "time.sleep(600)",
        ]
    )
    try:
        runner = RunnerProcess.of_pid(child.pid)
        assert runner is not None
        child.send_signal(signal.SIGSTOP)
        assert runner.kill(wait_seconds=60)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()


def test_runs_of_dead_local_runners_are_crashed_and_others_left(any_store: RunStore) -> None:
    dead, elsewhere, alive = new_run_id(), new_run_id(), new_run_id()
    child = sleeper()
    gone = RunnerProcess.of_pid(child.pid)
    assert gone is not None
    child.kill()
    child.wait(timeout=30)
    me = RunnerProcess.current()
    for run_id, runner in (
        (dead, gone),
        (elsewhere, replace(gone, host="another-host")),
        (alive, me),
    ):
        assert enqueue(any_store, QueuedRun(run_id, "p", "/p", Trigger.MANUAL, {}, ""))
        assert claim_launch(any_store, run_id)
        record_runner(any_store, run_id, runner)
        any_store.start_run(run_id, now())
    crashed = crash_runs_without_runner(any_store)
    assert [r.run_id for r in crashed] == [dead]
    statuses = {r.run_id: r.status for r in any_store.list_runs()}
    assert statuses == {
        dead: RunStatus.CRASHED,
        elsewhere: RunStatus.RUNNING,
        alive: RunStatus.RUNNING,
    }
    record = any_store.get_run(dead)
    assert record is not None
    assert f"pid {child.pid}" in (record.error or "")
