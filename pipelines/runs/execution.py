"""Executing a run's notebooks: each run notebook started on the run's executor (a thread of
this process by default, `pipelines.runs.executors`), the block state files watched and
recorded, timeouts and cancellation enforced on the kernels. What is left for the run's
products (secrets masked, cells tagged) is in `pipelines.runs.finishing`."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from pipelines.alerts import dispatch as alerts
from pipelines.assembly.header import BlockHeader, BlockKind, BlockName
from pipelines.assembly.pipeline import Pipeline
from pipelines.params import Secrets
from pipelines.rundir.fanout import block_of_child
from pipelines.rundir.layout import executed_notebook, input_notebook, kernel_log
from pipelines.rundir.location import RemoteFolder, run_folder_at
from pipelines.rundir.plan import RunPlan
from pipelines.rundir.state import (
    CANCEL_FLAG,
    BlockState,
    interrupt_reason,
    now,
    raise_stop_flag,
    read_state,
    record_interrupt,
    state_stamps,
    write_state,
)
from pipelines.runs.build import run_kernel
from pipelines.runs.executors import EndKind, Executor, NotebookEnd, NotebookRun, RunningNotebook
from pipelines.runs.executors.local import LocalExecutor
from pipelines.runs.fanout import FanOut
from pipelines.runs.finishing import masked_state
from pipelines.runs.pool import KernelPool
from pipelines.runs.reporting import RunReporter
from pipelines.status import BlockStatus, RunStatus
from pipelines.store.db import StoreUnavailable
from pipelines.store.run_store import RunStore

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
POLL_SECONDS = 0.02
REMOTE_POLL_SECONDS = 0.2
"""A run folder in object storage: each look at the block states is a LIST request (billed,
and ~20 ms each); a notebook that ends still wakes the loop at once."""

BlockListener = Callable[[BlockState], None]


@dataclass(frozen=True, slots=True)
class Limits:
    concurrency: int | None = None
    """Notebooks executing blocks at once; kernels that only wait for upstream don't count."""
    grace_seconds: float = 5.0
    """After a timeout or cancel: how long an interrupted kernel gets before it is killed."""


@dataclass(slots=True)
class _NotebookJob:
    path: str
    blocks: list[str]
    running: RunningNotebook | None = None
    end: NotebookEnd | None = None
    done: bool = False
    settled: bool = False


