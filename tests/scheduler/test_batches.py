"""Fire times queued and queued runs claimed many per transaction: still exactly once, still
within each pipeline's max_active_runs, with schedulers racing on one database (SQLite and
PostgreSQL, each scheduler with its own connection)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from pipelines.scheduling.scheduler import Scheduler, SchedulerOptions
from pipelines.status import Trigger
from pipelines.store.queue import QueuedRun, claim_launches, enqueue, enqueue_many
from pipelines.store.run_store import RunStore, new_run_id
from tests.helpers.notebooks import make_pipeline
from tests.scheduler.test_scheduler_logic import NOTEBOOK, FakeClock, RecordingLauncher

T = TypeVar("T")
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def second_store(any_store: RunStore) -> Iterator[RunStore]:
    """Another connection to the same database, as a second scheduler process has."""
    with RunStore(any_store.url) as opened:
        yield opened


def queued(pipeline: str, fire_time: datetime, attempt: int = 0) -> QueuedRun:
    return QueuedRun(
        run_id=new_run_id(),
        pipeline=pipeline,
        pipeline_path=f"/nowhere/{pipeline}",
        trigger=Trigger.SCHEDULE,
        params={"interval_start": fire_time.isoformat()},
        run_dir="",
        scheduled_for=fire_time,
        attempt=attempt,
    )


def race(workers: list[Callable[[], T]]) -> list[T | None]:
    """Run the workers at once, in threads released together; their results, in order."""
    barrier = threading.Barrier(len(workers))
    results: list[T | None] = [None] * len(workers)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            barrier.wait(timeout=60)
            results[index] = workers[index]()
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    return results


def test_a_batch_records_only_the_fire_times_not_taken(any_store: RunStore) -> None:
    first = [queued("p", T0 + timedelta(seconds=s)) for s in range(5)]
    assert enqueue_many(any_store, first) == {run.run_id for run in first}
    assert enqueue(any_store, queued("p", T0 + timedelta(seconds=5)))
    again = [queued("p", T0 + timedelta(seconds=s)) for s in range(8)]
    again.append(queued("p", T0, attempt=1))  # a crash retry of a fire time is its own run
    recorded = enqueue_many(any_store, again)
    assert recorded == {again[6].run_id, again[7].run_id, again[8].run_id}
    assert enqueue_many(any_store, []) == set()
    runs = any_store.list_runs(limit=1000)
    assert len(runs) == 9
    assert all(run.created_at is not None for run in runs)


def test_two_batches_of_the_same_fire_times_racing_record_each_once(
    any_store: RunStore, second_store: RunStore
) -> None:
    fire_times = [T0 + timedelta(seconds=s) for s in range(1200)]

    def batch(store: RunStore, reverse: bool) -> set[str]:
        runs = [queued(f"p{i % 7}", t) for i, t in enumerate(fire_times)]
        return set(enqueue_many(store, runs[::-1] if reverse else runs))

    mine, theirs = race([lambda: batch(any_store, False), lambda: batch(second_store, True)])
    assert mine is not None
    assert theirs is not None
    assert not mine & theirs
    runs = any_store.list_runs(limit=10_000)
    assert len(runs) == len(mine | theirs) == len(fire_times)
    assert {run.run_id for run in runs} == mine | theirs


def test_two_schedulers_queue_many_due_fire_times_exactly_once(
    tmp_path: Path, any_store: RunStore, second_store: RunStore
) -> None:
    pipelines = [f"p{i:02d}" for i in range(12)]
    for name in pipelines:
        toml = '[schedule]\nevery = "1s"\ncatchup = "all"\nmax_active_runs = 100\n'
        make_pipeline(tmp_path, NOTEBOOK, toml, name=name)
    clock = FakeClock(T0)
    options = SchedulerOptions(rescan_seconds=0.0, max_runs=0)  # queue only: nothing starts
    daemons = [
        Scheduler(tmp_path, store, options, RecordingLauncher(), clock)
        for store in (any_store, second_store)
    ]
    for daemon in daemons:
        daemon.tick()
    clock.advance(seconds=40)
    race([daemon.tick for daemon in daemons])
    runs = any_store.list_runs(limit=10_000)
    keys = Counter((run.pipeline, run.scheduled_for, run.attempt) for run in runs)
    assert len(runs) == 40 * len(pipelines)
    assert max(keys.values()) == 1
    for name in pipelines:
        times = sorted(
            run.scheduled_for for run in runs if run.pipeline == name if run.scheduled_for
        )
        assert times == [T0 + timedelta(seconds=s) for s in range(1, 41)]
    # Each scheduler moved on past what is queued: ticking again queues nothing more.
    for daemon in daemons:
        daemon.tick()
    assert len(any_store.list_runs(limit=10_000)) == 40 * len(pipelines)


def test_batch_claims_racing_respect_max_active_runs(
    any_store: RunStore, second_store: RunStore
) -> None:
    limits = {"a": 1, "b": 2, "c": 5}
    runs = [queued(p, T0 + timedelta(seconds=s)) for p in limits for s in range(8)]
    assert len(enqueue_many(any_store, runs)) == len(runs)
    pairs = [(run.run_id, run.pipeline) for run in runs]

    mine, theirs = race(
        [
            lambda: claim_launches(any_store, pairs, limits),
            lambda: claim_launches(second_store, pairs[::-1], limits),
        ]
    )
    assert mine is not None
    assert theirs is not None
    assert not mine & theirs
    taken = Counter(run.pipeline for run in runs if run.run_id in mine | theirs)
    assert taken == Counter(limits)
    # Full: a later claim takes nothing more.
    assert claim_launches(any_store, pairs, limits) == set()


def test_schedulers_sharing_a_database_start_each_run_once_within_limits(
    tmp_path: Path, any_store: RunStore, second_store: RunStore
) -> None:
    for name, limit in (("x", 3), ("y", 1)):
        toml = f'[schedule]\nevery = "1s"\ncatchup = "all"\nmax_active_runs = {limit}\n'
        make_pipeline(tmp_path, NOTEBOOK, toml, name=name)
    clock = FakeClock(T0)
    options = SchedulerOptions(rescan_seconds=0.0, max_runs=100)
    daemons = [
        Scheduler(tmp_path, store, options, RecordingLauncher(), clock)
        for store in (any_store, second_store)
    ]
    for daemon in daemons:
        daemon.tick()
    clock.advance(seconds=20)
    race([daemon.tick for daemon in daemons])
    started = [
        run
        for daemon in daemons
        for run in daemon.launcher.started  # type: ignore[attr-defined]
    ]
    assert len({run.run_id for run in started}) == len(started)
    assert Counter(run.pipeline for run in started) == {"x": 3, "y": 1}
    # The oldest fire times go first.
    for name in ("x", "y"):
        mine = sorted(
            run.scheduled_for for run in started if run.pipeline == name if run.scheduled_for
        )
        assert mine == [T0 + timedelta(seconds=s) for s in range(1, len(mine) + 1)]


def test_the_loop_wakes_for_the_next_fire_time_but_not_for_a_failed_one(
    tmp_path: Path, any_store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.scheduling.queueing as queueing_module

    make_pipeline(tmp_path, NOTEBOOK, '[schedule]\nevery = "10s"\n', name="p")
    clock = FakeClock(T0)
    daemon = Scheduler(
        tmp_path, any_store, SchedulerOptions(rescan_seconds=0.0), RecordingLauncher(), clock
    )
    daemon.tick()
    assert daemon._until_next_fire() == 10.0  # woken for it, not at the next tick
    clock.advance(seconds=4)
    assert daemon._until_next_fire() == 6.0

    def unreachable(store: RunStore, runs: object) -> set[str]:
        raise RuntimeError("the run store is unreachable (injected)")

    monkeypatch.setattr(queueing_module, "enqueue_many", unreachable)
    clock.advance(seconds=6)
    daemon.tick()
    # Not queued: tried again at the next tick, not at once in a loop.
    assert daemon._until_next_fire() == float("inf")
    monkeypatch.undo()
    daemon.tick()
    assert [run.scheduled_for for run in any_store.list_runs()] == [T0 + timedelta(seconds=10)]
    assert daemon._until_next_fire() == 10.0
