"""One run notebook through papermill with Blockbook's engine: the part every executor shares,
in the runner's thread (`local`) or in a Dask task on a worker (`dask_executor`).

A run folder in object storage is staged: papermill reads and writes local files, so the input
notebook is fetched into a scratch folder first, and the executed notebook and the kernel's log
are put back when the execution ends (`staged`). On a worker that cannot see the pipeline
folder, the kernel starts in a copy of it fetched from the run folder (`Workspace`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipelines.params import Secrets, json_params
from pipelines.rundir.location import STORAGE_ENV, RemoteFolder, RunFolder, download, upload
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

log = logging.getLogger(__name__)

WORKSPACE_DIR = "workspace"
"""Where a run folder in object storage keeps a copy of the pipeline folder for workers."""


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
    """The kernel's environment: this process's (on a worker, the worker's own), the run's
    secrets, and how to reach a run folder in object storage."""
    env = {**kernel_environment(), SECRETS_ENV: json.dumps(json_params(run.secret_params))}
    if isinstance(run.run_dir, RemoteFolder):
        env[STORAGE_ENV] = run.run_dir.storage.to_env()
    return env


def kernel_log(run: NotebookRun) -> KernelLog:
    """The kernel's own output (warnings, a crash's last words, whatever a block's subprocess
    prints), on its way to the run's logs with secrets masked before it reaches the disk."""
    return KernelLog(on_disk(run.log_path), masking(run).mask)


def on_disk(path: RunFolder) -> Path:
    """`path`, which must be on this machine: a remote run's files are `staged` first."""
    if isinstance(path, RemoteFolder):
        raise TypeError(f"{path} is in object storage: stage the notebook's files first")
    return path


@dataclass(frozen=True, slots=True)
class Workspace:
    """The pipeline folder's files, copied into the run folder in object storage, for machines
    that cannot see the folder itself."""

    folder: RemoteFolder
    cwd: str
    """The kernel's folder (its source notebook's) relative to the pipeline folder; "" for it."""


@contextlib.contextmanager
def staged(run: NotebookRun, workspace: Workspace | None = None) -> Iterator[NotebookRun]:
    """`run` with its notebook, executed notebook and log on this machine. For a run folder in
    object storage: the input notebook is fetched into a scratch folder, and what the execution
    wrote there is put into the run folder when the caller is done (the log closed by then),
    whatever ended it. With `workspace`, the kernel starts in a fetched copy of the pipeline
    folder instead of `run.cwd`."""
    if not isinstance(run.input_path, RemoteFolder):
        yield run
        return
    with tempfile.TemporaryDirectory(prefix="blockbook-") as scratch:
        local = Path(scratch)
        input_path = local / run.input_path.name
        download(run.input_path, input_path)
        cwd = run.cwd
        if workspace is not None:
            copy = local / WORKSPACE_DIR
            fetch_tree(workspace.folder, copy)
            cwd = copy / workspace.cwd
            cwd.mkdir(parents=True, exist_ok=True)
        here = replace(
            run,
            input_path=input_path,
            output_path=local / "executed" / Path(run.notebook).name,
            log_path=local / "kernel.log",
            cwd=cwd,
        )
        try:
            yield here
        finally:
            for written, target in (
                (here.output_path, run.output_path),
                (here.log_path, run.log_path),
            ):
                if isinstance(target, RemoteFolder) and on_disk(written).is_file():
                    upload(on_disk(written), target)


def put_tree(folder: Path, target: RemoteFolder) -> int:
    """Copy the pipeline folder's files into object storage (hidden files and folders, such as
    `.blockbook` and `.ipynb_checkpoints`, left out); returns how many."""
    count = 0
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
            continue
        if path.is_file():
            upload(path, target / relative.as_posix())
            count += 1
    return count


def fetch_tree(source: RemoteFolder, folder: Path) -> None:
    """Copy every object under `source` into `folder`, keeping their relative paths."""
    prefix = source.path.rstrip("/") + "/"
    for found in source.fs.find(source.path):
        relative = str(found)[len(prefix) :]
        if relative and ".." not in relative.split("/"):
            download(source / relative, folder / relative)


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
