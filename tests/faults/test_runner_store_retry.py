"""Retrying a run store that is briefly unavailable: backoff, the bound, what is retried.

The outage itself (a real PostgreSQL connection cut mid-run) is in test_runner_faults.py; these
check the policy without waiting for it (the sleep is recorded, not slept)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipelines.store.db import RunConflict, StoreUnavailable
from pipelines.store.retry import Outage, RetryPolicy, retrying


def flaky(failures: int) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise StoreUnavailable("cannot use the run store at test: connection refused", "")
        return "done"

    return calls, call


def test_a_call_is_retried_with_growing_delays_until_the_store_answers() -> None:
    slept: list[float] = []
    calls, call = flaky(4)

    policy = RetryPolicy(first_delay=0.5, max_delay=2.0)

    result = retrying(call, "test", policy, slept.append)

    assert result == "done"
    assert len(calls) == 5
    assert slept == [0.5, 1.0, 2.0, 2.0]


def test_an_outage_longer_than_the_patience_raises_the_stores_error() -> None:
    calls, call = flaky(10)

    with pytest.raises(StoreUnavailable, match="connection refused"):
        retrying(call, "test", RetryPolicy(patience=0.0), lambda _: None)

    assert len(calls) == 1


def test_other_store_errors_are_not_retried() -> None:
    calls: list[int] = []

    def conflict() -> None:
        calls.append(1)
        raise RunConflict("run `x` already exists", "use a new id")

    with pytest.raises(RunConflict):
        retrying(conflict, "test", RetryPolicy(), lambda _: None)

    assert len(calls) == 1


def test_an_outage_backs_off_and_forgets_itself_once_the_store_is_back() -> None:
    outage = Outage("test", RetryPolicy(first_delay=60.0))
    assert outage.due()
    assert not outage.ongoing

    outage.failed(StoreUnavailable("down", ""))

    assert outage.ongoing
    assert not outage.due()  # backing off: the loop goes on without the store
    outage.recovered()
    assert outage.due()
    assert not outage.ongoing
