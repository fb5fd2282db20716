"""Headless runs: one papermill execution per notebook (or per block with `isolate`), in
parallel, coordinated through block state files, recorded in the run store.

`Runner.run` reads as the recipe; the parts that watch kernels live in `_Execution`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import nbformat

from pipelines import alerts
from pipelines.artifacts import ArtifactStore
from pipelines.assembly import Pipeline, assemble
from pipelines.errors import BlockbookError
from pipelines.header import BlockHeader, BlockKind, BlockName
from pipelines.params import (
    ParamValue,
    is_secret_param,
    mask_text,
    masked,
    merge,
    secret_values,
)
from pipelines.project import STATE_DIR
from pipelines.records import RunRecord
from pipelines.runbuild import build_plan, build_run_notebooks, write_notebook
from pipelines.runplan import INPUT_DIR, SECRETS_ENV, RunPlan, write_plan
from pipelines.runqueue import adopt, heartbeat
from pipelines.runstate import (
    CANCEL_FLAG,
    INTERRUPT_DIR,
    BlockState,
    now,
    read_state,
    write_state,
)
from pipelines.runstate import (
    STATE_DIR as BLOCK_STATE_DIR,
)
from pipelines.status import BlockStatus, RunStatus, Trigger
from pipelines.store import RunId, RunStore, new_run_id

logger = logging.getLogger(__name__)

RUNS_DIR = "runs"
HEARTBEAT_SECONDS = 2.0
LOG_DIR = "logs"
KERNEL_NAME = "python3"


class RunError(BlockbookError):
    """A run that cannot start: an invalid pipeline, a bad option, an unknown run to resume."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    only: tuple[str, ...] = ()
    isolate: bool = False
    resume: str | None = None
    trigger: Trigger = Trigger.MANUAL
    concurrency: int | None = None
    """Notebooks executing blocks at once; kernels that only wait for upstream don't count."""
    run_id: str | None = None
    """Use this id instead of a new one, so a caller can watch a run it starts elsewhere."""
    grace_seconds: float = 5.0
    """After a timeout or cancel: how long an interrupted kernel gets before it is killed."""


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: RunId
    status: RunStatus
    run_dir: Path
    blocks: Mapping[str, BlockState]


BlockListener = Callable[[BlockState], None]


