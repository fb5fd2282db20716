"""Executing a run's notebooks: one papermill thread per run notebook, the block state files
watched and recorded, timeouts and cancellation enforced on the kernels. What is left for the
run's products (secrets masked, cells tagged) is in `pipelines.runs.finishing`."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipelines.alerts import dispatch as alerts
from pipelines.assembly.header import BlockHeader, BlockKind, BlockName
from pipelines.assembly.pipeline import Pipeline
from pipelines.params import Secrets, json_params
from pipelines.rundir.layout import executed_notebook, input_notebook, kernel_log
from pipelines.rundir.plan import SECRETS_ENV, RunPlan
from pipelines.rundir.state import (
    CANCEL_FLAG,
    BlockState,
    interrupt_reason,
    now,
    raise_stop_flag,
    read_state,
    record_interrupt,
    write_state,
)
from pipelines.rundir.state import STATE_DIR as BLOCK_STATE_DIR
from pipelines.runs.build import run_kernel
from pipelines.runs.finishing import masked_state
from pipelines.runs.kernels import (
    KernelLog,
    KernelStartFailed,
    kernel_environment,
    kernel_group,
    kill_group,
    signal_kernel,
)
from pipelines.runs.kernels import cause as kernel_cause
from pipelines.runs.pool import KernelNotPrepared, KernelPool, WarmKernel
from pipelines.runs.reporting import RunReporter
from pipelines.status import BlockStatus, RunStatus
from pipelines.store.db import StoreUnavailable
from pipelines.store.run_store import RunStore

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0

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
    thread: threading.Thread | None = None
    pid: int | None = None
    group: int | None = None
    """The kernel's process group: signalled whole, so a block's child processes go too."""
    error: BaseException | None = None
    cause: str | None = None
    """Why the kernel ended, from its log, when the notebook did not finish."""
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
    ) -> None:
        self.store = store
        self.kernels = kernels
        self.pipeline = pipeline
        self.plan = plan
        self.limits = limits
        self.cancel_requested = cancel
        self.on_block = on_block
        self.run_dir = Path(plan.run_dir)
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
            self._wake.wait(0.02)
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
                    if not job.done:
                        _signal(job.pid, signal.SIGKILL)
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
            if not job.done:
                _signal(job.pid, signal.SIGKILL)

    # ---- notebook threads --------------------------------------------------------------

    def _start(self, job: _NotebookJob) -> None:
        thread = threading.Thread(
            target=self._run_notebook, args=(job,), name=f"nb:{job.path}", daemon=True
        )
        job.thread = thread
        thread.start()

    def _run_notebook(self, job: _NotebookJob) -> None:
        import papermill

        source = self.plan.blocks[job.blocks[0]].source_notebook
        cwd = (self.pipeline.folder / source).parent
        env = {
            **kernel_environment(),
            SECRETS_ENV: json.dumps(json_params(self.secrets.params)),
        }
        kernel_name = run_kernel(input_notebook(self.run_dir, job.path))

        def kernel_started(km: Any) -> None:
            job.pid = getattr(km.provisioner, "pid", None)
            job.group = kernel_group(job.pid)

        # The kernel process's own output (warnings, a crash's last words, whatever a block's
        # subprocess prints) goes to the run's logs, secrets masked before it reaches the disk.
        masking = Secrets.of(self.secrets.params, whole_values=True)
        log_path = kernel_log(self.run_dir, job.path)
        warm = self._warm_kernel(kernel_name, cwd, env)
        if warm is not None:
            output = warm.output.attach(log_path, masking.mask)
            job.pid, job.group = warm.pid, warm.group
            kernel_options: dict[str, Any] = {"warm_kernel": warm.manager}
        else:
            output = KernelLog(log_path, masking.mask)
            kernel_options = {
                "kernel_cwd": str(cwd),
                "kernel_env": env,
                "kernel_started": kernel_started,
            }
        try:
            papermill.execute_notebook(
                str(input_notebook(self.run_dir, job.path)),
                str(executed_notebook(self.run_dir, job.path)),
                engine_name="blockbook",
                kernel_log=output,
                kernel_name=kernel_name,
                progress_bar=False,
                log_output=False,
                cell_gate=self.reporter.check_before_cell,
                **kernel_options,
            )
        except BaseException as exc:  # recorded and turned into block states by _settle
            job.error = exc
        finally:
            # The kernel is gone (shut down, killed or dead): what its blocks started goes too.
            kill_group(job.group)
            if warm is not None:
                warm.discard()
            output.close()
            if job.error is not None:
                job.cause = kernel_cause(output.tail())
            job.done = True
            self._wake.set()

    def _warm_kernel(self, kernel_name: str, cwd: Path, env: dict[str, str]) -> WarmKernel | None:
        """A kernel from the pool set up for this notebook, or None: no pool, none ready, or
        the one taken could not be set up (the notebook then starts a kernel of its own)."""
        if self.kernels is None:
            return None
        warm = self.kernels.take(kernel_name)
        if warm is None:
            return None
        try:
            warm.prepare(cwd, env)
        except KernelNotPrepared as exc:
            log.warning("run %s: %s; starting a kernel instead", self.plan.run_id, exc)
            warm.discard()
            return None
        return warm

    def _settle(self, job: _NotebookJob) -> None:
        """Give every block of a finished notebook a terminal state, with the reason."""
        if job.thread is not None:
            job.thread.join()
        died = _is_dead_kernel(job.error)
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
        if isinstance(job.error, KernelStartFailed):
            return f"not run: {job.error}"
        if name in self._killed:
            return f"{self._interrupt_reason(name)}; the kernel did not stop and was killed"
        said = f"; its log says: {job.cause}" if job.cause else ""
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
        detail = f": {type(job.error).__name__}: {job.error}" if job.error else ""
        return f"not run: the notebook stopped early{detail}"

    # ---- watching ----------------------------------------------------------------------

    def _poll_states(self) -> None:
        folder = self.run_dir / BLOCK_STATE_DIR
        if not folder.is_dir():
            return
        for entry in os.scandir(folder):
            if not entry.name.endswith(".json"):
                continue
            stamp = entry.stat().st_mtime_ns
            name = entry.name[: -len(".json")]
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

    def _busy(self, started: list[_NotebookJob]) -> int:
        busy = 0
        for job in started:
            if job.done:
                continue
            current = [self._states.get(n) for n in job.blocks]
            waiting = any(
                s is not None and s.waiting_for and s.status is BlockStatus.PENDING for s in current
            )
            busy += 0 if waiting else 1
        return busy

    def _enforce_timeouts(self, started: list[_NotebookJob]) -> None:
        grace = self.limits.grace_seconds
        clock = time.time()
        for job in started:
            if job.done or job.pid is None:
                continue
            for name in job.blocks:
                state = self._states.get(name)
                timeout = _time_allowed(self.pipeline.blocks[BlockName(name)].header)
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
                    _signal(job.pid, signal.SIGKILL)

    def _interrupt(self, job: _NotebookJob, name: str, reason: str) -> None:
        record_interrupt(self.run_dir, name, reason)
        self._interrupted[name] = time.time()
        _signal(job.pid, signal.SIGINT)

    def _interrupt_reason(self, name: str) -> str:
        return interrupt_reason(self.run_dir, name) or "interrupted"

    def _cancel(self, started: list[_NotebookJob], waiting: list[_NotebookJob]) -> None:
        if self._cancel_sent_at is None:
            (self.run_dir / CANCEL_FLAG).write_text("cancelled\n", encoding="utf-8")
            self._cancel_sent_at = time.time()
            for job in started:
                if not job.done:
                    _signal(job.pid, signal.SIGINT)
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
                if not job.done:
                    _signal(job.pid, signal.SIGKILL)

    def _status(self) -> RunStatus:
        """Success when every block succeeded or was skipped (--skip, --only, a false condition
        upstream, a skipped upstream). Any failed, upstream_failed or cancelled block fails the
        run, even when an `--trigger-rule all_done` or `one_success` block ran after it."""
        if self.reporter.ended_elsewhere is not None:
            return self.reporter.ended_elsewhere
        if self.cancel_requested.is_set():
            return RunStatus.CANCELLED
        fine = {BlockStatus.SUCCESS, BlockStatus.SKIPPED}
        statuses = [self._states[n].status if n in self._states else None for n in self.plan.order]
        return RunStatus.SUCCESS if all(s in fine for s in statuses) else RunStatus.FAILED


def _time_allowed(header: BlockHeader) -> float | None:
    """How long an attempt may run before the runner steps in (the kernel enforces `--timeout`
    itself; this is the backstop). A sensor's attempt spans all its pokes."""
    if header.kind is BlockKind.SENSOR:
        return header.sensor_timeout + header.poke_interval + (header.timeout or 0)
    return header.timeout


def _is_dead_kernel(error: BaseException | None) -> bool:
    if error is None:
        return False
    from nbclient.exceptions import DeadKernelError

    return isinstance(error, DeadKernelError) or "Kernel died" in str(error)


def _signal(pid: int | None, signum: int) -> None:
    """Signal a kernel with its whole process group: an interrupt reaches a `!command` the way
    Ctrl-C in a terminal does, and a kill leaves no child process of a block orphaned."""
    signal_kernel(pid, kernel_group(pid), signum)
