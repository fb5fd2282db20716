"""The retry policy a block's header gives: how many attempts, and how long between them."""

from __future__ import annotations

import math

from pipelines.assembly.header import RetryPolicy, parse_header


def delays(policy: RetryPolicy) -> list[float]:
    """The wait before each retry the policy allows, in order."""
    return [policy.delay_before(retry) for retry in range(1, policy.attempts)]


def test_the_header_gives_retries_and_a_doubling_delay() -> None:
    policy = RetryPolicy.from_header(parse_header("%%block flaky --retries 3 --retry-delay 2"))
    assert policy == RetryPolicy(max_retries=3, delay=2.0, backoff=2.0, jitter=0.0)
    assert policy.max_delay == math.inf
    assert policy.attempts == 4
    assert delays(policy) == [2.0, 4.0, 8.0]


def test_a_header_without_retries_tries_once() -> None:
    policy = RetryPolicy.from_header(parse_header("%%block once"))
    assert (policy.attempts, policy.delay) == (1, 1.0)
    assert delays(policy) == []


def test_a_zero_delay_stays_zero_however_many_retries() -> None:
    policy = RetryPolicy.from_header(parse_header("%%block eager --retries 5000 --retry-delay 0"))
    assert policy.delay_before(1) == 0.0
    assert policy.delay_before(5000) == 0.0


def test_max_delay_caps_the_growth() -> None:
    policy = RetryPolicy(max_retries=5, delay=1.0, backoff=3.0, max_delay=10.0)
    assert delays(policy) == [1.0, 3.0, 9.0, 10.0, 10.0]
    assert policy.delay_before(5000) == 10.0, "too large for a float: the cap still holds"


def test_jitter_moves_each_delay_by_at_most_its_fraction() -> None:
    policy = RetryPolicy(max_retries=2, delay=4.0, jitter=0.25)
    assert policy.delay_before(1, draw=lambda: 0.0) == 3.0
    assert policy.delay_before(1, draw=lambda: 0.5) == 4.0
    assert policy.delay_before(2, draw=lambda: 1.0) == 10.0
    capped = RetryPolicy(max_retries=1, delay=4.0, jitter=0.25, max_delay=4.5)
    assert capped.delay_before(1, draw=lambda: 1.0) == 4.5, "jitter never passes max_delay"