class Execution:
    """Starts notebook threads, watches block states, enforces timeouts and cancellation."""

    def __init__(
        self,
        store: RunStore,
        pipeline: Pipeline,
        plan: RunPlan,
        secrets: Secrets,
        limits: Limits,
        cancel: threading.Event,
        on_block: BlockListener | None = None,
        kernels: KernelPool | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.store = store
        # The plan's parameters with the secret ones' real values: what the runner built the
        # run notebooks from (a notebook shows a secret masked; its kernel gets the value).
        self.fanout = FanOut(pipeline, plan, {**plan.params, **secrets.params})
        """Writes the run notebooks of mapped blocks' children."""
        self.executor: Executor = executor or LocalExecutor(kernels)
        """Where notebooks execute; warm `kernels` are the local executor's."""
        self.pipeline = pipeline
        self.plan = plan
        self.limits = limits
        self.cancel_requested = cancel
        self.on_block = on_block
        self.run_dir = run_folder_at(plan.run_dir)
        self._poll_seconds = (
            REMOTE_POLL_SECONDS if isinstance(self.run_dir, RemoteFolder) else POLL_SECONDS
        )
        self.secrets = secrets
        self.concurrency = (
            limits.concurrency or pipeline.config.concurrency or max(4, os.cpu_count() or 1)
        )
        self._seen: dict[str, int] = {}
        self._states: dict[str, BlockState] = {}
        self._interrupted: dict[str, float] = {}
        self._killed: set[str] = set()
        self._cancel_sent_at: float | None = None
        self._wake = threading.Event()
        self._last_beat = float("-inf")
        self.reporter = RunReporter(store, plan.run_id)
        self._started: list[_NotebookJob] = []
        self._stopped_at_once = False

    def execute(self, notebooks: list[str]) -> RunStatus:
        jobs = [
            _NotebookJob(
                path, [n for n in self.plan.order if self.plan.blocks[n].run_notebook == path]
            )
            for path in notebooks
        ]
        jobs = [job for job in jobs if any(self.plan.blocks[n].run for n in job.blocks)]
        waiting = sorted(jobs, key=lambda job: self.plan.order.index(job.blocks[0]))
        started: list[_NotebookJob] = []
        self._started = started
        sla = alerts.SlaWatch(self.pipeline.config.alerts, self.store, self.plan.run_id)
        while True:
            self._poll_states()
            sla.check()
            # Before the cancel check: a request made before the run started stops it before any
            # kernel starts.
            self._beat()
            if self.reporter.ended_elsewhere is not None:
                self._stop_at_once(started, waiting)
                waiting = []
            elif self.cancel_requested.is_set():
                self._cancel(started, waiting)
                waiting = []
            else:
                waiting += self._children()
            while waiting and self._busy(started) < self.concurrency:
                job = waiting.pop(0)
                self._start(job)
                started.append(job)
            self._enforce_timeouts(started)
            for job in started:
                if job.done and not job.settled:
                    # Right away, not at the end: other notebooks may be waiting on its blocks.
                    self._settle(job)
            if not waiting and all(job.settled for job in started):
                break
            self._wake.wait(self._poll_seconds)
            self._wake.clear()
        self._poll_states()
        self.reporter.flush_all()  # what an outage held back, before the run is finished
        return self._status()

    def states(self) -> dict[str, BlockState]:
        return dict(self._states)

    def _beat(self) -> None:
        """Tell schedulers this run's runner is alive (they mark silent runs crashed), and learn
        whether someone asked the run to stop (`blockbook cancel`, from any process) or ended it
        (marked it crashed while this runner was paused). A store outage skips beats (see
        `RunReporter`); the kernels go on meanwhile."""
        clock = time.monotonic()
        if clock - self._last_beat >= HEARTBEAT_SECONDS:
            self._last_beat = clock
            try:
                beat = self.reporter.beat()
            except StoreUnavailable:
                # The outage outlasted the patience: the run can no longer be recorded, and the
                # runner gives up; it must leave no kernel running behind it.
                for job in self._started:
                    _kill(job)
                raise
            if beat is not None and beat.cancel_requested and not self.cancel_requested.is_set():
                log.info("run %s: a cancel was requested; stopping it", self.plan.run_id)
                self.cancel_requested.set()

    def _stop_at_once(self, started: list[_NotebookJob], waiting: list[_NotebookJob]) -> None:
        """The run was ended elsewhere: no block may start, so kernels are killed, not
        interrupted (an interrupted kernel would still report, and its notebook go on)."""
        if not self._stopped_at_once:
            self._stopped_at_once = True
            raise_stop_flag(self.run_dir, f"the run was marked {self.reporter.ended_elsewhere}")
        for job in started:
            _kill(job)

    # ---- notebooks ---------------------------------------------------------------------

    def _start(self, job: _NotebookJob) -> None:
        source = self.plan.blocks[block_of_child(job.blocks[0])].source_notebook
        run = NotebookRun(
            run_id=self.plan.run_id,
            run_dir=self.run_dir,
            notebook=job.path,
            input_path=input_notebook(self.run_dir, job.path),
            output_path=executed_notebook(self.run_dir, job.path),
            log_path=kernel_log(self.run_dir, job.path),
            kernel_name=run_kernel(input_notebook(self.run_dir, job.path)),
            cwd=(self.pipeline.folder / source).parent,
            secret_params=dict(self.secrets.params),
        )

        def ended(end: NotebookEnd) -> None:
            job.end = end
            job.done = True
            self._wake.set()

        job.running = self.executor.start(run, self.reporter.check_before_cell, ended)

    def _settle(self, job: _NotebookJob) -> None:
        """Give every block of a finished notebook a terminal state, with the reason."""
        died = job.end is not None and job.end.kind is EndKind.KERNEL_DIED
        running = None
        for name in job.blocks:
            state = read_state(self.run_dir, name)
            if state is not None and state.status.is_terminal:
                continue
            if state is not None and state.status in (BlockStatus.RUNNING, BlockStatus.RETRYING):
                running = name
            reason = self._failure_reason(job, name, running, died)
            status = BlockStatus.CANCELLED if self.cancel_requested.is_set() else BlockStatus.FAILED
            base = state or BlockState(name, status, job.path)
            write_state(self.run_dir, replace(base, status=status, error=reason, ended_at=now()))
        job.settled = True

    def _failure_reason(self, job: _NotebookJob, name: str, running: str | None, died: bool) -> str:
        if self.reporter.ended_elsewhere is not None:
            return f"not run: the run was marked {self.reporter.ended_elsewhere} elsewhere"
        if self.cancel_requested.is_set():
            return "cancelled"
        end = job.end or NotebookEnd()
        if end.kind is EndKind.START_FAILED:
            return f"not run: {end.error}"
        if end.kind is EndKind.WORKER_LOST:
            # Not the notebook's fault: say so, for the block that ran and the ones after it.
            return (
                f"{end.error}; this block was running then"
                if running == name
                else f"not run: {end.error}"
            )
        if name in self._killed:
            return f"{self._interrupt_reason(name)}; the kernel did not stop and was killed"
        said = f"; its log says: {end.cause}" if end.cause else ""
        if died and running == name:
            return (
                "the kernel died while this block ran (out of memory, a crash, or os._exit)" + said
            )
        if died:
            return (
                f"not run: the kernel died while running `{running}`"
                if running
                else "not run: the kernel died"
            ) + said
        detail = f": {end.error}" if end.error else ""
        return f"not run: the notebook stopped early{detail}"

    # ---- watching ----------------------------------------------------------------------

    def _poll_states(self) -> None:
        for file_name, stamp in state_stamps(self.run_dir).items():
            if not file_name.endswith(".json"):
                continue
            name = file_name[: -len(".json")]
            if self._seen.get(name) == stamp:
                continue
            state = read_state(self.run_dir, name)
            if state is None:
                continue
            self._seen[name] = stamp
            if self._states.get(name) == state:
                continue
            self._states[name] = state
            self.reporter.record(masked_state(state, self.secrets))
            if self.on_block is not None:
                self.on_block(state)

    def _children(self) -> list[_NotebookJob]:
        """Jobs for the children of each mapped block that just said how many items it has.
        Its state file is read here, not taken from `_poll_states`: a rewrite within the file
        system's timestamp granularity can hide a change from it, and this one must be seen."""
        return [
            _NotebookJob(path, [child])
            for name in self.fanout.waiting()
            if (state := read_state(self.run_dir, name)) is not None
            and state.map_items is not None
            and not state.status.is_terminal
            for child, path in self.fanout.children(state)
        ]

    def _busy(self, started: list[_NotebookJob]) -> int:
        busy = 0
        for job in started:
            if job.done:
                continue
            current = [self._states.get(n) for n in job.blocks]
            # A mapped block waiting for its children waits too (running, `waiting_for` them).
            waiting = any(
                s is not None and s.waiting_for and not s.status.is_terminal for s in current
            )
            busy += 0 if waiting else 1
        return busy

    def _enforce_timeouts(self, started: list[_NotebookJob]) -> None:
        grace = self.limits.grace_seconds
        clock = time.time()
        for job in started:
            if job.done or job.running is None or not job.running.kernel_known:
                continue
            for name in job.blocks:
                state = self._states.get(name)
                header = self.pipeline.blocks[BlockName(block_of_child(name))].header
                timeout = _time_allowed(header)
                if state is None or timeout is None or state.status is not BlockStatus.RUNNING:
                    continue
                started_at = state.attempts[-1].started_at.timestamp() if state.attempts else clock
                overdue = clock - started_at - timeout
                if overdue > grace and name not in self._interrupted:
                    self._interrupt(job, name, f"block timed out after {timeout:g} s (--timeout)")
                elif (
                    name in self._interrupted
                    and clock - self._interrupted[name] > grace
                    and name not in self._killed
                ):
                    self._killed.add(name)
                    _kill(job)

    def _interrupt(self, job: _NotebookJob, name: str, reason: str) -> None:
        record_interrupt(self.run_dir, name, reason)
        self._interrupted[name] = time.time()
        if job.running is not None:
            job.running.interrupt()

    def _interrupt_reason(self, name: str) -> str:
        return interrupt_reason(self.run_dir, name) or "interrupted"

    def _cancel(self, started: list[_NotebookJob], waiting: list[_NotebookJob]) -> None:
        if self._cancel_sent_at is None:
            (self.run_dir / CANCEL_FLAG).write_text("cancelled\n", encoding="utf-8")
            self._cancel_sent_at = time.time()
            for job in started:
                if not job.done and job.running is not None:
                    job.running.interrupt()
            for job in waiting:
                for name in job.blocks:
                    write_state(
                        self.run_dir,
                        BlockState(
                            name, BlockStatus.CANCELLED, job.path, error="cancelled", ended_at=now()
                        ),
                    )
        elif time.time() - self._cancel_sent_at > self.limits.grace_seconds:
            for job in started:
                _kill(job)

    def _status(self) -> RunStatus:
        """Success when every block succeeded, was cached or was skipped (--skip, --only, a
        false condition upstream, a skipped upstream). Any failed, upstream_failed or cancelled
        block fails the run, even when an `--trigger-rule all_done` or `one_success` block ran
        after it."""
        if self.reporter.ended_elsewhere is not None:
            return self.reporter.ended_elsewhere
        if self.cancel_requested.is_set():
            return RunStatus.CANCELLED
        statuses = [self._states[n].status if n in self._states else None for n in self.plan.order]
        fine = all(s is not None and (s.succeeded or s is BlockStatus.SKIPPED) for s in statuses)
        return RunStatus.SUCCESS if fine else RunStatus.FAILED


def _time_allowed(header: BlockHeader) -> float | None:
    """How long an attempt may run before the runner steps in (the kernel enforces `--timeout`
    itself; this is the backstop). A sensor's attempt spans all its pokes."""
    if header.kind is BlockKind.SENSOR:
        return header.sensor_timeout + header.poke_interval + (header.timeout or 0)
    return header.timeout


def _kill(job: _NotebookJob) -> None:
    if not job.done and job.running is not None:
        job.running.kill()
