"""Partial runs: --resume re-runs only what did not succeed, --only runs a subset, --isolate
gives every block its own kernel with the same results."""

from __future__ import annotations

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from pipelines.runs.runner import RunError
from pipelines.status import BlockStatus, RunStatus
from tests.helpers.notebooks import nb
from tests.helpers.runs import load_output, statuses


def logging_block(name: str, log, body: str, header: str = "") -> str:
    """A block that appends its name to `log` every time it executes."""
    return (
        f"%%block {name}{header}\n"
        f"with open({str(log)!r}, 'a') as _log:\n"
        f"    _log.write({name!r} + '\\n')\n"
        f"{body}"
    )


def executions(log) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_resume_reruns_only_what_did_not_succeed(pipeline, run, store, tmp_path) -> None:
    log = tmp_path / "executions.log"
    flag = tmp_path / "flag.txt"
    folder = pipeline(
        {
            "a.ipynb": nb(
                logging_block(
                    "produce",
                    log,
                    "import pandas as pd\nframe = pd.DataFrame({'n': [1, 2, 3]})\nscale = 10",
                ),
                logging_block(
                    "gate", log, f"factor = int(open({str(flag)!r}).read())\nbig = frame.n * scale"
                ),
            ),
            "b.ipynb": nb(
                logging_block("other", log, "constant = 5"),
                logging_block(
                    "consume",
                    log,
                    "result = frame.assign(m=frame.n * factor + big)",
                    header=" --out result",
                ),
            ),
        }
    )
    first = run(folder)
    assert first.status is RunStatus.FAILED
    assert statuses(first)["gate"].startswith("failed")
    assert first.blocks["consume"].status is BlockStatus.UPSTREAM_FAILED
    assert sorted(executions(log)) == ["gate", "other", "produce"]

    flag.write_text("3")
    second = run(folder, resume=first.run_id)

    assert second.run_id != first.run_id
    assert second.status is RunStatus.SUCCESS, statuses(second)
    # Successful blocks ran once, in the first run; the rest ran again in the second.
    assert sorted(executions(log)) == ["consume", "gate", "gate", "other", "produce"]
    for name in ("produce", "other"):
        assert second.blocks[name].status is BlockStatus.SUCCESS
        assert second.blocks[name].reused_from == first.run_id
    for name in ("gate", "consume"):
        assert second.blocks[name].reused_from is None
    # A re-run block read the reused block's stored outputs (same notebook and another one).
    expected = pd.DataFrame({"n": [1, 2, 3]})
    assert_frame_equal(load_output(second, "produce", "frame"), expected)
    assert list(load_output(second, "gate", "big")) == [10, 20, 30]
    assert_frame_equal(load_output(second, "consume", "result"), expected.assign(m=[13, 26, 39]))

    record = store.get_run(second.run_id)
    assert record.resumed_from == first.run_id
    assert record.status is RunStatus.SUCCESS
    assert record.block("produce").reused_from == first.run_id
    assert record.block("gate").reused_from is None
    assert record.block("gate").attempts == 1
    assert store.get_run(first.run_id).status is RunStatus.FAILED

    # Resuming the resumed run reuses everything, still pointing at where each result was made.
    third = run(folder, resume=second.run_id)
    assert third.status is RunStatus.SUCCESS
    assert len(executions(log)) == 5
    assert third.blocks["produce"].reused_from == first.run_id
    assert third.blocks["consume"].reused_from == second.run_id


def test_resume_unknown_run_is_an_error(pipeline, run) -> None:
    folder = pipeline({"a.ipynb": nb("%%block one\nx = 1")})
    with pytest.raises(RunError, match="no run `nope` to resume"):
        run(folder, resume="nope")


def only_pipeline(pipeline, log):
    return pipeline(
        {
            "a.ipynb": nb(
                logging_block("base", log, "numbers = [1, 2, 3]"),
                logging_block("unrelated", log, "noise = 'x'"),
            ),
            "b.ipynb": nb(logging_block("use", log, "total = sum(numbers)\nassert total == 6")),
        }
    )