class Runner:
    def __init__(self, root: Path, store: RunStore, on_block: BlockListener | None = None) -> None:
        self.root = root
        self.store = store
        self.on_block = on_block
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Ask the current run to stop: kernels are interrupted, then killed after a grace."""
        self._cancel.set()

    def run(self, folder: Path, options: RunOptions = RunOptions()) -> RunResult:
        run_id = _checked_run_id(options.run_id) if options.run_id else new_run_id()
        queued = self._queued(run_id) if options.run_id else None
        try:
            pipeline = self._assemble(folder)
            reused = self._reusable_blocks(pipeline, options)
            selected = self._selected_blocks(pipeline, options)
        except RunError as exc:
            if queued is not None:
                # A scheduler or trigger queued it: it must still end, with the reason.
                self.store.finish_run(run_id, RunStatus.FAILED, now(), error=exc.message)
            raise
        params = merge(pipeline.config.params, options.params)
        run_dir = self.root / STATE_DIR / RUNS_DIR / run_id
        not_run = frozenset(pipeline.order) - selected | frozenset(reused)
        plan = build_plan(
            pipeline, run_id, run_dir, params, isolate=options.isolate, skipped=not_run
        )
        blocks = [(name, plan.blocks[name].run_notebook) for name in plan.order]
        if queued is not None:
            adopt(
                self.store,
                run_id,
                params=_jsonable(masked(params)),
                run_dir=str(run_dir),
                blocks=blocks,
            )
        else:
            self.store.create_run(
                run_id,
                pipeline=pipeline.name,
                pipeline_path=str(pipeline.folder),
                trigger=options.trigger,
                params=_jsonable(masked(params)),
                run_dir=str(run_dir),
                blocks=blocks,
                resumed_from=options.resume,
            )
        write_plan(plan)
        self._carry_over(plan, reused, not_run)
        notebooks = build_run_notebooks(pipeline, plan, params)
        for path, notebook in notebooks.items():
            write_notebook(notebook, run_dir / INPUT_DIR / Path(path).name)
            (run_dir / path).parent.mkdir(parents=True, exist_ok=True)
        self.store.start_run(run_id, now())
        execution = _Execution(self, pipeline, plan, options, params)
        status = execution.execute(list(notebooks))
        execution.finalize_notebooks(params)
        states = execution.states()
        error = _first_error(plan, states)
        if error is not None:
            error = mask_text(error, secret_values(params))
        self.store.finish_run(run_id, status, now(), error=error)
        alerts.notify_finished(pipeline.config.alerts, self.store, run_id)  # never raises
        return RunResult(run_id, status, run_dir, states)

    # ---- steps -------------------------------------------------------------------------

    def _queued(self, run_id: RunId) -> RunRecord | None:
        """The run a scheduler or trigger queued under this id, if there is one."""
        record = self.store.get_run(run_id)
        if record is None or record.run_id != run_id:
            return None
        if record.status is not RunStatus.QUEUED:
            raise RunError(
                f"run `{run_id}` is already {record.status}",
                hint="start a new run, or `--resume` this one",
            )
        return record

    def _assemble(self, folder: Path) -> Pipeline:
        pipeline = assemble(folder)
        if not pipeline.ok:
            problems = "\n".join(p.format() for p in pipeline.errors)
            raise RunError(
                f"pipeline `{pipeline.name}` is not valid:\n{problems}",
                hint=f"fix the errors above; `blockbook validate {folder}` lists them",
            )
        if not pipeline.order:
            raise RunError(f"pipeline `{pipeline.name}` has no blocks", hint="add %%block cells")
        return pipeline

    def _selected_blocks(self, pipeline: Pipeline, options: RunOptions) -> frozenset[str]:
        unknown = [name for name in options.only if name not in pipeline.blocks]
        if unknown:
            raise RunError(
                f"--only names unknown block(s): {', '.join(unknown)}",
                hint=f"blocks of `{pipeline.name}`: {', '.join(pipeline.order)}",
            )
        return frozenset(options.only) if options.only else frozenset(pipeline.order)

    def _reusable_blocks(self, pipeline: Pipeline, options: RunOptions) -> dict[str, str]:
        """Block -> run id whose stored outputs this run reuses instead of running it."""
        reused: dict[str, str] = {}
        if options.resume is not None:
            previous = self.store.get_run(options.resume)
            if previous is None:
                raise RunError(
                    f"no run `{options.resume}` to resume",
                    hint="`blockbook runs` lists run ids",
                )
            if previous.pipeline != pipeline.name:
                raise RunError(
                    f"run `{previous.run_id}` belongs to pipeline `{previous.pipeline}`",
                    hint=f"resume it with `blockbook run {previous.pipeline_path} --resume ...`",
                )
            for block in previous.blocks:
                if (
                    block.status is BlockStatus.SUCCESS
                    and block.block in pipeline.blocks
                    # A condition is decided again: its false result is not kept with the run.
                    and pipeline.blocks[BlockName(block.block)].header.kind
                    is not BlockKind.CONDITION
                ):
                    reused[block.block] = block.reused_from or previous.run_id
        if options.only:
            needed = {
                parent
                for name in options.only
                for parent in pipeline.upstream.get(BlockName(name), ())
                if parent not in options.only
            }
            for parent in sorted(needed):
                record = self.store.last_success(pipeline.name, parent)
                if record is None:
                    raise RunError(
                        f"--only needs the outputs of `{parent}`, which has never succeeded",
                        hint=f"run the whole pipeline once, or add --only {parent}",
                    )
                reused.setdefault(parent, record.run_id)
        return reused

    def _carry_over(
        self, plan: RunPlan, reused: Mapping[str, str], not_run: frozenset[str]
    ) -> None:
        """Write the final state of every block this run will not execute."""
        run_dir = Path(plan.run_dir)
        artifacts = ArtifactStore(run_dir)
        for name in plan.order:
            if name not in not_run:
                continue
            block = plan.blocks[name]
            if name in reused:
                source_run = self.store.get_run(reused[name])
                if source_run is not None:
                    artifacts.link_block(ArtifactStore(Path(source_run.run_dir)), name)
                state = BlockState(
                    name,
                    BlockStatus.SUCCESS,
                    block.run_notebook,
                    reused_from=reused[name],
                    started_at=now(),
                    ended_at=now(),
                )
            else:
                state = BlockState(
                    name,
                    BlockStatus.SKIPPED,
                    block.run_notebook,
                    error="not selected by --only",
                    ended_at=now(),
                )
            write_state(run_dir, state)


@dataclass(slots=True)
class _NotebookJob:
    path: str
    blocks: list[str]
    thread: threading.Thread | None = None
    pid: int | None = None
    error: BaseException | None = None
    done: bool = False
    settled: bool = False


class _Execution:
    """Starts notebook threads, watches block states, enforces timeouts and cancellation."""

    def __init__(
        self,
        runner: Runner,
        pipeline: Pipeline,
        plan: RunPlan,
        options: RunOptions,
        params: Mapping[str, ParamValue],
    ) -> None:
        self.runner = runner
        self.pipeline = pipeline
        self.plan = plan
        self.options = options
        self.run_dir = Path(plan.run_dir)
        self.secrets = {k: v for k, v in params.items() if is_secret_param(k, v)}
        self.concurrency = (
            options.concurrency or pipeline.config.concurrency or max(4, os.cpu_count() or 1)
        )
        self._seen: dict[str, int] = {}
        self._states: dict[str, BlockState] = {}
        self._interrupted: dict[str, float] = {}
        self._killed: set[str] = set()
        self._cancel_sent_at: float | None = None
        self._wake = threading.Event()
        self._last_beat = float("-inf")

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
        sla = alerts.SlaWatch(self.pipeline.config.alerts, self.runner.store, self.plan.run_id)
        while True:
            self._poll_states()
            sla.check()
            if self.runner._cancel.is_set():
                self._cancel(started, waiting)
                waiting = []
            while waiting and self._busy(started) < self.concurrency:
                job = waiting.pop(0)
                self._start(job)
                started.append(job)
            self._enforce_timeouts(started)
            self._beat()
            for job in started:
                if job.done and not job.settled:
                    # Right away, not at the end: other notebooks may be waiting on its blocks.
                    self._settle(job)
            if not waiting and all(job.settled for job in started):
                break
            self._wake.wait(0.02)
            self._wake.clear()
        self._poll_states()
        return self._status()

    def states(self) -> dict[str, BlockState]:
        return dict(self._states)

    def _beat(self) -> None:
        """Tell schedulers this run's runner is alive (they mark silent runs crashed)."""
        clock = time.monotonic()
        if clock - self._last_beat >= HEARTBEAT_SECONDS:
            self._last_beat = clock
            heartbeat(self.runner.store, self.plan.run_id)

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
        env = {**os.environ, SECRETS_ENV: json.dumps(_jsonable(self.secrets))}

        def kernel_started(km: Any) -> None:
            job.pid = getattr(km.provisioner, "pid", None)

        # The kernel process's own output (warnings, a crash's last words) goes to the run's logs.
        log_path = self.run_dir / LOG_DIR / f"{Path(job.path).stem}.kernel.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with log_path.open("ab") as kernel_log:
                papermill.execute_notebook(
                    str(self.run_dir / INPUT_DIR / Path(job.path).name),
                    str(self.run_dir / job.path),
                    engine_name="blockbook",
                    kernel_log=kernel_log,
                    kernel_name=KERNEL_NAME,
                    progress_bar=False,
                    log_output=False,
                    kernel_cwd=str((self.pipeline.folder / source).parent),
                    kernel_env=env,
                    kernel_started=kernel_started,
                )
        except BaseException as exc:  # recorded and turned into block states by _settle
            job.error = exc
        finally:
            job.done = True
            self._wake.set()

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
            status = BlockStatus.CANCELLED if self.runner._cancel.is_set() else BlockStatus.FAILED
            base = state or BlockState(name, status, job.path)
            write_state(self.run_dir, replace(base, status=status, error=reason, ended_at=now()))
        job.settled = True

    def _failure_reason(self, job: _NotebookJob, name: str, running: str | None, died: bool) -> str:
        if self.runner._cancel.is_set():
            return "cancelled"
        if name in self._killed:
            return f"{self._interrupt_reason(name)}; the kernel did not stop and was killed"
        if died and running == name:
            return "the kernel died while this block ran (out of memory, a crash, or os._exit)"
        if died:
            return (
                f"not run: the kernel died while running `{running}`"
                if running
                else "not run: the kernel died"
            )
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
            self.runner.store.record_block(self.plan.run_id, _masked_state(state, self.secrets))
            if self.runner.on_block is not None:
                self.runner.on_block(state)

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
        grace = self.options.grace_seconds
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
        path = self.run_dir / INTERRUPT_DIR / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(reason, encoding="utf-8")
        self._interrupted[name] = time.time()
        _signal(job.pid, signal.SIGINT)

    def _interrupt_reason(self, name: str) -> str:
        try:
            return (self.run_dir / INTERRUPT_DIR / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return "interrupted"

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
        elif time.time() - self._cancel_sent_at > self.options.grace_seconds:
            for job in started:
                if not job.done:
                    _signal(job.pid, signal.SIGKILL)

    def _status(self) -> RunStatus:
        """Success when every block succeeded or was skipped (--skip, --only, a false condition
        upstream, a skipped upstream). Any failed, upstream_failed or cancelled block fails the
        run, even when an `--trigger-rule all_done` or `one_success` block ran after it."""
        if self.runner._cancel.is_set():
            return RunStatus.CANCELLED
        fine = {BlockStatus.SUCCESS, BlockStatus.SKIPPED}
        statuses = [self._states[n].status if n in self._states else None for n in self.plan.order]
        return RunStatus.SUCCESS if all(s in fine for s in statuses) else RunStatus.FAILED

    # ---- executed notebooks ------------------------------------------------------------

    def finalize_notebooks(self, params: Mapping[str, ParamValue]) -> None:
        """Mask secrets in executed notebooks and tag each block cell with its final status."""
        secrets = secret_values(params)
        paths = {self.plan.blocks[n].run_notebook for n in self.plan.order}
        for relative in paths:
            path = self.run_dir / relative
            if not path.is_file():
                continue
            notebook = nbformat.read(path, as_version=4)
            for cell in notebook.cells:
                block = cell.get("metadata", {}).get("blockbook", {}).get("block")
                if block in self._states:
                    cell.metadata["blockbook"]["status"] = str(self._states[block].status)
                if secrets and cell.get("cell_type") == "code":
                    _mask_outputs(cell, secrets)
            write_notebook(notebook, path)


def _mask_outputs(cell: Any, secrets: list[str]) -> None:
    for output in cell.get("outputs", []):
        if "text" in output:
            output["text"] = mask_text(output["text"], secrets)
        if "traceback" in output:
            output["traceback"] = [mask_text(line, secrets) for line in output["traceback"]]
        if "evalue" in output:
            output["evalue"] = mask_text(output["evalue"], secrets)
        for kind, value in output.get("data", {}).items():
            if isinstance(value, str) and kind.startswith("text/"):
                output["data"][kind] = mask_text(value, secrets)


def _masked_state(state: BlockState, secrets: Mapping[str, Any]) -> BlockState:
    values = secret_values(secrets)
    if not values:
        return state
    attempts = tuple(
        replace(
            a,
            error=None if a.error is None else mask_text(a.error, values),
            traceback=None if a.traceback is None else mask_text(a.traceback, values),
            tests=tuple(replace(t, message=mask_text(t.message, values)) for t in a.tests),
        )
        for a in state.attempts
    )
    error = None if state.error is None else mask_text(state.error, values)
    return replace(state, attempts=attempts, error=error)


def _time_allowed(header: BlockHeader) -> float | None:
    """How long an attempt may run before the runner steps in (the kernel enforces `--timeout`
    itself; this is the backstop). A sensor's attempt spans all its pokes."""
    if header.kind is BlockKind.SENSOR:
        return header.sensor_timeout + header.poke_interval + (header.timeout or 0)
    return header.timeout


def _checked_run_id(run_id: str) -> RunId:
    # It names a folder under .blockbook/runs: nothing that could climb out of it.
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", run_id):
        raise RunError(
            f"invalid run id `{run_id}`",
            hint="use letters, digits, '.', '_' and '-' only, or leave it out",
        )
    return RunId(run_id)


def _first_error(plan: RunPlan, states: Mapping[str, BlockState]) -> str | None:
    for name in plan.order:
        state = states.get(name)
        if state is not None and state.status is BlockStatus.FAILED:
            return f"block {name}: {state.error}"
    return None


def _is_dead_kernel(error: BaseException | None) -> bool:
    if error is None:
        return False
    from nbclient.exceptions import DeadKernelError

    return isinstance(error, DeadKernelError) or "Kernel died" in str(error)


def _signal(pid: int | None, signum: int) -> None:
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):  # already gone: nothing left to stop
        os.kill(pid, signum)


def _jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in params.items()}
