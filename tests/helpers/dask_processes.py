"""A real Dask cluster of processes on 127.0.0.1: `dask scheduler` and `dask worker`s started
as a user starts them, for the tests that kill a worker or give one its own folder or
environment (a LocalCluster's workers share this process's)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.runs import wait_for

DASK = Path(sys.executable).parent / "dask"


@dataclass(frozen=True)
class WorkerSpec:
    cwd: Path | None = None
    """The worker's working folder (None: this process's)."""
    env: Mapping[str, str] | None = None
    """The worker's environment (None: this process's)."""


@contextmanager
def dask_processes(
    folder: Path, workers: Sequence[WorkerSpec]
) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A scheduler and one `dask worker --no-nanny --nthreads 2 --resources kernels=2` per spec
    (no nanny: a killed worker stays dead), their output in `folder/dask.log`; yields the
    scheduler's address and the worker processes, once all workers have joined."""
    import distributed

    scheduler_file = folder / "scheduler.json"
    logs = (folder / "dask.log").open("w")
    quiet = {"stdout": logs, "stderr": subprocess.STDOUT}
    processes = [
        subprocess.Popen(
            [
                *(str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0"),
                *("--no-dashboard", "--scheduler-file", str(scheduler_file)),
            ],
            **quiet,
        )
    ]
    try:
        wait_for(scheduler_file.exists, 60, "the scheduler to write its address")
        address = json.loads(scheduler_file.read_text())["address"]
        worker = [str(DASK), "worker", address, "--no-nanny", "--nthreads", "2"]
        worker += ["--resources", "kernels=2", "--no-dashboard"]
        started = [
            subprocess.Popen(
                worker, cwd=spec.cwd, env=dict(spec.env) if spec.env else None, **quiet
            )
            for spec in workers
        ]
        processes += started
        with distributed.Client(address, set_as_default=False) as client:
            client.wait_for_workers(len(workers), timeout=60)
        yield address, started
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        logs.close()
