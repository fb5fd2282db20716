"""Running one block: prepare inputs, then attempts (run the body within its timeout, store
outputs, run tests) until one succeeds or the block's `RetryPolicy` gives up, recording state
all along. Shared by interactive and headless runs; sensors and conditions are in `verdicts`.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from kernel_magics.contexts import (
    BlockContext,
    HeadlessContext,
    Preparation,
    Readiness,
    UpstreamNotStored,
)
from kernel_magics.execute import (
    OutputNotBound,
    check_outputs_bound,
    run_body,
    time_limit,
    unbound_outputs,
    user_traceback,
)
from kernel_magics.fanout import fan_out, run_items
from kernel_magics.retries import NotRetried
from kernel_magics.testing import run_test
from kernel_magics.verdicts import (
    SensorClock,
    SensorTimeout,
    forget_verdict,
    read_verdict,
    verdict_notes,
)
from pipelines.assembly.analysis import BlockAnalysis
from pipelines.assembly.header import (
    BlockHeader,
    BlockKind,
    RetryPolicy,
    TestPolicy,
    format_header,
)
from pipelines.assembly.mapping import block_inputs
from pipelines.errors import BlockbookError
from pipelines.rundir.artifacts import UnstorableOutput, summarize
from pipelines.rundir.schema_drift import Drift, SchemaDrift, compare
from pipelines.rundir.state import (
    Attempt,
    BlockState,
    TestOutcome,
    TestRecord,
    now,
)
from pipelines.status import BlockStatus


class TestsFailed(AssertionError):
    def __init__(self, failed: list[TestRecord]) -> None:
        lines = [f"{len(failed)} test(s) failed:"]
        lines += [f"  {result.name}: {result.message}" for result in failed]
        super().__init__("\n".join(lines))
        self.failed = failed


StateListener = Callable[[BlockState], None]

# Failures a retry cannot fix: deterministic checks, unstorable values, a sensor out of time,
# an --out the body does not bind, schema drift under --schema fail (the same code makes the
# same frame again), and whatever the block itself says is one.
_NOT_RETRIED = (
    TestsFailed,
    UnstorableOutput,
    SensorTimeout,
    OutputNotBound,
    SchemaDrift,
    NotRetried,
)

_TERMINAL = {
    Readiness.UPSTREAM_FAILED: BlockStatus.UPSTREAM_FAILED,
    Readiness.CANCELLED: BlockStatus.CANCELLED,
    Readiness.SKIPPED: BlockStatus.SKIPPED,
    Readiness.REUSED: BlockStatus.SUCCESS,
    Readiness.CACHED: BlockStatus.CACHED,
}
"""Preparations that end the block without running it, and the status each gives."""


@dataclass(frozen=True, slots=True)
class Outcome:
    state: BlockState
    preparation: Preparation
    error: BaseException | None = None
    tests: tuple[TestRecord, ...] = ()
    previews: tuple[tuple[str, str], ...] = ()
    """(output, its first rows as a text table, secrets masked) for each DataFrame output."""


_PREVIEW_ROWS = 5


@dataclass(frozen=True, slots=True)
class _Execution:
    """What every attempt of one block execution shares."""

    shell: Any
    header: BlockHeader
    analysis: BlockAnalysis
    body: str
    context: BlockContext
    on_state: StateListener | None
    clock: SensorClock = field(default_factory=SensorClock)

    def publish(self, state: BlockState) -> None:
        self.context.record(state)
        if self.on_state is not None:
            self.on_state(state)


@dataclass(frozen=True, slots=True)
class _Tried:
    """How one attempt ended: `attempt` succeeded when `error` is None."""

    attempt: Attempt
    tests: tuple[TestRecord, ...] = ()
    error: BaseException | None = None
    verdict: bool | None = None
    previews: tuple[tuple[str, str], ...] = ()
    drift: tuple[Drift, ...] = ()


def execute_block(
    shell: Any,
    header: BlockHeader,
    analysis: BlockAnalysis,
    body: str,
    context: BlockContext,
    on_state: StateListener | None = None,
) -> Outcome:
    """Run one block to a terminal state; `on_state` hears every state it passes through."""
    state = BlockState(header.name, BlockStatus.PENDING, context.notebook, started_at=now())
    if header.skip:
        skipped = replace(state, status=BlockStatus.SKIPPED)
        return _finish(context, skipped, Preparation(Readiness.SKIPPED, "--skip"))
    try:
        preparation = context.prepare(
            header.name, block_inputs(header, analysis.inputs), shell.user_ns, header.trigger_rule
        )
    except Exception as exc:
        # Blockbook's own failure (a missing artifact, an unreachable store), not the user's
        # code: record it on the block instead of breaking the notebook.
        message = f"could not prepare the block's inputs: {_one_line(exc)}"
        if isinstance(exc, UpstreamNotStored):
            message = _one_line(exc)  # already says what to run first
        broken = replace(state, status=BlockStatus.FAILED, error=message, ended_at=now())
        return _finish(context, broken, Preparation(Readiness.PROCEED, message), exc)
    if preparation.readiness in _TERMINAL:
        status = _TERMINAL[preparation.readiness]
        done = replace(state, status=status, error=preparation.reason or None, ended_at=now())
        if preparation.readiness in (Readiness.REUSED, Readiness.CACHED):
            return Outcome(state=done, preparation=preparation)  # the runner wrote its state
        return _finish(context, done, preparation)
    loaded = tuple(origin.to_json() for origin in preparation.loaded)
    state = replace(state, loaded=loaded, status=BlockStatus.RUNNING)
    execution = _Execution(shell, header, analysis, body, context, on_state)
    if header.map is not None and isinstance(context, HeadlessContext):
        # A run: each item is a child block in a notebook of its own (kernel_magics.fanout).
        state, error = fan_out(context, header, shell.user_ns, state, execution.publish)
        return _finish(context, state, preparation, error)
    state, last = _attempts(execution, state, RetryPolicy.from_header(header))
    if last.error is None:
        preparation.notes += verdict_notes(header, last.verdict, execution.clock)
    state = replace(state, ended_at=now())
    outcome = _finish(context, state, preparation, last.error, last.tests)
    return replace(outcome, previews=last.previews)


def _attempts(
    execution: _Execution, state: BlockState, policy: RetryPolicy
) -> tuple[BlockState, _Tried]:
    """Try the block until an attempt succeeds or fails for good: (its state, the last try)."""
    number = 1
    while True:
        attempt = Attempt(number, BlockStatus.RUNNING, now())
        state = state.with_attempt(attempt)
        execution.publish(state)
        tried = _attempt(execution, state, attempt)
        if tried.error is None:
            state = replace(
                state.with_attempt(tried.attempt),
                status=BlockStatus.SUCCESS,
                error=None,
                condition_result=tried.verdict,
                schema_drift=tuple(drift.to_json() for drift in tried.drift),
            )
            return state, tried
        retry = number < policy.attempts and not isinstance(
            tried.error, (KeyboardInterrupt, *_NOT_RETRIED)
        )
        status, message = _failure(execution, tried.error, retry)
        retry = retry and status is BlockStatus.RETRYING
        state = _record_failure(
            execution.context, state, tried.attempt, status, message, tried.error, tried.tests
        )
        if isinstance(tried.error, SchemaDrift):
            drifts = tuple(drift.to_json() for drift in tried.error.drifts)
            state = replace(state, schema_drift=drifts)
        if not retry:
            return state, tried
        execution.publish(state)
        time.sleep(policy.delay_before(number))
        number += 1


def _attempt(execution: _Execution, state: BlockState, attempt: Attempt) -> _Tried:
    """One try of the block: run the body, store its outputs, run its tests. The block's own
    failures (and Ctrl-C) come back as the try's error instead of being raised."""
    header, analysis = execution.header, execution.analysis
    namespace: dict[str, Any] = execution.shell.user_ns
    tests: tuple[TestRecord, ...] = ()
    verdict: bool | None = None
    drift: tuple[Drift, ...] = ()
    declared = header.out or ()
    before = {name: namespace[name] for name in declared if name in namespace}
    try:
        if header.kind is BlockKind.SENSOR:
            for met in _pokes(execution):
                attempt = replace(attempt, pokes=attempt.pokes + 1)
                if not met:  # still RUNNING; the state shows the pokes so far
                    execution.publish(state.with_attempt(attempt))
        else:
            verdict = _run_once(execution)
        _stop_if_interrupted(execution)
        bound_in_source = (*analysis.outputs, *analysis.imports)
        missing = unbound_outputs(declared, before, namespace, bound_in_source)
        check_outputs_bound(header.name, missing)
        outputs = tuple(analysis.outputs if header.out is None else header.out)
        manifests, summaries = _materialize(execution.context, header.name, outputs, namespace)
        tests = tuple(_run_tests(header, analysis, namespace))
        failed = [t for t in tests if t.outcome is TestOutcome.FAILED]
        if failed:
            raise TestsFailed(failed)
        drift = _schema_drift(execution.context, header.name, manifests)
        _stop_if_interrupted(execution)
    except (KeyboardInterrupt, Exception) as exc:
        return _Tried(attempt, tests, error=exc)
    succeeded = replace(
        attempt,
        status=BlockStatus.SUCCESS,
        ended_at=now(),
        tests=_records(tests, execution.context),
        outputs=tuple(manifests),
        summaries=tuple(summaries),
    )
    previews = previews_of(execution.context, outputs, namespace)
    return _Tried(succeeded, tests, verdict=verdict, previews=previews, drift=drift)