def test_only_reuses_the_last_successful_upstream(pipeline, run, store, tmp_path) -> None:
    log = tmp_path / "executions.log"
    folder = only_pipeline(pipeline, log)
    full = run(folder)
    assert full.status is RunStatus.SUCCESS, statuses(full)
    log.unlink()

    partial = run(folder, only=("use",))

    assert partial.status is RunStatus.SUCCESS, statuses(partial)
    assert executions(log) == ["use"]
    assert partial.blocks["use"].reused_from is None
    assert partial.blocks["base"].status is BlockStatus.SUCCESS
    assert partial.blocks["base"].reused_from == full.run_id
    assert partial.blocks["unrelated"].status is BlockStatus.SKIPPED
    loaded = partial.blocks["use"].loaded
    assert [entry["name"] for entry in loaded] == ["numbers"]
    record = store.get_run(partial.run_id)
    assert record.block("base").reused_from == full.run_id
    assert record.block("unrelated").status is BlockStatus.SKIPPED


def test_only_without_a_successful_upstream_is_an_error(pipeline, run, tmp_path) -> None:
    log = tmp_path / "executions.log"
    folder = only_pipeline(pipeline, log)
    with pytest.raises(RunError, match="`base`, which has never succeeded") as caught:
        run(folder, only=("use",))
    assert "--only base" in caught.value.hint
    assert not log.exists()
    with pytest.raises(RunError, match="unknown block"):
        run(folder, only=("usee",))


def test_isolate_matches_default_mode(pipeline, run) -> None:
    folder = pipeline(
        {
            "a.ipynb": nb(
                "%%block load\nimport pandas as pd\n"
                "frame = pd.DataFrame({'k': list('abc'), 'v': [1.0, 2.5, 4.0]})\nlookup = {'a': 1}",
                "%%block enrich\nenriched = frame.assign(w=frame.v * 2, hit=frame.k.map(lookup))",
            ),
            "b.ipynb": nb("%%block report\nreport = enriched.describe()\nsize = len(enriched)"),
            "c.ipynb": nb("%%block final\nfinal = (report.shape, size)"),
        }
    )
    default = run(folder)
    # Forced: the same code would otherwise be cached, and the point is to run it isolated.
    isolated = run(folder, isolate=True, force=True)

    assert default.status is RunStatus.SUCCESS, statuses(default)
    assert isolated.status is RunStatus.SUCCESS, statuses(isolated)
    executed = sorted(p.name for p in (isolated.run_dir / "notebooks").glob("*.ipynb"))
    assert executed == [
        "a.enrich.ipynb",
        "a.load.ipynb",
        "b.report.ipynb",
        "c.final.ipynb",
    ]
    assert sorted(p.name for p in (default.run_dir / "notebooks").glob("*.ipynb")) == [
        "a.ipynb",
        "b.ipynb",
        "c.ipynb",
    ]
    for name, state in isolated.blocks.items():
        assert state.notebook == f"notebooks/{state.notebook.split('/')[1]}"
        assert state.notebook.endswith(f".{name}.ipynb")
    for block in ("load", "enrich", "report"):
        names = sorted(p.stem for p in (default.run_dir / "artifacts" / block).glob("*.json"))
        assert names, f"block {block} stored nothing"
        isolated_names = (isolated.run_dir / "artifacts" / block).glob("*.json")
        assert sorted(p.stem for p in isolated_names) == names
        for name in names:
            mine, theirs = load_output(isolated, block, name), load_output(default, block, name)
            if isinstance(mine, pd.DataFrame):
                assert_frame_equal(mine, theirs)
            else:
                assert mine == theirs
    assert not (default.run_dir / "artifacts" / "final").exists()
    assert (
        isolated.blocks["final"].attempts[-1].summaries
        == default.blocks["final"].attempts[-1].summaries
        == ({"name": "final", "type": "tuple", "length": 2},)
    )
