"""Warm kernels: started ahead of any run by a long-lived Blockbook process (the Jupyter server
extension), with `kernel_magics`, pandas and pyarrow already imported, so a run's notebooks
start executing at once instead of paying ~1 s per kernel.

A kernel serves one notebook of one run and is then discarded; a replacement starts in the
background. Reusing a kernel would need a reset that provably leaves no state behind (modules,
threads, open files, `os.environ`): none exists, so none is attempted.

A kernel taken from the pool is made to look like one started for its notebook
(`WarmKernel.prepare`): its working folder, the folder on `sys.path` and the run's environment
variables (the secret parameters among them) are set before the notebook's first cell. The
kernel's output is copied to the run's kernel log from then on (`KernelLog.attach`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.runs.kernels import (
    KERNEL_ARGUMENTS,
    KernelLog,
    kernel_environment,
    kernel_group,
    kill_group,
)

log = logging.getLogger(__name__)

DEFAULT_KERNEL = "python3"

PRELOADED = (
    "kernel_magics.magics",
    "kernel_magics.pipeline_magics",
    "kernel_magics.templates",
    "kernel_magics.contexts",
    "pandas",
    "pyarrow.parquet",
    "pyarrow.dataset",
    "pyarrow.pandas_compat",
)
"""Imported by every warm kernel while it waits: what a block's `%load_ext kernel_magics` and its
first DataFrame hand-off import. Modules only: nothing is bound in the user's namespace."""

_PRELOAD_CODE = f"""\
import importlib as _blockbook_importlib
for _blockbook_module in {PRELOADED!r}:
    _blockbook_importlib.import_module(_blockbook_module)
del _blockbook_importlib, _blockbook_module
"""

_PREPARE_CODE = """\
import json as _blockbook_json, os as _blockbook_os, sys as _blockbook_sys
_blockbook_setup = _blockbook_json.loads({setup!r})
_blockbook_os.chdir(_blockbook_setup["cwd"])
_blockbook_sys.path[:] = [
    _blockbook_setup["cwd"] if entry == _blockbook_setup["started_in"] else entry
    for entry in _blockbook_sys.path
]
[_blockbook_os.environ.pop(name, None) for name in _blockbook_setup["unset"]]
_blockbook_os.environ.update(_blockbook_setup["env"])
del _blockbook_json, _blockbook_os, _blockbook_sys, _blockbook_setup
"""

START_FAILURE_BACKOFF_SECONDS = 30.0
"""After a warm kernel failed to start: runs use cold kernels meanwhile, and a broken
kernelspec doesn't keep a core busy with failing starts."""


@dataclass(frozen=True, slots=True)
class PoolOptions:
    size: int = 3
    """Ready kernels kept per kernelspec: a run takes one per notebook it executes at once."""
    kernel_names: tuple[str, ...] = (DEFAULT_KERNEL,)
    """Kernelspecs warmed from the start; another one is warmed once a run has asked for it."""
    start_timeout: float = 60.0


class KernelNotPrepared(RuntimeError):
    """A warm kernel could not be set up for its notebook (it died waiting, or refused)."""


class WarmKernel:
    """A started, idle kernel with the preloaded modules imported, ready for one notebook."""

    def __init__(
        self, manager: Any, output: KernelLog, started_in: str, env: Mapping[str, str]
    ) -> None:
        self.manager = manager
        self.output = output
        self.started_in = started_in
        self.env = dict(env)
        self.pid: int | None = getattr(manager.provisioner, "pid", None)
        self.group = kernel_group(self.pid)

    def is_alive(self) -> bool:
        process = getattr(self.manager.provisioner, "process", None)
        return process is not None and process.poll() is None

    def prepare(self, cwd: Path, env: Mapping[str, str], timeout: float = 30.0) -> None:
        """Make the kernel what a kernel started in `cwd` with `env` would be: working folder,
        `sys.path`, environment. Raises KernelNotPrepared when the kernel cannot."""
        setup = {
            "cwd": str(cwd),
            "started_in": self.started_in,
            "env": {name: value for name, value in env.items() if self.env.get(name) != value},
            "unset": sorted(set(self.env) - set(env)),
        }
        # Silent: the code carries the run's secrets, and must reach neither the kernel's
        # history nor any output.
        code = _PREPARE_CODE.format(setup=json.dumps(setup))
        client = self.manager.blocking_client()
        client.start_channels()
        try:
            reply = client.execute_interactive(
                code, silent=True, store_history=False, timeout=timeout, output_hook=_log_output
            )
        except TimeoutError as exc:
            raise KernelNotPrepared(f"the warm kernel did not answer in {timeout:g} s") from exc
        finally:
            client.stop_channels()
        content = reply.get("content", {})
        if content.get("status") != "ok":
            refusal = f"{content.get('ename')}: {content.get('evalue')}"
            raise KernelNotPrepared(f"the warm kernel refused its set-up: {refusal}")

    def discard(self) -> None:
        """Stop the kernel, whatever state it is in, and everything its blocks started."""
        kill_group(self.group)
        if self.manager.has_kernel:
            try:
                asyncio.run(_shut_down(self.manager))
            except (RuntimeError, OSError) as exc:
                # Its process group is killed already; only the connection file may be left.
                log.warning("warm kernel %s: shutting it down failed: %s", self.pid, exc)
        self.output.close()


