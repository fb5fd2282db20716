"""The shipped example, `notebooks/taxi`, run headlessly into SQLite and into PostgreSQL."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from pipelines.status import BlockStatus, RunStatus
from tests.helpers.postgres import pg_scalar
from tests.helpers.runs import statuses

TAXI = Path(__file__).resolve().parents[2] / "notebooks" / "taxi"
EXPECTED_ROWS = 2_896


@pytest.fixture
def taxi(project: Path) -> Path:
    """A copy of the example (without any database a local run left next to it)."""
    target = project / "taxi"
    shutil.copytree(TAXI, target, ignore=shutil.ignore_patterns("*.sqlite", ".blockbook"))
    return target


def check_success(result, store) -> None:
    assert result.status is RunStatus.SUCCESS, statuses(result)
    record = store.get_run(result.run_id)
    assert record.status is RunStatus.SUCCESS
    assert [b.block for b in record.blocks] == ["load_trips", "clean_trips", "export_trips"]
    assert all(b.status is BlockStatus.SUCCESS for b in record.blocks)
    clean = record.block("clean_trips").attempt_records[-1]
    assert {o["name"]: o["rows"] for o in clean.outputs} == {"green_trips": EXPECTED_ROWS}
    assert {t["outcome"] for t in clean.tests} == {"passed"}


def test_taxi_into_sqlite(taxi, run, store, tmp_path) -> None:
    database = tmp_path / "out" / "taxi.sqlite"
    database.parent.mkdir()
    result = run(taxi, params={"database_url": f"sqlite:///{database}"})

    check_success(result, store)
    with sqlite3.connect(database) as connection:
        (count,) = connection.execute("SELECT COUNT(*) FROM green_trips").fetchone()
    assert count == EXPECTED_ROWS
    assert not (taxi / "taxi.sqlite").exists(), "the default database_url was used"


def test_taxi_into_postgresql(taxi, run, store, pg_url) -> None:
    result = run(taxi, params={"database_url": pg_url})

    check_success(result, store)
    assert pg_scalar(pg_url, "SELECT COUNT(*) FROM green_trips") == EXPECTED_ROWS
    schema = pg_url.rsplit("%3D", 1)[1]
    located = pg_scalar(
        pg_url,
        "SELECT table_schema FROM information_schema.tables WHERE table_name = 'green_trips'"
        f" AND table_schema = '{schema}'",
    )
    assert located == schema
