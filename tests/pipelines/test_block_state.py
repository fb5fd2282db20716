"""Block state files: the records a kernel writes and the runner reads, in both directions."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from pipelines.rundir import state as runstate
from pipelines.rundir.state import (
    Attempt,
    BlockState,
    InputSource,
    LoadedInput,
    TestOutcome,
    read_state,
    write_state,
)
from pipelines.status import BlockStatus

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_a_state_file_round_trips_its_tests_and_loaded_inputs(tmp_path: Path) -> None:
    tests = (
        runstate.TestRecord("not_empty", TestOutcome.PASSED),
        runstate.TestRecord("fresh", TestOutcome.WARNED, "old"),
    )
    loaded = LoadedInput("trips", InputSource.RUN, "load", "a.ipynb", "20260102T030405Z-abc")
    state = BlockState(
        "clean",
        BlockStatus.SUCCESS,
        "a.ipynb",
        attempts=(Attempt(1, BlockStatus.SUCCESS, T0, T0, tests=tests),),
        loaded=(loaded.to_json(),),
    )
    write_state(tmp_path, state)

    data = json.loads(runstate.state_path(tmp_path, "clean").read_text(encoding="utf-8"))
    assert data["attempts"][0]["tests"] == [
        {"name": "not_empty", "outcome": "passed", "message": ""},
        {"name": "fresh", "outcome": "warned", "message": "old"},
    ]
    assert data["loaded"] == [
        {
            "name": "trips",
            "block": "load",
            "notebook": "a.ipynb",
            "source": "run",
            "run": "20260102T030405Z-abc",
        }
    ]
    assert read_state(tmp_path, "clean") == state
    assert LoadedInput.from_json(data["loaded"][0]) == loaded


def test_older_state_files_still_load(tmp_path: Path) -> None:
    """Files written before the records were shared: outcomes and sources as plain text."""
    old = {
        "block": "clean",
        "status": "failed",
        "notebook": "a.ipynb",
        "attempts": [
            {
                "number": 1,
                "status": "failed",
                "started_at": T0.isoformat(),
                "tests": [{"name": "no_nulls", "outcome": "failed", "message": "3 nulls"}],
            }
        ],
        "loaded": [{"name": "limit", "block": "", "source": "params", "run": ""}],
    }
    path = runstate.state_path(tmp_path, "clean")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(old), encoding="utf-8")

    state = read_state(tmp_path, "clean")
    assert state is not None
    [test] = state.attempts[0].tests
    assert test == runstate.TestRecord("no_nulls", TestOutcome.FAILED, "3 nulls")
    assert test.outcome is TestOutcome.FAILED
    assert LoadedInput.from_json(state.loaded[0]) == LoadedInput("limit", InputSource.PARAMS)


def test_an_outcome_given_as_text_is_the_enum() -> None:
    assert runstate.TestRecord("t", "warned").outcome is TestOutcome.WARNED  # type: ignore[arg-type]


def test_a_rewrite_within_one_timestamp_tick_still_changes_the_stamp(tmp_path: Path) -> None:
    """The runner finds changed states by their stamps: a block's last state, written within
    the same modification time as the one before, must not look unchanged."""
    write_state(tmp_path, BlockState("load", BlockStatus.RUNNING, "a.ipynb"))
    path = runstate.state_path(tmp_path, "load")
    tick = path.stat().st_mtime_ns
    before = runstate.state_stamps(tmp_path)["load.json"]

    write_state(tmp_path, BlockState("load", BlockStatus.SUCCESS, "a.ipynb"))
    os.utime(path, ns=(tick, tick))  # as a coarse clock would leave it

    assert path.stat().st_mtime_ns == tick
    assert runstate.state_stamps(tmp_path)["load.json"] != before
