"""Blockbook's papermill engine, registered under the `papermill.engine` entry point.

It differs from papermill's nbclient engine in three ways the runner needs: the kernel starts
in the source notebook's folder with an environment of the runner's choosing (papermill's own
`cwd` changes the whole process's directory, which parallel notebooks can't share); the runner
gets the kernel manager as soon as the kernel is up, to interrupt or kill it; the runner may
stop the notebook before any cell (`cell_gate`); the output notebook is saved when a cell
ends and at most once a second when one starts, instead of twice per cell; and it can execute
on a warm kernel started ahead (`warm_kernel`, from `pipelines.runs.pool`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from jupyter_core.utils import ensure_async, run_sync
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, NotebookExecutionManager

from pipelines.runs.kernels import START_ATTEMPTS, KernelLog, KernelStartFailed, lost_port_race
from pipelines.runs.kernels import cause as kernel_cause

logger = logging.getLogger(__name__)

KernelStarted = Callable[[Any], None]
CellGate = Callable[[Any], None]
SAVE_INTERVAL_SECONDS = 1.0
READY_POLL_SECONDS = 0.2


class ThrottledExecutionManager(NotebookExecutionManager):  # type: ignore[misc]
    """Saves on cell starts at most once per interval; the notebook's start and end, and every
    cell's end, always save: a runner killed mid-run (kill -9) must not lose the outputs of the
    blocks that finished. `cell_gate`, when set, runs before each cell and may raise to stop the
    notebook before the cell reaches the kernel."""

    _in_cell_event = False
    _last_write = 0.0
    cell_gate: CellGate | None = None

    def save(self, **kwargs: Any) -> None:
        if self._in_cell_event and time.monotonic() - self._last_write < SAVE_INTERVAL_SECONDS:
            return
        super().save(**kwargs)
        self._last_write = time.monotonic()

    def cell_start(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
        if self.cell_gate is not None:
            self.cell_gate(cell)
        self._in_cell_event = True
        try:
            super().cell_start(cell, cell_index, **kwargs)
        finally:
            self._in_cell_event = False


class BlockbookNotebookClient(PapermillNotebookClient):  # type: ignore[misc]
    km: Any  # nbclient's trait: the kernel manager, None between kernels

    def __init__(self, nb_man: Any, kernel_started: KernelStarted | None, **kwargs: Any) -> None:
        super().__init__(nb_man, **kwargs)
        self._kernel_started = kernel_started

    async def async_start_new_kernel(self, **kwargs: Any) -> None:
        """Start the kernel and wait until it is ready. A start that lost the port race (another
        process took a port between jupyter_client choosing it and the kernel binding it) is
        tried again with fresh ports; any other failed start raises KernelStartFailed with the
        cause from the kernel's log, as soon as the kernel dies or says why."""
        kernel_log = kwargs.get("stdout")
        output = kernel_log if isinstance(kernel_log, KernelLog) else None
        for attempt in range(1, START_ATTEMPTS + 1):
            if self.km is None:
                self.create_kernel_manager()
            # What this start says, not an earlier one that lost the race.
            since = output.mark() if output is not None else 0
            await super().async_start_new_kernel(**kwargs)
            if self._kernel_started is not None:
                self._kernel_started(self.km)
            failure = await self._until_ready(output, since)
            if failure is None:
                return
            lines = await asyncio.to_thread(output.tail, since=since) if output else []
            if lost_port_race(lines) and attempt < START_ATTEMPTS:
                logger.warning("kernel start %d lost the port race; starting it again", attempt)
                continue
            reason = kernel_cause(lines) or f"{type(failure).__name__}: {failure}"
            path = output.path if output is not None else None
            # nbclient registered an atexit clean-up that expects a kernel manager: an unstarted
            # one has nothing to clean up, where None would fail an assertion at exit.
            self.create_kernel_manager()
            raise KernelStartFailed(reason, path, attempt) from failure

    # nbclient binds its sync wrapper to the base coroutine; rebind it to the override above.
    start_new_kernel = run_sync(async_start_new_kernel)

    async def _until_ready(self, output: KernelLog | None, since: int) -> BaseException | None:
        """Wait for the kernel's first reply: None when it came, else why it will not. nbclient
        notices a kernel process that exits within a second; a kernel that failed to bind a port
        can instead hang, alive and silent, until the start-up timeout; its log says so first."""
        ready = asyncio.ensure_future(self.async_start_new_kernel_client())
        while not ready.done():
            await asyncio.wait({ready}, timeout=READY_POLL_SECONDS)
            if (
                not ready.done()
                and output is not None
                and lost_port_race(output.tail(since=since, drain=False))
            ):
                ready.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ready
                await self._async_cleanup_kernel()  # kills the hung kernel's process group
                return RuntimeError("the kernel could not bind its ports")
        failure: BaseException | None = ready.exception()
        if failure is not None and self.km is not None and self.kc is None:
            # nbclient cleans up after a client that failed to connect, not before one exists.
            await ensure_async(self.km.cleanup_resources())
            self.km = None
        return failure


class BlockbookEngine(NBClientEngine):  # type: ignore[misc]
    @classmethod
    def execute_notebook(
        cls,
        nb: Any,
        kernel_name: str,
        output_path: str | None = None,
        progress_bar: bool = False,
        log_output: bool = False,
        autosave_cell_every: int = 30,
        cell_gate: CellGate | None = None,
        **kwargs: Any,
    ) -> Any:
        manager = ThrottledExecutionManager(
            nb,
            output_path=output_path,
            progress_bar=progress_bar,
            log_output=log_output,
            autosave_cell_every=autosave_cell_every,
        )
        manager.cell_gate = cell_gate
        manager.notebook_start()
        try:
            cls.execute_managed_notebook(manager, kernel_name, log_output=log_output, **kwargs)
        finally:
            manager.cleanup_pbar()
            manager.notebook_complete()
        return manager.nb

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man: Any,
        kernel_name: str,
        log_output: bool = False,
        stdout_file: Any = None,
        stderr_file: Any = None,
        start_timeout: int = 60,
        execution_timeout: float | None = None,
        kernel_cwd: str | None = None,
        kernel_env: dict[str, str] | None = None,
        kernel_log: Any = None,
        kernel_started: KernelStarted | None = None,
        warm_kernel: Any = None,
        **kwargs: Any,
    ) -> Any:
        kwargs.pop("input_path", None)
        if warm_kernel is not None:
            # A started kernel (`pipelines.runs.pool`): nbclient uses it instead of starting
            # one, and shuts it down at the end (`cleanup_kc`), as it does its own.
            kwargs["km"] = warm_kernel
        client = BlockbookNotebookClient(
            nb_man,
            kernel_started,
            timeout=execution_timeout,
            startup_timeout=start_timeout,
            kernel_name=kernel_name,
            log=logger,
            log_output=log_output,
            stdout_file=stdout_file,
            stderr_file=stderr_file,
            # A graceful shutdown sometimes stalls for seconds; run state is already on disk.
            shutdown_kernel="immediate",
            **kwargs,
        )
        start_options: dict[str, Any] = {"cleanup_kc": True} if warm_kernel is not None else {}
        if kernel_cwd is not None:
            start_options["cwd"] = kernel_cwd
        if kernel_env is not None:
            start_options["env"] = kernel_env
        if kernel_log is not None:
            start_options["stdout"] = start_options["stderr"] = kernel_log
        return client.execute(**start_options)
