"""Fault-injection tests: real processes killed, paused and starved, real kernels, real stores.

The project, store, pipeline and run fixtures are the headless-run ones (tests/runs/conftest.py).
"""

from __future__ import annotations

from tests.runs.conftest import pipeline, project, run, store

__all__ = ["pipeline", "project", "run", "store"]
