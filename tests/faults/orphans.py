"""Finding the processes a block started that outlived its kernel: `sleep N` with an N unique to
each test, so tests running in parallel never see each other's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil


def sleeping(seconds: int) -> list[psutil.Process]:
    """Live (not zombie) `sleep SECONDS` processes, however they were started."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if process.info["status"] == psutil.STATUS_ZOMBIE or len(cmdline) < 2:
            continue
        if cmdline[0].rsplit("/", 1)[-1] == "sleep" and cmdline[1] == str(seconds):
            found.append(process)
    return found


def wait_for_sleeping(seconds: int, within: float = 120.0) -> list[psutil.Process]:
    """The `sleep SECONDS` processes, once there is one (a deadline, not a guess)."""
    deadline = time.monotonic() + within
    while not (found := sleeping(seconds)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def assert_none_sleeping(seconds: int, within: float = 60.0) -> None:
    """No `sleep SECONDS` is left: a SIGKILLed one may take a moment to be reaped."""
    deadline = time.monotonic() + within
    while sleeping(seconds) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = sleeping(seconds)
    assert not left, f"orphaned processes outlived the kernel: {[p.pid for p in left]}"


@contextmanager
def reaping(seconds: int) -> Iterator[None]:
    """Kill any `sleep SECONDS` a failed test leaves behind, so it does not outlive the test."""
    try:
        yield
    finally:
        for process in sleeping(seconds):
            try:
                process.kill()
            except psutil.NoSuchProcess:
                continue  # it ended on its own meanwhile
