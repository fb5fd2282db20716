"""Running one block: prepare inputs, run the body with retries and a timeout, store outputs,
run tests, record state. Shared by interactive and headless runs.

Two kinds of block end with a verdict, read from the body's variable of that name when the body
assigns it (at top level, even in a branch not taken this time), else from the value of its
last expression:

- a sensor (`--kind sensor`, variable `ready`) re-runs its body every `--poke-interval` seconds
  until the verdict is true, and fails after `--sensor-timeout` seconds (not retried);
  `--timeout` bounds each run of the body;
- a condition (`--kind condition`, variable `proceed`) runs once and records its verdict on its
  state: false skips the blocks downstream of it in a run (the condition itself succeeds).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from kernel_magics.contexts import BlockContext, Preparation, Readiness
from kernel_magics.execute import run_body, user_traceback
from kernel_magics.testing import run_test
from pipelines.assembly.analysis import BlockAnalysis
from pipelines.assembly.header import BlockHeader, BlockKind, TestPolicy, format_header
from pipelines.errors import BlockbookError
from pipelines.rundir.artifacts import UnstorableOutput, summarize
from pipelines.rundir.state import (
    Attempt,
    BlockState,
    TestOutcome,
    TestRecord,
    now,
    write_state,
)
from pipelines.status import BlockStatus


class BlockTimeout(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"block timed out after {seconds:g} s (--timeout)")
        self.seconds = seconds


class SensorTimeout(Exception):
    def __init__(self, seconds: float, pokes: int) -> None:
        super().__init__(
            f"sensor condition not met after {seconds:g} s ({pokes} poke{'s' * (pokes != 1)}); "
            "raise --sensor-timeout or check what the sensor waits for"
        )
        self.seconds = seconds
        self.pokes = pokes


class TestsFailed(AssertionError):
    def __init__(self, failed: list[TestRecord]) -> None:
        lines = [f"{len(failed)} test(s) failed:"]
        lines += [f"  {result.name}: {result.message}" for result in failed]
        super().__init__("\n".join(lines))
        self.failed = failed


StateListener = Callable[[BlockState], None]

# Failures a retry cannot fix: deterministic checks, unstorable values, a sensor out of time.
_NOT_RETRIED = (TestsFailed, UnstorableOutput, SensorTimeout)

VERDICT_NAMES = {BlockKind.SENSOR: "ready", BlockKind.CONDITION: "proceed"}
"""The variable a sensor or condition body may set instead of ending with an expression."""


@dataclass(slots=True)
class _SensorClock:
    """A sensor's time and pokes, across its attempts: --sensor-timeout bounds them all."""

    started: float | None = None
    pokes: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    state: BlockState
    preparation: Preparation
    error: BaseException | None = None
    tests: tuple[TestRecord, ...] = ()


