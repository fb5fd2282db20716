"""`include = [...]` in pipeline.toml: notebooks of other folders that a pipeline runs as its own.

An included notebook keeps its place on disk: its blocks are located at its path relative to
the pipeline folder (`../common/clean.ipynb`), its kernel starts in its own folder, and a run
only reads it (run notebooks are copies under the run folder, named flat by
`rundir.layout.run_notebook_stem`, so two notebooks must not share that name).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipelines.assembly.config import PIPELINE_FILE, load_pipeline_config
from pipelines.assembly.config import _line_of_key as line_of_key
from pipelines.errors import Location, Problem, ProblemKind
from pipelines.rundir.layout import run_notebook_stem

NOTEBOOK_SUFFIX = ".ipynb"


@dataclass(frozen=True, slots=True)
class Include:
    entry: str
    """As written in pipeline.toml."""
    relative: str
    """The notebook's path relative to the pipeline folder, normalised, with forward slashes:
    what its blocks' locations and the run's records name it by."""
    file: Path


def resolve_includes(
    folder: Path, entries: Sequence[str], own_notebooks: Sequence[Path], toml_text: str
) -> tuple[list[Include], list[Problem]]:
    """The included notebooks that exist and can be part of the pipeline at `folder`, and a
    problem located at its pipeline.toml line for each entry that can't."""
    includes: list[Include] = []
    problems: list[Problem] = []
    taken = {run_notebook_stem(path.name): path.name for path in own_notebooks}
    for entry in entries:
        line = _line_of_entry(toml_text, entry)
        found = _check(folder, entry)
        if not isinstance(found, Include):
            what, hint = found
            problems.append(_problem(entry, what, line, hint))
            continue
        include = found
        stem = run_notebook_stem(include.relative)
        if include.file.parent == folder:
            problems.append(
                _problem(
                    entry,
                    "is one of the pipeline's own notebooks already",
                    line,
                    "remove it from `include`: every notebook in the pipeline folder is part of "
                    "the pipeline",
                )
            )
        elif stem in taken:
            other = taken[stem]
            if other == include.relative:
                problems.append(_problem(entry, "is listed twice", line, "list it once"))
            else:
                problems.append(
                    _problem(
                        entry,
                        f"clashes with `{other}`: both would be run as `{stem}{NOTEBOOK_SUFFIX}` "
                        "(run notebooks of included ones are named after their folders and name)",
                        line,
                        "rename one of the two notebooks",
                    )
                )
        else:
            taken[stem] = include.relative
            includes.append(include)
    return includes, problems


def include_paths(folder: Path, entries: Sequence[str]) -> tuple[Path, ...]:
    """Every file the entries point at, whether or not it exists or is valid: what the assembly
    cache watches, so a notebook that appears, changes or goes away is noticed."""
    return tuple(folder / entry for entry in entries if entry and not _absolute(entry))


def declared_includes(folder: Path) -> tuple[Path, ...]:
    """`include_paths` of the pipeline at `folder` as its pipeline.toml says now; none when
    the file has errors (assembling the pipeline reports them)."""
    config, _ = load_pipeline_config(folder)
    return include_paths(folder, config.include)


def _check(folder: Path, entry: str) -> Include | tuple[str, str]:
    """The include, or (what is wrong, how to fix it)."""
    if not entry.strip():
        return ("is empty", "give the notebook's path relative to the pipeline folder")
    if _absolute(entry):
        return (
            "is not relative to the pipeline folder",
            'write it relative to the pipeline folder, e.g. "../common/clean.ipynb"',
        )
    if not entry.endswith(NOTEBOOK_SUFFIX):
        return (
            "is not a notebook (a `.ipynb` file)",
            "include notebooks only; code shared as a module can be imported by a block",
        )
    file = (folder / entry).resolve()
    if not file.exists():
        return (
            f"does not exist (looked for {file})",
            f"check the path: it is relative to the pipeline folder {folder}",
        )
    if not file.is_file():
        return ("is not a notebook file", "include a `.ipynb` file, not a folder")
    relative = PurePosixPath(Path(os.path.relpath(file, folder)).as_posix())
    return Include(entry, str(relative), file)


def _absolute(entry: str) -> bool:
    return entry.startswith(("/", "~", "\\")) or bool(re.match(r"[A-Za-z]:[\\/]", entry))


def _line_of_entry(text: str, entry: str) -> int | None:
    """The line of an array item: the first line, at or after the `include` key, that quotes
    it; else the key's own line."""
    key_line = line_of_key(text, ["include"])
    if key_line is None:
        return None
    quoted = (f'"{entry}"', f"'{entry}'")
    lines = text.splitlines()
    for number in range(key_line, len(lines) + 1):
        if any(form in lines[number - 1] for form in quoted):
            return number
    return key_line


def _problem(entry: str, what: str, line: int | None, hint: str) -> Problem:
    return Problem(
        ProblemKind.BAD_CONFIG,
        f"`include` entry {entry!r} {what}",
        Location(PIPELINE_FILE, line=line),
        hint,
    )
