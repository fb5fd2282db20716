"""Which pipelines under a root were added, removed or edited: cheap enough to ask every few
seconds (the server does, to tell its frontend when to list pipelines again).

Listing pipelines (`project.list_pipelines`) reads notebooks and asks git what it ignores. A
look here only stats the files assembly reads, folder by folder (notebooks and pipeline.toml,
`cache.folder_signature`'s fields), and lists again only when a change can change the listing:
a folder that became or stopped being a pipeline folder, or a change at the root (its
blockbook.toml and .gitignore say what the listing leaves out).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from pipelines.assembly.cache import FolderSignature
from pipelines.assembly.config import PIPELINE_FILE, PROJECT_FILE, load_project_config
from pipelines.assembly.includes import declared_includes
from pipelines.assembly.project import is_excluded, is_pipeline_folder

TreeSignature = dict[Path, FolderSignature]
"""Folder -> its signature, for each folder under the root that holds a file assembly reads."""

_SKIPPED = frozenset({"node_modules", "__pycache__", "site-packages"})
"""Besides hidden folders (`.git`, `.blockbook`, checkpoints) and virtual environments, as
`list_pipelines` walks: walking more would cost time, never give a wrong answer."""
_ROOT_FILES = frozenset({PROJECT_FILE, ".gitignore"})


def tree_signature(root: Path) -> TreeSignature:
    """The notebooks and pipeline.toml of every folder `list_pipelines` walks, and the root's
    blockbook.toml and .gitignore: (file name, modification time in ns, size) of each."""
    exclude = load_project_config(root)[0].exclude
    found: TreeSignature = {}
    pending = [(root, ".")]
    while pending:
        folder, relative = pending.pop()
        files: list[tuple[str, int, int]] = []
        for entry in _entries(folder):
            name = entry.name
            if entry.is_dir(follow_symlinks=False):  # as os.walk: symbolic links not followed
                inner = name if relative == "." else f"{relative}/{name}"
                if _walked(Path(entry.path), name, inner, exclude):
                    pending.append((Path(entry.path), inner))
            elif _read_by_assembly(name, at_root=relative == ".") and entry.is_file():
                try:
                    stat = entry.stat()
                except OSError:  # removed while looking
                    continue
                files.append((name, stat.st_mtime_ns, stat.st_size))
        if files:
            found[folder] = tuple(sorted(files))
    return found


class PipelineChanges:
    """`look()`: the pipeline folders added, removed or edited since the last look.

    Not safe to share between threads: one caller looks at a time.
    """

    def __init__(self, root: Path, list_folders: Callable[[], Iterable[Path]]) -> None:
        self.root = root
        self._list = list_folders
        """The pipeline folders under the root, as the listing finds them."""
        self._files: TreeSignature | None = None
        self._pipelines: frozenset[Path] = frozenset()

    @property
    def started(self) -> bool:
        """Whether the first look, which changes are told against, was taken."""
        return self._files is not None

    def look(self) -> list[Path]:
        """The pipeline folders whose notebooks or pipeline.toml changed since the last look,
        and those that appeared or went away, sorted; none on the first look."""
        files = tree_signature(self.root)
        if self._files is None:
            self._files, self._pipelines = files, frozenset(self._list())
            return []
        if files == self._files:
            return []
        touched = {
            folder
            for folder in files.keys() | self._files.keys()
            if files.get(folder) != self._files.get(folder)
        }
        before = self._pipelines
        if self._listing_may_change(touched):
            self._pipelines = frozenset(self._list())
        self._files = files  # last: a listing that failed leaves the change for the next look
        # A folder can also enter or leave the listing untouched (blockbook.toml excludes it).
        changed = (touched & (before | self._pipelines)) | (before ^ self._pipelines)
        changed |= self._including(touched)
        return sorted(changed)

    def _including(self, folders: set[Path]) -> set[Path]:
        """The pipelines that include a notebook of one of `folders` (`include` in their
        pipeline.toml): a shared notebook edited changes each of them. The folder of shared
        notebooks may be listed as a pipeline itself (it has blocks), or not."""
        if not folders:
            return set()
        return {
            pipeline
            for pipeline in self._pipelines
            if any(path.resolve().parent in folders for path in declared_includes(pipeline))
        }

    def _listing_may_change(self, touched: set[Path]) -> bool:
        return any(
            folder == self.root or (folder in self._pipelines) != is_pipeline_folder(folder)
            for folder in touched
        )


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError:  # removed while looking, or not readable: nothing there to list
        return []


def _walked(path: Path, name: str, relative: str, exclude: tuple[str, ...]) -> bool:
    return (
        not name.startswith(".")
        and name not in _SKIPPED
        and not (path / "pyvenv.cfg").exists()
        and not is_excluded(relative, exclude)
    )


def _read_by_assembly(name: str, *, at_root: bool) -> bool:
    return name.endswith(".ipynb") or name == PIPELINE_FILE or (at_root and name in _ROOT_FILES)
