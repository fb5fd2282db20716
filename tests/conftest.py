"""Shared fixtures: real notebooks written with nbformat, in throwaway pipeline folders."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbformat import v4
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

REPO_ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL_ENV = "BLOCKBOOK_TEST_POSTGRES_URL"
POSTGRES_URL = os.environ.get(POSTGRES_URL_ENV, "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def postgres_schema(prefix: str = "bb") -> Iterator[str]:
    """A fresh schema of its own in the test database, dropped afterwards.

    Fails (never skips) when the server is unreachable: CI must run the PostgreSQL tests.
    """
    schema = f"{prefix}_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES_URL, poolclass=NullPool)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.fail(
            f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc.orig}\n"
            "Start the server (trust auth, database `test`) or point "
            f"{POSTGRES_URL_ENV} at one.",
            pytrace=False,
        )
    try:
        yield schema
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def schema_url(schema: str) -> str:
    """The test database URL with `schema` as the search path."""
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL of the test PostgreSQL database whose search path is a fresh schema."""
    with postgres_schema() as schema:
        yield schema_url(schema)


@dataclass(frozen=True)
class Markdown:
    """A markdown cell in a `make_pipeline` spec (plain strings are code cells)."""

    source: str


Cell = str | Markdown
NotebookSpec = Mapping[str, Sequence[Cell]]


def write_notebook(path: Path, cells: Sequence[Cell]) -> Path:
    """Write an nbformat 4.5 notebook whose cell ids are `<stem>-<position>` (1-based).

    Characters nbformat doesn't allow in ids (`[a-zA-Z0-9-_]`) become `-`.
    """
    notebook = v4.new_notebook()
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    stem = re.sub(r"[^a-zA-Z0-9_-]", "-", path.stem)
    for position, cell in enumerate(cells, start=1):
        cell_id = f"{stem}-{position}"
        if isinstance(cell, Markdown):
            notebook.cells.append(v4.new_markdown_cell(cell.source, id=cell_id))
        else:
            notebook.cells.append(v4.new_code_cell(cell, id=cell_id))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def make_pipeline(
    base: Path,
    notebooks: NotebookSpec,
    pipeline_toml: str | None = None,
    *,
    name: str = "pipe",
) -> Path:
    """Create `base/name/` with one notebook per entry (and pipeline.toml if given)."""
    folder = base / name
    folder.mkdir(parents=True, exist_ok=True)
    for filename, cells in notebooks.items():
        write_notebook(folder / filename, cells)
    if pipeline_toml is not None:
        (folder / "pipeline.toml").write_text(pipeline_toml, encoding="utf-8")
    return folder


MakePipeline = Callable[..., Path]


@pytest.fixture
def pipeline_dir(tmp_path: Path) -> MakePipeline:
    """`pipeline_dir({"a.ipynb": [...]}, pipeline_toml=None)`: a pipeline folder under tmp_path."""

    def make(
        notebooks: NotebookSpec, pipeline_toml: str | None = None, *, name: str = "pipe"
    ) -> Path:
        return make_pipeline(tmp_path, notebooks, pipeline_toml, name=name)

    return make
