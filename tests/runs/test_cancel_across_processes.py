"""Cancelling a run from another process: `blockbook cancel` records the request in the run
store, and the runner stops the run on its next heartbeat. Real kernels, real subprocesses."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pipelines.cli.cancel import requester
from pipelines.status import BlockStatus, RunStatus, Trigger
from pipelines.store.queue import QueuedRun, claim_launch, enqueue, request_cancel
from pipelines.store.run_store import RunId, RunStore
from tests.helpers.notebooks import nb
from tests.helpers.runs import (
    RunHelper,
    assert_no_kernels,
    blockbook,
    start_blockbook,
)

# Short sleeps, so the interrupt lands at once; two minutes, far longer than the test waits.
SLEEPER = "%%block sleeper\nimport time\nfor _ in range(1200):\n    time.sleep(0.1)\nrested = True"


def sleepy(pipeline: Callable[..., Path]) -> Path:
    return pipeline(
        {
            "a.ipynb": nb(SLEEPER, "%%block after\nlater = 1"),
            "b.ipynb": nb("%%block waiter\nwoken = rested"),
        }
    )


def running_block(store: RunStore, block: str) -> RunId | None:
    """The id of the newest run while its `block` is running, else None."""
    runs = store.list_runs(limit=1)
    if not runs:
        return None
    state = runs[0].block(block)
    return runs[0].run_id if state is not None and state.status is BlockStatus.RUNNING else None


def test_blockbook_cancel_stops_a_run_of_another_process(
    project: Path, pipeline: Callable[..., Path], store: RunStore
) -> None:
    sleepy(pipeline)
    process = start_blockbook(project, "run", "pipe")
    try:
        deadline = time.monotonic() + 120
        run_id = None
        while run_id is None and process.poll() is None and time.monotonic() < deadline:
            run_id = running_block(store, "sleeper")
            time.sleep(0.1)
        assert run_id is not None, f"the sleeping block never ran (exit code {process.poll()})"

        asked = time.monotonic()
        cancelled = blockbook(project, "cancel", run_id)
        assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
        stdout, stderr = process.communicate(timeout=120)
        took = time.monotonic() - asked
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert cancelled.stdout == (
        f"cancel requested for run {run_id} (running); it stops within a few seconds\n"
    )
    assert process.returncode == 130, (stdout, stderr)
    # A heartbeat (2 s), the interrupt, and at worst the kill after the grace (5 s).
    assert took < 30, f"the run took {took:.1f} s to stop"
    record = store.get_run(run_id)
    assert record is not None
    assert record.status is RunStatus.CANCELLED
    assert {b.block: b.status for b in record.blocks} == {
        "sleeper": BlockStatus.CANCELLED,
        "after": BlockStatus.CANCELLED,
        "waiter": BlockStatus.CANCELLED,
    }
    assert record.cancel_requested_by == requester()
    assert record.cancel_requested_at is not None
    assert record.ended_at is not None
    assert record.cancel_requested_at <= record.ended_at
    assert record.error == (
        f"cancelled by {requester()} at {record.cancel_requested_at.isoformat(timespec='seconds')}"
    )
    assert_no_kernels(project)


def test_a_run_asked_to_stop_before_its_runner_starts_it_starts_no_kernel(
    pipeline: Callable[..., Path], store: RunStore, run: RunHelper
) -> None:
    folder = sleepy(pipeline)
    run_id = RunId("20261201T093000Z-queued")
    assert enqueue(store, QueuedRun(run_id, "pipe", str(folder), Trigger.API, {}, ""))
    assert claim_launch(store, run_id)  # a scheduler handed it to a runner process
    request_cancel(store, run_id, "api")

    result = run(folder, run_id=run_id)  # what that runner process does; checks no kernel is left

    assert result.status is RunStatus.CANCELLED
    record = store.get_run(run_id)
    assert record is not None
    assert record.status is RunStatus.CANCELLED
    assert [(b.block, b.status, b.attempts) for b in record.blocks] == [
        ("sleeper", BlockStatus.CANCELLED, 0),
        ("after", BlockStatus.CANCELLED, 0),
        ("waiter", BlockStatus.CANCELLED, 0),
    ]
    assert record.cancel_requested_by == "api"
    assert record.error is not None
    assert record.error.startswith("cancelled by api at ")
