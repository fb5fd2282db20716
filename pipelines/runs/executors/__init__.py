"""Executors: where a run's notebooks execute. `Execution` (`pipelines.runs.execution`) stays the
coordinator (block states, timeouts, cancel, heartbeats); an executor only starts one run
notebook's papermill execution somewhere and hands back a handle to interrupt or kill its kernel.

- `local`: a thread of the runner per notebook, kernels are the runner's children (default);
- `dask_executor`: one Dask task per notebook execution on a Dask distributed cluster.

`choice` picks one for a run: `blockbook run --executor`, `$BLOCKBOOK_EXECUTOR`, `[executor]`
in blockbook.toml.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipelines.errors import BlockbookError, ErrorKind
from pipelines.rundir.location import RunFolder

CellGate = Callable[[Any], None]


class ExecutorUnavailable(BlockbookError):
    """The chosen executor cannot run this pipeline: its cluster is unreachable, or its workers
    lack what the notebooks need (the pre-flight)."""

    kind = ErrorKind.UNAVAILABLE


@dataclass(frozen=True, slots=True)
class NotebookRun:
    """What it takes to execute one run notebook, wherever it runs: paths, kernel, secrets."""

    run_id: str
    run_dir: RunFolder
    """On this machine's disk, or in object storage (then the executor stages the notebook's
    files on the machine that runs it: `notebook.staged`)."""
    notebook: str
    """The run notebook's path relative to the run folder's notebooks (`load.ipynb`)."""
    input_path: RunFolder
    output_path: RunFolder
    log_path: RunFolder
    kernel_name: str
    cwd: Path
    """The source notebook's folder: the kernel starts there, as it does in JupyterLab."""
    secret_params: Mapping[str, Any]
    """The run's secret parameters; kernels get them through the environment, never files."""


class EndKind(enum.StrEnum):
    """How a notebook execution ended; the runner words each block's reason from it."""

    FINISHED = "finished"
    START_FAILED = "start_failed"
    """The kernel never became ready: no block ran, not the notebook's fault."""
    KERNEL_DIED = "kernel_died"
    STOPPED = "stopped"
    """Papermill stopped early: a cell raised, or the notebook was interrupted or killed."""
    WORKER_LOST = "worker_lost"
    """The machine running it went away more often than the executor retries: not the
    notebook's fault either."""


@dataclass(frozen=True, slots=True)
class NotebookEnd:
    """The small record an execution returns; data never travels with it."""

    kind: EndKind = EndKind.FINISHED
    error: str | None = None
    """What ended it early, `Type: message` (start failures: the whole reason)."""
    cause: str | None = None
    """Why the kernel ended, from its log, when the notebook did not finish."""

    @property
    def failed(self) -> bool:
        return self.kind is not EndKind.FINISHED


NotebookEnded = Callable[[NotebookEnd], None]


class RunningNotebook(Protocol):
    """A notebook execution the runner can stop."""

    @property
    def kernel_known(self) -> bool:
        """Whether signals can reach the kernel yet (the runner times blocks out only then)."""
        ...

    def interrupt(self) -> None:
        """What Ctrl-C is to a terminal: the running cell stops, the kernel lives on."""
        ...

    def kill(self) -> None:
        """Stop the kernel and everything a block started, at once."""
        ...


class Executor(Protocol):
    """Starts run notebooks somewhere; `on_end` hears once how each ended (from any thread)."""

    def start(
        self, run: NotebookRun, cell_gate: CellGate | None, on_end: NotebookEnded
    ) -> RunningNotebook:
        """`cell_gate` runs before each cell where the executor can call back into the runner
        (a local thread); the others stop notebooks through `RunningNotebook` instead."""
        ...