def _schema_drift(
    context: BlockContext, name: str, manifests: list[dict[str, Any]]
) -> tuple[Drift, ...]:
    """How the frames just stored differ from the block's baseline; raises SchemaDrift under
    `--schema fail` (the runner wrote no baseline under `--schema off`)."""
    baseline = context.schema_baseline(name)
    if baseline is None:
        return ()
    drifts = compare(baseline, manifests)
    if drifts and baseline.fail:
        raise SchemaDrift(name, baseline.source, drifts)
    return drifts


def _stop_if_interrupted(execution: _Execution) -> None:
    """End the try as interrupted when the runner interrupted it (a cancel, its timeout) and the
    body carried on regardless: `!sleep` prints `^C` and returns, and code may catch
    KeyboardInterrupt. Its outputs are not stored; a resume runs it again."""
    context = execution.context
    if context.cancelled() or context.interrupt_reason(execution.header.name) is not None:
        raise KeyboardInterrupt("the body returned after the runner interrupted it")


def _failure(execution: _Execution, error: BaseException, retry: bool) -> tuple[BlockStatus, str]:
    """The status and one-line message a failed try leaves on the block. A block that was
    running when the run was cancelled is cancelled, whatever its body made of the interrupt."""
    if execution.context.cancelled():
        return BlockStatus.CANCELLED, "cancelled"
    if isinstance(error, KeyboardInterrupt):
        reason = execution.context.interrupt_reason(execution.header.name)
        return BlockStatus.FAILED, reason or "interrupted (KeyboardInterrupt)"
    return (BlockStatus.RETRYING if retry else BlockStatus.FAILED), _one_line(error)


