"""The scheduler: starts runs when pipelines' schedules fire, and cleans up after crashes.

One `tick` is the recipe: notice added, changed and removed schedules; collect finished
runners; mark runs whose runner died as crashed (and queue a retry when the schedule asks);
queue each due fire time (the run store's unique constraint makes that exactly-once, across
restarts and across schedulers); hand queued runs to runner processes within the limits.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from pipelines.alerts import dispatch as alerts
from pipelines.assembly.config import PIPELINE_FILE, load_pipeline_config
from pipelines.assembly.project import list_pipelines
from pipelines.rundir.layout import launch_log
from pipelines.rundir.state import now
from pipelines.scheduling.fire_times import (
    Schedule,
    due_fire_times,
    interval_params,
    next_fire_after,
    schedule_of,
)
from pipelines.scheduling.fire_times import (
    fingerprint as schedule_fingerprint,
)
from pipelines.scheduling.launcher import SubprocessLauncher
from pipelines.status import Trigger
from pipelines.store.liveness import (
    record_runner,
    runner_gone,
    runner_stopped,
    runs_without_runner,
)
from pipelines.store.queue import (
    QueuedRun,
    ScheduleState,
    active_counts,
    adopt_schedule,
    claim_launch,
    enqueue,
    forget_schedule,
    mark_crashed,
    orphans,
    queued_runs,
    schedule_states,
)
from pipelines.store.records import RunRecord
from pipelines.store.run_store import RunId, RunStore, new_run_id
from pipelines.store.runner_process import RunnerProcess
from pipelines.store.sealed import seal

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class SchedulerOptions:
    max_runs: int = 4
    """Runner processes at once, over all pipelines."""
    tick_seconds: float = 0.5
    rescan_seconds: float = 5.0
    """How often pipeline.toml files are looked at again (added, changed, removed schedules)."""
    heartbeat_timeout: timedelta = timedelta(seconds=30)
    """A running run whose runner has been silent this long is marked crashed."""
    kill_wait: timedelta = timedelta(seconds=30)
    """How long a tick waits for a silent runner on this host to die once killed; its crash
    retry is queued only after it died (a runner that outlives this is looked at next tick)."""


_SILENT = "the runner stopped sending heartbeats (its process died, was killed or hangs)"


class RunHandle(Protocol):
    def poll(self) -> int | None: ...


class Launcher(Protocol):
    def start(self, run: RunRecord) -> RunHandle: ...


@dataclass(slots=True)
class _Watched:
    pipeline: str
    folder: Path
    schedule: Schedule
    fingerprint: str
    first_seen: datetime
    last_fired: datetime | None
    next_fire: datetime


@dataclass(slots=True)
class _Launched:
    run: RunRecord
    handle: RunHandle
    started: float = field(default_factory=time.monotonic)


class Scheduler:
    def __init__(
        self,
        root: Path,
        store: RunStore,
        options: SchedulerOptions = SchedulerOptions(),
        launcher: Launcher | None = None,
        clock: Clock = now,
    ) -> None:
        self.root = root
        self.store = store
        self.options = options
        self.launcher = launcher or SubprocessLauncher(root)
        self.clock = clock
        self.watched: dict[str, _Watched] = {}
        self.limits: dict[str, int] = {}
        """max_active_runs of pipelines this scheduler doesn't watch (backfills)."""
        self.launched: dict[str, _Launched] = {}
        self._retries: dict[str, RunRecord] = {}
        """Crashed runs whose retry is due, until it is queued."""
        self._heap: list[tuple[datetime, str]] = []
        self._last_scan = float("-inf")
        self._stop = threading.Event()

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
            self._stop.wait(max(0.0, self.options.tick_seconds - (time.monotonic() - started)))
        while self.launched:
            self._collect()
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()

    def run_once(self) -> None:
        """Evaluate due work once, start it, and wait for it to finish."""
        self.tick()
        self.drain()

    def drain(self, pipeline: str | None = None) -> None:
        """Keep starting queued runs (of one pipeline, or all) until none is left or running."""
        while True:
            self._launch_queued(only=pipeline)
            self._collect()
            self._retry_crashed()
            if not self.launched and not self._has_queued(pipeline):
                return
            time.sleep(0.2)

    def tick(self) -> None:
        moment = self.clock()
        if time.monotonic() - self._last_scan >= self.options.rescan_seconds:
            self._last_scan = time.monotonic()
            self.rescan(moment)
        self._collect()
        self._reap(moment)
        self._retry_crashed()
        self._fire_due(moment)
        self._launch_queued()

    # ---- steps -------------------------------------------------------------------------

    def rescan(self, moment: datetime) -> None:
        """Pick up added, changed and removed schedules; one pipeline's broken schedule (or a
        failed write of it) is logged and leaves every other pipeline's as it is."""
        stored = schedule_states(self.store)
        seen: set[str] = set()
        for ref in list_pipelines(self.root):
            try:
                if self._watch(ref.name, ref.folder, stored.get(ref.name), moment):
                    seen.add(ref.name)
            except Exception:
                log.exception("%s: could not read its schedule; trying again later", ref.name)
                seen.add(ref.name)  # a failure to read is no reason to forget the schedule
        for name in set(self.watched) - seen:
            log.info("%s: schedule removed", name)
            del self.watched[name]
            forget_schedule(self.store, name)

    def _watch(
        self, name: str, folder: Path, state: ScheduleState | None, moment: datetime
    ) -> bool:
        """Watch the pipeline's schedule from now on; False when it has none (or an invalid
        one, which is said)."""
        if not (folder / PIPELINE_FILE).is_file():
            return False
        config, problems = load_pipeline_config(folder)
        if any(p.is_error for p in problems):
            log.warning("%s: not scheduling: %s", name, problems[0].format())
            return False
        if config.schedule is None:
            return False
        fingerprint = schedule_fingerprint(config.schedule)
        current = self.watched.get(name)
        if current is not None and current.fingerprint == fingerprint:
            current.folder = folder
            return True
        if state is None or state.fingerprint != fingerprint:
            # New or changed: fire times before this moment are never run.
            state = adopt_schedule(self.store, name, fingerprint, moment)
            log.info(
                "%s: schedule %s from %s", name, "added" if current is None else "changed", moment
            )
        schedule = schedule_of(config.schedule)
        since = max(state.first_seen_at, state.last_fired or state.first_seen_at)
        watched = _Watched(
            name,
            folder,
            schedule,
            fingerprint,
            state.first_seen_at,
            state.last_fired,
            next_fire_after(schedule, since, state.first_seen_at),
        )
        self.watched[name] = watched
        heapq.heappush(self._heap, (watched.next_fire, name))
        return True

    def _fire_due(self, moment: datetime) -> None:
        due: list[_Watched] = []
        while self._heap and self._heap[0][0] <= moment:
            _, name = heapq.heappop(self._heap)
            watched = self.watched.get(name)
            if watched is None or watched.next_fire > moment or watched in due:
                continue  # removed, or a stale heap entry from before a change
            due.append(watched)
        for watched in due:
            try:
                self._fire(watched, moment)
            except Exception:
                # Its next fire time is left as it was: what failed is queued at the next tick.
                log.exception("%s: could not queue its due runs; retrying", watched.pipeline)
            heapq.heappush(self._heap, (watched.next_fire, watched.pipeline))

    def _fire(self, watched: _Watched, moment: datetime) -> None:
        """Queue the schedule's due fire times; its next fire time moves on once all are."""
        for fire_time in due_fire_times(
            watched.schedule,
            first_seen=watched.first_seen,
            last_fired=watched.last_fired,
            now=moment,
            anchor=watched.first_seen,
        ):
            self.queue_fire_time(
                watched.pipeline,
                watched.folder,
                watched.schedule,
                fire_time,
                watched.first_seen,
                Trigger.SCHEDULE,
            )
            watched.last_fired = fire_time
        watched.next_fire = next_fire_after(watched.schedule, moment, watched.first_seen)

    def queue_fire_time(
        self,
        pipeline: str,
        folder: Path,
        schedule: Schedule,
        fire_time: datetime,
        anchor: datetime,
        trigger: Trigger,
        attempt: int = 0,
    ) -> RunId | None:
        """Queue the run of one fire time; None when some scheduler already did."""
        run_id = new_run_id()
        # Secrets of [schedule.params] are sealed: never stored in clear, never on a command line.
        interval = interval_params(schedule, fire_time, anchor)
        params = seal(self.root, {**schedule.params, **interval})
        queued = QueuedRun(
            run_id=run_id,
            pipeline=pipeline,
            pipeline_path=str(folder),
            trigger=trigger,
            params=params.shown,
            sealed_params=params.sealed,
            run_dir="",
            scheduled_for=fire_time,
            attempt=attempt,
        )
        if enqueue(self.store, queued):
            log.info("%s: queued run %s for %s", pipeline, run_id, fire_time.isoformat())
            return run_id
        log.info("%s: %s was already queued", pipeline, fire_time.isoformat())
        return None

    def _reap(self, moment: datetime) -> None:
        """End the runs whose runner is gone: at once when it was a process of this host (found
        by pid: a restarted scheduler cleans up after the one killed), after the heartbeat
        timeout otherwise."""
        gone = [(run, runner_gone(run)) for run in runs_without_runner(self.store)]
        for run in orphans(self.store, moment, self.options.heartbeat_timeout):
            mine = self.launched.get(run.run_id)
            if mine is None or mine.handle.poll() is not None:
                gone.append((run, _SILENT))
            # else: its runner is alive, just slow to beat
        for run, reason in gone:
            try:
                self._crashed(run, reason, moment)
            except Exception:
                log.exception("%s: could not end run %s", run.pipeline, run.run_id)

    def _crashed(self, run: RunRecord, reason: str, moment: datetime | None = None) -> None:
        """Mark the run crashed and alert; its retry, when due, waits in `_retries`."""
        if not mark_crashed(self.store, run.run_id, reason, moment):
            return  # it ended meanwhile, or another scheduler got there first
        log.warning("%s: run %s crashed: %s", run.pipeline, run.run_id, reason)
        watched = self.watched.get(run.pipeline)
        retries = watched.schedule.run_retries if watched is not None else 0
        if run.scheduled_for is not None and run.attempt < retries:
            self._retries[run.run_id] = run
        self._alert(run)

    def _retry_crashed(self) -> None:
        """Queue the due retries of crashed runs, each once its old runner is surely gone (a
        silent runner on this host, paused or hung, is killed first: two runners of one fire
        time never overlap). What fails stays for the next tick."""
        for run_id, run in list(self._retries.items()):
            watched = self.watched.get(run.pipeline)
            try:
                if watched is not None and run.scheduled_for is not None:
                    if not runner_stopped(run, self.options.kill_wait):
                        log.error("%s: run %s's runner is still alive", run.pipeline, run_id)
                        continue
                    self.queue_fire_time(
                        run.pipeline,
                        Path(run.pipeline_path),
                        watched.schedule,
                        run.scheduled_for,
                        watched.first_seen,
                        run.trigger,
                        attempt=run.attempt + 1,
                    )
            except Exception:
                log.exception("%s: could not queue the retry of run %s", run.pipeline, run_id)
                continue
            del self._retries[run_id]  # queued, or its schedule is gone

    def _launch_queued(self, only: str | None = None) -> None:
        if len(self.launched) >= self.options.max_runs:
            return
        active = active_counts(self.store)
        for run in queued_runs(self.store):
            if only is not None and run.pipeline != only:
                continue
            if len(self.launched) >= self.options.max_runs:
                return
            limit = self._limit(run.pipeline)
            if active.get(run.pipeline, 0) >= limit:
                continue
            # The limit is checked again in the claim: other schedulers may share the store.
            if not claim_launch(self.store, run.run_id, limit):
                continue
            active[run.pipeline] = active.get(run.pipeline, 0) + 1
            log.info("%s: starting run %s", run.pipeline, run.run_id)
            try:
                handle = self.launcher.start(run)
            except Exception as exc:
                # Taken but never started: end it now rather than after the heartbeat timeout.
                log.exception("%s: could not start run %s", run.pipeline, run.run_id)
                self._crashed(run, f"its runner process could not be started: {exc}")
                continue
            self.launched[run.run_id] = _Launched(run, handle)
            self._record_runner(run, handle)

    def _record_runner(self, run: RunRecord, handle: RunHandle) -> None:
        """The child's pid goes with the run at once: if this scheduler is killed before the
        runner records itself, the next one still knows whose death ends the run."""
        pid = getattr(handle, "pid", None)
        runner = RunnerProcess.of_pid(pid) if isinstance(pid, int) else None
        if runner is not None:
            record_runner(self.store, run.run_id, runner)

    def _collect(self) -> None:
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
                self._crashed(record, reason)

    def _alert(self, run: RunRecord) -> None:
        """A crashed run alerts like a failed one; the runner that would have said so is gone."""
        config, _ = load_pipeline_config(Path(run.pipeline_path))
        alerts.notify_finished(config.alerts, self.store, run.run_id)

    def _limit(self, pipeline: str) -> int:
        watched = self.watched.get(pipeline)
        if watched is not None:
            return watched.schedule.max_active_runs
        return self.limits.get(pipeline, 1)

    def _has_queued(self, pipeline: str | None) -> bool:
        return any(pipeline is None or run.pipeline == pipeline for run in queued_runs(self.store))
