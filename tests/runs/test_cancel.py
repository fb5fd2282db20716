"""Cancelling a run: through `Runner.cancel()` and with Ctrl-C (SIGINT) on `blockbook run`."""

from __future__ import annotations

import signal
import threading
import time

from pipelines.assembly.pipeline import assemble
from pipelines.rundir.state import BlockState
from pipelines.runs.runner import Runner, RunOptions
from pipelines.status import BlockStatus, RunStatus
from tests.helpers.notebooks import nb
from tests.helpers.runs import (
    assert_no_kernels,
    blockbook_json,
    source_hashes,
    start_blockbook,
)


def sleepy_pipeline(pipeline, marker) -> object:
    return pipeline(
        {
            "a.ipynb": nb(
                f"%%block sleeper\nimport pathlib, time\npathlib.Path({str(marker)!r}).touch()\n"
                "time.sleep(60)\nrested = True",
                "%%block after\nlater = 1",
            ),
            "b.ipynb": nb("%%block waiter\nwoken = rested"),
        }
    )


def test_cancel_stops_a_running_pipeline(project, pipeline, store, tmp_path) -> None:
    folder = sleepy_pipeline(pipeline, tmp_path / "started")
    before = source_hashes(folder)
    running = threading.Event()

    def on_block(state: BlockState) -> None:
        if state.block == "sleeper" and state.status is BlockStatus.RUNNING:
            running.set()

    runner = Runner(project, store, on_block=on_block)
    outcome: dict[str, object] = {}
    thread = threading.Thread(
        target=lambda: outcome.setdefault("result", runner.run(assemble(folder), RunOptions())),
        daemon=True,
    )
    thread.start()
    assert running.wait(30), "the sleeping block never started"
    time.sleep(0.3)  # well inside time.sleep(60)
    cancelled_at = time.monotonic()
    runner.cancel()
    thread.join(timeout=20)
    took = time.monotonic() - cancelled_at

    assert not thread.is_alive(), "Runner.run did not return after cancel()"
    assert took < 8, f"cancelling took {took:.1f} s"
    result = outcome["result"]
    assert result.status is RunStatus.CANCELLED
    assert {name: state.status for name, state in result.blocks.items()} == {
        "sleeper": BlockStatus.CANCELLED,
        "after": BlockStatus.CANCELLED,
        "waiter": BlockStatus.CANCELLED,
    }
    record = store.get_run(result.run_id)
    assert record.status is RunStatus.CANCELLED
    assert record.ended_at is not None
    assert {b.block: b.status for b in record.blocks} == {
        "sleeper": BlockStatus.CANCELLED,
        "after": BlockStatus.CANCELLED,
        "waiter": BlockStatus.CANCELLED,
    }
    assert_no_kernels(project)
    assert source_hashes(folder) == before


def test_sigint_cancels_cli_run(project, pipeline, tmp_path) -> None:
    marker = tmp_path / "started"
    sleepy_pipeline(pipeline, marker)
    process = start_blockbook(project, "run", "pipe")
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), f"the run never reached the sleeping block: {process.poll()}"
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 130, (stdout, stderr)
    assert "cancel" in stdout
    runs = blockbook_json(project, "runs")
    assert len(runs) == 1
    assert runs[0]["status"] == "cancelled"
    shown = blockbook_json(project, "show", runs[0]["run_id"])
    assert {b["name"]: b["status"] for b in shown["blocks"]} == {
        "sleeper": "cancelled",
        "after": "cancelled",
        "waiter": "cancelled",
    }
    assert_no_kernels(project)
