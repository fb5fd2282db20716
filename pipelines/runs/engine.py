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
import queue
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_core.utils import ensure_async, run_sync
from nbclient.util import run_hook
from nbformat.v4 import nbjson
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, NotebookExecutionManager

from pipelines.rundir.state import write_bytes_atomic
from pipelines.runs.kernels import (
    START_ATTEMPTS,
    KernelLog,
    KernelStartFailed,
    kernel_group,
    lost_port_race,
    signal_kernel,
)
from pipelines.runs.kernels import cause as kernel_cause

logger = logging.getLogger(__name__)

KernelStarted = Callable[[Any], None]
CellGate = Callable[[Any], None]
SAVE_INTERVAL_SECONDS = 1.0
READY_POLL_SECONDS = 0.2
KILL_WAIT_SECONDS = 5.0
IOPUB_JOIN_SECONDS = 0.2
"""How long a kernel_info's IOPub status may take to reach a new client before it is asked
again (its subscription may not have joined yet)."""


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
        if self.output_path:
            # papermill's write checks the whole notebook against nbformat's schema each time
            # (a third of a save, a dozen saves per notebook) and writes in place, where a
            # kill mid-write would leave half a notebook: written whole and renamed instead.
            # Run notebooks are nbformat 4 (`runs.build`), written as nbformat.writes would.
            payload = nbjson.writes(self.nb).encode()  # type: ignore[no-untyped-call]
            write_bytes_atomic(Path(self.output_path), payload)
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

    async def _async_cleanup_kernel(self) -> None:
        """nbclient's, with the kernel (shut down "immediate"ly, so killed anyway) killed and
        reaped first: jupyter_client then finds it gone at once, where after its own SIGKILL it
        looks again only 0.1 s later, which every notebook's end waited for."""
        provisioner = getattr(self.km, "provisioner", None)
        process = getattr(provisioner, "process", None)
        if process is not None and process.poll() is None:
            signal_kernel(process.pid, kernel_group(process.pid), signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):  # jupyter_client waits on
                await asyncio.to_thread(process.wait, KILL_WAIT_SECONDS)
        await super()._async_cleanup_kernel()

    async def async_start_new_kernel_client(self) -> Any:
        """nbclient's, with a readiness check that ends when the kernel has answered instead of
        after 0.2 s of silence on IOPub (jupyter_client's `wait_for_ready` ends so): every
        notebook of every run, warm or cold, paid those 0.2 s before its first cell."""
        assert self.km is not None
        try:
            self.kc = self.km.client()
            await ensure_async(self.kc.start_channels())
            await until_answering(self.kc, timeout=self.startup_timeout)
        except Exception as exc:
            self.log.error("the kernel's client did not start: %s", exc)
            await self._async_cleanup_kernel()
            raise
        self.kc.allow_stdin = False
        await run_hook(self.on_notebook_start, notebook=self.nb)
        return self.kc

    start_new_kernel_client = run_sync(async_start_new_kernel_client)

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


async def until_answering(client: Any, timeout: float) -> None:
    """Wait until the kernel answers: its reply to kernel_info on the shell channel, then its
    `idle` status for that request on IOPub, which proves our subscription is live (a SUB
    socket misses what was published before it joined). What the status is missing for is
    asked again, as jupyter_client does."""
    deadline = time.monotonic() + timeout
    while True:
        request = client.kernel_info()
        reply = await _reply_to(client, request, within=1.0)
        if reply is not None and await _idle_after(client, request, within=IOPUB_JOIN_SECONDS):
            # What jupyter_client does with the reply (the protocol version to speak).
            client._handle_kernel_info_reply(reply)
            return
        if not await ensure_async(client.is_alive()):
            raise RuntimeError("the kernel died before it answered kernel_info")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the kernel did not answer in {timeout:g} s")


async def _reply_to(client: Any, request: str, within: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        try:
            message: dict[str, Any] = await client.shell_channel.get_msg(timeout=left)
        except queue.Empty:
            return None
        if message["parent_header"].get("msg_id") == request:
            return message
    return None


async def _idle_after(client: Any, request: str, within: float) -> bool:
    """True once IOPub carried the kernel's `idle` for `request`; False after `within` seconds
    without any message (nothing reached our subscription)."""
    while True:
        try:
            message = await client.iopub_channel.get_msg(timeout=within)
        except queue.Empty:
            return False
        if (
            message["msg_type"] == "status"
            and message["content"].get("execution_state") == "idle"
            and message["parent_header"].get("msg_id") == request
        ):
            return True


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
