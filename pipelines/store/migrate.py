"""Bringing a run store's database to the newest schema revision, with Alembic.

A `RunStore` calls `upgrade_schema` whenever it opens a database, so a project upgraded to a
newer Blockbook never needs a manual step. The revisions live in `pipelines/store/migrations/`
and are generated from `pipelines.store.schema` (see `migrations/env.py`).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError

from pipelines.store.db import DATABASE_URL_ENV, READ_ONLY, StoreUnavailable, corrupt

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Any constant works; it only has to be the same for every Blockbook that migrates this database.
_MIGRATION_LOCK_KEY = 0x426C6F636B626F6F  # "Blockboo"
# Alembic's `context` and `op` are process-wide proxies: two threads migrating at once (two
# stores opened together) would run each other's operations.
_ALEMBIC_LOCK = threading.Lock()


HEAD_REVISION = "d6cccade0953"
"""The newest revision in `migrations/versions/` (a test keeps them equal): a database already
there opens without importing Alembic, which costs a command ~0.3 s."""


def upgrade_schema(engine: Engine, masked_url: str) -> None:
    """Migrate the database to the newest revision; a database already there is left alone.

    Refuses a database whose revision this Blockbook does not know (a newer one wrote to it),
    and a SQLite file that is no database (StoreCorrupt, naming the file).
    """
    try:
        if current_revisions(engine) == {HEAD_REVISION}:
            return
        _upgrade_with_alembic(engine, masked_url)
    except DatabaseError as exc:
        # Opening is the first read of the file: where a damaged or overwritten store shows.
        error = corrupt(exc, engine.url)
        if error is None:
            raise
        raise error from exc


def current_revisions(engine: Engine) -> set[str]:
    """The revisions recorded in the database's `alembic_version` table (none when new)."""
    # Read-only, so SQLite begins a deferred transaction that never queues behind a writer.
    with engine.execution_options(**{READ_ONLY: True}).connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return set()
        rows = connection.execute(text("SELECT version_num FROM alembic_version"))
        return {str(row[0]) for row in rows}


def _upgrade_with_alembic(engine: Engine, masked_url: str) -> None:
    # Imported here for cost: only a database behind the newest revision needs Alembic.
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    heads = set(script.get_heads())
    # Read-only, so SQLite begins a deferred transaction that never queues behind a writer.
    with engine.execution_options(**{READ_ONLY: True}).connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    if current == heads:
        return
    unknown = current - {revision.revision for revision in script.walk_revisions()}
    if unknown:
        raise StoreUnavailable(
            f"the run store at {masked_url} has schema revision "
            f"{', '.join(sorted(unknown))}, which this version of Blockbook does not know",
            "upgrade Blockbook to the version that last wrote to this database, or point "
            f"{DATABASE_URL_ENV} at another database",
        )
    log.info("upgrading the run store schema at %s", masked_url)
    with _ALEMBIC_LOCK, engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Two processes opening a fresh database at once would both create the tables.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
