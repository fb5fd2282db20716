"""Fixtures for headless-run tests: a throwaway project, its run store, a checked `run`.

Everything real: kernels through papermill, SQLite files in tmp_path, PostgreSQL at
127.0.0.1:5432 in a schema of the test's own. Every run made through the `run` fixture also
checks two promises that hold for any run: the user's source files are byte-identical
afterwards, and no kernel process outlives the run. The helpers the tests import (`nb`,
`statuses`, `blockbook`, ...) are in `tests.helpers`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.store.run_store import DATABASE_URL_ENV, RunStore
from tests.helpers.notebooks import make_pipeline
from tests.helpers.runs import RunHelper

# ---- the project -------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path as a project root (with blockbook.toml); its store is the default SQLite file."""
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    (tmp_path / "blockbook.toml").write_text("", encoding="utf-8")
    return tmp_path


@pytest.fixture
def store(project: Path) -> Iterator[RunStore]:
    """The project's own store, the one `blockbook --project` opens too."""
    with RunStore.open(project) as opened:
        yield opened


@pytest.fixture
def pipeline(project: Path) -> Callable[..., Path]:
    """`pipeline({"a.ipynb": nb(...)}, pipeline_toml=None, name="pipe")` -> the folder."""

    def make(notebooks: Any, pipeline_toml: str | None = None, *, name: str = "pipe") -> Path:
        return make_pipeline(project, notebooks, pipeline_toml, name=name)

    return make


# ---- running -----------------------------------------------------------------------------------


@pytest.fixture
def run(project: Path, store: RunStore) -> RunHelper:
    """`run(folder, **RunOptions fields) -> RunResult`, on the project's store."""
    return RunHelper(project, store)
