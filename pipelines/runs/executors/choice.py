"""Which executor a run uses, and opening it: `blockbook run --executor` for one run, else
`$BLOCKBOOK_EXECUTOR`, else `[executor]` in blockbook.toml, else local."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipelines.assembly.config import PROJECT_FILE, check_scheduler_address, load_project_config
from pipelines.assembly.pipeline import Pipeline
from pipelines.errors import BlockbookError, InvalidInputError
from pipelines.rundir.location import Storage
from pipelines.rundir.state import now
from pipelines.runs.executors import Executor
from pipelines.runs.storage import project_storage
from pipelines.status import RunStatus
from pipelines.store.run_store import DATABASE_URL_ENV, RunStore

EXECUTOR_ENV = "BLOCKBOOK_EXECUTOR"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


@dataclass(frozen=True, slots=True)
class ExecutorChoice:
    kind: Literal["local", "dask"] = "local"
    address: str | None = None
    """The Dask scheduler, `tcp://HOST:PORT`."""
    source: str = "the default"
    """Where the choice was made, for error messages."""

    @property
    def host(self) -> str | None:
        if self.address is None:
            return None
        return self.address.split("://", 1)[1].rsplit(":", 1)[0]


def parse_executor(text: str, source: str) -> ExecutorChoice:
    """`local`, or a Dask scheduler as `dask://HOST:PORT` (or `tcp://HOST:PORT`)."""
    value = text.strip()
    if value == "local":
        return ExecutorChoice("local", source=source)
    address = "tcp://" + value.removeprefix("dask://") if value.startswith("dask://") else value
    try:
        return ExecutorChoice("dask", check_scheduler_address(address), source)
    except ValueError:
        raise InvalidInputError(
            f"{source}: `{text}` is not an executor",
            "write `local`, or a Dask scheduler as dask://HOST:PORT (e.g. dask://10.0.0.5:8786)",
        ) from None


def chosen_executor(root: Path, explicit: ExecutorChoice | None = None) -> ExecutorChoice:
    if explicit is not None:
        return explicit
    from_env = os.environ.get(EXECUTOR_ENV)
    if from_env:
        return parse_executor(from_env, f"${EXECUTOR_ENV}")
    config, problems = load_project_config(root)
    errors = [problem for problem in problems if problem.is_error]
    if errors:
        raise InvalidInputError(
            f"{PROJECT_FILE} is not valid:\n" + "\n".join(p.format() for p in errors),
            f"fix {PROJECT_FILE}",
        )
    if config.executor.type == "dask":
        return ExecutorChoice("dask", config.executor.address, f"{PROJECT_FILE} [executor]")
    return ExecutorChoice()


def check_store_is_shared(
    choice: ExecutorChoice, store: RunStore, worker_hosts: tuple[str, ...] = ()
) -> None:
    """A cluster beyond this machine needs a run store every machine reaches: an SQLite file is
    this machine's alone."""
    if choice.kind != "dask" or not store.url.startswith("sqlite"):
        return
    remote = [host for host in (choice.host, *worker_hosts) if host and not _is_this_machine(host)]
    if remote:
        raise InvalidInputError(
            f"the Dask cluster ({choice.source}: {choice.address}) reaches beyond this machine "
            f"({', '.join(sorted(set(remote)))}), but the run store is an SQLite file only this "
            "machine can open",
            f"use PostgreSQL: set {DATABASE_URL_ENV}=postgresql://USER@HOST/DB (or `[store] url` "
            f"in {PROJECT_FILE}), or run with --executor local",
        )


@contextlib.contextmanager
def open_executor(
    choice: ExecutorChoice, store: RunStore, pipeline: Pipeline, storage: Storage | None = None
) -> Iterator[Executor | None]:
    """The executor for one run of `pipeline`, checked before the run is recorded (the store is
    shared, the workers can run its notebooks and reach `storage`, where its run folder goes);
    None means local, the runner's own."""
    if choice.kind == "local" or choice.address is None:
        yield None
        return
    check_store_is_shared(choice, store)  # before connecting: refused even with no scheduler up
    from pipelines.runs.build import notebook_kernel
    from pipelines.runs.executors.dask_executor import DaskExecutor

    executor = DaskExecutor.connect(choice.address)
    try:
        check_store_is_shared(choice, store, executor.facts.worker_hosts)
        kernels = {notebook_kernel(pipeline, block.notebook) for block in pipeline.blocks.values()}
        executor.check_workers(sorted(kernels), pipeline.folder, storage)
        yield executor
    finally:
        executor.close()


@contextlib.contextmanager
def executor_for_run(
    root: Path,
    store: RunStore,
    pipeline: Pipeline,
    explicit: ExecutorChoice | None,
    queued_run: str | None,
) -> Iterator[Executor | None]:
    """`open_executor` of the executor chosen for a run. A queued run (a scheduler or
    `Project.start` launched this runner for it) that cannot start on it is ended `failed` with
    the reason: left queued, it would be marked crashed and retried, to fail the same way."""
    with contextlib.ExitStack() as stack:
        try:
            choice = chosen_executor(root, explicit)
            storage = project_storage(root) if choice.kind == "dask" else None
            executor = stack.enter_context(open_executor(choice, store, pipeline, storage))
        except BlockbookError as exc:
            if queued_run is not None:
                _fail_queued(store, queued_run, exc)
            raise
        yield executor


def _fail_queued(store: RunStore, run_id: str, exc: BlockbookError) -> None:
    record = store.get_run(run_id)
    if record is not None and record.run_id == run_id and record.status is RunStatus.QUEUED:
        store.finish_run(
            run_id, RunStatus.FAILED, now(), error=f"the run could not start: {exc.message}"
        )


def _is_this_machine(host: str) -> bool:
    if host in LOOPBACK_HOSTS or host.startswith("127."):
        return True
    names = {socket.gethostname(), socket.getfqdn()}
    if host in names:
        return True
    try:
        mine = {info[4][0] for name in names for info in socket.getaddrinfo(name, None)}
    except OSError:
        return False
    return host in mine
