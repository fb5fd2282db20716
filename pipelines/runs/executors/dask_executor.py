"""Run notebooks on a Dask distributed cluster: one task per notebook execution (per block with
`--isolate`), papermill with Blockbook's engine on the worker, a small `NotebookEnd` back.

The run folder is where the kernels, the tasks and the runner meet: on a disk they share (one
machine, or NFS), or in object storage (`[artifacts] url`), where the workers need no shared
filesystem at all: each task fetches its input notebook and a copy of the pipeline folder (the
`workspace` the runner puts into the run folder once per run) into a scratch folder, and puts
the executed notebook and its kernel's log back. Stopping a kernel on a worker cannot go by pid
from the runner (another machine's pids), so the runner writes the stop requests to a control
file in the run folder, and the task, which knows its kernel, watches that file and signals its
own kernel's process group (`docs/decisions.md`, "Dask").

Imported only when a run uses Dask: `dask` and `distributed` are the `blockbook[dask]` extra.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import __version__
from pipelines.rundir.location import RemoteFolder, RunFolder, Storage, is_remote_url
from pipelines.rundir.state import write_json_atomic
from pipelines.runs.executors import (
    CellGate,
    EndKind,
    ExecutorUnavailable,
    NotebookEnd,
    NotebookEnded,
    NotebookRun,
)
from pipelines.runs.executors.notebook import (
    WORKSPACE_DIR,
    KernelProcess,
    Workspace,
    cold_start_options,
    end_of,
    execute,
    kernel_env,
    kernel_log,
    put_tree,
    staged,
)

log = logging.getLogger(__name__)

KERNELS_RESOURCE = "kernels"
"""The worker resource a notebook execution holds: `dask worker --resources kernels=N` runs at
most N kernels at once."""
CONTROL_DIR = "control"
"""Where a run folder keeps the runner's stop requests for kernels it cannot signal itself."""
CONTROL_POLL_SECONDS = 0.1
REMOTE_CONTROL_POLL_SECONDS = 0.5
"""In object storage each look is a request: a stop then takes half a second more to apply."""
CONNECT_TIMEOUT_SECONDS = 10
CHECK_TIMEOUT_SECONDS = 30
REQUIRED_MODULES = ("kernel_magics", "papermill", "pandas", "pyarrow")
"""What a worker imports for a notebook: the magics and their hand-off formats."""


# ---- stop requests, through the run folder ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StopRequests:
    """What the runner asked of one notebook's kernel: interrupts are counted (a notebook's
    blocks can each time out), a kill is for good."""

    interrupts: int = 0
    kill: bool = False

    @classmethod
    def read(cls, path: RunFolder) -> StopRequests:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        return cls(int(data.get("interrupts", 0)), bool(data.get("kill", False)))

    def write(self, path: RunFolder) -> None:
        write_json_atomic(path, {"interrupts": self.interrupts, "kill": self.kill})


def control_path(run_dir: RunFolder, notebook: str) -> RunFolder:
    return run_dir / CONTROL_DIR / (notebook.replace("/", "__") + ".json")


class _StopWatch:
    """On the worker: applies the runner's stop requests to the task's own kernel. Interrupts
    asked before this attempt began are not its own (they were the earlier attempt's)."""

    def __init__(self, path: RunFolder, kernel: KernelProcess) -> None:
        self.path = path
        self.every = (
            REMOTE_CONTROL_POLL_SECONDS if isinstance(path, RemoteFolder) else CONTROL_POLL_SECONDS
        )
        self.kernel = kernel
        self.seen = self._read() or StopRequests()
        self._applied = self.seen.interrupts
        self._killed = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="blockbook-stops", daemon=True)

    def __enter__(self) -> _StopWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._thread.join()

    def _read(self) -> StopRequests | None:
        try:
            return StopRequests.read(self.path)
        except Exception as exc:
            # A store that does not answer for a moment (object storage, NFS): the next look
            # may; a watch that died would leave the kernel deaf to cancel for good.
            log.warning("cannot read the stop requests %s: %s", self.path, exc)
            return None

    def _watch(self) -> None:
        while not self._stopped.wait(self.every):
            requests = self._read()
            if requests is None:
                continue
            if self.kernel.pid is None:
                continue  # applied once the kernel is up: a request is never lost
            if requests.kill and not self._killed:
                self._killed = True
                self.kernel.signal(signal.SIGKILL)
            while self._applied < requests.interrupts:
                self._applied += 1
                self.kernel.signal(signal.SIGINT)


