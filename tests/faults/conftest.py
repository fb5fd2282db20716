"""Fault-injection tests: real processes killed, paused and starved, real kernels, real stores.

The project, store, pipeline and run fixtures are the headless-run ones (tests/runs/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runs.conftest import pipeline, project, run, store

__all__ = ["pipeline", "project", "run", "store"]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, project: Path) -> str | None:
    """None for the project's SQLite file; else a PostgreSQL URL set in blockbook.toml."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    (project / "blockbook.toml").write_text(f'[store]\nurl = "{url}"\n', encoding="utf-8")
    return url