def _run_once(execution: _Execution) -> bool | None:
    """A block's body, once, within --timeout; for a condition, its verdict."""
    shell, header, analysis = execution.shell, execution.header, execution.analysis
    line = format_header(header)
    if header.map is not None:
        # By hand: the items in turn, each within --timeout, the outputs collected into lists.
        def run_one() -> None:
            with time_limit(header.timeout):
                run_body(shell, execution.body, line)

        outputs = analysis.outputs if header.out is None else header.out
        run_items(header, shell.user_ns, outputs, run_one)
        return None
    if header.kind is not BlockKind.CONDITION:
        with time_limit(header.timeout):
            run_body(shell, execution.body, line)
        return None
    forget_verdict(header, analysis, shell.user_ns)
    with time_limit(header.timeout):
        value = run_body(shell, execution.body, line)
    return read_verdict(header, analysis, shell.user_ns, value)


def _pokes(execution: _Execution) -> Iterator[bool]:
    """Run a sensor's body until its verdict is true: yields each poke's verdict, sleeps
    between pokes, raises SensorTimeout once --sensor-timeout has passed (KeyboardInterrupt,
    from Ctrl-C or a cancelled run, stops it at any point)."""
    shell, header, clock = execution.shell, execution.header, execution.clock
    if clock.started is None:
        clock.started = time.monotonic()
    line = format_header(header)
    while True:
        forget_verdict(header, execution.analysis, shell.user_ns)
        with time_limit(header.timeout):
            value = run_body(shell, execution.body, line, display=False)
        clock.pokes += 1
        met = read_verdict(header, execution.analysis, shell.user_ns, value)
        yield met
        if met:
            return
        elapsed = time.monotonic() - clock.started
        if elapsed >= header.sensor_timeout:
            raise SensorTimeout(header.sensor_timeout, clock.pokes)
        if execution.context.cancelled():
            raise KeyboardInterrupt
        time.sleep(min(header.poke_interval, header.sensor_timeout - elapsed))


def _finish(
    context: BlockContext,
    state: BlockState,
    preparation: Preparation,
    error: BaseException | None = None,
    tests: tuple[TestRecord, ...] = (),
) -> Outcome:
    context.record(state)
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


def previews_of(
    context: BlockContext, outputs: tuple[str, ...], namespace: dict[str, Any]
) -> tuple[tuple[str, str], ...]:
    """The first rows of each pandas DataFrame output, as a text table with the run's secrets
    masked: the view shows them collapsed, so a glance says whether the data looks right."""
    found = []
    for output in outputs:
        value = namespace.get(output)
        if type(value).__name__ != "DataFrame" or not hasattr(value, "to_string"):
            continue
        try:
            text = value.head(_PREVIEW_ROWS).to_string(max_cols=8, max_colwidth=40)
        except Exception:  # a preview is a courtesy: it never fails the block
            continue
        found.append((output, context.redact(text)))
    return tuple(found)


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