def run_on_worker(
    run: NotebookRun, control: RunFolder, workspace: Workspace | None = None
) -> NotebookEnd:
    """The Dask task: execute one run notebook on this worker's own kernel (its files staged
    here first when the run folder is in object storage)."""
    kernel = KernelProcess()
    watch = _StopWatch(control, kernel)
    if watch.seen.kill:
        # The runner gave up on this notebook before this attempt began (a cancel, a run ended
        # elsewhere): starting its kernel now would run blocks nobody waits for.
        return NotebookEnd(EndKind.STOPPED, "stopped before it started on a worker")
    with staged(run, workspace) as here:
        output = kernel_log(here)
        error: BaseException | None = None
        try:
            with watch:
                error = execute(
                    here, kernel, output, None, cold_start_options(here, kernel, kernel_env(here))
                )
        finally:
            output.close()
        return end_of(error, output)


# ---- the runner's side -------------------------------------------------------------------------


class DaskNotebook:
    """A notebook executing as a Dask task: stopped through its control file."""

    def __init__(self, future: Any, control: RunFolder, grace_seconds: float) -> None:
        self.future = future
        self.control = control
        self.grace_seconds = grace_seconds
        self._requests = StopRequests()
        self._kill_sent_at: float | None = None
        self._lock = threading.Lock()

    @property
    def kernel_known(self) -> bool:
        # The task applies requests once its kernel is up, so the runner may always ask.
        return True

    def interrupt(self) -> None:
        with self._lock:
            self._requests = StopRequests(self._requests.interrupts + 1, self._requests.kill)
            self._requests.write(self.control)

    def kill(self) -> None:
        with self._lock:
            if self._kill_sent_at is None:
                self._kill_sent_at = time.monotonic()
                self._requests = StopRequests(self._requests.interrupts, kill=True)
                self._requests.write(self.control)
            elif time.monotonic() - self._kill_sent_at > self.grace_seconds:
                # Still not ended: waiting for a worker that has no free kernel slot, or one
                # that stopped answering. Its task is dropped; a task that does start later
                # reads the kill first and starts no kernel.
                self.future.cancel()


@dataclass(frozen=True, slots=True)
class ClusterFacts:
    """What the runner learned from the scheduler when it connected."""

    address: str
    workers: tuple[str, ...]
    worker_hosts: tuple[str, ...]
    kernel_slots: int
    """Kernels the workers declare together (`--resources kernels=N`); 0 when none does."""


