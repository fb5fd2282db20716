"""Runs whose runner is gone: marked crashed, alerted like failed runs, and retried as a new run
of the same fire time (`attempt + 1`) when their schedule's `run_retries` asks.

A runner is gone when its process (of this host, found by pid) died, or when it has been silent
for longer than the heartbeat timeout. A silent runner of this host (paused, hung) is stopped
before its run is ended, and a retry is queued only once the old runner is surely gone: two
runners of one fire time never overlap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pipelines.alerts import dispatch as alerts
from pipelines.assembly.config import load_pipeline_config
from pipelines.scheduling.options import SchedulerOptions
from pipelines.scheduling.queueing import FireTime, FireTimeQueue
from pipelines.scheduling.watchlist import Watchlist
from pipelines.store.liveness import runner_gone, runner_stopped, runs_without_runner
from pipelines.store.queue import mark_crashed, orphans
from pipelines.store.records import RunRecord
from pipelines.store.run_store import RunStore

log = logging.getLogger(__name__)

_SILENT = "the runner stopped sending heartbeats (its process died, was killed or hangs)"


class Crashes:
    """Ends the runs whose runner is gone, and queues their retries when they are due."""

    def __init__(
        self,
        store: RunStore,
        options: SchedulerOptions,
        watchlist: Watchlist,
        queue: FireTimeQueue,
    ) -> None:
        self.store = store
        self.options = options
        self.watchlist = watchlist
        self.queue = queue
        self.retries: dict[str, RunRecord] = {}
        """Crashed runs whose retry is due, until it is queued."""

    def reap(self, moment: datetime, running_here: Callable[[str], bool]) -> None:
        """End the runs whose runner is gone: at once when it was a process of this host (found
        by pid: a restarted scheduler cleans up after the one killed), after the heartbeat
        timeout otherwise. `running_here(run_id)`: its runner is a live child of this
        scheduler, just slow to beat."""
        gone = [(run, runner_gone(run)) for run in runs_without_runner(self.store)]
        for run in orphans(self.store, moment, self.options.heartbeat_timeout):
            if running_here(run.run_id):
                continue
            # A silent runner of this host (paused, hung) is stopped before its run is ended: it
            # may be holding SQLite's write lock, which would keep anyone from marking the run.
            if not runner_stopped(run, self.options.kill_wait):
                log.error("%s: run %s's silent runner is still alive", run.pipeline, run.run_id)
                continue
            gone.append((run, _SILENT))
        for run, reason in gone:
            try:
                self.crashed(run, reason, moment)
            except Exception:
                log.exception("%s: could not end run %s", run.pipeline, run.run_id)

    def crashed(self, run: RunRecord, reason: str, moment: datetime | None = None) -> None:
        """Mark the run crashed and alert; its retry, when due, waits in `retries`."""
        if not mark_crashed(self.store, run.run_id, reason, moment):
            return  # it ended meanwhile, or another scheduler got there first
        log.warning("%s: run %s crashed: %s", run.pipeline, run.run_id, reason)
        watched = self.watchlist.watched.get(run.pipeline)
        retries = watched.schedule.run_retries if watched is not None else 0
        if run.scheduled_for is not None and run.attempt < retries:
            self.retries[run.run_id] = run
        self._alert(run)

    def retry_due(self) -> None:
        """Queue the due retries of crashed runs, each once its old runner is surely gone (a
        silent runner on this host, paused or hung, is killed first: two runners of one fire
        time never overlap). What fails stays for the next tick."""
        for run_id, run in list(self.retries.items()):
            watched = self.watchlist.watched.get(run.pipeline)
            try:
                if watched is not None and run.scheduled_for is not None:
                    if not runner_stopped(run, self.options.kill_wait):
                        log.error("%s: run %s's runner is still alive", run.pipeline, run_id)
                        continue
                    self.queue.queue_fire_time(
                        FireTime(
                            run.pipeline,
                            Path(run.pipeline_path),
                            watched.schedule,
                            run.scheduled_for,
                            watched.first_seen,
                            run.trigger,
                            attempt=run.attempt + 1,
                        )
                    )
            except Exception:
                log.exception("%s: could not queue the retry of run %s", run.pipeline, run_id)
                continue
            del self.retries[run_id]  # queued, or its schedule is gone

    def _alert(self, run: RunRecord) -> None:
        """A crashed run alerts like a failed one; the runner that would have said so is gone."""
        config, _ = load_pipeline_config(Path(run.pipeline_path))
        alerts.notify_finished(config.alerts, self.store, run.run_id)
