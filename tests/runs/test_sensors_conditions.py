"""Sensors (`--kind sensor`), conditions (`--kind condition`) and `--trigger-rule`, in real runs
(and, for the notebook side, in a real kernel run the way a person runs a notebook)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from kernel_magics.contexts import Readiness, judge_upstream
from pipelines.assembly.header import TriggerRule
from pipelines.rundir.state import BlockState
from pipelines.status import BlockStatus, RunStatus
from tests.helpers.notebooks import nb
from tests.helpers.runs import block_cell, cell_text, load_output, statuses

# ---- sensors -----------------------------------------------------------------------------------


def test_sensor_pokes_until_a_file_appears(pipeline, run, store, tmp_path) -> None:
    flag = tmp_path / "arrived.txt"
    folder = pipeline(
        {
            "a.ipynb": nb(
                "%%block wait_for_file --kind sensor --poke-interval 0.2 --sensor-timeout 30\n"
                f"import pathlib\npathlib.Path({str(flag)!r}).exists()"
            ),
            "b.ipynb": nb(
                "%%block read_file --upstream wait_for_file --out content\n"
                f"import pathlib\ncontent = pathlib.Path({str(flag)!r}).read_text()"
            ),
        }
    )
    first_poke = threading.Event()

    def on_block(state: BlockState) -> None:
        run.events.append(state)
        if state.block == "wait_for_file" and state.status is BlockStatus.RUNNING:
            first_poke.set()

    def create_later() -> None:
        if first_poke.wait(60):
            time.sleep(1.5)
            flag.write_text("hello", encoding="utf-8")

    run.runner.on_block = on_block
    creator = threading.Thread(target=create_later, daemon=True)
    creator.start()
    result = run(folder, run_id="sensor-file")
    creator.join(5)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    sensor = result.blocks["wait_for_file"]
    assert len(sensor.attempts) == 1
    assert sensor.attempts[0].pokes >= 4, sensor.attempts[0]
    # Between pokes the state is RUNNING and says how many pokes it made so far.
    poking = [s for s in run.events if s.block == "wait_for_file" and s.attempts]
    counts = [s.attempts[-1].pokes for s in poking if s.status is BlockStatus.RUNNING]
    assert max(counts) >= 2, counts
    assert result.blocks["read_file"].status is BlockStatus.SUCCESS
    assert load_output(result, "read_file", "content") == "hello"
    assert store.get_run(result.run_id).block("read_file").status is BlockStatus.SUCCESS
    shown = cell_text(block_cell(result.run_dir / sensor.notebook, "wait_for_file"))
    assert "sensor ready after" in shown, shown
    assert "False" not in shown, "a sensor's pokes display nothing"


def test_sensor_fails_at_its_timeout_without_retrying(pipeline, run, store) -> None:
    folder = pipeline(
        {
            "a.ipynb": nb(
                "%%block never --kind sensor --poke-interval 0.2 --sensor-timeout 1 --retries 2\n"
                "1 + 1 == 3",
                "%%block after --upstream never\nx = 1",
            )
        }
    )
    started = time.monotonic()
    result = run(folder)
    took = time.monotonic() - started

    assert result.status is RunStatus.FAILED
    never = result.blocks["never"]
    assert never.status is BlockStatus.FAILED
    assert "sensor condition not met after 1 s (" in never.error, never.error
    assert "pokes); raise --sensor-timeout or check" in never.error, never.error
    assert len(never.attempts) == 1, "retries don't apply to a sensor timeout"
    assert 3 <= never.attempts[0].pokes <= 7, never.attempts[0]  # ~6: at 0, 0.2, ... 1 s
    assert result.blocks["after"].status is BlockStatus.UPSTREAM_FAILED
    assert took < 20, f"the run took {took:.1f} s"
    assert "sensor condition not met" in store.get_run(result.run_id).error


def test_sensor_ready_variable_wins_over_last_expression(pipeline, run) -> None:
    folder = pipeline(
        {
            "a.ipynb": nb(
                "%%block count_up --kind sensor --poke-interval 0.05 --sensor-timeout 20\n"
                'tries = globals().get("tries", 0) + 1\n'
                "ready = tries >= 3\n"
                "tries < 0  # always false: `ready` decides",
            ),
            "b.ipynb": nb("%%block report\nseen = tries"),
        }
    )
    result = run(folder)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert result.blocks["count_up"].attempts[0].pokes == 3
    assert load_output(result, "count_up", "tries") == 3


# ---- conditions --------------------------------------------------------------------------------


def test_false_condition_skips_its_downstream_only(pipeline, run, store) -> None:
    folder = pipeline(
        {
            "a.ipynb": nb(
                "%%block gate --kind condition\nrows = 0\nrows > 0",
                "%%block other\nsolo = 'fine'",
            ),
            "b.ipynb": nb("%%block child --upstream gate\nx = rows + 1"),
            "c.ipynb": nb(
                "%%block grandchild\ny = x * 2",
                "%%block uses_solo --out shout\nshout = solo.upper()",
            ),
        }
    )
    result = run(folder)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    gate = result.blocks["gate"]
    assert gate.status is BlockStatus.SUCCESS
    assert gate.condition_result is False
    assert result.blocks["child"].status is BlockStatus.SKIPPED, statuses(result)
    assert result.blocks["child"].error == "skipped: condition `gate` was false"
    assert result.blocks["grandchild"].status is BlockStatus.SKIPPED, statuses(result)
    assert result.blocks["grandchild"].error == "skipped: upstream `child` was skipped"
    assert result.blocks["other"].status is BlockStatus.SUCCESS
    assert result.blocks["uses_solo"].status is BlockStatus.SUCCESS
    assert load_output(result, "uses_solo", "shout") == "FINE"
    record = store.get_run(result.run_id)
    assert record.status is RunStatus.SUCCESS
    assert record.block("grandchild").status is BlockStatus.SKIPPED
    assert "upstream `child` was skipped" in record.block("grandchild").error
    shown = cell_text(block_cell(result.run_dir / gate.notebook, "gate"))
    assert "condition false: downstream blocks will be skipped" in shown, shown


def test_true_condition_lets_downstream_run(pipeline, run) -> None:
    folder = pipeline(
        {
            "a.ipynb": nb(
                "%%block gate --kind condition\nlimit = 3\nproceed = limit > 2\nNone",
            ),
            "b.ipynb": nb("%%block child --out doubled\ndoubled = limit * 2"),
        }
    )
    result = run(folder)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert result.blocks["gate"].condition_result is True
    assert result.blocks["child"].status is BlockStatus.SUCCESS
    assert load_output(result, "child", "doubled") == 6


# ---- trigger rules -----------------------------------------------------------------------------


def test_trigger_rules_after_a_failed_upstream(pipeline, run, store) -> None:
    folder = pipeline(
        {
            "a.ipynb": nb(
                "%%block good\nvalue = 41",
                "%%block bad\nbroken = 1\nraise RuntimeError('bad broke')",
            ),
            "b.ipynb": nb(
                "%%block cleanup --upstream good bad --trigger-rule all_done --out missing\n"
                "try:\n    broken\nexcept NameError:\n    missing = True\nelse:\n"
                "    missing = False",
                "%%block either --upstream good bad --trigger-rule one_success --out answer\n"
                "answer = value + 1",
                "%%block strict --upstream good bad\nnever = value",
                "%%block none_ok --upstream bad --trigger-rule one_success\nz = 1",
            ),
        }
    )
    result = run(folder)

    assert result.status is RunStatus.FAILED, "a failed block fails the run, all_done or not"
    assert result.blocks["bad"].status is BlockStatus.FAILED
    assert result.blocks["cleanup"].status is BlockStatus.SUCCESS, statuses(result)
    assert load_output(result, "cleanup", "missing") is True, "a failed block's outputs load"
    assert result.blocks["either"].status is BlockStatus.SUCCESS, statuses(result)
    assert load_output(result, "either", "answer") == 42
    assert [i["block"] for i in result.blocks["either"].loaded] == ["good"]
    strict = result.blocks["strict"]
    assert strict.status is BlockStatus.UPSTREAM_FAILED
    assert strict.error == "upstream did not succeed: bad (failed)"
    none_ok = result.blocks["none_ok"]
    assert none_ok.status is BlockStatus.UPSTREAM_FAILED
    assert "no upstream succeeded" in none_ok.error
    record = store.get_run(result.run_id)
    assert record.status is RunStatus.FAILED
    assert "bad broke" in record.error


def test_trigger_rules_after_a_skipped_upstream(pipeline, run) -> None:
    folder = pipeline(
        {
            "a.ipynb": nb(
                "%%block off --skip\nq = 1",
                "%%block after_off\nr = q + 1",
                "%%block any_off --upstream off --trigger-rule one_success\ns = 1",
                "%%block done_off --upstream off after_off --trigger-rule all_done\nt = 1",
            )
        }
    )
    result = run(folder)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert result.blocks["off"].status is BlockStatus.SKIPPED
    assert result.blocks["after_off"].status is BlockStatus.SKIPPED
    assert result.blocks["after_off"].error == "skipped: upstream `off` was skipped"
    assert result.blocks["any_off"].status is BlockStatus.SKIPPED
    assert result.blocks["done_off"].status is BlockStatus.SUCCESS


# ---- in a notebook -----------------------------------------------------------------------------


def test_condition_and_sensor_in_a_notebook(project: Path, pipeline) -> None:
    folder = pipeline(
        {
            "a.ipynb": nb(
                "%%block gate --kind condition\nrows = []\nlen(rows) > 0",
                "%%block poll --kind sensor --poke-interval 0.05 --sensor-timeout 20\n"
                'polls = globals().get("polls", 0) + 1\npolls >= 2',
                "%%block after_gate --upstream gate\nz = 1",
            )
        }
    )
    notebook = nbformat.read(folder / "a.ipynb", as_version=4)
    NotebookClient(
        notebook, kernel_name="python3", timeout=60, resources={"metadata": {"path": str(folder)}}
    ).execute()

    shown = [cell_text(cell) for cell in notebook.cells]
    assert "condition false: downstream blocks will be skipped in runs" in shown[1], shown[1]
    assert "block gate: success" in shown[1]
    assert "sensor ready after 2 pokes" in shown[2], shown[2]
    # By hand, a person decides what runs: the block after a false condition still runs.
    assert "block after_gate: success" in shown[3], shown[3]


def test_ctrl_c_stops_a_poking_sensor_in_a_notebook(project: Path, pipeline) -> None:
    from jupyter_client.manager import start_new_kernel

    from pipelines.rundir.state import read_state

    folder = pipeline({"a.ipynb": nb("%%block poll --kind sensor --poke-interval 0.1\nFalse")})
    dev_area = project / ".blockbook" / "dev" / folder.name
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(folder))
    try:
        assert (
            client.execute_interactive("%load_ext kernel_magics", timeout=30)["content"]["status"]
            == "ok"
        )
        request = client.execute("%%block poll --kind sensor --poke-interval 0.1\nFalse")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = read_state(dev_area, "poll")
            if state is not None and state.attempts and state.attempts[-1].pokes >= 3:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the sensor never poked three times")
        manager.interrupt_kernel()
        reply = client.get_shell_msg(timeout=30)
        while reply["parent_header"].get("msg_id") != request:
            reply = client.get_shell_msg(timeout=30)
        shown = []
        while True:
            message = client.get_iopub_msg(timeout=30)
            if message["parent_header"].get("msg_id") != request:
                continue
            content = message["content"]
            shown += [content.get("text", ""), content.get("ename", "")]
            shown.append(content.get("data", {}).get("text/plain", ""))
            if message["msg_type"] == "status" and content["execution_state"] == "idle":
                break
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)

    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert "block poll: failed" in "\n".join(shown), shown
    state = read_state(dev_area, "poll")
    assert state is not None
    assert state.status is BlockStatus.FAILED
    assert state.error == "interrupted (KeyboardInterrupt)"
    assert state.attempts[-1].pokes >= 3


# ---- the decision itself -----------------------------------------------------------------------


def _states(**spec: str) -> dict[str, BlockState]:
    """name="success" | "false" (a condition that was false) | any other block status."""
    states = {}
    for name, status in spec.items():
        if status == "false":
            states[name] = BlockState(name, BlockStatus.SUCCESS, "nb", condition_result=False)
        else:
            states[name] = BlockState(name, BlockStatus(status), "nb")
    return states


@pytest.mark.parametrize(
    ("rule", "upstream", "readiness", "reason"),
    [
        ("all_success", {}, "proceed", ""),
        ("all_success", {"a": "success", "b": "success"}, "proceed", ""),
        ("all_success", {"a": "false"}, "skipped", "skipped: condition `a` was false"),
        ("all_success", {"a": "skipped"}, "skipped", "skipped: upstream `a` was skipped"),
        ("all_success", {"a": "skipped", "b": "failed"}, "upstream_failed", "b (failed)"),
        ("all_success", {"a": "cancelled"}, "upstream_failed", "a (cancelled)"),
        ("all_done", {"a": "failed", "b": "upstream_failed", "c": "false"}, "proceed", ""),
        ("one_success", {}, "proceed", ""),
        ("one_success", {"a": "failed", "b": "success"}, "proceed", ""),
        ("one_success", {"a": "false", "b": "skipped"}, "skipped", "condition `a` was false"),
        ("one_success", {"a": "false", "b": "failed"}, "upstream_failed", "no upstream succeeded"),
    ],
)
def test_judge_upstream(rule, upstream, readiness, reason) -> None:
    got, why = judge_upstream(TriggerRule(rule), _states(**upstream))
    assert got is Readiness(readiness)
    assert reason in why
    assert bool(why) is (got is not Readiness.PROCEED)
