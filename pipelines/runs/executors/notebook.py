"""One run notebook through papermill with Blockbook's engine: the part every executor shares,
in the runner's thread (`local`) or in a Dask task on a worker (`dask_executor`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pipelines.params import Secrets, json_params
from pipelines.rundir.plan import SECRETS_ENV
from pipelines.runs.executors import CellGate, EndKind, NotebookEnd, NotebookRun
from pipelines.runs.kernels import (
    KERNEL_ARGUMENTS,
    KernelLog,
    KernelStartFailed,
    kernel_environment,
    kernel_group,
    kill_group,
    signal_kernel,
)
from pipelines.runs.kernels import cause as kernel_cause


@dataclass(slots=True)
class KernelProcess:
    """A notebook's kernel once started: the pid, and the process group signalled whole so a
    block's child processes go too."""

    pid: int | None = None
    group: int | None = None

    def started(self, manager: Any) -> None:
        self.pid = getattr(manager.provisioner, "pid", None)
        self.group = kernel_group(self.pid)

    def signal(self, signum: int) -> None:
        """An interrupt reaches a `!command` the way Ctrl-C in a terminal does; a kill leaves
        no child process of a block orphaned."""
        signal_kernel(self.pid, kernel_group(self.pid), signum)


def kernel_env(run: NotebookRun) -> dict[str, str]:
    """The kernel's environment: this process's (on a worker, the worker's own), and the run's
    secrets."""
    return {**kernel_environment(), SECRETS_ENV: json.dumps(json_params(run.secret_params))}


def kernel_log(run: NotebookRun) -> KernelLog:
    """The kernel's own output (warnings, a crash's last words, whatever a block's subprocess
    prints), on its way to the run's logs with secrets masked before it reaches the disk."""
    return KernelLog(run.log_path, masking(run).mask)


def masking(run: NotebookRun) -> Secrets:
    return Secrets.of(run.secret_params, whole_values=True)


def execute(
    run: NotebookRun,
    kernel: KernelProcess,
    output: KernelLog,
    cell_gate: CellGate | None,
    kernel_options: dict[str, Any],
) -> BaseException | None:
    """Run the notebook to its end; what stopped it early comes back, never raised. The
    kernel's process group is killed at the end: the kernel is gone (shut down, killed or dead),
    and what its blocks started goes too. The caller closes `output`, then words the end
    (`end_of`)."""
    import papermill

    error: BaseException | None = None
    try:
        papermill.execute_notebook(
            str(run.input_path),
            str(run.output_path),
            engine_name="blockbook",
            kernel_log=output,
            kernel_name=run.kernel_name,
            progress_bar=False,
            log_output=False,
            cell_gate=cell_gate,
            **kernel_options,
        )
    except BaseException as exc:  # turned into the record the runner words reasons from
        error = exc
    finally:
        kill_group(kernel.group)
    return error


def cold_start_options(
    run: NotebookRun, kernel: KernelProcess, env: dict[str, str]
) -> dict[str, Any]:
    return {
        "kernel_cwd": str(run.cwd),
        "kernel_env": env,
        "kernel_started": kernel.started,
        "extra_arguments": list(KERNEL_ARGUMENTS),
    }


def end_of(error: BaseException | None, output: KernelLog) -> NotebookEnd:
    """The record of how an execution ended, its kernel's last words read from the closed log."""
    if error is None:
        return NotebookEnd()
    cause = kernel_cause(output.tail())
    if isinstance(error, KernelStartFailed):
        return NotebookEnd(EndKind.START_FAILED, str(error), cause)
    if _is_dead_kernel(error):
        return NotebookEnd(EndKind.KERNEL_DIED, f"{type(error).__name__}: {error}", cause)
    return NotebookEnd(EndKind.STOPPED, f"{type(error).__name__}: {error}", cause)


def _is_dead_kernel(error: BaseException) -> bool:
    from nbclient.exceptions import DeadKernelError

    return isinstance(error, DeadKernelError) or "Kernel died" in str(error)
