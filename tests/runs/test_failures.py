"""Failure handling: retries, timeouts (cooperative and killed), dead kernels, propagation."""

from __future__ import annotations

import time

from pipelines.status import BlockStatus, RunStatus
from tests.helpers.notebooks import nb
from tests.helpers.runs import block_cell, cell_text, statuses


def test_retry_then_success_and_retries_exhausted(pipeline, run, store, tmp_path) -> None:
    counter = tmp_path / "attempts.txt"
    flaky = f"""%%block flaky --retries 2 --retry-delay 0
import pathlib

_counter = pathlib.Path({str(counter)!r})
_seen = int(_counter.read_text()) if _counter.exists() else 0
_counter.write_text(str(_seen + 1))
if _seen == 0:
    raise ConnectionError("first attempt always fails")
value = _seen
"""
    stubborn = """%%block stubborn --retries 1 --retry-delay 0
raise RuntimeError("stubborn failure")
"""
    folder = pipeline(
        {
            "a.ipynb": nb(flaky, "%%block after_flaky\ndoubled = value * 2"),
            "b.ipynb": nb(stubborn),
        }
    )
    result = run(folder)

    assert result.status is RunStatus.FAILED
    assert counter.read_text() == "2"
    assert result.blocks["flaky"].status is BlockStatus.SUCCESS, statuses(result)
    assert result.blocks["after_flaky"].status is BlockStatus.SUCCESS
    assert result.blocks["stubborn"].status is BlockStatus.FAILED

    record = store.get_run(result.run_id)
    flaky_record = record.block("flaky")
    assert flaky_record.status is BlockStatus.SUCCESS
    assert flaky_record.attempts == 2
    first, second = flaky_record.attempt_records
    assert (first.number, first.status) == (1, BlockStatus.FAILED)
    assert "first attempt always fails" in first.error
    assert "ConnectionError" in first.traceback
    assert (second.number, second.status) == (2, BlockStatus.SUCCESS)
    assert second.error is None
    assert flaky_record.error is None

    stubborn_record = record.block("stubborn")
    assert stubborn_record.status is BlockStatus.FAILED
    assert stubborn_record.attempts == 2
    assert [a.status for a in stubborn_record.attempt_records] == [BlockStatus.FAILED] * 2
    assert all("stubborn failure" in a.error for a in stubborn_record.attempt_records)
    assert "stubborn failure" in stubborn_record.error
    assert "stubborn failure" in record.error


def test_timeout_stops_a_sleeping_block(pipeline, run, store) -> None:
    folder = pipeline(
        {
            "a.ipynb": nb(
                "%%block sleepy --timeout 1\nimport time\ntime.sleep(30)\nwoke = True",
                "%%block neighbour\nfine = 1",
            )
        }
    )
    started = time.monotonic()
    result = run(folder)
    elapsed = time.monotonic() - started

    assert elapsed < 15, f"a 1 s timeout took {elapsed:.1f} s"
    assert result.status is RunStatus.FAILED
    sleepy = result.blocks["sleepy"]
    assert sleepy.status is BlockStatus.FAILED
    assert "timed out" in sleepy.error
    assert "1 s" in sleepy.error
    # The kernel survived a cooperative timeout: the next block of the notebook still ran.
    assert result.blocks["neighbour"].status is BlockStatus.SUCCESS
    stored = store.get_run(result.run_id).block("sleepy")
    assert stored.status is BlockStatus.FAILED
    assert "timed out" in stored.error


def test_timeout_kills_a_kernel_that_ignores_interrupts(pipeline, run) -> None:
    stubborn = """%%block spin --timeout 1
import time

while True:
    try:
        time.sleep(0.1)
    except BaseException:
        pass
"""
    folder = pipeline(
        {
            "a.ipynb": nb(stubborn, "%%block later\nafter = 1", "%%block last\nfinal = 2"),
            "b.ipynb": nb("%%block elsewhere\nother = 3"),
        }
    )
    started = time.monotonic()
    result = run(folder, grace_seconds=1)
    elapsed = time.monotonic() - started

    assert elapsed < 20, f"killing a stuck kernel took {elapsed:.1f} s"
    assert result.status is RunStatus.FAILED
    spin = result.blocks["spin"]
    assert spin.status is BlockStatus.FAILED, statuses(result)
    assert "timed out" in spin.error
    assert "killed" in spin.error
    for name in ("later", "last"):
        later = result.blocks[name]
        assert later.status is BlockStatus.FAILED, statuses(result)
        assert "not run" in later.error
        assert "kernel died" in later.error
        assert "spin" in later.error
    assert result.blocks["elsewhere"].status is BlockStatus.SUCCESS


