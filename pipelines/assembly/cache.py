"""Assembled pipelines kept while their files stay the same.

A kernel running blocks by hand asks for its pipeline on every execution, and a long-lived
process (the server) for many folders at once; assembling reads and analyzes every notebook,
so each folder is assembled again only when a file assembly reads has changed.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from pipelines.assembly.config import PIPELINE_FILE
from pipelines.assembly.pipeline import Pipeline, assemble
from pipelines.assembly.project import notebook_files

FolderSignature = tuple[tuple[str, int, int], ...]
"""(file name, modification time in ns, size) of each file assembly reads."""


def folder_signature(folder: Path) -> FolderSignature:
    """Changes when a notebook or pipeline.toml of `folder` is edited, added or removed."""
    files = [*notebook_files(folder), folder / PIPELINE_FILE]
    return tuple(
        (path.name, stat.st_mtime_ns, stat.st_size)
        for path in files
        if (stat := _stat(path)) is not None
    )


@dataclass(frozen=True, slots=True)
class _Assembled:
    signature: FolderSignature
    pipeline: Pipeline


class AssemblyCache:
    """`get(folder)`: the folder's pipeline as saved on disk, the same object until one of its
    files changes.

    Safe to share between threads: one folder is assembled by one thread at a time (the others
    wait for its result), different folders at the same time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        """Guards the two dicts; never held while assembling."""
        self._folder_locks: dict[Path, threading.Lock] = {}
        self._assembled: dict[Path, _Assembled] = {}

    def get(self, folder: Path) -> Pipeline:
        folder = folder.resolve()
        with self._lock:
            folder_lock = self._folder_locks.setdefault(folder, threading.Lock())
        with folder_lock:
            # Taken before assembling: a file saved meanwhile changes the signature, so the
            # next call assembles again instead of keeping a pipeline older than the files.
            signature = folder_signature(folder)
            with self._lock:
                cached = self._assembled.get(folder)
            if cached is not None and cached.signature == signature:
                return cached.pipeline
            pipeline = assemble(folder)
            with self._lock:
                self._assembled[folder] = _Assembled(signature, pipeline)
            return pipeline


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None
