"""The runner processes a scheduler starts: queued runs handed to new runners within the limits,
and runners that exited collected.

Queued runs are claimed many per transaction, counted under the locks of their pipelines, so
`max_runs` (this scheduler's processes) and each pipeline's `max_active_runs` (over every
scheduler sharing the store) hold. A run whose runner cannot start, or exits before the run
ended, is crashed at once rather than after the heartbeat timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pipelines.rundir.layout import launch_log
from pipelines.scheduling.crashes import Crashes
from pipelines.scheduling.options import SchedulerOptions
from pipelines.scheduling.queueing import RUNS_PER_TRANSACTION
from pipelines.scheduling.watchlist import Watchlist
from pipelines.store.liveness import record_runner
from pipelines.store.queue import active_counts, claim_launches, queued_runs
from pipelines.store.records import RunRecord
from pipelines.store.run_store import RunStore
from pipelines.store.runner_process import RunnerProcess

log = logging.getLogger(__name__)

_QUEUED_PAGE = 100
"""Queued runs looked at per tick (at least; more when more runner slots are free)."""


class RunHandle(Protocol):
    def poll(self) -> int | None: ...


class Launcher(Protocol):
    def start(self, run: RunRecord) -> RunHandle: ...


@dataclass(slots=True)
class Launched:
    run: RunRecord
    handle: RunHandle
    started: float = field(default_factory=time.monotonic)


class Runners:
    """The runs this scheduler launched, by run id, until their runner exits."""

    def __init__(
        self,
        root: Path,
        store: RunStore,
        options: SchedulerOptions,
        launcher: Launcher,
        watchlist: Watchlist,
        crashes: Crashes,
    ) -> None:
        self.root = root
        self.store = store
        self.options = options
        self.launcher = launcher
        self.watchlist = watchlist
        self.crashes = crashes
        self.launched: dict[str, Launched] = {}
        self.limits: dict[str, int] = {}
        """max_active_runs of pipelines this scheduler doesn't watch (backfills)."""

    def launch_queued(self, between_starts: Callable[[], None], only: str | None = None) -> None:
        """Start queued runs (of one pipeline, or all) in the free slots. Starting runners takes
        a while: `between_starts` is called after each, so what falls due meanwhile (fire times)
        is done on time all the same."""
        free = self.options.max_runs - len(self.launched)
        if free <= 0:
            return
        queued = queued_runs(self.store, limit=max(_QUEUED_PAGE, free))
        active = active_counts(self.store) if queued else {}
        candidates: list[RunRecord] = []
        for run in queued:
            if only is not None and run.pipeline != only:
                continue
            if len(candidates) >= free:
                break
            if active.get(run.pipeline, 0) >= self._limit(run.pipeline):
                continue
            candidates.append(run)
            active[run.pipeline] = active.get(run.pipeline, 0) + 1
        for start in range(0, len(candidates), RUNS_PER_TRANSACTION):
            page = candidates[start : start + RUNS_PER_TRANSACTION]
            # The limits are checked again in the claim: other schedulers may share the store.
            claimed = claim_launches(
                self.store,
                [(run.run_id, run.pipeline) for run in page],
                {run.pipeline: self._limit(run.pipeline) for run in page},
            )
            for run in page:
                if run.run_id in claimed:
                    self._start(run)
                    between_starts()

    def collect(self) -> None:
        """Forget the runners that exited; a run one left unfinished is crashed."""
        for run_id, launched in list(self.launched.items()):
            code = launched.handle.poll()
            if code is None:
                continue
            del self.launched[run_id]
            record = self.store.get_run(run_id)
            if record is not None and not record.status.is_terminal:
                reason = (
                    f"the runner process exited with code {code} before the run ended; see "
                    f"{launch_log(self.root, run_id)}"
                )
                self.crashes.crashed(record, reason)

    def running(self, run_id: str) -> bool:
        """The run's runner is a process this scheduler started, still alive."""
        launched = self.launched.get(run_id)
        return launched is not None and launched.handle.poll() is None

    def has_queued(self, pipeline: str | None) -> bool:
        return any(pipeline is None or run.pipeline == pipeline for run in queued_runs(self.store))

    def _start(self, run: RunRecord) -> None:
        log.info("%s: starting run %s", run.pipeline, run.run_id)
        try:
            handle = self.launcher.start(run)
        except Exception as exc:
            # Taken but never started: end it now rather than after the heartbeat timeout.
            log.exception("%s: could not start run %s", run.pipeline, run.run_id)
            self.crashes.crashed(run, f"its runner process could not be started: {exc}")
            return
        self.launched[run.run_id] = Launched(run, handle)
        self._record_runner(run, handle)

    def _record_runner(self, run: RunRecord, handle: RunHandle) -> None:
        """The child's pid goes with the run at once: if this scheduler is killed before the
        runner records itself, the next one still knows whose death ends the run."""
        pid = getattr(handle, "pid", None)
        runner = RunnerProcess.of_pid(pid) if isinstance(pid, int) else None
        if runner is not None:
            record_runner(self.store, run.run_id, runner)

    def _limit(self, pipeline: str) -> int:
        watched = self.watchlist.watched.get(pipeline)
        if watched is not None:
            return watched.schedule.max_active_runs
        return self.limits.get(pipeline, 1)
