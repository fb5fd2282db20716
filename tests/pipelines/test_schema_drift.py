"""Schema drift, the comparison itself (issue 14, item 2): pure functions over manifests."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from pipelines.assembly.header import SchemaPolicy, format_header, parse_header
from pipelines.assembly.pipeline import assemble
from pipelines.errors import HeaderError
from pipelines.rundir.plan import RunPlan
from pipelines.rundir.schema_drift import (
    Baseline,
    Drift,
    DriftKind,
    OutputSchema,
    SchemaDrift,
    SchemaFileError,
    compare,
    contract,
    contract_text,
    read_contract,
)
from tests.helpers.notebooks import MakePipeline, nb

COLUMNS = (("id", "int64"), ("fare", "float64"), ("zone", "object"))


def manifest(name: str, columns: tuple[tuple[str, str], ...] | None, rows: int | None) -> Any:
    return {
        "name": name,
        "columns": None if columns is None else [list(c) for c in columns],
        "rows": rows,
    }


def baseline(rows: int = 100, columns: tuple[tuple[str, str], ...] = COLUMNS) -> Baseline:
    schema = OutputSchema.of_manifest(manifest("trips", columns, rows))
    assert schema is not None
    return Baseline("run R1", {"trips": schema})


def drifts(columns: tuple[tuple[str, str], ...], rows: int = 100) -> list[tuple[Any, ...]]:
    found = compare(baseline(), [manifest("trips", columns, rows)])
    return [(d.kind, d.column, d.before, d.after) for d in found]


def test_the_same_frame_does_not_drift() -> None:
    assert drifts(COLUMNS) == []
    # Column order alone is not drift: readers select columns by name.
    assert drifts(tuple(reversed(COLUMNS))) == []


def test_added_and_removed_columns() -> None:
    assert drifts((*COLUMNS, ("tip", "float64"), ("note", "object"))) == [
        (DriftKind.ADDED, "tip", None, "float64"),
        (DriftKind.ADDED, "note", None, "object"),
    ]
    assert drifts(COLUMNS[:1]) == [
        (DriftKind.REMOVED, "fare", "float64", None),
        (DriftKind.REMOVED, "zone", "object", None),
    ]


def test_one_removed_and_one_added_of_a_dtype_look_renamed() -> None:
    renamed = (("id", "int64"), ("fare_amount", "float64"), ("zone", "object"))
    assert drifts(renamed) == [(DriftKind.RENAMED, "fare_amount", "fare", "fare_amount")]
    # A different dtype is not a rename, and neither is a guess between two candidates.
    assert drifts((("id", "int64"), ("fare_amount", "object"), ("zone", "object"))) == [
        (DriftKind.REMOVED, "fare", "float64", None),
        (DriftKind.ADDED, "fare_amount", None, "object"),
    ]
    two = (("id", "int64"), ("a", "float64"), ("b", "float64"), ("zone", "object"))
    assert drifts(two) == [
        (DriftKind.REMOVED, "fare", "float64", None),
        (DriftKind.ADDED, "a", None, "float64"),
        (DriftKind.ADDED, "b", None, "float64"),
    ]


def test_retyped_columns() -> None:
    retyped = (("id", "int64"), ("fare", "object"), ("zone", "object"))
    found = compare(baseline(), [manifest("trips", retyped, 100)])
    assert [(d.kind, d.column, d.before, d.after) for d in found] == [
        (DriftKind.RETYPED, "fare", "float64", "object")
    ]
    assert found[0].message == "`trips`: column `fare` changed type float64 -> object"


@pytest.mark.parametrize(
    ("rows", "drifted"), [(50, False), (200, False), (49, True), (201, True), (0, True)]
)
def test_row_counts_may_halve_or_double(rows: int, drifted: bool) -> None:
    found = drifts(COLUMNS, rows)
    assert found == ([(DriftKind.ROWS, None, "50..200", str(rows))] if drifted else [])


def test_an_empty_baseline_holds_the_next_frame_to_empty() -> None:
    empty = OutputSchema.of_manifest(manifest("trips", COLUMNS, 0))
    assert empty is not None
    found = compare(Baseline("run R", {"trips": empty}), [manifest("trips", COLUMNS, 3)])
    assert [d.message for d in found] == ["`trips`: 3 rows, expected 0"]


def test_outputs_on_one_side_or_not_frames_are_not_compared() -> None:
    assert OutputSchema.of_manifest(manifest("model", None, None)) is None
    found = compare(
        baseline(),
        [manifest("other", (("x", "int64"),), 1), manifest("trips", None, None)],
    )
    assert found == ()


def test_drift_round_trips_through_json_and_pickle() -> None:
    drift = Drift("trips", DriftKind.RENAMED, "fare_amount", "fare", "fare_amount")
    data = drift.to_json()
    assert data["message"] == "`trips`: column `fare` renamed to `fare_amount`?"
    assert Drift.from_json(json.loads(json.dumps(data))) == drift
    error = pickle.loads(pickle.dumps(SchemaDrift("clean", "run R", (drift,))))
    assert error.drifts == (drift,)
    assert error.message == (
        "schema drift in block `clean` against run R: `trips`: column `fare` renamed to "
        "`fare_amount`?"
    )
    assert "blockbook schema pin RUN clean" in error.hint
    assert Baseline.from_json(json.loads(json.dumps(baseline().to_json()))) == baseline()


def test_a_contract_round_trips_and_its_bounds_can_be_edited(tmp_path: Path) -> None:
    path = tmp_path / "clean.json"
    data = contract("clean", "R1", dict(baseline().outputs))
    data["outputs"]["trips"]["min_rows"] = None
    path.write_bytes(contract_text(data))
    text = path.read_text()
    assert '      "columns": {\n        "id": "int64",\n        "fare": "float64",' in text
    read = read_contract(path, "clean")
    assert read == {"trips": OutputSchema(COLUMNS, None, 200)}
    # Columns as [name, dtype] pairs (the manifests' form) are read too.
    data["outputs"]["trips"]["columns"] = [list(column) for column in COLUMNS]
    path.write_text(json.dumps(data))
    assert read_contract(path, "clean") == read
    assert [d.kind for d in compare(Baseline("f", read), [manifest("trips", COLUMNS, 1)])] == []
    assert [d.message for d in compare(Baseline("f", read), [manifest("trips", COLUMNS, 201)])] == [
        "`trips`: 201 rows, expected <= 200"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "--schema-file of block `clean`: no file {path}"),
        ("{oops", "--schema-file of block `clean`: {path} is not JSON (line 1: "),
        ("[]", "--schema-file of block `clean`: {path} is not a schema contract"),
        ('{"outputs": {}}', "is not a schema contract (`outputs` must map"),
        ('{"outputs": {"t": {"columns": {"a": 1}}}}', "`columns` must map column names to dtypes"),
        ('{"outputs": {"t": {"columns": [], "min_rows": -1}}}', "`min_rows` and `max_rows`"),
    ],
)
def test_a_missing_or_invalid_schema_file_names_the_block_and_file(
    tmp_path: Path, text: str | None, expected: str
) -> None:
    path = tmp_path / "schemas" / "clean.json"
    if text is not None:
        path.parent.mkdir()
        path.write_text(text)
    with pytest.raises(SchemaFileError) as caught:
        read_contract(path, "clean")
    assert expected.format(path=path) in caught.value.message
    assert f"blockbook schema pin RUN clean -o {path}" in caught.value.hint


def test_schema_options_in_the_header() -> None:
    header = parse_header("%%block clean --schema fail --schema-file 'my schemas/clean.json'")
    assert header.schema is SchemaPolicy.FAIL
    assert header.schema_file == "my schemas/clean.json"
    assert parse_header(format_header(header)) == header
    assert parse_header("%%block clean").schema is SchemaPolicy.WARN


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--schema fial", "`fial` is not one of warn, fail, off; did you mean `fail`?"),
        ("--schema-file clean.csv", "--schema-file names a JSON file, got `clean.csv`"),
        ("--schema off --schema-file c.json", "--schema-file has no effect with --schema off"),
    ],
)
def test_bad_schema_options_are_header_errors(line: str, message: str) -> None:
    with pytest.raises(HeaderError) as caught:
        parse_header(f"%%block clean {line}")
    assert caught.value.message == message


def test_a_bad_schema_value_is_an_assembly_error_at_its_cell(pipeline_dir: MakePipeline) -> None:
    folder = pipeline_dir({"etl.ipynb": nb("%%block clean --schema strict\nx = 1")})
    pipeline = assemble(folder)
    [problem] = pipeline.errors
    assert "`strict` is not one of warn, fail, off" in problem.message
    assert problem.location is not None
    assert problem.location.notebook == "etl.ipynb"
    assert "--schema warn|fail|off" in problem.hint


def test_plans_written_before_drift_checks_still_load(tmp_path: Path) -> None:
    block = {
        "name": "clean",
        "source_notebook": "etl.ipynb",
        "run_notebook": "etl.ipynb",
        "upstream": [],
        "sources": {},
        "stored": {"trips": ["report"]},
        "run": True,
    }
    data = {
        "run_id": "R",
        "pipeline": "pipe",
        "pipeline_folder": str(tmp_path),
        "run_dir": str(tmp_path / "R"),
        "blocks": {"clean": block},
        "order": ["clean"],
        "params": {},
    }
    assert RunPlan.from_json(data).blocks["clean"].schema is None
    with_schema = {**data, "blocks": {"clean": {**block, "schema": baseline().to_json()}}}
    loaded = RunPlan.from_json(json.loads(json.dumps(with_schema))).blocks["clean"].schema
    assert loaded is not None
    assert Baseline.from_json(loaded) == baseline()


def test_a_pinned_contract_needs_each_of_its_frames() -> None:
    pinned = Baseline("schema file s.json", dict(baseline().outputs), pinned=True)
    missing = compare(pinned, [manifest("other", COLUMNS, 100)])
    assert [(d.output, d.kind) for d in missing] == [("trips", DriftKind.MISSING)]
    assert missing[0].message == (
        "`trips`: not stored as a DataFrame, which the schema file expects"
    )
    assert [d.kind for d in compare(pinned, [manifest("trips", None, None)])] == [DriftKind.MISSING]
    assert compare(pinned, [manifest("trips", COLUMNS, 100)]) == ()
    # Against a last run, an output stored no more is not drift (nobody reads it now).
    assert compare(baseline(), [manifest("other", COLUMNS, 100)]) == ()
