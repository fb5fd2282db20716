"""Queueing fire times as runs: the due ones of every watched schedule many per transaction,
and single ones (backfills, crash retries).

The run store's `UNIQUE (pipeline, scheduled_for, attempt)` makes queueing exactly-once, across
restarts and across schedulers sharing the store: a fire time another scheduler queued first is
only logged. Secrets of `[schedule.params]` are sealed, never stored in clear.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipelines.scheduling.fire_times import (
    Schedule,
    due_fire_times,
    interval_params,
    next_fire_after,
)
from pipelines.scheduling.watchlist import WatchedSchedule, Watchlist
from pipelines.status import Trigger
from pipelines.store.queue import QueuedRun, enqueue, enqueue_many
from pipelines.store.run_store import RunId, RunStore, new_run_id
from pipelines.store.sealed import seal

log = logging.getLogger(__name__)

RUNS_PER_TRANSACTION = 200
"""Fire times queued, or queued runs claimed, in one transaction."""


@dataclass(frozen=True, slots=True)
class FireTime:
    """One fire time of a pipeline's schedule to queue a run for."""

    pipeline: str
    folder: Path
    schedule: Schedule
    at: datetime
    anchor: datetime
    """The schedule's start, from which `[schedule]` intervals are counted."""
    trigger: Trigger
    attempt: int = 0
    """0, or the crash retry this run is."""


_Due = tuple[WatchedSchedule, list[QueuedRun], datetime]
"""A due schedule, the runs of its due fire times, and its next fire time after them."""


class FireTimeQueue:
    """Turns the watched schedules' fire times into queued runs."""

    def __init__(self, root: Path, store: RunStore, watchlist: Watchlist) -> None:
        self.root = root
        self.store = store
        self.watchlist = watchlist

    def queue_due(self, moment: datetime) -> None:
        """Queue the due fire times of every schedule, many per transaction."""
        batch: list[_Due] = []
        for watched in self.watchlist.take_due(moment):
            try:
                runs = [
                    self._queued_run(
                        FireTime(
                            watched.pipeline,
                            watched.folder,
                            watched.schedule,
                            fire_time,
                            watched.first_seen,
                            Trigger.SCHEDULE,
                        )
                    )
                    for fire_time in due_fire_times(
                        watched.schedule,
                        first_seen=watched.first_seen,
                        last_fired=watched.last_fired,
                        now=moment,
                        anchor=watched.first_seen,
                    )
                ]
                upcoming = next_fire_after(watched.schedule, moment, watched.first_seen)
            except Exception:
                # Its next fire time is left as it was: it is tried again at the next tick.
                log.exception("%s: could not queue its due runs; retrying", watched.pipeline)
                self.watchlist.put_back(watched)
                continue
            batch.append((watched, runs, upcoming))
        group: list[_Due] = []
        size = 0
        for entry in batch:
            if group and size + len(entry[1]) > RUNS_PER_TRANSACTION:
                self._queue_group(group)
                group, size = [], 0
            group.append(entry)
            size += len(entry[1])
        if group:
            self._queue_group(group)

    def queue_fire_time(self, fire: FireTime) -> RunId | None:
        """Queue the run of one fire time; None when some scheduler already did."""
        queued = self._queued_run(fire)
        if enqueue(self.store, queued):
            log.info("%s: queued run %s for %s", fire.pipeline, queued.run_id, fire.at.isoformat())
            return queued.run_id
        log.info("%s: %s was already queued", fire.pipeline, fire.at.isoformat())
        return None

    def _queue_group(self, group: list[_Due]) -> None:
        """Queue the due runs of some schedules in one transaction; their next fire times move
        on once all are queued (or were already, by another scheduler)."""
        try:
            queued = enqueue_many(self.store, [run for _, runs, _ in group for run in runs])
        except Exception:
            # Next fire times are left as they were: what failed is queued at the next tick.
            names = ", ".join(watched.pipeline for watched, _, _ in group[:5])
            more = f" and {len(group) - 5} more" if len(group) > 5 else ""
            log.exception("%s%s: could not queue their due runs; retrying", names, more)
            for watched, _, _ in group:
                self.watchlist.put_back(watched)
            return
        for watched, runs, upcoming in group:
            for run in runs:
                when = run.scheduled_for.isoformat() if run.scheduled_for else "?"
                if run.run_id in queued:
                    log.info("%s: queued run %s for %s", run.pipeline, run.run_id, when)
                else:
                    log.info("%s: %s was already queued", run.pipeline, when)
                watched.last_fired = run.scheduled_for
            watched.next_fire = upcoming
            self.watchlist.put_back(watched)

    def _queued_run(self, fire: FireTime) -> QueuedRun:
        # Secrets of [schedule.params] are sealed: never stored in clear, never on a command line.
        interval = interval_params(fire.schedule, fire.at, fire.anchor)
        params = seal(self.root, {**fire.schedule.params, **interval})
        return QueuedRun(
            run_id=new_run_id(),
            pipeline=fire.pipeline,
            pipeline_path=str(fire.folder),
            trigger=fire.trigger,
            params=params.shown,
            sealed_params=params.sealed,
            run_dir="",
            scheduled_for=fire.at,
            attempt=fire.attempt,
        )
