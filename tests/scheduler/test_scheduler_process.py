"""The real `blockbook scheduler` process: schedules that fire, SIGTERM, kill -9 and restart,
two schedulers on one PostgreSQL database, `trigger` and `--once`."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from pipelines.api import trigger
from pipelines.forms.json_forms import run_json
from pipelines.store.run_store import DATABASE_URL_ENV, RunStore
from tests.helpers.notebooks import make_pipeline
from tests.helpers.runs import BLOCKBOOK, cli_env, start_scheduler, wait_for

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


OpenStore = Callable[..., RunStore]


@pytest.fixture
def open_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenStore]:
    """`open_store(root, env=None)`: the run store a scheduler started with `env` uses (the URL
    in `env`, else the project's own), opened once and read directly by the test; closed at the
    end. Schedulers run with `cli_env()`, without $BLOCKBOOK_DATABASE_URL unless a test gives
    one, so this process must not see that variable either."""
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    opened: list[RunStore] = []

    def open_(root: Path, env: dict[str, str] | None = None) -> RunStore:
        url = (env or {}).get(DATABASE_URL_ENV)
        store = RunStore(url) if url else RunStore.open(root)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def runs(store: RunStore) -> list[dict[str, Any]]:
    """The newest 500 runs, in the form `blockbook runs --format json` prints them."""
    return [run_json(record, with_blocks=False) for record in store.list_runs(limit=500)]


def no_kernels_left(root: Path) -> bool:
    for process in psutil.process_iter(["cmdline", "cwd"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            if "ipykernel_launcher" in cmdline and str(root) in (process.info["cwd"] or ""):
                return False
        except psutil.Error:
            continue
    return True


def test_schedules_fire_and_sigterm_stops_cleanly(tmp_path: Path, open_store: OpenStore) -> None:
    root = project_with(tmp_path, '[schedule]\nevery = "2s"\nmax_active_runs = 3\n')
    store = open_store(root)  # before the scheduler: the schema is in place when it starts
    daemon = start_scheduler(root)
    try:
        wait_for(lambda: sum(r["status"] == "success" for r in runs(store)) >= 2, 120, "two runs")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    done = [r for r in runs(store) if r["status"] == "success"]
    assert {r["trigger"] for r in done} == {"schedule"}
    fire_times = sorted(r["scheduled_for"] for r in done)
    assert len(fire_times) == len(set(fire_times))
    first = done[-1]
    assert first["params"]["interval_end"] == first["scheduled_for"]
    assert all(r["status"] in ("success", "queued") for r in runs(store))
    wait_for(lambda: no_kernels_left(root), 60, "kernels to exit")


def test_kill_9_then_restart_loses_no_fire_time_and_marks_the_orphan(
    tmp_path: Path, open_store: OpenStore
) -> None:
    root = project_with(
        tmp_path,
        '[schedule]\nevery = "3s"\ncatchup = "all"\nrun_retries = 1\nmax_active_runs = 5\n',
        sleep=3,
    )
    store = open_store(root)
    daemon = start_scheduler(root, "--heartbeat-timeout", "3")
    try:
        wait_for(lambda: any(r["status"] == "running" for r in runs(store)), 120, "a running run")
    finally:
        daemon.kill()  # kill -9: no clean-up of any kind
        daemon.wait(timeout=10)
    orphan = next(r for r in runs(store) if r["status"] == "running")
    # Its runner died with the scheduler, and the runner's kernels with it.
    wait_for(lambda: no_kernels_left(root), 60, "orphaned kernels to exit")
    time.sleep(3)  # fire times pass while no scheduler runs

    restarted = start_scheduler(root, "--heartbeat-timeout", "3")
    try:
        wait_for(
            lambda: any(
                r["scheduled_for"] == orphan["scheduled_for"]
                and r["attempt"] == 1
                and r["status"] == "success"
                for r in runs(store)
            ),
            180,
            "the crashed fire time to be retried",
        )
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=90)
    everything = runs(store)
    crashed = next(r for r in everything if r["run_id"] == orphan["run_id"])
    assert crashed["status"] == "crashed"
    # Its runner was a process of this host: found gone by pid, without waiting for heartbeats.
    assert "is gone" in crashed["error"]
    # No duplicate, no lost fire time: every 3 s step from the first to the last is there.
    keys = Counter((r["scheduled_for"], r["attempt"]) for r in everything)
    assert max(keys.values()) == 1
    fire_times = sorted({r["scheduled_for"] for r in everything})
    steps = {
        round((_parse(later) - _parse(earlier)).total_seconds())
        for earlier, later in itertools.pairwise(fire_times)
    }
    assert steps == {3}, fire_times


def test_two_schedulers_on_postgresql_run_each_fire_time_once(
    tmp_path: Path, pg_url: str, open_store: OpenStore
) -> None:
    root = project_with(tmp_path, '[schedule]\nevery = "1s"\nmax_active_runs = 10\n', sleep=0)
    env = cli_env(**{DATABASE_URL_ENV: pg_url})
    daemons = [start_scheduler(root, "--max-runs", "2", env=env) for _ in range(2)]
    # Opened after the schedulers start, so that they still meet a fresh database together.
    store = open_store(root, env)
    try:
        wait_for(lambda: len(runs(store)) >= 6, 120, "six fire times")
    finally:
        for daemon in daemons:
            daemon.send_signal(signal.SIGTERM)
        for daemon in daemons:
            assert daemon.wait(timeout=120) == 0
    everything = runs(store)
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


def test_trigger_and_once(tmp_path: Path, open_store: OpenStore) -> None:
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
    store = open_store(root)
    assert {r["status"] for r in runs(store)} == {"queued"}
    once = subprocess.run(
        [str(BLOCKBOOK), "--project", str(root), "scheduler", "--once"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert once.returncode == 0, once.stderr
    by_id = {r["run_id"]: r for r in runs(store)}
    assert by_id[manual]["status"] == "success"
    assert by_id[manual]["trigger"] == "manual"
    assert by_id[manual]["params"]["interval_end"] == 5
    assert by_id[api]["status"] == "success"
    assert by_id[api]["trigger"] == "api"


def _parse(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)
