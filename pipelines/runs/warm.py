"""Runs started by a long-lived process (the Jupyter server extension) in that process, on warm
kernels: no runner process to start, no imports to pay, no kernel to wait for.

The runner is the same `Runner` a `blockbook run` process uses, in a thread of its own; the run
records this process as its runner, so a scheduler finds it crashed if the process dies.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path

from pipelines.assembly.pipeline import Pipeline
from pipelines.errors import BlockbookError
from pipelines.rundir.state import now
from pipelines.runs.pool import KernelPool
from pipelines.runs.runner import Runner, RunOptions
from pipelines.status import RunStatus
from pipelines.store.queue import request_cancel
from pipelines.store.run_store import RunStore
from pipelines.store.sealed import queued_params

log = logging.getLogger(__name__)

SHUTDOWN_REQUESTER = "the server, stopping"
"""Who cancelled a run whose process stopped (`cancel_requested_by`)."""


class WarmRuns:
    """Runs executing in this process, each on a thread of its own."""

    def __init__(self, root: Path, kernels: KernelPool) -> None:
        self.root = root
        self.kernels = kernels
        self._runners: dict[str, tuple[Runner, threading.Thread, RunStore]] = {}
        self._lock = threading.Lock()

    def launch(self, pipeline: Pipeline, options: RunOptions, store: RunStore) -> None:
        """Start the queued run `options.run_id` of `pipeline` and return at once; its
        parameters come from the queued run (secrets sealed), as a runner process takes them."""
        if options.run_id is None:
            raise ValueError("a warm run starts a queued run: its RunOptions need the run_id")
        runner = Runner(self.root, store, kernels=self.kernels)
        thread = threading.Thread(
            target=self._run,
            args=(runner, pipeline, options, store),
            name=f"run:{options.run_id}",
            daemon=True,
        )
        with self._lock:
            self._runners[options.run_id] = (runner, thread, store)
        thread.start()

    def cancel(self, run_id: str) -> bool:
        """Stop a run of this process at once (its runner would see the request in the store on
        its next heartbeat anyway); False when the run is not one of this process's."""
        with self._lock:
            entry = self._runners.get(run_id)
        if entry is None:
            return False
        runner, _, _ = entry
        runner.cancel()
        return True

    def active(self) -> list[str]:
        with self._lock:
            return sorted(self._runners)

    def close(self, timeout: float = 30.0) -> None:
        """Cancel the runs in progress, saying why, and wait for them to end: they cannot
        outlive this process (the pool is its creator's to close)."""
        with self._lock:
            entries = dict(self._runners)
        for run_id, (runner, _, store) in entries.items():
            try:
                request_cancel(store, run_id, SHUTDOWN_REQUESTER)
            except BlockbookError as exc:  # ended meanwhile, or the store is down
                log.warning("run %s: the cancel was not recorded: %s", run_id, exc.message)
            runner.cancel()
        for _, thread, _ in entries.values():
            thread.join(timeout)

    def _run(
        self, runner: Runner, pipeline: Pipeline, options: RunOptions, store: RunStore
    ) -> None:
        run_id = str(options.run_id)
        try:
            queued = queued_params(store, self.root, run_id) or {}
            result = runner.run(pipeline, replace(options, params={**queued, **options.params}))
            log.info("run %s ended %s", run_id, result.status)
        except BlockbookError as exc:
            # The runner ended the run `failed` with this reason when it could record it.
            log.error("run %s: %s", run_id, exc.message)
        except Exception as exc:
            log.exception("run %s stopped on an unexpected error", run_id)
            _end_crashed(store, run_id, f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._runners.pop(run_id, None)


def _end_crashed(store: RunStore, run_id: str, reason: str) -> None:
    """A run whose runner thread died: this process lives on, so no scheduler would see the
    runner gone; the run is ended here instead of waiting for the heartbeat timeout."""
    try:
        record = store.get_run(run_id)
        if record is not None and not record.status.is_terminal:
            store.finish_run(run_id, RunStatus.CRASHED, now(), error=f"the runner failed: {reason}")
    except BlockbookError as exc:
        log.error("run %s could not be marked crashed: %s", run_id, exc.message)
