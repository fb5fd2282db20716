"""The scheduler: starts runs when pipelines' schedules fire, and cleans up after crashes.

One `tick` is the recipe; each step is a part of its own:

- `watchlist`: notice added, changed and removed schedules, and which fire times are due;
- `queueing`: queue each due fire time, many per transaction (the run store's unique constraint
  makes that exactly-once, across restarts and across schedulers);
- `runners`: collect runners that exited, and hand queued runs to new ones within the limits,
  claimed many per transaction;
- `crashes`: mark runs whose runner died or fell silent as crashed, and queue a retry when the
  schedule asks.

Between ticks the loop wakes up for the next fire time, so runs are queued when they fall due
rather than at the next tick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pipelines.rundir.state import now
from pipelines.scheduling.crashes import Crashes
from pipelines.scheduling.launcher import SubprocessLauncher
from pipelines.scheduling.options import SchedulerOptions
from pipelines.scheduling.queueing import FireTime, FireTimeQueue
from pipelines.scheduling.runners import Launched, Launcher, Runners
from pipelines.scheduling.watchlist import WatchedSchedule, Watchlist
from pipelines.store.run_store import RunId, RunStore

# SchedulerOptions is imported from here by the entry points that start a scheduler.
__all__ = ["Scheduler", "SchedulerOptions"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

_DEFAULTS = SchedulerOptions()


class Scheduler:
    def __init__(
        self,
        root: Path,
        store: RunStore,
        options: SchedulerOptions = _DEFAULTS,
        launcher: Launcher | None = None,
        clock: Clock = now,
    ) -> None:
        self.root = root
        self.store = store
        self.options = options
        self.launcher = launcher or SubprocessLauncher(root)
        self.clock = clock
        self.watchlist = Watchlist(root, store)
        self.queue = FireTimeQueue(root, store, self.watchlist)
        self.crashes = Crashes(store, options, self.watchlist, self.queue)
        self.runners = Runners(root, store, options, self.launcher, self.watchlist, self.crashes)
        self._last_scan = float("-inf")
        self._last_tick = datetime.min.replace(tzinfo=UTC)
        self._stop = threading.Event()

    @property
    def watched(self) -> dict[str, WatchedSchedule]:
        """The schedules watched, by pipeline."""
        return self.watchlist.watched

    @property
    def launched(self) -> dict[str, Launched]:
        """The runs this scheduler started whose runner has not exited yet, by run id."""
        return self.runners.launched

    @property
    def limits(self) -> dict[str, int]:
        """max_active_runs of pipelines this scheduler doesn't watch (backfills)."""
        return self.runners.limits

    # ---- the loop ----------------------------------------------------------------------

    def serve(self) -> None:
        """Tick until `stop()`; then wait for the runs this scheduler started (queued ones stay
        queued for the next scheduler)."""
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:
                # A daemon outlives a database hiccup: say what failed and try again next tick.
                log.exception("scheduler tick failed; retrying")
            rest = self.options.tick_seconds - (time.monotonic() - started)
            self._stop.wait(max(0.0, min(rest, self._until_next_fire())))
        while self.runners.launched:
            self.runners.collect()
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()

    def tick(self) -> None:
        moment = self._last_tick = self.clock()
        if time.monotonic() - self._last_scan >= self.options.rescan_seconds:
            self._last_scan = time.monotonic()
            self.rescan(moment)
        self.queue.queue_due(moment)
        self.runners.collect()
        self.crashes.reap(moment, running_here=self.runners.running)
        self.crashes.retry_due()
        self.runners.launch_queued(between_starts=self._queue_due_now)

    def run_once(self) -> None:
        """Evaluate due work once, start it, and wait for it to finish."""
        self.tick()
        self.drain()

    def drain(self, pipeline: str | None = None) -> None:
        """Keep starting queued runs (of one pipeline, or all) until none is left or running."""
        while True:
            self.runners.launch_queued(between_starts=self._queue_due_now, only=pipeline)
            self.runners.collect()
            self.crashes.retry_due()
            if not self.runners.launched and not self.runners.has_queued(pipeline):
                return
            time.sleep(0.2)

    # ---- steps -------------------------------------------------------------------------

    def rescan(self, moment: datetime) -> None:
        """Pick up added, changed and removed schedules (`Watchlist.rescan`)."""
        self.watchlist.rescan(moment)

    def queue_fire_time(self, fire: FireTime) -> RunId | None:
        """Queue the run of one fire time; None when some scheduler already did."""
        return self.queue.queue_fire_time(fire)

    def _queue_due_now(self) -> None:
        self.queue.queue_due(self.clock())

    def _until_next_fire(self) -> float:
        """Seconds until the earliest fire time: the loop wakes up for it rather than at the
        next tick, so a fire time is queued when it falls due."""
        earliest = self.watchlist.earliest_fire()
        if earliest is None or earliest <= self._last_tick:
            return float("inf")  # none, or one that failed to queue: tried again next tick
        return (earliest - self.clock()).total_seconds()