def execute_block(
    shell: Any,
    header: BlockHeader,
    analysis: BlockAnalysis,
    body: str,
    context: BlockContext,
    on_state: StateListener | None = None,
) -> Outcome:
    """Run one block to a terminal state; `on_state` hears every state it passes through."""
    name = header.name
    namespace: dict[str, Any] = shell.user_ns
    state = BlockState(name, BlockStatus.PENDING, context.notebook, started_at=now())
    if header.skip:
        return _finish(
            context,
            replace(state, status=BlockStatus.SKIPPED),
            Preparation(Readiness.SKIPPED, "--skip"),
        )
    try:
        preparation = context.prepare(name, analysis.inputs, namespace, header.trigger_rule)
    except Exception as exc:
        # Blockbook's own failure (a missing artifact, an unreachable store), not the user's
        # code: record it on the block instead of breaking the notebook.
        message = f"could not prepare the block's inputs: {_one_line(exc)}"
        broken = replace(state, status=BlockStatus.FAILED, error=message, ended_at=now())
        return _finish(context, broken, Preparation(Readiness.PROCEED, message), exc)
    terminal = {
        Readiness.UPSTREAM_FAILED: BlockStatus.UPSTREAM_FAILED,
        Readiness.CANCELLED: BlockStatus.CANCELLED,
        Readiness.SKIPPED: BlockStatus.SKIPPED,
        Readiness.REUSED: BlockStatus.SUCCESS,
    }
    if preparation.readiness in terminal:
        status = terminal[preparation.readiness]
        done = replace(state, status=status, error=preparation.reason or None, ended_at=now())
        if preparation.readiness is Readiness.REUSED:
            return Outcome(state=done, preparation=preparation)  # the runner wrote its state
        return _finish(context, done, preparation)
    loaded = tuple(origin.to_json() for origin in preparation.loaded)
    state = replace(state, loaded=loaded, status=BlockStatus.RUNNING)
    attempts = header.retries + 1
    error: BaseException | None = None
    tests: tuple[TestRecord, ...] = ()
    line = format_header(header)
    clock = _SensorClock()
    verdict: bool | None = None
    for number in range(1, attempts + 1):
        attempt = Attempt(number, BlockStatus.RUNNING, now())
        state = state.with_attempt(attempt)
        write_state(context.state_root, state)
        if on_state is not None:
            on_state(state)
        try:
            if header.kind is BlockKind.SENSOR:
                for met in _pokes(shell, header, analysis, body, context, clock):
                    attempt = replace(attempt, pokes=attempt.pokes + 1)
                    if not met:  # still RUNNING; the state shows the pokes so far
                        state = state.with_attempt(attempt)
                        write_state(context.state_root, state)
                        if on_state is not None:
                            on_state(state)
            elif header.kind is BlockKind.CONDITION:
                _forget_verdict(header, analysis, namespace)
                with _time_limit(header.timeout):
                    value = run_body(shell, body, line)
                verdict = _verdict(header, analysis, namespace, value)
            else:
                with _time_limit(header.timeout):
                    run_body(shell, body, line)
            outputs = tuple(analysis.outputs if header.out is None else header.out)
            manifests, summaries = _materialize(context, name, outputs, namespace)
            tests = tuple(_run_tests(header, analysis, namespace))
            failed = [t for t in tests if t.outcome is TestOutcome.FAILED]
            if failed:
                raise TestsFailed(failed)
        except KeyboardInterrupt as exc:
            cancelled = context.cancelled()
            error = exc
            status = BlockStatus.CANCELLED if cancelled else BlockStatus.FAILED
            reason = context.interrupt_reason(name)
            message = "cancelled" if cancelled else (reason or "interrupted (KeyboardInterrupt)")
            state = _record_failure(context, state, attempt, status, message, exc, tests)
            break
        except Exception as exc:
            error = exc
            retry = number < attempts and not isinstance(exc, _NOT_RETRIED)
            status = BlockStatus.RETRYING if retry else BlockStatus.FAILED
            state = _record_failure(context, state, attempt, status, _one_line(exc), exc, tests)
            if not retry:
                break
            write_state(context.state_root, state)
            if on_state is not None:
                on_state(state)
            time.sleep(header.retry_delay * 2 ** (number - 1))
            continue
        attempt = replace(
            attempt,
            status=BlockStatus.SUCCESS,
            ended_at=now(),
            tests=_records(tests, context),
            outputs=tuple(manifests),
            summaries=tuple(summaries),
        )
        state = replace(
            state.with_attempt(attempt),
            status=BlockStatus.SUCCESS,
            error=None,
            condition_result=verdict,
        )
        preparation.notes += _verdict_notes(header, verdict, clock)
        error = None
        break
    state = replace(state, ended_at=now())
    return _finish(context, state, preparation, error, tests)


def _pokes(
    shell: Any,
    header: BlockHeader,
    analysis: BlockAnalysis,
    body: str,
    context: BlockContext,
    clock: _SensorClock,
) -> Iterator[bool]:
    """Run a sensor's body until its verdict is true: yields each poke's verdict, sleeps
    between pokes, raises SensorTimeout once --sensor-timeout has passed (KeyboardInterrupt,
    from Ctrl-C or a cancelled run, stops it at any point)."""
    if clock.started is None:
        clock.started = time.monotonic()
    line = format_header(header)
    while True:
        _forget_verdict(header, analysis, shell.user_ns)
        with _time_limit(header.timeout):
            value = run_body(shell, body, line, display=False)
        clock.pokes += 1
        met = _verdict(header, analysis, shell.user_ns, value)
        yield met
        if met:
            return
        elapsed = time.monotonic() - clock.started
        if elapsed >= header.sensor_timeout:
            raise SensorTimeout(header.sensor_timeout, clock.pokes)
        if context.cancelled():
            raise KeyboardInterrupt
        time.sleep(min(header.poke_interval, header.sensor_timeout - elapsed))


