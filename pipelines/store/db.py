"""Where the run store lives and how its database is opened: URL resolution, password masking,
engine set-up for SQLite (WAL, busy timeout) and PostgreSQL (connect timeout, pre-ping), and
the store's errors."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
)

from pipelines.assembly.config import PROJECT_FILE, ProjectConfig, load_project_config
from pipelines.assembly.connections import URL_MASK, describe_url
from pipelines.errors import (
    AmbiguousError,
    BlockbookError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
)
from pipelines.params import mask_text, url_secrets
from pipelines.rundir.layout import STATE_DIR

DATABASE_URL_ENV = "BLOCKBOOK_DATABASE_URL"
DATABASE_FILE = "blockbook.db"
_SQLITE_BUSY_TIMEOUT_MS = 30_000
# Without it a black-holed host makes `blockbook run` hang for minutes before saying anything.
_CONNECT_TIMEOUT_S = 10
READ_ONLY = "blockbook_read_only"
"""Execution option marking a read-only session's engine (SQLite begins those deferred)."""


class StoreError(BlockbookError):
    """The run store cannot be opened or used, or a request to it makes no sense."""


class StoreUnavailable(StoreError, UnavailableError):
    """The run store's database cannot be reached or used right now."""


class StoreMisconfigured(StoreError, InvalidInputError):
    """The settings that say where the run store is are wrong (URL, folder, blockbook.toml)."""


class StoreCorrupt(StoreError, UnavailableError):
    """The run store's file exists but is not a database SQLite can read (overwritten, damaged)."""


class AmbiguousRunId(StoreError, AmbiguousError):
    """A run-id prefix that matches several runs."""


class RunConflict(StoreError, ConflictError):
    """A write that contradicts a run's state: its id is taken, or it has already ended."""


class RunNotFound(StoreError, NotFoundError):
    """No run with that id."""


def store_url(root: Path, config: ProjectConfig | None = None) -> str:
    """Where the run store lives: $BLOCKBOOK_DATABASE_URL, else `[store] url`, else a SQLite file.

    `config` is the project's `blockbook.toml`; when not given it is read from `root`. A relative
    SQLite path in `blockbook.toml` is relative to the project root, not to the working folder,
    so every command finds the same database wherever it is started from.
    """
    from_env = os.environ.get(DATABASE_URL_ENV, "").strip()
    if from_env:
        return from_env
    if config is None:
        config = project_config(root)
    if config.store.url:
        return _anchor_sqlite_path(config.store.url, root)
    folder = root.absolute() / STATE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / DATABASE_FILE}"


def mask_url(url: str) -> str:
    """The URL with its password (and secret-named query values) masked, for messages and logs."""
    return describe_url(url)


def create_store_engine(url_text: str, masked: str) -> Engine:
    """An engine for the run store's URL, set up for SQLite's or PostgreSQL's ways."""
    try:
        url = make_url(url_text)
    except ArgumentError as exc:
        raise StoreMisconfigured(
            f"not a database URL: {masked}",
            "use e.g. sqlite:////path/to/blockbook.db or "
            "postgresql+psycopg://user:password@host:5432/database",
        ) from exc
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        _make_sqlite_folder(url, masked)
    elif url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = _CONNECT_TIMEOUT_S
    try:
        engine = create_engine(
            url,
            connect_args=connect_args,
            json_serializer=_dump_json,
            # A long-lived process (a scheduler) must survive a database restart.
            pool_pre_ping=url.get_backend_name() != "sqlite",
        )
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreMisconfigured(
            f"cannot use the database at {masked}: {exc}",
            "Blockbook supports sqlite:/// and postgresql+psycopg:// URLs; check the URL in "
            f"{DATABASE_URL_ENV} or in `[store] url` of {PROJECT_FILE}",
        ) from exc
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def unusable(
    exc: OperationalError | InterfaceError, url: str, masked: str, backend: str
) -> StoreError:
    """The error to raise when the database at `url` fails `exc`: the driver's first line,
    without the password, and a hint for the backend (`sqlite` or another dialect name)."""
    lines = str(exc.orig).strip().splitlines()
    detail = lines[0] if lines else type(exc.orig).__name__
    # Drivers do not usually echo the password, but the message ends up in CI logs.
    detail = mask_text(detail, url_secrets(url), mask=URL_MASK)
    if backend == "sqlite":
        hint = (
            "check that the folder of the database file exists and is writable and that no "
            "other program keeps the file locked; "
        )
    else:
        hint = (
            "check that the database server is running and accepts connections and that the "
            "URL (host, port, user, password, database) is right; "
        )
    hint += f"set {DATABASE_URL_ENV} or `[store] url` in {PROJECT_FILE} to use another database"
    return StoreUnavailable(f"cannot use the run store at {masked}: {detail}", hint)


def corrupt(exc: DatabaseError, url: URL) -> StoreError | None:
    """The error to raise for `exc` when it says the SQLite file at `url` is no database; None
    for any other error. (An exact `DatabaseError` is SQLite's "file is not a database" and
    "database disk image is malformed"; the subclasses are the everyday errors.)"""
    file = _sqlite_file(url) if url.get_backend_name() == "sqlite" else None
    if type(exc) is not DatabaseError or file is None:
        return None
    lines = str(exc.orig).strip().splitlines()
    detail = lines[0] if lines else type(exc.orig).__name__
    return StoreCorrupt(
        f"the run store {file.absolute()} is not a database Blockbook can read ({detail})",
        f"something overwrote or damaged it: restore it from a backup, or move it aside "
        f"(`mv {file} {file}.broken`, its runs are then forgotten) and the next command starts "
        f"an empty store; or set {DATABASE_URL_ENV} or `[store] url` in {PROJECT_FILE} to use "
        "another database",
    )


def project_config(root: Path) -> ProjectConfig:
    config, problems = load_project_config(root)
    errors = [problem for problem in problems if problem.is_error]
    if errors:
        raise StoreMisconfigured(
            f"cannot find the run store: {PROJECT_FILE} is not valid:\n"
            + "\n".join(problem.format() for problem in errors),
            f"fix {PROJECT_FILE}, or set {DATABASE_URL_ENV} to choose the database",
        )
    return config


def normalise_url(url: str) -> str:
    # psycopg (3) is the driver Blockbook installs; SQLAlchemy 2.0 would pick psycopg2 instead.
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    return url


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _anchor_sqlite_path(url: str, root: Path) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url  # reported by RunStore, which knows how to say what is wrong with it
    path = _sqlite_file(parsed) if parsed.get_backend_name() == "sqlite" else None
    if path is None or path.is_absolute():
        return url
    anchored = parsed.set(database=str(root.absolute() / path))
    return anchored.render_as_string(hide_password=False)


def _make_sqlite_folder(url: URL, masked: str) -> None:
    path = _sqlite_file(url)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreMisconfigured(
            f"cannot create the folder of the run store {masked}: {exc}",
            f"check the path, or set {DATABASE_URL_ENV} or `[store] url` in {PROJECT_FILE} "
            "to use another database",
        ) from exc


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy emits BEGIN itself (below); pysqlite's own would always be deferred.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching to WAL needs a lock another process may hold.
            cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
            # WAL lets readers work while one process writes; NORMAL sync is safe with WAL.
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A deferred transaction that reads and then writes fails at once with "database is
        # locked" (busy_timeout does not apply) when another connection wrote in between.
        # Taking the write lock up front makes writers queue on busy_timeout instead.
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _dump_json(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def _json_default(value: Any) -> Any:
    # Pipeline params may be dates; they are stored (and come back) as ISO strings.
    if isinstance(value, date):  # datetime included
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON: {value!r}")