def test_dead_kernel_fails_block_and_downstream(pipeline, run, store) -> None:
    folder = pipeline(
        {
            "a.ipynb": nb(
                "%%block crash\nimport os\nvalue = 1\nos._exit(1)",
                "%%block never\nnothing = 0",
            ),
            "b.ipynb": nb("%%block downstream\nuse = value + 1", "%%block free\nok = True"),
        }
    )
    result = run(folder)  # the helper also checks that no kernel process is left

    assert result.status is RunStatus.FAILED
    crash = result.blocks["crash"]
    assert crash.status is BlockStatus.FAILED, statuses(result)
    assert "kernel died" in crash.error
    never = result.blocks["never"]
    assert never.status is BlockStatus.FAILED
    assert "not run" in never.error
    assert "crash" in never.error
    downstream = result.blocks["downstream"]
    assert downstream.status is BlockStatus.UPSTREAM_FAILED
    assert "crash" in downstream.error
    assert result.blocks["free"].status is BlockStatus.SUCCESS

    record = store.get_run(result.run_id)
    assert record.status is RunStatus.FAILED
    assert "kernel died" in record.block("crash").error
    assert record.block("downstream").status is BlockStatus.UPSTREAM_FAILED
    assert "crash" in record.error


def test_upstream_failed_propagates_across_notebooks(pipeline, run, store) -> None:
    folder = pipeline(
        {
            "a.ipynb": nb(
                "%%block source\nraw = [1, 2, 3]\nraise ValueError('source broke')",
                "%%block independent\nsolo = 'fine'",
            ),
            "b.ipynb": nb("%%block middle\nhalf = [x / 2 for x in raw]"),
            "c.ipynb": nb(
                "%%block leaf\ntotal = sum(half)",
                "%%block uses_solo\nshout = solo.upper()",
            ),
        }
    )
    result = run(folder)

    assert result.status is RunStatus.FAILED
    assert statuses(result)["source"].startswith("failed")
    assert result.blocks["independent"].status is BlockStatus.SUCCESS, statuses(result)
    assert result.blocks["middle"].status is BlockStatus.UPSTREAM_FAILED
    assert result.blocks["leaf"].status is BlockStatus.UPSTREAM_FAILED
    assert "source" in result.blocks["middle"].error
    assert "middle" in result.blocks["leaf"].error
    assert result.blocks["uses_solo"].status is BlockStatus.SUCCESS
    record = store.get_run(result.run_id)
    assert {b.block: b.status for b in record.blocks} == {
        "source": BlockStatus.FAILED,
        "independent": BlockStatus.SUCCESS,
        "middle": BlockStatus.UPSTREAM_FAILED,
        "leaf": BlockStatus.UPSTREAM_FAILED,
        "uses_solo": BlockStatus.SUCCESS,
    }
    assert record.block("middle").attempts == 0

    # The executed notebook shows the failing block's traceback in its cell.
    cell = block_cell(result.run_dir / result.blocks["source"].notebook, "source")
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert len(errors) == 1
    assert errors[0].ename == "ValueError"
    assert "source broke" in errors[0].evalue
    shown = cell_text(cell)
    assert "Traceback" in shown
    # Line numbers as the notebook shows them (the header is line 1), and only the user's frames.
    assert "----> 3 raise ValueError('source broke')" in shown, shown
    assert "1 %%block source" in shown, shown
    assert "kernel_magics" not in shown, shown
    assert cell.metadata["blockbook"]["status"] == "failed"
