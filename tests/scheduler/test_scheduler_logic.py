"""The scheduler's decisions on a fake clock, with runs recorded instead of started.

The launcher is the seam the scheduler is built around (like jupyter-scheduler's swappable
collaborators): here it records what would start; tests/scheduler/test_scheduler_process.py
starts real runner processes.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipelines.rundir.state import now
from pipelines.scheduling.backfill import backfill
from pipelines.scheduling.scheduler import Scheduler, SchedulerOptions
from pipelines.status import RunStatus, Trigger
from pipelines.store.queue import heartbeat, queued_runs
from pipelines.store.records import RunRecord
from pipelines.store.run_store import RunStore
from tests.helpers.notebooks import make_pipeline

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
NOTEBOOK = {"a.ipynb": ["%load_ext kernel_magics", "%%block work\nx = 1"]}


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.moment = start

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


class Handle:
    def __init__(self) -> None:
        self.code: int | None = None

    def poll(self) -> int | None:
        return self.code


class RecordingLauncher:
    """Starts nothing: remembers the runs and lets the test decide when each one ends."""

    def __init__(self) -> None:
        self.started: list[RunRecord] = []
        self.handles: dict[str, Handle] = {}
        self.lock = threading.Lock()

    def start(self, run: RunRecord) -> Handle:
        with self.lock:
            self.started.append(run)
            self.handles[run.run_id] = Handle()
            return self.handles[run.run_id]


@pytest.fixture
def store(any_store: RunStore) -> RunStore:
    return any_store


def scheduler(root: Path, store: RunStore, clock: FakeClock, **options: object) -> Scheduler:
    launcher = RecordingLauncher()
    defaults: dict[str, object] = {"rescan_seconds": 0.0}
    defaults.update(options)
    return Scheduler(root, store, SchedulerOptions(**defaults), launcher, clock)  # type: ignore[arg-type]


def fired(store: RunStore) -> list[tuple[datetime | None, int]]:
    return sorted((r.scheduled_for, r.attempt) for r in store.list_runs(limit=1000))


def finish_all(store: RunStore, daemon: Scheduler) -> None:
    """The runs the scheduler started end successfully (what a runner would record)."""
    launcher = daemon.launcher
    assert isinstance(launcher, RecordingLauncher)
    for run in launcher.started:
        record = store.get_run(run.run_id)
        assert record is not None
        if not record.status.is_terminal:
            store.start_run(run.run_id, now())
            store.finish_run(run.run_id, RunStatus.SUCCESS, now())
        launcher.handles[run.run_id].code = 0


def test_fire_times_before_the_schedule_was_seen_never_run(tmp_path: Path, store: RunStore) -> None:
    make_pipeline(tmp_path, NOTEBOOK, '[schedule]\ncron = "0 * * * *"\n', name="hourly")
    clock = FakeClock(T0 + timedelta(minutes=30))
    daemon = scheduler(tmp_path, store, clock)
    daemon.tick()
    assert fired(store) == []  # 12:00 was before first sight
    clock.advance(minutes=30)
    daemon.tick()
    assert fired(store) == [(T0 + timedelta(hours=1), 0)]
    [run] = store.list_runs()
    assert run.trigger is Trigger.SCHEDULE
    assert run.params["interval_start"].startswith("2026-03-01T12:00:00")
    assert run.params["interval_end"].startswith("2026-03-01T13:00:00")


@pytest.mark.parametrize(
    ("catchup", "expected_hours"),
    [
        ("none", []),
        ("latest", [5]),
        ('all"\nmax_catchup = 2\n#"', [4, 5]),
        ("all", [1, 2, 3, 4, 5]),
    ],
)
def test_catch_up_after_downtime(
    tmp_path: Path, store: RunStore, catchup: str, expected_hours: list[int]
) -> None:
    make_pipeline(
        tmp_path, NOTEBOOK, f'[schedule]\ncron = "0 * * * *"\ncatchup = "{catchup}"\n', name="p"
    )
    clock = FakeClock(T0 + timedelta(minutes=1))
    daemon = scheduler(tmp_path, store, clock)
    daemon.tick()
    # The scheduler is down from 12:01 to 17:30.
    clock.advance(hours=5, minutes=29)
    restarted = scheduler(tmp_path, store, clock)
    restarted.tick()
    assert fired(store) == [(T0 + timedelta(hours=h), 0) for h in expected_hours]


def test_a_restart_never_repeats_a_fire_time(tmp_path: Path, store: RunStore) -> None:
    make_pipeline(tmp_path, NOTEBOOK, '[schedule]\nevery = "10s"\ncatchup = "all"\n', name="p")
    clock = FakeClock(T0)
    first = scheduler(tmp_path, store, clock)
    first.tick()
    for _ in range(3):
        clock.advance(seconds=10)
        first.tick()
    second = scheduler(tmp_path, store, clock)
    second.tick()
    clock.advance(seconds=10)
    second.tick()
    first.tick()  # an old instance ticking late changes nothing either
    assert fired(store) == [(T0 + timedelta(seconds=10 * k), 0) for k in range(1, 5)]


def test_changed_and_removed_schedules_are_picked_up(tmp_path: Path, store: RunStore) -> None:
    folder = make_pipeline(tmp_path, NOTEBOOK, '[schedule]\nevery = "1h"\n', name="p")
    clock = FakeClock(T0)
    daemon = scheduler(tmp_path, store, clock)
    daemon.tick()
    clock.advance(minutes=30)
    (folder / "pipeline.toml").write_text('[schedule]\nevery = "10m"\n')
    daemon.tick()  # changed: starts over from 12:30
    clock.advance(minutes=10)
    daemon.tick()
    assert fired(store) == [(T0 + timedelta(minutes=40), 0)]
    (folder / "pipeline.toml").write_text('description = "no schedule now"\n')
    daemon.tick()
    clock.advance(hours=2)
    daemon.tick()
    assert len(fired(store)) == 1
    assert daemon.watched == {}


def test_max_active_runs_and_max_runs_bound_what_starts(tmp_path: Path, store: RunStore) -> None:
    make_pipeline(
        tmp_path,
        NOTEBOOK,
        '[schedule]\nevery = "1m"\ncatchup = "all"\nmax_active_runs = 2\n',
        name="p",
    )
    make_pipeline(tmp_path, NOTEBOOK, '[schedule]\nevery = "1m"\ncatchup = "all"\n', name="q")
    clock = FakeClock(T0)
    daemon = scheduler(tmp_path, store, clock, max_runs=3)
    daemon.tick()
    clock.advance(minutes=5)
    daemon.tick()
    launcher = daemon.launcher
    assert isinstance(launcher, RecordingLauncher)
    started = [run.pipeline for run in launcher.started]
    assert sorted(started) == ["p", "p", "q"]
    assert len(queued_runs(store)) == 7  # 10 fire times, 3 taken
    finish_all(store, daemon)
    daemon.tick()
    assert len(launcher.started) == 6
    # Oldest fire times go first.
    p_runs = [r for r in launcher.started if r.pipeline == "p"]
    assert [r.scheduled_for for r in p_runs] == sorted(r.scheduled_for for r in p_runs)


def test_two_schedulers_on_one_database_start_each_fire_time_once(
    tmp_path: Path, store: RunStore
) -> None:
    make_pipeline(
        tmp_path,
        NOTEBOOK,
        '[schedule]\nevery = "1s"\ncatchup = "all"\nmax_active_runs = 100\n',
        name="p",
    )
    clock = FakeClock(T0)
    schedulers = [scheduler(tmp_path, store, clock, max_runs=100) for _ in range(2)]
    for daemon in schedulers:
        daemon.tick()
    barrier = threading.Barrier(2)

    def race(daemon: Scheduler) -> None:
        for _ in range(20):
            barrier.wait()
            daemon.tick()

    clock.advance(seconds=30)
    threads = [threading.Thread(target=race, args=(d,)) for d in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    runs = store.list_runs(limit=1000)
    times = [r.scheduled_for for r in runs]
    assert len(times) == len(set(times)) == 30
    started = [
        run.run_id
        for daemon in schedulers
        for run in daemon.launcher.started  # type: ignore[attr-defined]
    ]
    assert len(started) == len(set(started)) == 30


def test_silent_runs_are_marked_crashed_and_retried(tmp_path: Path, store: RunStore) -> None:
    make_pipeline(tmp_path, NOTEBOOK, '[schedule]\nevery = "1h"\nrun_retries = 1\n', name="p")
    clock = FakeClock(T0)
    daemon = scheduler(tmp_path, store, clock, heartbeat_timeout=timedelta(seconds=30))
    daemon.tick()
    clock.advance(hours=1)
    daemon.tick()
    [run] = store.list_runs()
    store.start_run(run.run_id, T0 + timedelta(hours=1))
    heartbeat(store, run.run_id, T0 + timedelta(hours=1))
    # The runner dies (its handle reports an exit) and stops beating.
    daemon.launcher.handles[run.run_id].code = -9  # type: ignore[attr-defined]
    daemon.launched.clear()  # a restarted scheduler knows nothing of it
    clock.advance(seconds=31)
    daemon.tick()
    crashed = store.get_run(run.run_id)
    assert crashed is not None
    assert crashed.status is RunStatus.CRASHED
    assert "heartbeats" in (crashed.error or "")
    assert fired(store) == [(T0 + timedelta(hours=1), 0), (T0 + timedelta(hours=1), 1)]
    # The retry crashes too: no retries are left.
    [retry] = [r for r in store.list_runs() if r.attempt == 1]
    store.start_run(retry.run_id, clock())
    daemon.launched.clear()
    clock.advance(seconds=31)
    daemon.tick()
    assert [r.status for r in store.list_runs() if r.attempt == 1] == [RunStatus.CRASHED]
    assert len(fired(store)) == 2


def test_backfill_queues_each_fire_time_once(tmp_path: Path, store: RunStore) -> None:
    folder = make_pipeline(
        tmp_path,
        NOTEBOOK,
        '[schedule]\ncron = "0 6 * * *"\ntimezone = "Europe/Paris"\nmax_active_runs = 2\n',
        name="daily",
    )
    clock = FakeClock(T0)
    daemon = scheduler(tmp_path, store, clock)
    start = datetime(2024, 3, 30, tzinfo=UTC)
    end = datetime(2024, 4, 1, 23, 59, tzinfo=UTC)

    launcher = daemon.launcher
    assert isinstance(launcher, RecordingLauncher)
    finisher = threading.Thread(target=_finish_while_draining, args=(store, launcher))
    finisher.start()
    queued = backfill(daemon, folder, start, end)
    finisher.join()
    assert len(queued) == 3
    runs = sorted(store.list_runs(), key=lambda r: r.scheduled_for or T0)
    # 06:00 in Paris is 05:00 UTC in winter and 04:00 UTC from the DST change on 31 March.
    assert [r.scheduled_for.isoformat() for r in runs if r.scheduled_for] == [
        "2024-03-30T05:00:00+00:00",
        "2024-03-31T04:00:00+00:00",
        "2024-04-01T04:00:00+00:00",
    ]
    assert {r.trigger for r in runs} == {Trigger.BACKFILL}
    assert runs[1].params["interval_start"] == "2024-03-30T06:00:00+01:00"
    assert runs[1].params["interval_end"] == "2024-03-31T06:00:00+02:00"
    # Resumable: a second backfill of the same window adds nothing.
    assert backfill(daemon, folder, start, end) == []


def _finish_while_draining(store: RunStore, launcher: RecordingLauncher) -> None:
    done: set[str] = set()
    deadline = datetime.now(UTC) + timedelta(seconds=20)
    while len(done) < 3 and datetime.now(UTC) < deadline:
        with launcher.lock:
            pending = [r for r in launcher.started if r.run_id not in done]
        for run in pending:
            store.start_run(run.run_id, now())
            store.finish_run(run.run_id, RunStatus.SUCCESS, now())
            launcher.handles[run.run_id].code = 0
            done.add(run.run_id)
        threading.Event().wait(0.05)


def test_schedulers_starting_together_share_one_anchor(tmp_path: Path, store: RunStore) -> None:
    make_pipeline(tmp_path, NOTEBOOK, '[schedule]\nevery = "1s"\n', name="p")
    clocks = [FakeClock(T0), FakeClock(T0 + timedelta(milliseconds=300))]
    daemons = [scheduler(tmp_path, store, clock) for clock in clocks]
    barrier = threading.Barrier(2)

    def first_tick(daemon: Scheduler) -> None:
        barrier.wait()
        daemon.tick()

    threads = [threading.Thread(target=first_tick, args=(d,)) for d in daemons]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Both fire `every` schedules at the first writer's instants: offsets never double-run.
    anchors = {daemon.watched["p"].first_seen for daemon in daemons}
    assert len(anchors) == 1
    assert anchors <= {T0, T0 + timedelta(milliseconds=300)}
