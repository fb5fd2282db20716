"""Shared fixtures: real notebooks written with nbformat, in throwaway pipeline folders.

Only fixtures live here; the helpers they use (and that tests import) are in `tests.helpers`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# The helpers assert too; have pytest rewrite those asserts as it does in test modules.
pytest.register_assert_rewrite("tests.helpers")

from pipelines.store.run_store import RunStore  # noqa: E402
from tests.helpers.notebooks import MakePipeline, NotebookSpec, make_pipeline  # noqa: E402
from tests.helpers.postgres import postgres_schema, schema_url  # noqa: E402


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL of the test PostgreSQL database whose search path is a fresh schema."""
    with postgres_schema() as schema:
        yield schema_url(schema)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    """A run store of its own, on SQLite and on PostgreSQL."""
    url = (
        f"sqlite:///{tmp_path / 'runs.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    with RunStore(url) as opened:
        yield opened


@pytest.fixture
def pipeline_dir(tmp_path: Path) -> MakePipeline:
    """`pipeline_dir({"a.ipynb": [...]}, pipeline_toml=None)`: a pipeline folder under tmp_path."""

    def make(
        notebooks: NotebookSpec, pipeline_toml: str | None = None, *, name: str = "pipe"
    ) -> Path:
        return make_pipeline(tmp_path, notebooks, pipeline_toml, name=name)

    return make