class KernelPool:
    """Keeps `size` warm kernels ready per kernelspec, starting replacements in a background
    thread (one at a time: kernels starting all at once would slow the runs in progress).
    Safe to share between threads. Idle kernels and the idle pool use no CPU."""

    def __init__(self, options: PoolOptions = PoolOptions(), env: Mapping[str, str] | None = None):
        """`env`: the kernels' environment, by default what every run kernel starts with
        (`kernel_environment`: this process's, without the key to sealed secrets)."""
        self.options = options
        self._env = dict(kernel_environment() if env is None else env)
        self._ready: dict[str, collections.deque[WarmKernel]] = collections.defaultdict(
            collections.deque
        )
        self._wanted: dict[str, None] = dict.fromkeys(options.kernel_names)
        self._failed_at: dict[str, float] = {}
        self._changed = threading.Condition()
        self._closed = False
        # An empty folder to start in: the kernel's `sys.path` entry for it is replaced with the
        # notebook's folder when the kernel is taken.
        self._folder = Path(tempfile.mkdtemp(prefix="blockbook-kernels-"))
        self._thread = threading.Thread(target=self._keep_filled, name="kernel-pool", daemon=True)
        self._thread.start()

    def take(self, kernel_name: str) -> WarmKernel | None:
        """A warm kernel of `kernel_name`, or None when none is ready (the caller starts a cold
        one). Asking for a kernelspec the pool does not warm yet makes it warm that one too."""
        with self._changed:
            if self._closed:
                return None
            self._wanted.setdefault(kernel_name)
            ready = self._ready[kernel_name]
            kernel = ready.popleft() if ready else None
            self._changed.notify_all()
        if kernel is not None and not kernel.is_alive():
            log.warning("warm kernel %s died while it waited; starting a cold one", kernel.pid)
            kernel.discard()
            return None
        return kernel

    def ready_pids(self, kernel_name: str = DEFAULT_KERNEL) -> list[int]:
        """The process ids of the kernels ready for `kernel_name`, oldest first."""
        with self._changed:
            return [kernel.pid for kernel in self._ready[kernel_name] if kernel.pid is not None]

    @property
    def folder(self) -> Path:
        """Where the waiting kernels started: an empty folder, removed when the pool closes."""
        return self._folder

    def wait_until_full(self, timeout: float) -> bool:
        """Wait until every warmed kernelspec has `size` kernels ready (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._missing() is not None:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return False
                self._changed.wait(left)
            return True

    def close(self, timeout: float = 30.0) -> None:
        """Stop refilling and discard the ready kernels (kernels taken are their runs')."""
        with self._changed:
            self._closed = True
            kernels = [kernel for ready in self._ready.values() for kernel in ready]
            self._ready.clear()
            self._changed.notify_all()
        for kernel in kernels:
            kernel.discard()
        self._thread.join(timeout)
        shutil.rmtree(self._folder, ignore_errors=True)

    # ---- refilling ---------------------------------------------------------------------

    def _missing(self) -> str | None:
        """The first kernelspec short of ready kernels and not backing off after a failure."""
        clock = time.monotonic()
        for name in self._wanted:
            backing_off = clock - self._failed_at.get(name, float("-inf"))
            if (
                len(self._ready[name]) < self.options.size
                and backing_off >= START_FAILURE_BACKOFF_SECONDS
            ):
                return name
        return None

    def _next_to_start(self) -> str | None:
        """Wait until a kernelspec needs a kernel and return it; None once the pool closes."""
        with self._changed:
            while not self._closed:
                name = self._missing()
                if name is not None:
                    return name
                # Woken by a take or close, or when a back-off ends.
                self._changed.wait(self._next_retry())
            return None

    def _keep_filled(self) -> None:
        while (name := self._next_to_start()) is not None:
            try:
                kernel = self._start(name)
            except Exception:
                log.exception("a warm `%s` kernel failed to start; runs start cold ones", name)
                with self._changed:
                    self._failed_at[name] = time.monotonic()
                continue
            with self._changed:
                if not self._closed:
                    self._failed_at.pop(name, None)
                    self._ready[name].append(kernel)
                    self._changed.notify_all()
                    continue
            kernel.discard()

    def _next_retry(self) -> float | None:
        if not self._failed_at:
            return None
        soonest = min(self._failed_at.values()) + START_FAILURE_BACKOFF_SECONDS
        return max(0.1, soonest - time.monotonic())

    def _start(self, kernel_name: str) -> WarmKernel:
        from jupyter_client.manager import AsyncKernelManager  # imported only by warm processes

        output = KernelLog(None, lambda line: line)
        manager = AsyncKernelManager(kernel_name=kernel_name)
        try:
            asyncio.run(self._start_and_preload(manager, output))
        except BaseException:
            with contextlib.suppress(RuntimeError):  # nothing started: nothing to stop
                if manager.has_kernel:
                    asyncio.run(_shut_down(manager))
            output.close()
            raise
        return WarmKernel(manager, output, str(self._folder), self._env)

    async def _start_and_preload(self, manager: Any, output: KernelLog) -> None:
        await manager.start_kernel(
            cwd=str(self._folder),
            env=self._env,
            stdout=output,
            stderr=output,
            extra_arguments=list(KERNEL_ARGUMENTS),
        )
        client = manager.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=self.options.start_timeout)
            reply = await client.execute_interactive(
                _PRELOAD_CODE,
                store_history=False,
                timeout=self.options.start_timeout,
                output_hook=_log_output,
            )
        finally:
            client.stop_channels()
        content = reply.get("content", {})
        if content.get("status") != "ok":
            raise RuntimeError(
                f"preloading failed: {content.get('ename')}: {content.get('evalue')}"
            )


async def _shut_down(manager: Any) -> None:
    await manager.shutdown_kernel(now=True)


def _log_output(message: dict[str, Any]) -> None:
    """What a warm kernel says while preloading (a library's warning): the server's log, not
    its terminal."""
    if message.get("msg_type") in ("stream", "error"):
        content = message.get("content", {})
        log.debug("warm kernel: %s", content.get("text") or content.get("evalue"))
