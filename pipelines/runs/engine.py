"""Blockbook's papermill engine, registered under the `papermill.engine` entry point.

It differs from papermill's nbclient engine in three ways the runner needs: the kernel starts
in the source notebook's folder with an environment of the runner's choosing (papermill's own
`cwd` changes the whole process's directory, which parallel notebooks can't share); the runner
gets the kernel manager as soon as the kernel is up, to interrupt or kill it; the runner may
stop the notebook before any cell (`cell_gate`); and the output notebook is saved when a cell
ends and at most once a second when one starts, instead of twice per cell.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from jupyter_core.utils import run_sync
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, NotebookExecutionManager

logger = logging.getLogger(__name__)

KernelStarted = Callable[[Any], None]
CellGate = Callable[[Any], None]
SAVE_INTERVAL_SECONDS = 1.0


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
    def __init__(self, nb_man: Any, kernel_started: KernelStarted | None, **kwargs: Any) -> None:
        super().__init__(nb_man, **kwargs)
        self._kernel_started = kernel_started

    async def async_start_new_kernel(self, **kwargs: Any) -> None:
        await super().async_start_new_kernel(**kwargs)
        if self._kernel_started is not None:
            self._kernel_started(self.km)

    # nbclient binds its sync wrapper to the base coroutine; rebind it to the override above.
    start_new_kernel = run_sync(async_start_new_kernel)


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
        **kwargs: Any,
    ) -> Any:
        kwargs.pop("input_path", None)
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
        start_options: dict[str, Any] = {}
        if kernel_cwd is not None:
            start_options["cwd"] = kernel_cwd
        if kernel_env is not None:
            start_options["env"] = kernel_env
        if kernel_log is not None:
            start_options["stdout"] = start_options["stderr"] = kernel_log
        return client.execute(**start_options)