def _forget_verdict(
    header: BlockHeader, analysis: BlockAnalysis, namespace: dict[str, Any]
) -> None:
    """Drop a verdict variable left by an earlier run, so only this run's assignment counts
    (kept when the body reads it before assigning it: then it is the body's own state)."""
    variable = VERDICT_NAMES[header.kind]
    if variable in analysis.outputs and variable not in analysis.inputs:
        namespace.pop(variable, None)


def _verdict(
    header: BlockHeader, analysis: BlockAnalysis, namespace: dict[str, Any], value: Any
) -> bool:
    """The body's verdict: its `ready` / `proceed` variable when it assigned one, else the
    value of its last expression (None, false, when it has none)."""
    variable = VERDICT_NAMES[header.kind]
    if variable in analysis.outputs and variable in namespace:
        value, source = namespace[variable], f"`{variable}`"
    else:
        source = "its last expression"
    try:
        return bool(value)
    except Exception as exc:
        raise TypeError(
            f"the {header.kind} `{header.name}` needs a true or false result, but {source} is a "
            f"{type(value).__name__} whose truth is undefined ({_one_line(exc)}); end the block "
            f"with a bool, or set `{variable} = ...`"
        ) from exc


def _verdict_notes(header: BlockHeader, verdict: bool | None, clock: _SensorClock) -> list[str]:
    if header.kind is BlockKind.SENSOR and clock.started is not None:
        seconds = time.monotonic() - clock.started
        pokes = f"{clock.pokes} poke{'s' * (clock.pokes != 1)}"
        return [f"sensor ready after {pokes} in {seconds:.1f} s"]
    if verdict is True:
        return ["condition true: downstream blocks run"]
    if verdict is False:
        return ["condition false: downstream blocks will be skipped in runs"]
    return []


def _finish(
    context: BlockContext,
    state: BlockState,
    preparation: Preparation,
    error: BaseException | None = None,
    tests: tuple[TestRecord, ...] = (),
) -> Outcome:
    write_state(context.state_root, state)
    context.finished(state.block, state)
    return Outcome(state=state, preparation=preparation, error=error, tests=tests)


def _record_failure(
    context: BlockContext,
    state: BlockState,
    attempt: Attempt,
    status: BlockStatus,
    message: str,
    exc: BaseException,
    tests: tuple[TestRecord, ...],
) -> BlockState:
    # State files are read by people and other processes: secrets never go into them.
    message = context.redact(message)
    user_frames = user_traceback(exc.__traceback__)
    failed_attempt = replace(
        attempt,
        status=BlockStatus.FAILED,
        ended_at=now(),
        error=message,
        traceback=context.redact("".join(traceback.format_exception(type(exc), exc, user_frames))),
        tests=_records(tests, context),
    )
    return replace(state.with_attempt(failed_attempt), status=status, error=message)


def _materialize(
    context: BlockContext, name: str, outputs: tuple[str, ...], namespace: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    stored = context.stored_outputs(name, outputs)
    manifests = []
    summaries = []
    for output in outputs:
        if output not in namespace:
            continue
        value = namespace[output]
        if output in stored:
            manifest = context.artifacts.save(name, output, value, stored[output])
            manifests.append(manifest.to_json())
        else:
            summaries.append({"name": output, **summarize(value)})
    return manifests, summaries


def _run_tests(
    header: BlockHeader, analysis: BlockAnalysis, namespace: dict[str, Any]
) -> list[TestRecord]:
    warn_only = header.tests is TestPolicy.WARN
    return [
        run_test(test_name, namespace[test_name], namespace, warn_only=warn_only)
        for test_name in analysis.tests
        if test_name in namespace
    ]


def _records(tests: tuple[TestRecord, ...], context: BlockContext) -> tuple[TestRecord, ...]:
    """The tests as the state file keeps them: messages can quote a secret."""
    return tuple(replace(t, message=context.redact(t.message)) for t in tests)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, BlockbookError):
        fix = f"; fix: {exc.hint}" if exc.hint else ""
        return f"{type(exc).__name__}: {exc.message}{fix}"
    if isinstance(exc, TestsFailed):
        # Its message spreads the failed tests over several lines; keep them all.
        failed = "; ".join(f"{result.name}: {result.message}" for result in exc.failed)
        return f"{type(exc).__name__}: {len(exc.failed)} test(s) failed: {failed}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise BlockTimeout in the block's code after `seconds` (main thread only; the runner
    interrupts or kills the kernel for code that ignores signals)."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise BlockTimeout(seconds)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
