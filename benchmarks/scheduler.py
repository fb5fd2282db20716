"""The scheduler under load: 1,000 pipelines with `every` schedules.

Runs are stubbed at the runner boundary (a launcher that records each run as succeeded at
once), so what is measured is the scheduler itself: how late a fire time is queued after it
is due (fire lag, from the run store: queued-at minus fire time) and how much CPU the
scheduler uses while nothing is due. Every schedule is first seen at the same moment, so all
of them fire at once, every --every seconds. Targets (issue 12): fire lag p99 <= 1 s with 1,000
schedules firing at once, idle CPU <= 2 % of a core.

    python benchmarks/scheduler.py [--pipelines 1000] [--every 10] [--seconds 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from pipelines.rundir.state import now
from pipelines.scheduling.scheduler import Scheduler, SchedulerOptions
from pipelines.status import RunStatus
from pipelines.store.records import RunRecord
from pipelines.store.run_store import RunStore


class Done:
    def poll(self) -> int:
        return 0


class SucceedAtOnce:
    """Stands in for runner processes: every run it is handed succeeds immediately."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def start(self, run: RunRecord) -> Done:
        self.store.start_run(run.run_id, now())
        self.store.finish_run(run.run_id, RunStatus.SUCCESS, now())
        return Done()


def make_project(root: Path, pipelines: int, every: str) -> None:
    (root / "blockbook.toml").write_text("")
    notebook = new_notebook(cells=[new_code_cell("%%block work\nx = 1")])
    for index in range(pipelines):
        folder = root / f"p{index:04d}"
        folder.mkdir()
        nbformat.write(notebook, folder / "a.ipynb")
        (folder / "pipeline.toml").write_text(f'[schedule]\nevery = "{every}"\n')


def serve_for(daemon: Scheduler, seconds: float) -> tuple[float, float]:
    """Run the scheduler loop for `seconds`; returns (wall, CPU seconds of this process)."""
    thread = threading.Thread(target=daemon.serve)
    wall, cpu = time.perf_counter(), time.process_time()
    thread.start()
    time.sleep(seconds)
    daemon.stop()
    thread.join()
    return time.perf_counter() - wall, time.process_time() - cpu


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--every", type=int, default=10, help="seconds between fire times")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long each phase runs")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        make_project(root, options.pipelines, f"{options.every}s")
        with RunStore(f"sqlite:///{root / 'bench.db'}") as store:
            settings = SchedulerOptions(
                max_runs=options.pipelines, heartbeat_timeout=timedelta(hours=1)
            )
            daemon = Scheduler(root, store, settings, SucceedAtOnce(store))
            daemon.rescan(now())  # startup cost, not part of the steady state
            for watched in daemon.watched.values():
                daemon.limits[watched.pipeline] = 1
            wall, cpu = serve_for(daemon, options.seconds)
            runs = store.list_runs(limit=10**6)
            lags = [
                (run.created_at - run.scheduled_for).total_seconds()
                for run in runs
                if run.scheduled_for is not None
            ]
        idle_root = root / "idle"
        idle_root.mkdir()
        make_project(idle_root, options.pipelines, "1d")
        with RunStore(f"sqlite:///{idle_root / 'bench.db'}") as store:
            idle = Scheduler(idle_root, store, SchedulerOptions(), SucceedAtOnce(store))
            idle.rescan(now())
            idle_wall, idle_cpu = serve_for(idle, options.seconds)
    expected = options.pipelines * options.seconds / options.every
    print(
        f"{options.pipelines} pipelines, every {options.every}s, {options.seconds:.0f}s per phase"
    )
    print(f"{'measure':<36}{'value':>12}")
    print(f"{'fire times queued':<36}{len(lags):>12} (~{expected:.0f} due)")
    print(f"{'fire lag p50 (ms)':<36}{statistics.median(lags) * 1000:>12.1f}")
    print(f"{'fire lag p99 (ms)':<36}{percentile(lags, 0.99) * 1000:>12.1f}  (target <= 1000)")
    print(f"{'CPU busy (% of one core)':<36}{cpu / wall * 100:>12.1f}")
    idle_percent = idle_cpu / idle_wall * 100
    print(f"{'CPU idle, nothing due (% of a core)':<36}{idle_percent:>12.1f}  (target <= 2)")


if __name__ == "__main__":
    main()
