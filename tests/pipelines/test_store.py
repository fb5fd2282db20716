"""The run store against SQLite and a real PostgreSQL.

PostgreSQL tests are never skipped: CI must run them. Each gets its own schema (through the
connection's search_path), so they can run in parallel with pytest-xdist.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from pipelines.rundir import state as runstate
from pipelines.rundir.state import Attempt, BlockState
from pipelines.status import BlockStatus, RunStatus, Trigger
from pipelines.store import migrate
from pipelines.store.db import create_store_engine
from pipelines.store.run_store import (
    DATABASE_URL_ENV,
    RunId,
    RunStore,
    StoreError,
    new_run_id,
    store_url,
)
from pipelines.store.schema import Base, RunRow
from tests.helpers.postgres import postgres_schema, schema_url

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
BLOCKS = [("load", "a.ipynb"), ("clean", "a.ipynb"), ("report", "b.ipynb")]


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'blockbook.db'}"
        return
    with postgres_schema() as schema:
        yield schema_url(schema)


@pytest.fixture
def store(db_url: str) -> Iterator[RunStore]:
    with RunStore(db_url) as opened:
        yield opened


@pytest.fixture
def no_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)


def make_run(
    store: RunStore,
    run_id: str | None = None,
    *,
    pipeline: str = "sales",
    blocks: list[tuple[str, str]] | None = None,
    **extra: Any,
) -> RunId:
    run_id = RunId(run_id or new_run_id())
    store.create_run(
        run_id,
        pipeline,
        f"pipelines/{pipeline}",
        extra.pop("trigger", Trigger.MANUAL),
        extra.pop("params", {}),
        f".blockbook/runs/{run_id}",
        BLOCKS if blocks is None else blocks,
        **extra,
    )
    return run_id


def attempt(number: int, status: BlockStatus, **fields: Any) -> Attempt:
    fields.setdefault("started_at", T0 + timedelta(minutes=number))
    return Attempt(number=number, status=status, **fields)


def state(block: str, status: BlockStatus, *attempts: Attempt, **fields: Any) -> BlockState:
    return BlockState(
        block=block, status=status, notebook="a.ipynb", attempts=tuple(attempts), **fields
    )


# --- run ids and URLs ---------------------------------------------------------------------------


def test_run_ids_sort_by_creation_time_and_are_unique() -> None:
    ids = [new_run_id() for _ in range(200)]
    assert len(set(ids)) == len(ids)
    stamp, suffix = ids[0].split("-")
    assert datetime.strptime(stamp, "%Y%m%dT%H%M%SZ")
    assert len(suffix) == 6
    assert int(suffix, 16) >= 0
    assert [run_id[:16] for run_id in ids] == sorted(run_id[:16] for run_id in ids)


def test_store_url_prefers_env_then_toml_then_default_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env_url: None
) -> None:
    default = store_url(tmp_path)
    assert default == f"sqlite:///{tmp_path / '.blockbook' / 'blockbook.db'}"
    assert (tmp_path / ".blockbook").is_dir()

    (tmp_path / "blockbook.toml").write_text(
        '[store]\nurl = "postgresql+psycopg://u:p@db/runs"\n', encoding="utf-8"
    )
    assert store_url(tmp_path) == "postgresql+psycopg://u:p@db/runs"

    monkeypatch.setenv(DATABASE_URL_ENV, "sqlite:////elsewhere/runs.db")
    assert store_url(tmp_path) == "sqlite:////elsewhere/runs.db"


def test_store_url_uses_the_given_config_and_anchors_relative_sqlite_paths(
    tmp_path: Path, no_env_url: None
) -> None:
    from pipelines.assembly.config import ProjectConfig, StoreConfig

    config = ProjectConfig(store=StoreConfig(url="sqlite:///state/runs.db"))
    assert store_url(tmp_path, config) == f"sqlite:///{tmp_path / 'state' / 'runs.db'}"
    assert store_url(tmp_path, ProjectConfig()).endswith("/.blockbook/blockbook.db")


def test_open_reports_an_invalid_blockbook_toml(tmp_path: Path, no_env_url: None) -> None:
    (tmp_path / "blockbook.toml").write_text('[store]\nurll = "sqlite://"\n', encoding="utf-8")
    with pytest.raises(StoreError) as caught:
        RunStore.open(tmp_path)
    assert "blockbook.toml" in caught.value.message
    assert "store.urll" in caught.value.message
    assert DATABASE_URL_ENV in caught.value.hint


def test_open_uses_the_project_default(tmp_path: Path, no_env_url: None) -> None:
    with RunStore.open(tmp_path) as opened:
        make_run(opened)
    assert (tmp_path / ".blockbook" / "blockbook.db").is_file()


# --- schema -------------------------------------------------------------------------------------


def test_migrations_create_the_schema_and_reopening_is_a_no_op(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrades: list[str] = []
    real_upgrade = command.upgrade

    def counting_upgrade(config: Any, revision: str, **kwargs: Any) -> None:
        upgrades.append(revision)
        real_upgrade(config, revision, **kwargs)

    monkeypatch.setattr(command, "upgrade", counting_upgrade)
    RunStore(db_url).close()
    assert upgrades == ["head"]
    RunStore(db_url).close()
    assert upgrades == ["head"], "a database already at head must not be migrated again"

    engine = create_engine(db_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
            assert {"runs", "block_runs", "block_attempts", "alembic_version"} <= tables
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == [], (
                "the models and the migrations disagree: generate a revision (see "
                "pipelines/store/migrations/env.py)"
            )
    finally:
        engine.dispose()


def test_the_known_head_is_alembics_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_heads() == [migrate.HEAD_REVISION], (
        "a new revision was added: set HEAD_REVISION in pipelines/store/migrate.py to it"
    )


def test_opening_a_current_store_does_not_import_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'current.db'}"
    RunStore(url).close()
    probe = (
        "import sys; from pipelines.store.run_store import RunStore; "
        f"RunStore({url!r}).close(); print('alembic' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_a_database_from_a_newer_blockbook_is_refused(db_url: str) -> None:
    RunStore(db_url).close()
    engine = create_engine(db_url, poolclass=NullPool)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    engine.dispose()
    with pytest.raises(StoreError, match="from_the_future") as caught:
        RunStore(db_url)
    assert "upgrade Blockbook" in caught.value.hint


def test_a_database_one_revision_behind_is_upgraded_and_keeps_its_runs(db_url: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_revision("head")
    assert head is not None
    assert isinstance(head.down_revision, str)
    engine = create_store_engine(db_url, db_url)  # makes the SQLite file's folder too
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, head.down_revision)
            # Only columns every revision has, as a Blockbook of that revision wrote them.
            connection.execute(
                RunRow.__table__.insert().values(
                    run_id="old",
                    pipeline="sales",
                    pipeline_path="pipelines/sales",
                    status=RunStatus.SUCCESS.value,
                    trigger=Trigger.MANUAL.value,
                    params={"day": "2026-01-02"},
                    run_dir=".blockbook/runs/old",
                    created_at=T0,
                )
            )
    finally:
        engine.dispose()
    with RunStore(db_url) as upgraded:
        record = upgraded.get_run("old")
    assert record is not None
    assert (record.status, record.params, record.created_at) == (
        RunStatus.SUCCESS,
        {"day": "2026-01-02"},
        T0,
    )
    assert (record.cancel_requested_at, record.cancel_requested_by) == (None, None)


def test_deleting_a_run_deletes_its_block_runs_and_attempts(store: RunStore, db_url: str) -> None:
    run_id = make_run(store)
    store.record_block(run_id, state("load", BlockStatus.SUCCESS, attempt(1, BlockStatus.SUCCESS)))
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "sqlite":
                connection.exec_driver_sql("PRAGMA foreign_keys = ON")
            connection.execute(text("DELETE FROM runs"))
            counts = [
                connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("block_runs", "block_attempts")
            ]
    finally:
        engine.dispose()
    assert counts == [0, 0]


# --- writing and reading runs -------------------------------------------------------------------


def test_a_run_round_trips(store: RunStore) -> None:
    run_id = make_run(
        store,
        params={"day": date(2026, 1, 2), "limit": 10, "name": "x"},
        trigger=Trigger.SCHEDULE,
        resumed_from="20260101T000000Z-abcdef",
    )
    queued = store.get_run(run_id)
    assert queued is not None
    assert queued.status is RunStatus.QUEUED
    assert queued.trigger is Trigger.SCHEDULE
    assert queued.params == {"day": "2026-01-02", "limit": 10, "name": "x"}
    assert queued.resumed_from == "20260101T000000Z-abcdef"
    assert queued.created_at.tzinfo is UTC
    assert [(b.block, b.notebook, b.status) for b in queued.blocks] == [
        (name, notebook, BlockStatus.PENDING) for name, notebook in BLOCKS
    ]

    paris = timezone(timedelta(hours=1))
    store.start_run(run_id, T0.astimezone(paris))
    store.record_block(
        run_id,
        state(
            "load",
            BlockStatus.SUCCESS,
            attempt(
                1,
                BlockStatus.SUCCESS,
                ended_at=T0 + timedelta(minutes=2),
                tests=(
                    runstate.TestRecord("not_empty", "passed"),
                    runstate.TestRecord("fresh", "warned", "old"),
                ),
                outputs=({"name": "orders", "rows": 3, "schema": {"id": "int64"}},),
            ),
            started_at=T0 + timedelta(minutes=1),
            ended_at=T0 + timedelta(minutes=2),
        ),
    )
    store.record_block(
        run_id,
        state(
            "clean",
            BlockStatus.FAILED,
            attempt(1, BlockStatus.FAILED, error="KeyError: 'x'", traceback="Traceback ..."),
            error="KeyError: 'x'",
        ),
    )
    store.record_block(run_id, state("report", BlockStatus.UPSTREAM_FAILED))
    store.finish_run(run_id, RunStatus.FAILED, T0 + timedelta(minutes=3), "block clean failed")

    run = store.get_run(run_id)
    assert run is not None
    assert run.status is RunStatus.FAILED
    assert run.started_at == T0
    assert run.started_at.tzinfo is UTC
    assert run.ended_at == T0 + timedelta(minutes=3)
    assert run.error == "block clean failed"
    assert [b.status for b in run.blocks] == [
        BlockStatus.SUCCESS,
        BlockStatus.FAILED,
        BlockStatus.UPSTREAM_FAILED,
    ]
    # Snapshots name the executed notebook; the one given to create_run is kept.
    assert [b.notebook for b in run.blocks] == [notebook for _, notebook in BLOCKS]
    load = run.block("load")
    assert load is not None
    assert (load.attempts, load.started_at, load.ended_at) == (
        1,
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=2),
    )
    (first,) = load.attempt_records
    assert first.status is BlockStatus.SUCCESS
    assert first.tests == [
        {"name": "not_empty", "outcome": "passed", "message": ""},
        {"name": "fresh", "outcome": "warned", "message": "old"},
    ]
    assert first.outputs == [{"name": "orders", "rows": 3, "schema": {"id": "int64"}}]
    clean = run.block("clean")
    assert clean is not None
    assert clean.error == "KeyError: 'x'"
    assert clean.attempt_records[0].traceback == "Traceback ..."


def test_attempts_are_upserted_by_number(store: RunStore) -> None:
    run_id = make_run(store)
    store.record_block(run_id, state("load", BlockStatus.RUNNING, attempt(1, BlockStatus.RUNNING)))
    store.record_block(
        run_id,
        state(
            "load",
            BlockStatus.RETRYING,
            attempt(1, BlockStatus.FAILED, ended_at=T0 + timedelta(minutes=2), error="boom"),
        ),
    )
    store.record_block(
        run_id,
        state(
            "load",
            BlockStatus.RUNNING,
            attempt(1, BlockStatus.FAILED, ended_at=T0 + timedelta(minutes=2), error="boom"),
            attempt(2, BlockStatus.RUNNING),
        ),
    )
    store.record_block(
        run_id,
        state(
            "load",
            BlockStatus.SUCCESS,
            attempt(2, BlockStatus.SUCCESS, outputs=({"name": "orders"},)),
        ),
    )
    run = store.get_run(run_id)
    assert run is not None
    load = run.block("load")
    assert load is not None
    assert load.status is BlockStatus.SUCCESS
    assert load.attempts == 2
    assert [(a.number, a.status, a.error) for a in load.attempt_records] == [
        (1, BlockStatus.FAILED, "boom"),
        (2, BlockStatus.SUCCESS, None),
    ]
    assert load.attempt_records[1].outputs == [{"name": "orders"}]


def test_a_block_missing_from_create_run_is_added_last(store: RunStore) -> None:
    run_id = make_run(store)
    store.record_block(run_id, state("extra", BlockStatus.SKIPPED))
    run = store.get_run(run_id)
    assert run is not None
    assert [b.block for b in run.blocks] == ["load", "clean", "report", "extra"]
    assert run.blocks[-1].notebook == "a.ipynb"


def test_terminal_run_status_never_changes(store: RunStore) -> None:
    run_id = make_run(store)
    store.start_run(run_id, T0)
    store.finish_run(run_id, RunStatus.CANCELLED, T0 + timedelta(minutes=1), "stopped")
    store.finish_run(run_id, RunStatus.SUCCESS, T0 + timedelta(minutes=2))
    store.start_run(run_id, T0 + timedelta(minutes=3))
    run = store.get_run(run_id)
    assert run is not None
    assert (run.status, run.ended_at, run.error) == (
        RunStatus.CANCELLED,
        T0 + timedelta(minutes=1),
        "stopped",
    )
    with pytest.raises(ValueError, match="terminal"):
        store.finish_run(run_id, RunStatus.RUNNING, T0)


def test_terminal_block_status_never_changes(store: RunStore) -> None:
    run_id = make_run(store)
    done = attempt(1, BlockStatus.SUCCESS, ended_at=T0 + timedelta(minutes=2))
    store.record_block(run_id, state("load", BlockStatus.SUCCESS, done))
    store.record_block(
        run_id,
        state("load", BlockStatus.FAILED, attempt(1, BlockStatus.FAILED), error="late"),
    )
    store.record_block(run_id, state("load", BlockStatus.RUNNING))
    # The same terminal status may still add details; a terminal attempt keeps its status.
    store.record_block(
        run_id,
        state(
            "load",
            BlockStatus.SUCCESS,
            attempt(1, BlockStatus.FAILED),
            attempt(2, BlockStatus.SUCCESS),
            ended_at=T0 + timedelta(minutes=5),
        ),
    )
    run = store.get_run(run_id)
    assert run is not None
    load = run.block("load")
    assert load is not None
    assert (load.status, load.error, load.ended_at) == (
        BlockStatus.SUCCESS,
        None,
        T0 + timedelta(minutes=5),
    )
    assert [(a.number, a.status) for a in load.attempt_records] == [
        (1, BlockStatus.SUCCESS),
        (2, BlockStatus.SUCCESS),
    ]


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(statuses=st.lists(st.sampled_from(list(BlockStatus)), min_size=1, max_size=5))
def test_a_block_keeps_its_first_terminal_status(
    store: RunStore, statuses: list[BlockStatus]
) -> None:
    run_id = make_run(store, blocks=[("load", "a.ipynb")])
    for status in statuses:
        store.record_block(run_id, state("load", status))
    expected = next((s for s in statuses if s.is_terminal), statuses[-1])
    run = store.get_run(run_id)
    assert run is not None
    assert run.blocks[0].status is expected


def test_writes_to_an_unknown_run_or_a_duplicate_id_are_refused(store: RunStore) -> None:
    with pytest.raises(StoreError, match="no run"):
        store.start_run("nope", T0)
    with pytest.raises(StoreError, match="no run"):
        store.record_block("nope", state("load", BlockStatus.RUNNING))
    run_id = make_run(store)
    with pytest.raises(StoreError, match="already exists"):
        make_run(store, run_id)
    with pytest.raises(ValueError, match="naive"):
        store.start_run(run_id, datetime(2026, 1, 1))


# --- queries ------------------------------------------------------------------------------------


def test_list_runs_is_newest_first_and_filters_by_pipeline(store: RunStore) -> None:
    ids = [
        make_run(store, f"20260101T00000{n}Z-000000", pipeline=pipeline)
        for n, pipeline in enumerate(["sales", "stock", "sales", "sales"])
    ]
    assert [r.run_id for r in store.list_runs()] == ids[::-1]
    assert [r.run_id for r in store.list_runs("sales")] == [ids[3], ids[2], ids[0]]
    assert [r.run_id for r in store.list_runs("sales", limit=2)] == [ids[3], ids[2]]
    assert store.list_runs("nothing") == []
    assert [b.block for b in store.list_runs(limit=1)[0].blocks] == [b for b, _ in BLOCKS]


def test_get_run_accepts_a_unique_prefix(store: RunStore) -> None:
    first = make_run(store, "20260101T000000Z-aaaaaa")
    second = make_run(store, "20260101T000000Z-aabbbb")
    make_run(store, "20260102T000000Z-cccccc")

    found = store.get_run("20260101T000000Z-aaa")
    assert found is not None
    assert found.run_id == first
    found = store.get_run(second)
    assert found is not None
    assert found.run_id == second
    assert store.get_run("2027") is None
    assert store.get_run("") is None
    # Wildcards are characters, and ids are case-sensitive on every backend.
    assert store.get_run("2026010_T") is None
    assert store.get_run("20260101t") is None

    with pytest.raises(StoreError) as caught:
        store.get_run("20260101T000000Z-aa")
    assert first in caught.value.message
    assert second in caught.value.message
    assert "20260102" not in caught.value.message
    assert "more characters" in caught.value.hint


def test_last_success_finds_the_newest_run_that_executed_the_block(store: RunStore) -> None:
    assert store.last_success("sales", "load") is None
    ok = make_run(store, "20260101T000001Z-000000")
    store.record_block(ok, state("load", BlockStatus.SUCCESS))
    failed = make_run(store, "20260101T000002Z-000000")
    store.record_block(failed, state("load", BlockStatus.FAILED))
    reused = make_run(store, "20260101T000003Z-000000", resumed_from=ok)
    store.record_block(reused, state("load", BlockStatus.SUCCESS, reused_from=ok))
    other = make_run(store, "20260101T000004Z-000000", pipeline="stock")
    store.record_block(other, state("load", BlockStatus.SUCCESS))

    found = store.last_success("sales", "load")
    assert found is not None
    assert found.run_id == ok
    assert store.last_success("sales", "clean") is None

    newer = make_run(store, "20260101T000005Z-000000")
    store.record_block(newer, state("load", BlockStatus.SUCCESS))
    found = store.last_success("sales", "load")
    assert found is not None
    assert found.run_id == newer


# --- failures and concurrency -------------------------------------------------------------------


def test_an_unreachable_database_raises_a_store_error_without_the_password() -> None:
    url = "postgresql+psycopg://blockbook:s3cret-pw@127.0.0.1:1/runs"
    with pytest.raises(StoreError) as caught:
        RunStore(url)
    error = caught.value
    assert "s3cret-pw" not in str(error)
    assert "postgresql+psycopg://blockbook:***@127.0.0.1:1/runs" in error.message
    assert "server is running" in error.hint
    assert DATABASE_URL_ENV in error.hint


def test_an_unusable_sqlite_path_raises_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("", encoding="utf-8")
    with pytest.raises(StoreError, match="cannot create the folder"):
        RunStore(f"sqlite:///{tmp_path / 'file' / 'sub' / 'blockbook.db'}")


def test_two_stores_write_concurrently_from_threads(db_url: str) -> None:
    stores: list[RunStore] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as exc:
                errors.append(exc)

        return run

    def open_store() -> None:
        barrier.wait()
        stores.append(RunStore(db_url))

    # Two processes opening a fresh database at once must not both create the tables.
    openers = [threading.Thread(target=guarded(open_store)) for _ in range(4)]
    for thread in openers:
        thread.start()
    for thread in openers:
        thread.join()
    assert errors == []

    def write(store: RunStore, worker: int) -> None:
        barrier.wait()
        for n in range(10):
            run_id = make_run(store, f"20260101T000000Z-{worker}{n:05d}")
            store.start_run(run_id, T0)
            for block, _ in BLOCKS:
                store.record_block(
                    run_id, state(block, BlockStatus.SUCCESS, attempt(1, BlockStatus.SUCCESS))
                )
            store.get_run(run_id)
            store.finish_run(run_id, RunStatus.SUCCESS, T0)

    writers = [
        threading.Thread(target=guarded(lambda s=opened, w=worker: write(s, w)))
        for worker, opened in enumerate(stores)
    ]
    try:
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join()
        assert errors == []
        runs = stores[0].list_runs(limit=100)
        assert len(runs) == 40
        assert {run.status for run in runs} == {RunStatus.SUCCESS}
    finally:
        for opened in stores:
            opened.close()


def _open_in_child(url: str, start: Any, results: Any) -> None:
    start.wait()
    try:
        RunStore(url).close()
        results.put("ok")
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_fresh_database_together_migrate_it_once(db_url: str) -> None:
    # fork skips re-importing Blockbook in every child; spawn is the fallback where fork is missing.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    count = 4
    # Released only once every child has imported Blockbook, so the opens really overlap.
    start, results = context.Barrier(count), context.Queue()
    children = [
        context.Process(target=_open_in_child, args=(db_url, start, results)) for _ in range(count)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert outcomes == ["ok"] * len(children)
