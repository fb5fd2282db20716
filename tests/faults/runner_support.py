"""Helpers of the runner fault tests: waiting on conditions, a gate a block waits on, killing a
runner and its kernels, and a TCP proxy that can take the database away."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pipelines.rundir.state import read_state
from pipelines.status import BlockStatus, RunStatus
from pipelines.store.run_store import RunId, RunStore
from tests.helpers.runs import kernels_in

T = TypeVar("T")

DEADLINE_SECONDS = 120.0


def wait_for(
    condition: Callable[[], T | None],
    what: str,
    process: subprocess.Popen[str] | None = None,
    seconds: float = DEADLINE_SECONDS,
    interval: float = 0.05,
) -> T:
    """Poll `condition` until it returns something truthy; fail saying `what` never happened."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"{what}: the runner exited {process.returncode}\n{out}\n{err}")
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {seconds:g} s")


def gated_block(name: str, gate: Path, outputs: str) -> str:
    """A block that runs until the file `gate` exists (short sleeps: an interrupt lands)."""
    return (
        f"%%block {name}\nimport os, time\n"
        f"while not os.path.exists({str(gate)!r}):\n    time.sleep(0.05)\n{outputs}"
    )


def newest_run_with(store: RunStore, block: str, status: BlockStatus) -> RunId | None:
    runs = store.list_runs(limit=1)
    if not runs:
        return None
    state = runs[0].block(block)
    return runs[0].run_id if state is not None and state.status is status else None


def block_file_status(run_dir: Path, block: str) -> BlockStatus | None:
    state = read_state(run_dir, block)
    return None if state is None else state.status


def stored_status(store: RunStore, run_id: str) -> RunStatus | None:
    record = store.get_run(run_id)
    return None if record is None else record.status


def kill_runner_and_kernels(process: subprocess.Popen[str], project: Path) -> None:
    """kill -9 the runner and every kernel of the project, as a power cut would."""
    kernels = kernels_in(project)
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGKILL)
    for kernel in kernels:
        with contextlib.suppress(ProcessLookupError):
            os.kill(kernel.pid, signal.SIGKILL)
    process.communicate(timeout=DEADLINE_SECONDS)


def stop(process: subprocess.Popen[str]) -> None:
    """Make sure a runner a test started is gone (after a failed assertion, too)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
        process.kill()
        process.communicate()


class DatabaseProxy:
    """A TCP proxy in the test process between a runner and PostgreSQL. `cut()` drops every
    connection and refuses new ones (an outage only this test's runner sees); `restore()` ends
    the outage."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.refused = 0
        self._up = threading.Event()
        self._up.set()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="db-proxy").start()

    def cut(self) -> None:
        self._up.clear()
        with self._lock:
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self._open.clear()

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self.cut()
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # closed
            if not self._up.is_set():
                self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, target), daemon=True).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass  # the other side or cut() closed it: the outage this proxy exists to make
    finally:
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()
