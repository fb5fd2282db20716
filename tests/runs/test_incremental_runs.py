"""Incremental runs: a block nothing changed for is `cached` (its outputs reused), and a block
that runs says what changed. Real kernels; every block logs each time its body executes, so
"did not run" is observed, not inferred from a status."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from pandas.testing import assert_frame_equal

from pipelines.assembly.pipeline import assemble
from pipelines.forms.json_forms import pipeline_json
from pipelines.runs.debug import executed_cell
from pipelines.runs.runner import RunError, RunResult
from pipelines.status import BlockStatus, RunStatus, Trigger
from pipelines.store.run_store import RunStore
from tests.helpers.notebooks import make_pipeline, nb
from tests.helpers.runs import (
    RunHelper,
    block_cell,
    blockbook,
    cell_text,
    load_output,
    statuses,
)


def logged(name: str, log: Path, body: str, header: str = "") -> str:
    """A block that appends its name to `log` every time its body executes."""
    return (
        f"%%block {name}{header}\n"
        f"with open({str(log)!r}, 'a') as _log:\n"
        f"    _log.write({name!r} + '\\n')\n"
        f"{body}"
    )


def executed(log: Path) -> list[str]:
    """The blocks that executed since the last call (the log is emptied)."""
    names = sorted(log.read_text().split()) if log.exists() else []
    log.unlink(missing_ok=True)
    return names


def by_status(result: RunResult) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, state in result.blocks.items():
        found.setdefault(str(state.status), []).append(name)
    return {status: sorted(names) for status, names in found.items()}


def notes(store: RunStore, result: RunResult) -> dict[str, str]:
    record = store.get_run(result.run_id)
    assert record is not None
    return {block.block: block.cache_note for block in record.blocks}


def taxi_like(log: Path, clean_body: str = "df = raw[raw.n > 0]") -> dict[str, list[str]]:
    """load -> clean -> report -> export, over two notebooks; `day` is read by `report` only."""
    return {
        "a.ipynb": nb(
            logged(
                "load",
                log,
                "import pandas as pd\nraw = pd.DataFrame({'n': [0, 1, 2]})",
                " --kind loader",
            ),
            logged("clean", log, clean_body),
        ),
        "b.ipynb": nb(
            logged("report", log, "summary = df.assign(day=day)"),
            logged("export", log, "exported = len(summary)", " --kind exporter --out exported"),
        ),
    }


PARAMS = '[params]\nday = "mon"\n'


@pytest.fixture
def any_run(project: Path, any_store: RunStore) -> RunHelper:
    """`run` on the SQLite and on the PostgreSQL store."""
    return RunHelper(project, any_store)


def test_a_second_identical_run_is_all_cached_but_exporters_run_again(
    pipeline, any_run, any_store, tmp_path
) -> None:
    log = tmp_path / "executions.log"
    folder = pipeline(taxi_like(log), PARAMS)
    first = any_run(folder)
    assert first.status is RunStatus.SUCCESS, statuses(first)
    assert executed(log) == ["clean", "export", "load", "report"]

    second = any_run(folder)
    assert second.status is RunStatus.SUCCESS, statuses(second)
    assert executed(log) == ["export"]
    assert by_status(second) == {"cached": ["clean", "load", "report"], "success": ["export"]}
    for name in ("load", "clean", "report"):
        state = second.blocks[name]
        assert state.reused_from == first.run_id
        assert state.error == f"reused from run {first.run_id}: nothing changed"
    # The exporter read the reused outputs, linked into the second run's folder.
    assert_frame_equal(
        load_output(second, "report", "summary"), load_output(first, "report", "summary")
    )
    record = any_store.get_run(second.run_id)
    assert record is not None
    assert record.status is RunStatus.SUCCESS
    stored = {block.block: block for block in record.blocks}
    assert stored["clean"].status is BlockStatus.CACHED
    assert stored["clean"].reused_from == first.run_id
    assert stored["export"].cache_note == "an exporter always runs"

    # A third run still names the run that executed the blocks, not the one that reused them.
    third = any_run(folder)
    assert executed(log) == ["export"]
    assert third.blocks["clean"].reused_from == first.run_id

    # Its executed cell is the first run's, the one that executed it; the exporter's its own.
    third_record = any_store.get_run(third.run_id)
    assert third_record is not None
    reused = executed_cell(any_store, third_record, "report")
    own = executed_cell(any_store, third_record, "export")
    assert (reused.run_id, own.run_id) == (first.run_id, third.run_id)
    assert reused.path.is_relative_to(first.run_dir)
    assert own.path.is_relative_to(third.run_dir)
    cell = nbformat.read(reused.path, as_version=4).cells[reused.cell_index]
    assert cell.source.startswith("%%block report")
    assert cell.metadata["blockbook"]["status"] == "success"


def test_editing_one_cell_reruns_that_block_and_its_downstream_only(
    pipeline, run, store, tmp_path
) -> None:
    log = tmp_path / "executions.log"
    folder = pipeline(taxi_like(log), PARAMS)
    first = run(folder)
    executed(log)

    pipeline(taxi_like(log, clean_body="df = raw[raw.n > 1]"), PARAMS)
    # The graph view marks the edited block stale before anything runs.
    graph = pipeline_json(assemble(folder), store.get_run(first.run_id), with_graph=True)
    assert graph["stale"] == ["clean"]
    edited = run(folder)
    assert edited.status is RunStatus.SUCCESS, statuses(edited)
    assert executed(log) == ["clean", "export", "report"]
    assert by_status(edited) == {"cached": ["load"], "success": ["clean", "export", "report"]}
    why = notes(store, edited)
    assert why["clean"] == "code changed"
    assert why["report"] == "upstream `clean` runs"
    assert list(load_output(edited, "clean", "df").n) == [2]
    # The kernel that ran `clean` shows `load` (same notebook) as cached, and why.
    shown = cell_text(block_cell(edited.run_dir / "notebooks" / "a.ipynb", "load"))
    assert "cached" in shown
    assert f"reused from run {first.run_id}: nothing changed" in shown

    # Layout only (trailing spaces, CRLF line endings, blank lines after the body): no change.
    pipeline(taxi_like(log, clean_body="df = raw[raw.n > 1]   \r\n\r\n"), PARAMS)
    unchanged = run(folder)
    assert executed(log) == ["export"]
    assert unchanged.blocks["clean"].reused_from == edited.run_id


def test_changing_a_parameter_reruns_only_the_blocks_that_read_it(
    pipeline, run, store, tmp_path
) -> None:
    log = tmp_path / "executions.log"
    folder = pipeline(taxi_like(log), PARAMS)
    run(folder)
    executed(log)

    changed = run(folder, params={"day": "tue"})
    assert changed.status is RunStatus.SUCCESS, statuses(changed)
    assert executed(log) == ["export", "report"]
    assert by_status(changed)["cached"] == ["clean", "load"]
    assert notes(store, changed)["report"] == "parameter `day` changed"
    assert set(load_output(changed, "report", "summary").day) == {"tue"}

    # What counts is the last successful run: going back to "mon" is a change again.
    back = run(folder)
    assert executed(log) == ["export", "report"]
    assert notes(store, back)["report"] == "parameter `day` changed"


def test_force_reruns_everything_and_force_block_that_block_and_its_downstream(
    pipeline, run, store, tmp_path
) -> None:
    log = tmp_path / "executions.log"
    folder = pipeline(taxi_like(log), PARAMS)
    run(folder)
    executed(log)

    forced = run(folder, force=True)
    assert executed(log) == ["clean", "export", "load", "report"]
    assert set(notes(store, forced).values()) == {"--force"}

    one = run(folder, force_blocks=("clean",))
    assert executed(log) == ["clean", "export", "report"]
    assert one.blocks["load"].status is BlockStatus.CACHED
    assert one.blocks["load"].reused_from == forced.run_id
    assert notes(store, one)["clean"] == "--force clean"

    with pytest.raises(RunError, match="--force names unknown block"):
        run(folder, force_blocks=("nope",))


def test_cache_never_always_runs_and_so_does_what_reads_it(pipeline, run, store, tmp_path) -> None:
    log = tmp_path / "executions.log"
    folder = pipeline(
        {
            "a.ipynb": nb(
                logged("stamp", log, "import time\nnow = time.time()", " --cache never"),
                logged("use", log, "later = now + 1"),
                logged("other", log, "constant = 3"),
            )
        }
    )
    run(folder)
    executed(log)
    second = run(folder)
    assert executed(log) == ["stamp", "use"]
    assert second.blocks["other"].status is BlockStatus.CACHED
    why = notes(store, second)
    assert why["stamp"] == "--cache never"
    assert why["use"] == "upstream `stamp` runs"


def test_conditions_are_decided_again_and_scheduled_runs_do_not_cache(
    pipeline, run, store, tmp_path
) -> None:
    log = tmp_path / "executions.log"
    folder = pipeline(
        {
            "a.ipynb": nb(
                logged("source", log, "rows = 3"),
                logged("gate", log, "rows > 0", " --kind condition"),
                logged("after", log, "done = True", " --upstream gate"),
            )
        }
    )
    run(folder)
    executed(log)
    second = run(folder)
    assert second.status is RunStatus.SUCCESS, statuses(second)
    assert executed(log) == ["after", "gate"]
    assert notes(store, second)["gate"] == "a condition is decided again each run"

    scheduled = run(folder, trigger=Trigger.SCHEDULE)
    assert executed(log) == ["after", "gate", "source"]
    assert set(notes(store, scheduled).values()) == {"caching is off for schedule runs"}


def test_a_new_reader_of_an_output_not_stored_before_reruns_its_producer(
    pipeline, run, store, tmp_path
) -> None:
    log = tmp_path / "executions.log"
    first_cells = [logged("make", log, "kept = 1\nextra = 2"), logged("take", log, "got = kept")]
    folder = pipeline({"a.ipynb": nb(*first_cells)})
    first = run(folder)
    executed(log)

    pipeline({"a.ipynb": nb(*first_cells, logged("late", log, "seen = extra"))})
    second = run(folder)
    assert second.status is RunStatus.SUCCESS, statuses(second)
    assert executed(log) == ["late", "make", "take"]
    assert notes(store, second)["make"] == f"output `extra` is not stored in run {first.run_id}"


def test_cli_run_twice_shows_cached_and_force(project, tmp_path) -> None:
    log = tmp_path / "executions.log"
    make_pipeline(project, taxi_like(log), PARAMS, name="taxi")
    first = blockbook(project, "run", "taxi")
    assert first.returncode == 0, first.stdout + first.stderr
    executed(log)

    second = blockbook(project, "run", "taxi")
    assert second.returncode == 0, second.stdout + second.stderr
    assert executed(log) == ["export"]
    lines = {line.split()[0]: line for line in second.stdout.splitlines() if line.strip()}
    assert "cached" in lines["clean"], second.stdout
    assert "nothing changed" in lines["clean"], second.stdout
    assert "an exporter always runs" in lines["export"], second.stdout

    forced = blockbook(project, "run", "taxi", "--force", "clean", "-p", "day=tue")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert executed(log) == ["clean", "export", "report"]
    run_id = forced.stdout.split("run ", 1)[1].split()[0]
    shown = blockbook(project, "show", run_id)
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[0]: line for line in shown.stdout.splitlines() if line.strip()}
    assert "ran: --force clean" in rows["clean"], shown.stdout
    assert "ran: parameter `day` changed; upstream `clean` runs" in rows["report"], shown.stdout

    everything = blockbook(project, "run", "taxi", "--force")
    assert everything.returncode == 0, everything.stdout + everything.stderr
    assert executed(log) == ["clean", "export", "load", "report"]
