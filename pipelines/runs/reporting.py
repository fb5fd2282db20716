"""What a runner tells the run store while its run executes, and what it learns back.

Two promises live here:

- **A store outage does not end the run.** Heartbeats and block records that fail because the
  store is unreachable are kept and tried again with backoff (`pipelines.store.retry`); the
  kernels go on meanwhile. Only an outage longer than the policy's patience ends the runner.
- **A run someone else ended stops at once.** A scheduler marks a runner's run crashed when its
  heartbeat stops (a paused process, a VM pause). When the runner wakes up, the first heartbeat
  or the check before any block cell (`check_before_cell`) finds the run ended, and from then on
  nothing more is recorded and no further block starts.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

from pipelines.errors import ConflictError
from pipelines.rundir.state import BlockState
from pipelines.runs.build import block_of
from pipelines.status import RunStatus
from pipelines.store.db import StoreUnavailable
from pipelines.store.queue import Beat, heartbeat
from pipelines.store.retry import DEFAULT_POLICY, Outage, RetryPolicy, retrying
from pipelines.store.run_store import RunStore

log = logging.getLogger(__name__)

FRESH_SECONDS = 0.5
"""A heartbeat this recent proves the run was not ended elsewhere: schedulers wait at least 1 s
(`--heartbeat-timeout`), 30 s by default."""


class RunEndedElsewhere(ConflictError):
    """The run was ended by another process (marked crashed) while this runner still ran it."""

    def __init__(self, run_id: str, status: RunStatus) -> None:
        super().__init__(
            f"run {run_id} was marked {status} by another process (its heartbeat stopped: the "
            "runner was paused or cut off from the run store); this runner stopped without "
            "running anything more",
            f"`blockbook show {run_id}` tells why; `blockbook run PIPELINE --resume {run_id}` "
            "runs what did not succeed",
        )
        self.run_id = run_id
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.run_id, self.status))


class RunReporter:
    """Heartbeats and block records of one run, riding out store outages. The watch loop calls
    `beat` and `record`; notebook threads call `check_before_cell`."""

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.policy = policy
        self.ended_elsewhere: RunStatus | None = None
        """The status another process gave the run, once this runner learns of it."""
        self._outage = Outage(f"run {run_id}: heartbeat and block records", policy)
        self._unrecorded: dict[str, BlockState] = {}
        self._beat_at = (float("-inf"), float("-inf"))
        """When the last heartbeat went through: (monotonic, wall clock)."""

    def beat(self) -> Beat | None:
        """Tell the store this runner is alive; None while the store is unreachable (or backing
        off). Raises `StoreUnavailable` once an outage outlasts the policy's patience."""
        if not self._outage.due():
            return None
        try:
            beat = heartbeat(self.store, self.run_id)
        except StoreUnavailable as exc:
            self._outage.failed(exc)
            return None
        self._outage.recovered()
        self._learn(beat)
        self.flush()
        return beat

    def record(self, state: BlockState) -> None:
        """Store a block's state now, or as soon as the store is back (the newest state of each
        block is kept; terminal states are never lost). Secrets must be masked already."""
        self._unrecorded[state.block] = state
        self.flush()

    def flush(self) -> None:
        """Try to store the states kept during an outage (not while backing off)."""
        if self.ended_elsewhere is not None:
            self._unrecorded.clear()  # the run is someone else's to record now
            return
        if not self._unrecorded or not self._outage.due():
            return
        for name, state in list(self._unrecorded.items()):
            try:
                self.store.record_block(self.run_id, state)
            except StoreUnavailable as exc:
                self._outage.failed(exc)
                return
            del self._unrecorded[name]
        self._outage.recovered()

    def flush_all(self) -> None:
        """Store every kept state, waiting for the store (up to the policy's patience)."""
        if self.ended_elsewhere is not None:
            self._unrecorded.clear()
            return
        for name, state in list(self._unrecorded.items()):
            retrying(
                partial(self.store.record_block, self.run_id, state),
                f"run {self.run_id}: record block {name}",
                self.policy,
            )
            del self._unrecorded[name]

    def check_before_cell(self, cell: Any) -> None:
        """Before a block cell goes to its kernel: raise `RunEndedElsewhere` when the run ended
        elsewhere. Between heartbeats (every 2 s) a block could otherwise start in a run marked
        crashed. During an outage the check is skipped: the watch loop rides the outage out."""
        if block_of(cell) is None:
            return
        if self.ended_elsewhere is None and not self._outage.ongoing and not self._beat_just_now():
            try:
                self._learn(heartbeat(self.store, self.run_id))
            except StoreUnavailable as exc:
                # The watch loop's next heartbeat meets the same outage and handles it.
                log.info("run %s: no run status before a block (%s)", self.run_id, exc.message)
        if self.ended_elsewhere is not None:
            raise RunEndedElsewhere(self.run_id, self.ended_elsewhere)

    def _beat_just_now(self) -> bool:
        """Whether a heartbeat went through within `FRESH_SECONDS`, by both clocks: no
        scheduler marks a run crashed whose runner just beat, so a burst of quick blocks costs
        two store round trips a second, not one each. (A paused VM may stop the monotonic clock;
        the wall clock may be set back: either alone could call an old beat fresh.)"""
        return (
            time.monotonic() - self._beat_at[0] < FRESH_SECONDS
            and 0 <= time.time() - self._beat_at[1] < FRESH_SECONDS
        )

    def _learn(self, beat: Beat) -> None:
        self._beat_at = (time.monotonic(), time.time())
        if beat.ended_elsewhere and self.ended_elsewhere is None:
            self.ended_elsewhere = beat.status or RunStatus.CRASHED
            log.warning(
                "run %s was marked %s by another process while this runner ran it: stopping "
                "its kernels; nothing more is run or recorded",
                self.run_id,
                self.ended_elsewhere,
            )
