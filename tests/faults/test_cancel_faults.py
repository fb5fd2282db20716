"""Cancelling a run whatever the running block does with the interrupt: a block running when the
cancel arrived ends `cancelled` (so `--resume` runs it again), and the processes it started die
with its kernel."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path

from pipelines.assembly.pipeline import assemble
from pipelines.rundir.state import BlockState
from pipelines.runs.execution import Limits
from pipelines.runs.runner import Runner, RunOptions, RunResult
from pipelines.status import BlockStatus, RunStatus
from pipelines.store.run_store import RunStore
from tests.faults.orphans import assert_none_sleeping, reaping, wait_for_sleeping
from tests.faults.test_kernel_faults import stubborn_block
from tests.helpers.notebooks import nb
from tests.helpers.runs import assert_no_kernels, start_blockbook, statuses


def run_and_cancel(
    project: Path, store: RunStore, folder: Path, block: str, sleep_seconds: int
) -> RunResult:
    """Run `folder` in a thread; once `block` runs and its `sleep SLEEP_SECONDS` child exists
    (the interrupt must land while the body is inside it), cancel the run the way
    `Runner.cancel` does."""
    running = threading.Event()

    def on_block(state: BlockState) -> None:
        if state.block == block and state.status is BlockStatus.RUNNING:
            running.set()

    runner = Runner(project, store, on_block=on_block)
    outcome: dict[str, RunResult] = {}
    options = RunOptions(limits=Limits(grace_seconds=1))
    thread = threading.Thread(
        target=lambda: outcome.setdefault("result", runner.run(assemble(folder), options)),
        daemon=True,
    )
    thread.start()
    assert running.wait(120), f"block {block} never started"
    assert wait_for_sleeping(sleep_seconds), f"block {block} never started its child process"
    runner.cancel()
    thread.join(timeout=120)
    assert not thread.is_alive(), "Runner.run did not return after cancel()"
    return outcome["result"]


def test_a_block_that_swallows_the_interrupt_ends_cancelled(project, pipeline, store) -> None:
    folder = pipeline(
        {
            "a.ipynb": nb(
                "%%block patient\nimport subprocess\n"
                "try:\n"
                "    subprocess.run(['sleep', '316'])\n"
                "except KeyboardInterrupt:\n"
                "    pass  # carry on regardless\n"
                "rested = True",
                "%%block after\nlater = rested",
            )
        }
    )

    with reaping(316):
        result = run_and_cancel(project, store, folder, "patient", 316)

    assert result.status is RunStatus.CANCELLED
    assert {n: s.status for n, s in result.blocks.items()} == {
        "patient": BlockStatus.CANCELLED,
        "after": BlockStatus.CANCELLED,
    }, statuses(result)
    assert store.get_run(result.run_id).block("patient").status is BlockStatus.CANCELLED
    assert_no_kernels(project)


def test_a_cancel_kills_the_processes_the_block_started(project, pipeline, store) -> None:
    folder = pipeline({"a.ipynb": nb(stubborn_block("stubborn", 315))})

    with reaping(315):
        result = run_and_cancel(project, store, folder, "stubborn", 315)
        assert_none_sleeping(315)

    assert result.blocks["stubborn"].status is BlockStatus.CANCELLED, statuses(result)
    assert_no_kernels(project)


def test_sigterm_on_a_shell_command_cancels_its_block(
    project: Path, pipeline: Callable[..., Path], store: RunStore
) -> None:
    """`!sleep` swallows the interrupt (IPython prints `^C` and carries on): the block was
    still running when the run was cancelled, so it is cancelled, and a resume runs it again."""
    pipeline({"a.ipynb": nb("%%block shell\n!sleep 317\nslept = True")})

    with reaping(317):
        process = start_blockbook(project, "run", "pipe")
        try:
            assert wait_for_sleeping(317), f"`!sleep` never started (exit {process.poll()})"
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()

    assert process.returncode == 130, (stdout, stderr)
    [record] = store.list_runs(limit=1)
    assert record.status is RunStatus.CANCELLED
    assert record.block("shell").status is BlockStatus.CANCELLED, record.block("shell")
    assert_no_kernels(project)
