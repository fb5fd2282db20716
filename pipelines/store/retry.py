"""Riding out a run store that is briefly unreachable (a database restart, a failover, a
network blip, a SQLite file locked past its busy timeout).

A runner must not die, or leave its run `running`, because the store was away for seconds: it
retries, with backoff, for a bounded time (`RetryPolicy.patience`), and only then gives up with
the store's own error. Two shapes:

- `retrying(call, what)`: block until the call goes through (recording a run, finishing it).
- `Outage`: for a loop that must keep going while the store is down (the runner's watch loop:
  kernels still need their timeouts enforced); it says when to try again and when to give up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pipelines.store.db import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    first_delay: float = 0.5
    """Seconds before the first retry; each retry waits twice as long, up to `max_delay`."""
    max_delay: float = 5.0
    patience: float = 300.0
    """How long an outage may last before the caller gets the store's error."""

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failure in a row (1 for the first)."""
        return float(min(self.max_delay, self.first_delay * 2 ** max(0, failures - 1)))


DEFAULT_POLICY = RetryPolicy()


def retrying(
    call: Callable[[], T],
    what: str,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`call()`, retried while the store is unavailable, for at most `policy.patience` seconds;
    then its last `StoreUnavailable` is raised. `what` names the call in the log."""
    outage = Outage(what, policy)
    while True:
        try:
            result = call()
        except StoreUnavailable as exc:
            sleep(outage.failed(exc))  # raises once patience runs out
            continue
        outage.recovered()
        return result


class Outage:
    """Bookkeeping of one kind of store call through an outage: when to try again, when to give
    up. `failed` and `recovered` log the outage's start and end once each, not every retry."""

    def __init__(self, what: str, policy: RetryPolicy = DEFAULT_POLICY) -> None:
        self.what = what
        self.policy = policy
        self._failures = 0
        self._since: float | None = None
        self._next_try = float("-inf")

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def due(self) -> bool:
        """Whether a call may be tried now (always, unless backing off after a failure)."""
        return time.monotonic() >= self._next_try

    def failed(self, exc: StoreUnavailable) -> float:
        """Note a failure and back off (returns the seconds until the next try); re-raise `exc`
        once the outage outlasts the patience."""
        clock = time.monotonic()
        if self._since is None:
            self._since = clock
            log.warning(
                "the run store is unavailable (%s): retrying for up to %g s; %s",
                self.what,
                self.policy.patience,
                exc.message,
            )
        self._failures += 1
        if clock - self._since >= self.policy.patience:
            log.error(
                "the run store stayed unavailable for %.0f s (%s): giving up",
                clock - self._since,
                self.what,
            )
            raise exc
        delay = self.policy.delay(self._failures)
        self._next_try = clock + delay
        return delay

    def recovered(self) -> None:
        if self._since is not None:
            log.warning(
                "the run store is back after %.1f s (%s)", time.monotonic() - self._since, self.what
            )
        self._failures = 0
        self._since = None
        self._next_try = float("-inf")
