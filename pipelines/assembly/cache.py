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
from pipelines.assembly.includes import declared_includes
from pipelines.assembly.pipeline import Pipeline, assemble
from pipelines.assembly.project import notebook_files

FolderSignature = tuple[tuple[str, int, int], ...]
"""(file name, modification time in ns, size) of each file assembly reads; included notebooks
of other folders by their path."""


def folder_signature(folder: Path, included: tuple[Path, ...] = ()) -> FolderSignature:
    """Changes when a notebook or pipeline.toml of `folder`, or one of the `included` notebooks
    of other folders, is edited, added or removed."""
    files = [*notebook_files(folder), folder / PIPELINE_FILE]
    return tuple(
        (path.name, stat.st_mtime_ns, stat.st_size)
        for path in files
        if (stat := _stat(path)) is not None
    ) + tuple(
        (str(path), stat.st_mtime_ns, stat.st_size)
        for path in included
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
            with self._lock:
                cached = self._assembled.get(folder)
            if cached is not None:
                signature = folder_signature(folder, cached.pipeline.watched)
                if cached.signature == signature:
                    return cached.pipeline
            # Taken before assembling: a file saved meanwhile changes the signature, so the
            # next call assembles again instead of keeping a pipeline older than the files.
            # The included notebooks are those pipeline.toml names now (an edit of it after
            # this look changes its own entry of the signature).
            signature = folder_signature(folder, declared_includes(folder))
            pipeline = assemble(folder)
            with self._lock:
                self._assembled[folder] = _Assembled(signature, pipeline)
            return pipeline


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):  # an `include` may point anywhere
        return None
