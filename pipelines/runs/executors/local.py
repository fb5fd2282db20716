"""The default executor: each run notebook in a thread of the runner, on a kernel the runner
starts (or takes warm from `pipelines.runs.pool`), stopped by signalling its process group."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

from pipelines.runs.executors import CellGate, EndKind, NotebookEnd, NotebookEnded, NotebookRun
from pipelines.runs.executors.notebook import (
    KernelProcess,
    cold_start_options,
    end_of,
    execute,
    kernel_env,
    kernel_log,
    masking,
    on_disk,
    staged,
)
from pipelines.runs.kernels import KernelLog
from pipelines.runs.pool import KernelNotPrepared, KernelPool, WarmKernel

log = logging.getLogger(__name__)


class LocalNotebook:
    """A notebook executing in this process: its kernel is signalled directly."""

    def __init__(self) -> None:
        self.kernel = KernelProcess()

    @property
    def kernel_known(self) -> bool:
        return self.kernel.pid is not None

    def interrupt(self) -> None:
        self.kernel.signal(signal.SIGINT)

    def kill(self) -> None:
        self.kernel.signal(signal.SIGKILL)


class LocalExecutor:
    """One thread per run notebook; with a kernel pool, on warm kernels when one is ready."""

    def __init__(self, kernels: KernelPool | None = None) -> None:
        self.kernels = kernels

    def start(
        self, run: NotebookRun, cell_gate: CellGate | None, on_end: NotebookEnded
    ) -> LocalNotebook:
        running = LocalNotebook()
        thread = threading.Thread(
            target=self._staged,
            args=(run, running, cell_gate, on_end),
            name=f"nb:{run.notebook}",
        )
        thread.daemon = True
        thread.start()
        return running

    def _staged(
        self,
        run: NotebookRun,
        running: LocalNotebook,
        cell_gate: CellGate | None,
        on_end: NotebookEnded,
    ) -> None:
        """A run folder in object storage: the notebook's files staged on this machine."""
        ended: list[NotebookEnd] = []
        try:
            with staged(run) as here:
                self._run(here, running, cell_gate, ended.append)
        except Exception as exc:  # the store unreachable: reported on the notebook's blocks
            log.error("run %s: %s not staged: %s", run.run_id, run.notebook, exc, exc_info=exc)
            if not ended:
                reason = f"its files could not be staged: {type(exc).__name__}: {exc}"
                ended.append(NotebookEnd(EndKind.START_FAILED, reason))
        on_end(ended[0])  # once the executed notebook is in the run folder

    def _run(
        self,
        run: NotebookRun,
        running: LocalNotebook,
        cell_gate: CellGate | None,
        on_end: NotebookEnded,
    ) -> None:
        kernel = running.kernel
        env = kernel_env(run)
        warm = self._warm_kernel(run, env)
        output: KernelLog
        if warm is not None:
            output = warm.output.attach(on_disk(run.log_path), masking(run).mask)
            kernel.pid, kernel.group = warm.pid, warm.group
            kernel_options: dict[str, Any] = {"warm_kernel": warm.manager}
        else:
            output = kernel_log(run)
            kernel_options = cold_start_options(run, kernel, env)
        error: BaseException | None = None
        try:
            error = execute(run, kernel, output, cell_gate, kernel_options)
        finally:
            if warm is not None:
                warm.discard()  # its log, `output`, closes with it
            else:
                output.close()
            on_end(end_of(error, output))

    def _warm_kernel(self, run: NotebookRun, env: dict[str, str]) -> WarmKernel | None:
        """A kernel from the pool set up for this notebook, or None: no pool, none ready, or
        the one taken could not be set up (the notebook then starts a kernel of its own)."""
        if self.kernels is None:
            return None
        warm = self.kernels.take(run.kernel_name)
        if warm is None:
            return None
        try:
            warm.prepare(Path(run.cwd), env)
        except KernelNotPrepared as exc:
            log.warning("run %s: %s; starting a kernel instead", run.run_id, exc)
            warm.discard()
            return None
        return warm
