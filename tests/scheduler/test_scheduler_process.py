"""The real `blockbook scheduler` process: schedules that fire, SIGTERM, kill -9 and restart,
two schedulers on one PostgreSQL database, `trigger` and `--once`."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

from pipelines.api import trigger
from pipelines.store.run_store import DATABASE_URL_ENV
from tests.helpers.notebooks import make_pipeline
from tests.helpers.runs import BLOCKBOOK, cli_env

WORK = "%%block work\nimport time\nwindow = (interval_start, interval_end)\ntime.sleep({sleep})"


def project_with(tmp_path: Path, schedule: str, sleep: float = 0.2) -> Path:
    (tmp_path / "blockbook.toml").write_text("")
    make_pipeline(
        tmp_path,
        {"a.ipynb": ["%load_ext kernel_magics", WORK.format(sleep=sleep)]},
        schedule,
        name="tick",
    )
    return tmp_path


def start_scheduler(root: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    log = (root / f"scheduler-{time.monotonic_ns()}.log").open("w")
    return subprocess.Popen(
        [str(BLOCKBOOK), "--project", str(root), "scheduler", "--tick", "0.2", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env or cli_env(),
    )


def runs(root: Path, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(BLOCKBOOK), "--project", str(root), "runs", "--format", "json", "--limit", "500"],
        capture_output=True,
        text=True,
        env=env or cli_env(),
        check=True,
    )
    return list(json.loads(result.stdout))


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def no_kernels_left(root: Path) -> bool:
    for process in psutil.process_iter(["cmdline", "cwd"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            if "ipykernel_launcher" in cmdline and str(root) in (process.info["cwd"] or ""):
                return False
        except psutil.Error:
            continue
    return True


def test_schedules_fire_and_sigterm_stops_cleanly(tmp_path: Path) -> None:
    root = project_with(tmp_path, '[schedule]\nevery = "2s"\nmax_active_runs = 3\n')
    daemon = start_scheduler(root)
    try:
        wait_for(lambda: sum(r["status"] == "success" for r in runs(root)) >= 2, 40, "two runs")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    done = [r for r in runs(root) if r["status"] == "success"]
    assert {r["trigger"] for r in done} == {"schedule"}
    fire_times = sorted(r["scheduled_for"] for r in done)
    assert len(fire_times) == len(set(fire_times))
    first = done[-1]
    assert first["params"]["interval_end"] == first["scheduled_for"]
    assert all(r["status"] in ("success", "queued") for r in runs(root))
    wait_for(lambda: no_kernels_left(root), 10, "kernels to exit")


def test_kill_9_then_restart_loses_no_fire_time_and_marks_the_orphan(tmp_path: Path) -> None:
    root = project_with(
        tmp_path,
        '[schedule]\nevery = "3s"\ncatchup = "all"\nrun_retries = 1\nmax_active_runs = 5\n',
        sleep=3,
    )
    daemon = start_scheduler(root, "--heartbeat-timeout", "3")
    try:
        wait_for(lambda: any(r["status"] == "running" for r in runs(root)), 40, "a running run")
    finally:
        daemon.kill()  # kill -9: no clean-up of any kind
        daemon.wait(timeout=10)
    orphan = next(r for r in runs(root) if r["status"] == "running")
    # Its runner died with the scheduler, and the runner's kernels with it.
    wait_for(lambda: no_kernels_left(root), 15, "orphaned kernels to exit")
    time.sleep(3)  # fire times pass while no scheduler runs

    restarted = start_scheduler(root, "--heartbeat-timeout", "3")
    try:
        wait_for(
            lambda: any(
                r["scheduled_for"] == orphan["scheduled_for"]
                and r["attempt"] == 1
                and r["status"] == "success"
                for r in runs(root)
            ),
            60,
            "the crashed fire time to be retried",
        )
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=90)
    everything = runs(root)
    crashed = next(r for r in everything if r["run_id"] == orphan["run_id"])
    assert crashed["status"] == "crashed"
    assert "heartbeats" in crashed["error"]
    # No duplicate, no lost fire time: every 3 s step from the first to the last is there.
    keys = Counter((r["scheduled_for"], r["attempt"]) for r in everything)
    assert max(keys.values()) == 1
    fire_times = sorted({r["scheduled_for"] for r in everything})
    steps = {
        round((_parse(later) - _parse(earlier)).total_seconds())
        for earlier, later in itertools.pairwise(fire_times)
    }
    assert steps == {3}, fire_times


def test_two_schedulers_on_postgresql_run_each_fire_time_once(tmp_path: Path, pg_url: str) -> None:
    root = project_with(tmp_path, '[schedule]\nevery = "1s"\nmax_active_runs = 10\n', sleep=0)
    env = cli_env(**{DATABASE_URL_ENV: pg_url})
    daemons = [start_scheduler(root, "--max-runs", "2", env=env) for _ in range(2)]
    try:
        wait_for(lambda: len(runs(root, env)) >= 6, 40, "six fire times")
    finally:
        for daemon in daemons:
            daemon.send_signal(signal.SIGTERM)
        for daemon in daemons:
            assert daemon.wait(timeout=120) == 0
    everything = runs(root, env)
    keys = Counter((r["scheduled_for"], r["attempt"]) for r in everything)
    assert max(keys.values()) == 1
    finished = [r for r in everything if r["status"] != "queued"]
    assert finished
    assert {r["status"] for r in finished} == {"success"}, finished
    logs = "".join(p.read_text() for p in root.glob("scheduler-*.log"))
    started = Counter(
        line.split("starting run ")[1].strip()
        for line in logs.splitlines()
        if "starting run " in line
    )
    assert started
    assert max(started.values()) == 1


def test_trigger_and_once(tmp_path: Path) -> None:
    root = project_with(
        tmp_path, 'description = "unscheduled"\n[params]\ninterval_start = 0\ninterval_end = 0\n'
    )
    result = subprocess.run(
        [str(BLOCKBOOK), "--project", str(root), "trigger", "tick", "-p", "interval_end=5"],
        capture_output=True,
        text=True,
        env=cli_env(),
        check=True,
    )
    manual = result.stdout.strip()
    env_before = os.environ.get(DATABASE_URL_ENV)
    os.environ.pop(DATABASE_URL_ENV, None)
    try:
        api = trigger(root / "tick", {"interval_end": 7}, root=root)
    finally:
        if env_before is not None:
            os.environ[DATABASE_URL_ENV] = env_before
    assert {r["status"] for r in runs(root)} == {"queued"}
    once = subprocess.run(
        [str(BLOCKBOOK), "--project", str(root), "scheduler", "--once"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert once.returncode == 0, once.stderr
    by_id = {r["run_id"]: r for r in runs(root)}
    assert by_id[manual]["status"] == "success"
    assert by_id[manual]["trigger"] == "manual"
    assert by_id[manual]["params"]["interval_end"] == 5
    assert by_id[api]["status"] == "success"
    assert by_id[api]["trigger"] == "api"


def _parse(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)
