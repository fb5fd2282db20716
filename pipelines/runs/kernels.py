"""A run's kernel processes as the runner sees them: what they write outside the notebook (the
kernel log, secrets masked on the way to disk), why one failed to start, and their process
groups, which are signalled whole so a block's child processes never outlive its kernel.

Recipe for one notebook's kernel (`pipelines.runs.execution` and `pipelines.runs.engine`):
  1. open a `KernelLog`; the kernel's stdout and stderr are its pipe;
  2. start the kernel; `start_failure` reads the log to tell a start that lost the port race
     (retried with fresh ports) from one that cannot work, and names the cause;
  3. interrupt or kill with `signal_kernel` (the kernel's whole process group);
  4. when the notebook ends, `kill_group` what is left of the group and close the log.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import select
import signal
import termios
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

START_ATTEMPTS = 3
"""Kernel starts tried per notebook when a start loses the port race."""

KERNEL_ARGUMENTS = ("--HistoryManager.enabled=False",)
"""Added to every run kernel's command line. IPython otherwise writes each cell's input to the
user's history database (~/.ipython): a few ms per block, kernels of parallel notebooks queueing
on its lock, and a run's code (secret parameters aside) kept outside the run folder."""

LOG_MODE = 0o600
"""Kernel logs can quote a block's data: only their owner reads them."""

_TAIL_LINES = 60
_CHUNK = 64 * 1024
_LONGEST_LINE = 1024 * 1024
"""A line this long without a newline is written (masked) as it stands rather than held."""

PORT_RACE = re.compile(r"ZMQError: Address already in use")
"""What a kernel says when another process took one of its ports before it could bind it:
jupyter_client picks free ports, then the kernel binds them, and anything may come between."""

_CAUSE = re.compile(
    r"^(?:[\w.]+(?:Error|Exception|Exit)\b.*|Fatal Python error:.*|Killed\b.*|"
    r"\S*[Ss]egmentation fault.*)$"
)
"""A log line that says why a kernel ended: an exception's last line, a fatal error."""


