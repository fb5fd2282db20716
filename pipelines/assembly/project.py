"""The project: its root folder, the pipelines under it, and resolving a PIPELINE argument."""

from __future__ import annotations

import difflib
import fnmatch
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipelines.assembly.config import PIPELINE_FILE, PROJECT_FILE, load_project_config
from pipelines.assembly.header import is_block_cell
from pipelines.errors import AmbiguousPipeline, PipelineNotFound
from pipelines.rundir.layout import STATE_DIR

_SKIPPED_DIRS = frozenset(
    {STATE_DIR, ".git", ".ipynb_checkpoints", "node_modules", "__pycache__", "site-packages"}
)


@dataclass(frozen=True, slots=True)
class PipelineRef:
    name: str
    folder: Path


@dataclass(frozen=True, slots=True)
class ProjectRoot:
    """Where the project root is and what decided it: `blockbook.toml`, `.git`, or (`""`) no
    marker at all, in which case it is only a guess worth telling the person about."""

    folder: Path
    marker: str

    @property
    def note(self) -> str | None:
        """A one-line note when no marker file decided the root, saying how to pin it."""
        if self.marker:
            return None
        return (
            f"project root: {self.folder} (no {PROJECT_FILE} or .git found; "
            f"create {self.folder / PROJECT_FILE} to pin it)"
        )


def locate_root(start: Path | None = None) -> ProjectRoot:
    """The nearest folder with blockbook.toml, else the git root, else - with neither - the
    parent of `start` when `start` is a pipeline folder, else `start` itself.

    The pipeline-folder step makes every entry point agree without a marker: a notebook kernel
    starts inside `green_taxi/`, `blockbook run green_taxi` starts in its parent, and both must
    see the same dev area and run store. A few stat calls, so callers may ask every time.
    """
    here = (start or Path.cwd()).resolve()
    candidates = [here, *here.parents]
    for folder in candidates:
        if (folder / PROJECT_FILE).is_file():
            return ProjectRoot(folder, PROJECT_FILE)
    for folder in candidates:
        if (folder / ".git").exists():
            return ProjectRoot(folder, ".git")
    if here.parent != here and is_pipeline_folder(here):
        return ProjectRoot(here.parent, "")
    return ProjectRoot(here, "")


def find_root(start: Path | None = None) -> Path:
    """The project root for `start` (default: the working folder); see `locate_root`."""
    return locate_root(start).folder


def notebook_files(folder: Path) -> list[Path]:
    """The notebooks of a pipeline: `*.ipynb` directly in its folder, sorted by name."""
    return sorted(path for path in folder.glob("*.ipynb") if path.is_file())


def is_pipeline_folder(folder: Path) -> bool:
    """A folder with pipeline.toml, or with a notebook that has at least one block cell."""
    if (folder / PIPELINE_FILE).is_file():
        return True
    return any(_has_block_cell(path) for path in notebook_files(folder))


def list_pipelines(root: Path) -> list[PipelineRef]:
    """Pipeline folders under `root`, in walk order, leaving out what `exclude` in
    blockbook.toml names and what the repository's .gitignore ignores (fixtures, build output)."""
    config, _ = load_project_config(root)  # a bad file is reported by the commands reading it
    candidates: list[str] = []
    for folder, dirs, _files in os.walk(root):
        relative = Path(folder).relative_to(root).as_posix()
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in _SKIPPED_DIRS
            and not d.startswith(".")
            and not (Path(folder, d) / "pyvenv.cfg").exists()
            and not is_excluded(_join(relative, d), config.exclude)
        )
        candidates.append(relative)
    ignored = git_ignored(root, candidates)
    return [
        PipelineRef(path.name, path)
        for relative in candidates
        if not _under_any(relative, ignored)
        and is_pipeline_folder(path := root if relative == "." else root / relative)
    ]


def is_excluded(relative: str, patterns: tuple[str, ...]) -> bool:
    """Whether a folder (posix path relative to the root) matches an `exclude` glob."""
    return any(fnmatch.fnmatchcase(relative, pattern) for pattern in patterns)


def git_ignored(root: Path, folders: list[str]) -> frozenset[str]:
    """The folders (relative to `root`) that git ignores. One `git check-ignore` for all of
    them keeps listing fast; outside a work tree (or without git) the root's .gitignore is
    read with `pathspec` when it is installed, else nothing is ignored."""
    asked = [f"{folder}/" for folder in folders if folder != "."]  # "/": directory patterns
    if not asked:
        return frozenset()
    found = _check_ignore(root, asked)
    return _gitignore_file(root, asked) if found is None else found


def _check_ignore(root: Path, asked: list[str]) -> frozenset[str] | None:
    """None when git can't answer: not installed, or `root` is not in a work tree."""
    try:
        done = subprocess.run(
            ["git", "check-ignore", "--stdin", "-z"],
            cwd=root,
            input="\0".join(asked) + "\0",
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode not in (0, 1):  # 1: nothing ignored; 128: not a git work tree
        return None
    return frozenset(path.rstrip("/") for path in done.stdout.split("\0") if path)


def _gitignore_file(root: Path, asked: list[str]) -> frozenset[str]:
    try:
        import pathspec  # optional: git itself is the reference when there is a repository
    except ImportError:
        return frozenset()
    try:
        lines = (root / ".gitignore").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return frozenset()
    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    return frozenset(path.rstrip("/") for path in asked if spec.match_file(path))


def _join(relative: str, name: str) -> str:
    return name if relative == "." else f"{relative}/{name}"


def _under_any(relative: str, folders: frozenset[str]) -> bool:
    if not folders or relative == ".":
        return False
    parts = relative.split("/")
    return any("/".join(parts[:end]) in folders for end in range(1, len(parts) + 1))


def resolve_pipeline(argument: str, root: Path) -> PipelineRef:
    """PIPELINE on the command line: a folder path, or the name of a pipeline under the root."""
    path = Path(argument).expanduser()
    if path.is_dir():
        folder = path.resolve()
        return PipelineRef(folder.name, folder)
    known = list_pipelines(root)
    matches = [ref for ref in known if ref.name == argument]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        places = ", ".join(str(ref.folder.relative_to(root)) for ref in matches)
        raise AmbiguousPipeline(
            f"several pipelines are named `{argument}`: {places}",
            hint="pass the folder path instead of the name",
        )
    names = [ref.name for ref in known]
    guess = difflib.get_close_matches(argument, names, n=1)
    suggestion = f"did you mean `{guess[0]}`? " if guess else ""
    listing = ", ".join(names) if names else "none found"
    raise PipelineNotFound(
        f"no pipeline folder or pipeline named `{argument}` under {root}",
        hint=f"{suggestion}pipelines here: {listing}; `blockbook list` shows them",
    )


def _has_block_cell(path: Path) -> bool:
    """Cheap check used for listing: a `%%block` line anywhere in the raw JSON text."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if "%%block" not in text:
        return False
    # Confirm on parsed cells so a markdown cell that mentions the magic doesn't count.
    try:
        cells = json.loads(text).get("cells", [])
    except (ValueError, AttributeError, RecursionError):
        return True  # a broken notebook that mentions blocks: list it so validate reports it
    if not isinstance(cells, list):
        return True
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(str(line) for line in source)
        if cell.get("cell_type") == "code" and is_block_cell(str(source)):
            return True
    return False