class DaskExecutor:
    """Submits run notebooks to a Dask scheduler. One per run: it closes its client at the end."""

    def __init__(self, client: Any, facts: ClusterFacts, grace_seconds: float = 5.0) -> None:
        self.client = client
        self.facts = facts
        self.grace_seconds = grace_seconds
        self._attempts: dict[tuple[str, str], int] = {}
        self._pipeline_folder: Path | None = None
        self._workspaces: dict[str, RemoteFolder] = {}
        self._workspace_lock = threading.Lock()

    @classmethod
    def connect(cls, address: str) -> DaskExecutor:
        try:
            from distributed import Client as untyped_client
        except ImportError as exc:
            raise ExecutorUnavailable(
                f"the Dask executor needs `distributed`, which is not installed ({exc})",
                "pip install 'blockbook[dask]'",
            ) from exc
        try:
            client_class: Any = untyped_client  # distributed has no type hints
            client = client_class(address, timeout=CONNECT_TIMEOUT_SECONDS, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ExecutorUnavailable(
                f"cannot reach the Dask scheduler at {address}: {exc}",
                "start it (`dask scheduler`) or correct the address in blockbook.toml "
                "`[executor]`, $BLOCKBOOK_EXECUTOR or --executor",
            ) from exc
        try:
            facts = _facts(client, address)
        except BaseException:
            client.close()
            raise
        return cls(client, facts)

    def close(self) -> None:
        self.client.close()

    def check_workers(
        self, kernels: Sequence[str], folder: Path, storage: Storage | None = None
    ) -> None:
        """The pre-flight: every worker imports what notebooks need, has their kernelspecs and
        sees the pipeline folder (or, with run folders in object storage, reaches the store);
        else ExecutorUnavailable naming each worker and what it lacks."""
        self._pipeline_folder = folder
        answers = self.client.run(
            worker_problems,
            sorted(set(kernels)),
            str(folder),
            __version__,
            storage,
            on_error="return",
        )
        lacking: list[str] = []
        for worker, answer in sorted(answers.items()):
            if isinstance(answer, BaseException):
                problems = [
                    f"cannot run Blockbook's check ({type(answer).__name__}: {answer}); "
                    "is blockbook installed there?"
                ]
            else:
                problems = list(answer)
            lacking += [f"worker {worker}: {problem}" for problem in problems]
        if lacking:
            raise ExecutorUnavailable(
                "the Dask workers cannot run this pipeline:\n  " + "\n  ".join(lacking),
                "install blockbook (with the packages the notebooks import) and the kernels "
                "on every worker, in the environment `dask worker` runs in; see the README, "
                "'Running on a cluster'",
            )

    def start(
        self, run: NotebookRun, cell_gate: CellGate | None, on_end: NotebookEnded
    ) -> DaskNotebook:
        del cell_gate  # the runner cannot be called back from a worker: it stops tasks instead
        attempt = self._attempts.get((run.run_id, run.notebook), 0) + 1
        self._attempts[(run.run_id, run.notebook)] = attempt
        control = control_path(run.run_dir, run.notebook)
        control.parent.mkdir(parents=True, exist_ok=True)
        resources = {KERNELS_RESOURCE: 1} if self.facts.kernel_slots else None
        future = self.client.submit(
            run_on_worker,
            run,
            control,
            self._workspace(run),
            key=task_key(run.run_id, run.notebook, attempt),
            pure=False,
            resources=resources,
            # A worker that dies mid-notebook makes the scheduler run the task again elsewhere
            # (up to `distributed.scheduler.allowed-failures` times). `retries` would re-run
            # tasks that raised: ours return how they ended, so only Blockbook's own bug would
            # raise, and running user code again would not fix it.
            retries=0,
        )
        future.add_done_callback(lambda done: on_end(_ending(done)))
        return DaskNotebook(future, control, self.grace_seconds)

    def _workspace(self, run: NotebookRun) -> Workspace | None:
        """For a run folder in object storage: the pipeline folder's copy there (put once per
        run, by the first notebook that starts), so workers need not see the folder."""
        if not isinstance(run.run_dir, RemoteFolder) or self._pipeline_folder is None:
            return None
        folder = self._pipeline_folder
        with self._workspace_lock:
            target = self._workspaces.get(run.run_id)
            if target is None:
                target = run.run_dir / WORKSPACE_DIR
                count = put_tree(folder, target)
                log.info("run %s: %d files of %s put into %s", run.run_id, count, folder, target)
                self._workspaces[run.run_id] = target
        cwd = Path(run.cwd)
        if not cwd.is_relative_to(folder):
            # A notebook included from another folder: its kernel starts in the copy's root.
            log.warning("%s is outside %s: its kernel starts in the pipeline folder", cwd, folder)
            return Workspace(target, "")
        return Workspace(target, cwd.relative_to(folder).as_posix().removeprefix("."))


def task_key(run_id: str, notebook: str, attempt: int) -> str:
    """Unique per run, notebook and attempt: concurrent runs of one pipeline never collide,
    and the dashboard shows which run a task belongs to."""
    return f"blockbook-{run_id}-{re.sub(r'[^A-Za-z0-9_.-]', '_', notebook)}-{attempt}"


def _ending(future: Any) -> NotebookEnd:
    from distributed.scheduler import KilledWorker

    try:
        end: NotebookEnd = future.result()
    except KilledWorker as exc:
        last = getattr(exc.last_worker, "address", exc.last_worker)
        return NotebookEnd(
            EndKind.WORKER_LOST,
            f"the Dask workers running this notebook died while it ran, {exc.allowed_failures + 1}"
            f" times (the last: {last}), more than the scheduler's "
            "`distributed.scheduler.allowed-failures`; not the notebook's fault: look at the "
            "workers' logs (out of memory? killed?)",
        )
    except CancelledError:
        return NotebookEnd(EndKind.STOPPED, "its Dask task was cancelled")
    except Exception as exc:
        # Blockbook's own task failed on the worker (not the notebook's code: the task reports
        # that as a NotebookEnd); logged with its traceback, reported on the blocks.
        log.error("a notebook's Dask task failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
        return NotebookEnd(EndKind.STOPPED, f"its Dask task failed: {type(exc).__name__}: {exc}")
    return end


def _facts(client: Any, address: str) -> ClusterFacts:
    info = client.scheduler_info(n_workers=-1)
    workers = info.get("workers", {})
    if not workers:
        raise ExecutorUnavailable(
            f"the Dask scheduler at {address} has no workers",
            "start some: `dask worker ADDRESS --nthreads 2 --resources kernels=2`",
        )
    slots = sum(
        int(worker.get("resources", {}).get(KERNELS_RESOURCE, 0)) for worker in workers.values()
    )
    if not slots:
        # Dask holds a task that asks for a resource no worker has, forever: without the
        # resource declared, a worker's threads are what bounds its kernels.
        log.warning(
            "no Dask worker declares the `%s` resource: each runs as many kernels as it has "
            "threads (start workers with --resources %s=N to choose)",
            KERNELS_RESOURCE,
            KERNELS_RESOURCE,
        )
    hosts = tuple(sorted({str(worker.get("host", "")) for worker in workers.values()}))
    return ClusterFacts(address, tuple(sorted(workers)), hosts, slots)


def worker_problems(
    kernels: list[str], folder: str, runner_version: str, storage: Storage | None = None
) -> list[str]:
    """Run on each worker by the pre-flight: what it lacks to run the pipeline's notebooks."""
    problems: list[str] = []
    if __version__ != runner_version:
        # The kernels' magics and the runner share the run folder's formats.
        problems.append(f"runs blockbook {__version__}, the runner {runner_version}")
    for module in REQUIRED_MODULES:
        try:
            importlib.import_module(module)
        except Exception as exc:
            problems.append(f"cannot import `{module}` ({type(exc).__name__}: {exc})")
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        installed = set(KernelSpecManager().find_kernel_specs())
    except Exception as exc:
        problems.append(f"cannot list its kernelspecs ({type(exc).__name__}: {exc})")
    else:
        for kernel in kernels:
            if kernel not in installed:
                known = ", ".join(sorted(installed)) or "none"
                problems.append(f"has no kernelspec `{kernel}` (it has: {known})")
    if storage is not None and is_remote_url(storage.url):
        problems += _storage_problems(storage)
    elif not Path(folder).is_dir():
        problems.append(
            f"cannot see the pipeline folder {folder}: this version needs the project on a "
            "disk the runner and the workers share (same machine, or NFS)"
        )
    return problems


def _storage_problems(storage: Storage) -> list[str]:
    """What keeps this worker from the run folders in object storage."""
    root = RemoteFolder(storage.url, storage)
    bucket = RemoteFolder(storage.url.split("://", 1)[0] + "://" + root.path.split("/")[0], storage)
    try:
        bucket.fs.info(bucket.path)  # `exists` would say False for an endpoint it cannot reach
    except FileNotFoundError:
        return [f"cannot find the bucket of {storage.url} (does it exist?)"]
    except ImportError as exc:
        return [f"cannot open {storage.url}: {exc} (pip install 'blockbook[s3]')"]
    except Exception as exc:
        return [f"cannot reach {storage.url} ({type(exc).__name__}: {exc})"]
    return []
