"""Schema drift in real runs (issue 14, item 2): a frame whose dtype changed since the block's
last success warns (state file, run store on SQLite and PostgreSQL, `show`), `--schema fail`
fails the block with the diff and its downstream is upstream_failed, and a pinned schema file
(`blockbook schema pin`) is compared with instead of the last run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.assembly.pipeline import assemble
from pipelines.rundir.schema_drift import SchemaFileError
from pipelines.rundir.state import read_state
from pipelines.runs.runner import Runner, RunOptions
from pipelines.status import BlockStatus, RunStatus
from pipelines.store.run_store import RunStore
from tests.helpers.notebooks import nb
from tests.helpers.runs import RunHelper, block_cell, blockbook, cell_text, statuses

RETYPED = {
    "output": "trips",
    "kind": "retyped",
    "column": "km",
    "before": "int64",
    "after": "float64",
    "message": "`trips`: column `km` changed type int64 -> float64",
}


def trips_pipeline(header: str = "") -> dict[str, list[str]]:
    """load -> clean; `km_type` (a parameter) is the dtype of `trips.km`."""
    return {
        "etl.ipynb": nb(
            f"%%block load --kind loader{header}\n"
            "import pandas as pd\n"
            "trips = pd.DataFrame({'km': [1, 2, 3], 'zone': ['a', 'b', 'c']})"
            ".astype({'km': km_type})",
            "%%block clean\nshort = trips[trips.km < 3]",
        )
    }


PARAMS = '[params]\nkm_type = "int64"\n'
FLOAT = {"km_type": "float64"}


def test_a_changed_dtype_warns_and_is_recorded_with_the_block(
    pipeline, project: Path, any_store: RunStore
) -> None:
    folder = pipeline(trips_pipeline(), PARAMS)
    run = RunHelper(project, any_store)
    first = run(folder)
    assert first.status is RunStatus.SUCCESS, statuses(first)
    assert first.blocks["load"].schema_drift == ()  # nothing to compare with yet

    second = run(folder, params=FLOAT)
    assert second.status is RunStatus.SUCCESS, statuses(second)
    expected = {**RETYPED, "baseline": f"run {first.run_id}"}
    state = read_state(second.run_dir, "load")
    assert state is not None
    assert state.status is BlockStatus.SUCCESS
    assert list(state.schema_drift) == [expected]
    record = any_store.get_run(second.run_id)
    assert record is not None
    load = record.known_block("load")
    assert list(load.schema_drift) == [expected]
    assert record.known_block("clean").schema_drift == ()

    # The new dtype is the baseline now: the same frame again does not warn twice.
    third = run(folder, params=FLOAT, force=True)
    assert third.status is RunStatus.SUCCESS, statuses(third)
    assert third.blocks["load"].schema_drift == ()


def test_run_and_show_print_the_drift_and_its_json(
    pipeline, run, project: Path, store: RunStore
) -> None:
    folder = pipeline(trips_pipeline(), PARAMS)
    first = run(folder)
    ran = blockbook(project, "run", str(folder), "-p", "km_type=float64")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    [second, _] = store.list_runs("pipe")
    drift_lines = [
        f"schema drift of load against run {first.run_id} (warning):",
        "  retyped  `trips`: column `km` changed type int64 -> float64",
    ]
    assert ran.stdout.splitlines()[-2:] == drift_lines, ran.stdout

    shown = blockbook(project, "show", second.run_id)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any(
        line.startswith("load") and "schema drift: 1 change (below)" in line for line in lines
    ), shown.stdout
    assert f"schema drift of load against run {first.run_id} (warning):" in lines
    assert "  retyped  `trips`: column `km` changed type int64 -> float64" in lines

    as_json = blockbook(project, "show", second.run_id, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    blocks = {block["name"]: block for block in json.loads(as_json.stdout)["blocks"]}
    assert blocks["load"]["schema_drift"] == [{**RETYPED, "baseline": f"run {first.run_id}"}]
    assert blocks["clean"]["schema_drift"] == []

    # The block's view in its executed notebook (the widget's text twin, and its HTML).
    cell = block_cell(Path(second.run_dir) / "notebooks" / "etl.ipynb", "load")
    shown_in_cell = cell_text(cell)
    assert "block load: warned" in shown_in_cell
    assert (
        f"schema drift: `trips`: column `km` changed type int64 -> float64 (against run "
        f"{first.run_id})"
    ) in shown_in_cell


def test_schema_fail_fails_the_block_with_the_diff_without_retrying(
    pipeline, run, store: RunStore
) -> None:
    folder = pipeline(trips_pipeline(" --schema fail --retries 2 --retry-delay 0"), PARAMS)
    first = run(folder)
    assert first.status is RunStatus.SUCCESS, statuses(first)

    second = run(folder, params=FLOAT)
    assert second.status is RunStatus.FAILED
    load, clean = second.blocks["load"], second.blocks["clean"]
    assert load.status is BlockStatus.FAILED
    assert clean.status is BlockStatus.UPSTREAM_FAILED
    assert len(load.attempts) == 1  # the same code makes the same frame: no retry
    assert load.error is not None
    assert load.error.startswith(
        f"SchemaDrift: schema drift in block `load` against run {first.run_id}: "
        "`trips`: column `km` changed type int64 -> float64; fix: "
    ), load.error
    record = store.get_run(second.run_id)
    assert record is not None
    assert [d["kind"] for d in record.known_block("load").schema_drift] == ["retyped"]
    assert record.error is not None
    assert "changed type int64 -> float64" in record.error


def test_a_pinned_schema_file_is_the_contract(pipeline, run, project: Path) -> None:
    folder = pipeline(trips_pipeline(), PARAMS)
    first = run(folder)
    assert first.status is RunStatus.SUCCESS, statuses(first)

    pinned = blockbook(project, "schema", "pin", first.run_id[:14], "load")
    assert pinned.returncode == 0, pinned.stderr
    path = folder / "schemas" / "load.json"
    assert pinned.stdout.splitlines() == [
        f"wrote {path} (trips)",
        "compare with it: add `--schema-file schemas/load.json` to the header of block `load` "
        "(relative to its notebook's folder; edit min_rows/max_rows as you see fit)",
    ]
    contract = json.loads(path.read_text())
    assert contract["pinned_from"] == first.run_id
    assert contract["outputs"] == {
        "trips": {"columns": {"km": "int64", "zone": "str"}, "min_rows": 2, "max_rows": 6}
    }

    # Against the contract, not the last run: a run with float km fails, then one with int km
    # after it passes even though the last run's km was float.
    (folder / "etl.ipynb").unlink()
    pipeline(trips_pipeline(" --schema fail --schema-file schemas/load.json"), PARAMS)
    drifted = run(folder, params=FLOAT)
    assert drifted.status is RunStatus.FAILED
    assert drifted.blocks["load"].error is not None
    assert "against schema file schemas/load.json: `trips`: column `km` changed type" in (
        drifted.blocks["load"].error
    )
    contract["outputs"]["trips"]["max_rows"] = 2
    contract["outputs"]["ghost"] = contract["outputs"]["trips"]  # a frame the block lost
    path.write_text(json.dumps(contract))
    again = run(folder)
    assert again.status is RunStatus.FAILED
    assert again.blocks["load"].error is not None
    assert (
        "`ghost`: not stored as a DataFrame, which the schema file expects; "
        "`trips`: 3 rows, expected 2"
    ) in again.blocks["load"].error


def test_pin_refuses_what_it_cannot_pin(pipeline, run, project: Path) -> None:
    folder = pipeline(trips_pipeline(), PARAMS)
    first = run(folder)
    unknown = blockbook(project, "schema", "pin", first.run_id, "load", "--output", "nope")
    assert unknown.returncode == 1
    assert "block `load` stored no DataFrame named `nope`" in unknown.stderr
    assert "its stored frames: trips" in unknown.stderr
    no_block = blockbook(project, "schema", "pin", first.run_id, "loud")
    assert no_block.returncode == 1
    assert f"run `{first.run_id}` has no block `loud`" in no_block.stderr


def test_a_missing_schema_file_stops_the_run_naming_block_and_file(
    pipeline, project: Path, store: RunStore
) -> None:
    folder = pipeline(trips_pipeline(" --schema-file schemas/load.json"), PARAMS)
    with pytest.raises(SchemaFileError) as caught:
        Runner(project, store).run(assemble(folder), RunOptions())
    path = folder / "schemas" / "load.json"
    assert caught.value.message == f"--schema-file of block `load`: no file {path}"
    assert f"blockbook schema pin RUN load -o {path}" in caught.value.hint
    assert store.list_runs("pipe") == []  # refused before anything was recorded

    (folder / "schemas").mkdir()
    path.write_text('{"outputs": {"trips": {"columns": "km"}}}')
    refused = blockbook(project, "run", str(folder))
    assert refused.returncode != 0
    assert (
        f"--schema-file of block `load`: {path} is not a schema contract "
        '(`columns` must map column names to dtypes ({"km": "int64", ...}))'
    ) in refused.stderr


def test_a_cached_last_success_compares_with_the_run_it_reused(pipeline, run) -> None:
    folder = pipeline(trips_pipeline(), PARAMS)
    first = run(folder)
    cached = run(folder)
    assert cached.blocks["load"].status is BlockStatus.CACHED, statuses(cached)
    assert cached.blocks["load"].reused_from == first.run_id

    drifted = run(folder, params=FLOAT)
    assert drifted.status is RunStatus.SUCCESS, statuses(drifted)
    [drift] = drifted.blocks["load"].schema_drift
    assert drift["baseline"] == f"run {first.run_id}"
    assert drift["message"] == RETYPED["message"]


def test_schema_off_compares_nothing(pipeline, run) -> None:
    folder = pipeline(trips_pipeline(" --schema off"), PARAMS)  # warn: the first test
    first = run(folder)
    assert first.status is RunStatus.SUCCESS, statuses(first)
    second = run(folder, params=FLOAT)
    assert second.status is RunStatus.SUCCESS, statuses(second)
    assert second.blocks["load"].schema_drift == ()
    # Not even a baseline was written for the kernel: `off` costs nothing.
    plan = json.loads((Path(second.run_dir) / "plan.json").read_text())
    assert plan["blocks"]["load"]["schema"] is None
