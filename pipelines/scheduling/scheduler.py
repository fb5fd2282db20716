"""The scheduler: starts runs when pipelines' schedules fire, and cleans up after crashes.

One `tick` is the recipe: notice added, changed and removed schedules; queue each due fire
time, many per transaction (the run store's unique constraint makes that exactly-once, across
restarts and across schedulers); collect finished runners; mark runs whose runner died as
crashed (and queue a retry when the schedule asks); hand queued runs to runner processes within
the limits, claimed many per transaction. Between ticks the loop wakes up for the next fire
time, so runs are queued when they fall due rather than at the next tick.
"""

from __future__ import annotations

import heapq
import logging
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
    claim_launches,
    enqueue,
    enqueue_many,
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


_RUNS_PER_TRANSACTION = 200
"""Fire times queued, or queued runs claimed, in one transaction."""
_QUEUED_PAGE = 100
"""Queued runs looked at per tick (at least; more when more runner slots are free)."""

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
    file_stamp: tuple[int, ...] = ()
    """pipeline.toml's stat when last read: an unchanged file is not parsed again."""


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
        self._last_tick = datetime.min.replace(tzinfo=UTC)
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
            rest = self.options.tick_seconds - (time.monotonic() - started)
            self._stop.wait(max(0.0, min(rest, self._until_next_fire())))
        while self.launched:
            self._collect()
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()

    def _until_next_fire(self) -> float:
        """Seconds until the earliest fire time: the loop wakes up for it rather than at the
        next tick, so a fire time is queued when it falls due."""
        if not self._heap or self._heap[0][0] <= self._last_tick:
            return float("inf")  # none, or one that failed to queue: tried again next tick
        return (self._heap[0][0] - self.clock()).total_seconds()

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
        moment = self._last_tick = self.clock()
        if time.monotonic() - self._last_scan >= self.options.rescan_seconds:
            self._last_scan = time.monotonic()
            self.rescan(moment)
        self._fire_due(moment)
        self._collect()
        self._reap(moment)
        self._retry_crashed()
        self._launch_queued()

    # ---- steps -------------------------------------------------------------------------

    def rescan(self, moment: datetime) -> None:
        """Pick up added, changed and removed schedules; one pipeline's broken schedule (or a
        failed write of it) is logged and leaves every other pipeline's as it is."""
        stored: list[dict[str, ScheduleState]] = []

        def stored_state(name: str) -> ScheduleState | None:
            # Read once per rescan, and only when a schedule is new or changed.
            if not stored:
                stored.append(schedule_states(self.store))
            return stored[0].get(name)

        seen: set[str] = set()
        for ref in list_pipelines(self.root):
            try:
                if self._watch(ref.name, ref.folder, stored_state, moment):
                    seen.add(ref.name)
            except Exception:
                log.exception("%s: could not read its schedule; trying again later", ref.name)
                seen.add(ref.name)  # a failure to read is no reason to forget the schedule
        for name in set(self.watched) - seen:
            log.info("%s: schedule removed", name)
            del self.watched[name]
            forget_schedule(self.store, name)

    def _watch(
        self,
        name: str,
        folder: Path,
        stored_state: Callable[[str], ScheduleState | None],
        moment: datetime,
    ) -> bool:
        """Watch the pipeline's schedule from now on; False when it has none (or an invalid
        one, which is said)."""
        stamp = _file_stamp(folder / PIPELINE_FILE)
        if stamp is None:
            return False
        current = self.watched.get(name)
        if current is not None and current.folder == folder and current.file_stamp == stamp:
            return True  # the same file as last time (1,000 pipelines: no TOML parsed)
        config, problems = load_pipeline_config(folder)
        if any(p.is_error for p in problems):
            log.warning("%s: not scheduling: %s", name, problems[0].format())
            return False
        if config.schedule is None:
            return False
        fingerprint = schedule_fingerprint(config.schedule)
        if current is not None and current.fingerprint == fingerprint:
            current.folder = folder
            current.file_stamp = stamp
            return True
        state = stored_state(name)
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
            stamp,
        )
        self.watched[name] = watched
        heapq.heappush(self._heap, (watched.next_fire, name))
        return True

    def _fire_due(self, moment: datetime) -> None:
        """Queue the due fire times of every schedule, many per transaction."""
        due: dict[str, _Watched] = {}
        while self._heap and self._heap[0][0] <= moment:
            _, name = heapq.heappop(self._heap)
            watched = self.watched.get(name)
            if watched is None or watched.next_fire > moment or name in due:
                continue  # removed, or a stale heap entry from before a change
            due[name] = watched
        batch: list[tuple[_Watched, list[QueuedRun], datetime]] = []
        for watched in due.values():
            try:
                runs = [
                    self._queued_run(
                        watched.pipeline,
                        watched.folder,
                        watched.schedule,
                        fire_time,
                        watched.first_seen,
                        Trigger.SCHEDULE,
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
                heapq.heappush(self._heap, (watched.next_fire, watched.pipeline))
                continue
            batch.append((watched, runs, upcoming))
        group: list[tuple[_Watched, list[QueuedRun], datetime]] = []
        size = 0
        for entry in batch:
            if group and size + len(entry[1]) > _RUNS_PER_TRANSACTION:
                self._queue_group(group)
                group, size = [], 0
            group.append(entry)
            size += len(entry[1])
        if group:
            self._queue_group(group)

    def _queue_group(self, group: list[tuple[_Watched, list[QueuedRun], datetime]]) -> None:
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
                heapq.heappush(self._heap, (watched.next_fire, watched.pipeline))
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
            heapq.heappush(self._heap, (watched.next_fire, watched.pipeline))

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
        queued = self._queued_run(pipeline, folder, schedule, fire_time, anchor, trigger, attempt)
        if enqueue(self.store, queued):
            log.info("%s: queued run %s for %s", pipeline, queued.run_id, fire_time.isoformat())
            return queued.run_id
        log.info("%s: %s was already queued", pipeline, fire_time.isoformat())
        return None

    def _queued_run(
        self,
        pipeline: str,
        folder: Path,
        schedule: Schedule,
        fire_time: datetime,
        anchor: datetime,
        trigger: Trigger,
        attempt: int = 0,
    ) -> QueuedRun:
        # Secrets of [schedule.params] are sealed: never stored in clear, never on a command line.
        interval = interval_params(schedule, fire_time, anchor)
        params = seal(self.root, {**schedule.params, **interval})
        return QueuedRun(
            run_id=new_run_id(),
            pipeline=pipeline,
            pipeline_path=str(folder),
            trigger=trigger,
            params=params.shown,
            sealed_params=params.sealed,
            run_dir="",
            scheduled_for=fire_time,
            attempt=attempt,
        )

    def _reap(self, moment: datetime) -> None:
        """End the runs whose runner is gone: at once when it was a process of this host (found
        by pid: a restarted scheduler cleans up after the one killed), after the heartbeat
        timeout otherwise."""
        gone = [(run, runner_gone(run)) for run in runs_without_runner(self.store)]
        for run in orphans(self.store, moment, self.options.heartbeat_timeout):
            mine = self.launched.get(run.run_id)
            if mine is not None and mine.handle.poll() is None:
                continue  # its runner is alive, just slow to beat
            # A silent runner of this host (paused, hung) is stopped before its run is ended: it
            # may be holding SQLite's write lock, which would keep anyone from marking the run.
            if not runner_stopped(run, self.options.kill_wait):
                log.error("%s: run %s's silent runner is still alive", run.pipeline, run.run_id)
                continue
            gone.append((run, _SILENT))
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
        for start in range(0, len(candidates), _RUNS_PER_TRANSACTION):
            page = candidates[start : start + _RUNS_PER_TRANSACTION]
            # The limits are checked again in the claim: other schedulers may share the store.
            claimed = claim_launches(
                self.store,
                [(run.run_id, run.pipeline) for run in page],
                {run.pipeline: self._limit(run.pipeline) for run in page},
            )
            for run in page:
                if run.run_id in claimed:
                    self._start(run)
                    # Starting runners takes a while: fire times that fall due meanwhile are
                    # queued on time all the same.
                    self._fire_due(self.clock())

    def _start(self, run: RunRecord) -> None:
        log.info("%s: starting run %s", run.pipeline, run.run_id)
        try:
            handle = self.launcher.start(run)
        except Exception as exc:
            # Taken but never started: end it now rather than after the heartbeat timeout.
            log.exception("%s: could not start run %s", run.pipeline, run.run_id)
            self._crashed(run, f"its runner process could not be started: {exc}")
            return
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


def _file_stamp(path: Path) -> tuple[int, ...] | None:
    """What changes when a file is written (or replaced); None when there is no such file."""
    try:
        status = path.stat()
    except OSError:
        return None
    if not stat.S_ISREG(status.st_mode):
        return None
    return (status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)
