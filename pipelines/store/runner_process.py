"""Runner processes as the run store records them: which process runs a run, on which host, and
whether that process is still the one alive under its pid.

A pid alone names a process only while it lives: the system hands it to another process later.
The process's start time goes with it, so a reused pid is never mistaken for the runner.
Only processes on this host can be looked at; elsewhere the heartbeat timeout decides.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

import psutil

log = logging.getLogger(__name__)

_SAME_START = 2.0
"""Seconds two readings of one process's start time may differ by: Linux gives it in ticks
since boot, and the boot time it is added to is a whole second that moves when the clock is
slewed across a second."""


@cache
def this_host() -> str:
    return socket.gethostname()


@dataclass(frozen=True, slots=True)
class RunnerProcess:
    pid: int
    host: str
    started_at: datetime

    @classmethod
    def current(cls) -> RunnerProcess:
        """This process, the runner of the runs it creates or adopts."""
        found = cls.of_pid(os.getpid())
        assert found is not None, "this process is alive"
        return found

    @classmethod
    def of_pid(cls, pid: int) -> RunnerProcess | None:
        """The live process `pid` of this host; None when there is none."""
        try:
            created = float(psutil.Process(pid).create_time())
        except psutil.Error:
            return None
        return cls(pid, this_host(), datetime.fromtimestamp(created, UTC))

    @property
    def is_local(self) -> bool:
        return self.host == this_host()

    @property
    def is_current(self) -> bool:
        """This very process: a run executed in-process, which no signal of ours may stop."""
        return self.is_local and self.pid == os.getpid()

    def is_alive(self) -> bool:
        """Whether the runner still lives (a local process; a remote one is assumed alive).

        A zombie is dead (it runs nothing, its parent just has not collected it), and so is a
        process under the same pid that started at another time.
        """
        if not self.is_local:
            return True
        try:
            process = psutil.Process(self.pid)
            if process.status() == psutil.STATUS_ZOMBIE and not _threads_left(self.pid):
                return False
            started = process.create_time()
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            return True  # someone else's process under this pid: not provably gone
        if abs(float(started) - self.started_at.timestamp()) < _SAME_START:
            return True
        log.info("pid %s is no longer the runner that started at %s", self.pid, self.started_at)
        return False

    def kill(self, wait_seconds: float) -> bool:
        """SIGKILL the (local) runner and the processes it started, even when it is paused, and
        wait until it is gone; False when it is still alive after `wait_seconds`."""
        if not self.is_local or self.is_current or not self.is_alive():
            return not self.is_alive()
        try:
            process = psutil.Process(self.pid)
            family = [process, *process.children(recursive=True)]
        except psutil.NoSuchProcess:
            return True
        for member in family:
            try:
                member.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                continue
            except psutil.AccessDenied:
                log.warning("may not kill process %s of runner %s", member.pid, self.pid)
        deadline = time.monotonic() + wait_seconds
        while self.is_alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def _threads_left(pid: int) -> bool:
    """Whether a zombie's other threads still run. Linux shows a multi-threaded process as a
    zombie as soon as its main thread has exited, while threads busy in the kernel (a write,
    an fsync under load) are still finishing: the process is not gone until they are."""
    try:
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False  # no /proc (not Linux), or already reaped