class KernelLog:
    """A kernel's stdout and stderr on their way to its log file: masked line by line so raw
    secrets never reach the disk, the last lines kept to explain a kernel that died.

    `fileno()` is the write end of a pipe, so the object goes where a file would
    (`Popen(stdout=...)`); a thread reads the other end, masks and appends to the file.
    """

    def __init__(self, path: Path | None, mask: Callable[[str], str]) -> None:
        """A log writing to `path`; with None, output is dropped until `attach` names the file
        (a warm kernel's log: started before any run, and written for the run that takes it)."""
        self.path = path
        self._mask = mask
        self._tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self._lines = 0
        self._tail_lock = threading.Lock()  # the tail and its line count change together
        self._file_lock = threading.Lock()  # the file and its mask change together
        self._busy = False
        self._file: int | None = None
        if path is not None:
            self._file = _open_log(path)
        self._read, self._write = os.pipe()
        name = path.name if path is not None else "unattached"
        self._reader = threading.Thread(target=self._copy, name=f"kernel-log:{name}", daemon=True)
        self._reader.start()

    def attach(self, path: Path, mask: Callable[[str], str]) -> KernelLog:
        """From now on write to `path`, masked with `mask`; what came before (a warm kernel's
        start-up) is forgotten, so a failure is explained by this run's lines only."""
        self._drain()
        with self._file_lock:
            if self._file is not None:
                os.close(self._file)
            self._file = _open_log(path)
            self.path = path
            self._mask = mask
        with self._tail_lock:
            self._tail.clear()
        return self

    def fileno(self) -> int:
        return self._write

    def mark(self) -> int:
        """A position in the log, for `tail(since=...)`: lines written from now on."""
        return self._lines

    def tail(self, *, since: int = 0, drain: bool = True) -> list[str]:
        """The last lines written so far (masked), only those after `since` (a `mark`); with
        `drain`, after waiting briefly for what the pipe still holds (it blocks: keep it off
        an event loop)."""
        if drain:
            self._drain()
        with self._tail_lock:
            lines, count = list(self._tail), self._lines
        return lines[max(0, len(lines) - (count - since)) :]

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking output: our end of the pipe closes; the rest is copied as the kernel's
        processes (all gone by now, normally) close theirs. Closing again does nothing: the
        number of a closed descriptor is soon another file's, which a second close would cut."""
        with self._file_lock:
            write, self._write = self._write, -1
        if write != -1:
            os.close(write)
        self._reader.join(timeout)
        if self._reader.is_alive():
            log.warning(
                "%s: a process outside the kernel's group still holds its output open; "
                "its further output is still copied to the log until it exits",
                self.path,
            )

    def _copy(self) -> None:
        pending = b""
        try:
            while True:
                # Busy from the moment there is something to read: `_drain` then never sees
                # an empty pipe and an idle reader while a chunk is on its way to the file.
                select.select([self._read], [], [])
                self._busy = True
                chunk = os.read(self._read, _CHUNK)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                if len(pending) > _LONGEST_LINE:
                    lines.append(pending)
                    pending = b""
                self._append(lines)
                self._busy = False
            if pending:
                self._append([pending])
        except OSError:
            log.exception("%s: copying the kernel's output failed; the log ends here", self.path)
        finally:
            self._busy = False
            os.close(self._read)
            with self._file_lock:
                if self._file is not None:
                    os.close(self._file)
                    self._file = None

    def _append(self, lines: list[bytes]) -> None:
        with self._file_lock:
            if self._file is None:
                # A warm kernel before any run took it: nothing of a run's to keep.
                log.debug("kernel output before any run: %d lines dropped", len(lines))
                return
            masked = []
            for raw in lines:
                text = self._mask(raw.decode("utf-8", "surrogateescape"))
                with self._tail_lock:
                    self._tail.append(text)
                    self._lines += 1
                masked.append(text.encode("utf-8", "surrogateescape") + b"\n")
            os.write(self._file, b"".join(masked))

    def _drain(self, within: float = 2.0) -> None:
        """Wait (briefly) until the reader has taken everything the pipe holds: a kernel that
        just died wrote its last words before dying, and they explain why."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and self._reader.is_alive():
            if not self._busy and _unread_bytes(self._read) == 0:
                return
            time.sleep(0.01)


def _open_log(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, LOG_MODE)
    os.chmod(path, LOG_MODE)  # an older log (resume, isolate) may have another mode
    return file


def _unread_bytes(fd: int) -> int:
    try:
        buffer = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0  # the reader closed it: nothing left to read
    return int.from_bytes(buffer, "little")


# ---- why a kernel failed -----------------------------------------------------------------------


def lost_port_race(lines: list[str]) -> bool:
    return any(PORT_RACE.search(line) for line in lines)


def cause(lines: list[str]) -> str | None:
    """The line of a kernel log that says why the kernel ended, if one does."""
    for line in reversed(lines):
        if _CAUSE.match(line.strip()):
            return line.strip()
    return None


class KernelStartFailed(RuntimeError):
    """A notebook's kernel never became ready: not the notebook's fault, and no block ran."""

    def __init__(self, reason: str, log_path: Path | None, attempts: int) -> None:
        where = f" (its log: {log_path})" if log_path is not None else ""
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"the kernel did not start{tries}: {reason}{where}")
        self.reason = reason


def kernel_environment() -> dict[str, str]:
    """The environment kernels start with: this process's, less the key that opens sealed
    secrets (kernels run the pipeline's code, which has no use for it and could print it)."""
    from pipelines.store.sealed import KEY_ENV  # with cryptography: only runs need it

    return {name: value for name, value in os.environ.items() if name != KEY_ENV}


# ---- process groups ----------------------------------------------------------------------------


def kernel_group(pid: int | None) -> int | None:
    """The process group of a kernel jupyter_client started (in a session of its own), or
    None when the kernel shares the runner's group: signalling that would stop the runner."""
    if pid is None:
        return None
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return None
    return group if group != os.getpgrp() else None


def signal_kernel(pid: int | None, group: int | None, signum: int) -> None:
    """Signal the kernel's whole process group (its `!commands`, its `subprocess`es, what they
    started), or just the kernel when it has no group of its own."""
    with contextlib.suppress(ProcessLookupError):  # already gone: nothing left to stop
        if group is not None:
            os.killpg(group, signum)
        elif pid is not None:
            os.kill(pid, signum)


def kill_group(group: int | None) -> None:
    """Kill what is left of a kernel's process group once the kernel is gone: processes a
    block started and left running would otherwise live on as orphans."""
    signal_kernel(None, group, signal.SIGKILL)
