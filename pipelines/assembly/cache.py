"""Assembled pipelines kept between calls, assembled again only when a file of theirs changed."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from pipelines.assembly.config import PIPELINE_FILE
from pipelines.assembly.pipeline import Pipeline, assemble
from pipelines.assembly.project import notebook_files

Signature = tuple[tuple[str, int, int], ...]


class AssemblyCache:
    """One assembled `Pipeline` per folder; thread-safe, for long-lived processes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Path, tuple[Signature, Pipeline]] = {}

    def get(self, folder: Path) -> Pipeline:
        folder = folder.resolve()
        signature = _signature(folder)
        with self._lock:
            entry = self._entries.get(folder)
            if entry is not None and entry[0] == signature:
                return entry[1]
        pipeline = assemble(folder)
        with self._lock:
            self._entries[folder] = (signature, pipeline)
        return pipeline


def _signature(folder: Path) -> Signature:
    """Names, modification times and sizes of the files assembly reads."""
    found: list[tuple[str, int, int]] = []
    for path in [*notebook_files(folder), folder / PIPELINE_FILE]:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            continue
        found.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(found)
