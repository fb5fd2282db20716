"""Alembic environment of the run store.

Revisions are generated, never hand-written. To add the next one after changing the models in
`pipelines/store/schema.py`, from the repository root with the venv active:

    rm -f /tmp/blockbook-revision.db
    alembic -c pipelines/store/migrations/alembic.ini \\
        -x url=sqlite:////tmp/blockbook-revision.db upgrade head
    alembic -c pipelines/store/migrations/alembic.ini \\
        -x url=sqlite:////tmp/blockbook-revision.db revision --autogenerate -m "what changed"

then set `HEAD_REVISION` in `pipelines/store/migrate.py` to the new revision id, review the
new file in `versions/` (autogenerate cannot see renames: it writes a drop and an
add, which loses data) and run `pytest tests/pipelines/test_store.py`, which fails while the models
and the migrations disagree. `render_as_batch` makes ALTERs work on SQLite, which has few of them.

A RunStore runs these migrations itself when it opens a database: it passes its connection in
`config.attributes["connection"]`, so the same code serves every URL.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from pipelines.store.schema import Base, UTCDateTime

config = context.config


def render_item(kind: str, item: Any, autogen_context: AutogenContext) -> str | bool:
    # Revisions must not import Blockbook's code, which changes after they are written: the UTC
    # conversion is Python-side only, so the column is a plain timezone-aware timestamp.
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


OPTIONS: dict[str, Any] = {
    "target_metadata": Base.metadata,
    "render_as_batch": True,
    "render_item": render_item,
    "compare_type": True,
}


def run_on(connection: Connection) -> None:
    context.configure(connection=connection, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    # From here on: Alembic's command line, run by a person.
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit(
            "name the database to work on: -x url=sqlite:////tmp/blockbook-revision.db "
            "(see pipelines/store/migrations/env.py)"
        )
    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True, **OPTIONS)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            run_on(connection)
    finally:
        engine.dispose()


main()
