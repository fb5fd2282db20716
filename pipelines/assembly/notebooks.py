"""Reading notebooks: a malformed file yields problems for that file, never an exception.

Parsing goes through nbformat's reader without full JSON-schema validation: assembly reads
every notebook of a pipeline on each command, and the checks that matter to Blockbook (version,
cell structure, cell ids) are cheaper to make directly and give better messages.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from nbformat.reader import NotJSONError, parse_json

from pipelines.errors import Location, Problem, ProblemKind

SAVE_HINT = "open and save it in JupyterLab 4 (or run `jupyter nbconvert --to notebook --inplace`)"


@dataclass(frozen=True, slots=True)
class CodeCell:
    index: int
    """1-based position among all cells of the notebook, as a person counts them."""
    cell_id: str
    source: str


@dataclass(frozen=True, slots=True)
class NotebookFile:
    path: str
    """Path relative to the pipeline folder, with forward slashes."""
    code_cells: tuple[CodeCell, ...]
    kernel: str | None = None
    """The kernelspec name its metadata names (the kernel JupyterLab runs it with), if any."""


def read_notebook(file: Path, relative: str) -> tuple[NotebookFile | None, list[Problem]]:
    """Read one notebook; on failure return None and the reasons."""
    location = Location(relative)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [_bad(location, f"cannot read the notebook: {exc}", "check the file")]
    try:
        # Only the JSON step of nbformat's reader: its version conversion fails with internal
        # errors (`'list' object has no attribute 'get'`) on JSON that isn't a notebook, and
        # `_check_structure` makes every check Blockbook needs with messages that say what's wrong.
        raw = parse_json(text)  # type: ignore[no-untyped-call]
    except NotJSONError as exc:
        return None, [_json_problem(relative, exc)]
    except RecursionError:
        return None, [_bad(location, "not a notebook: the JSON is nested too deeply", SAVE_HINT)]
    return _check_structure(raw, relative)


def _check_structure(raw: Any, relative: str) -> tuple[NotebookFile | None, list[Problem]]:
    location = Location(relative)
    if not isinstance(raw, dict):
        return None, [_bad(location, "not a notebook: the JSON is not an object", SAVE_HINT)]
    if "nbformat" not in raw:
        return None, [
            _bad(location, "not a notebook: the JSON has no `nbformat` version", SAVE_HINT)
        ]
    major, minor = raw.get("nbformat"), raw.get("nbformat_minor")
    if major != 4 or not isinstance(minor, int):
        return None, [
            _bad(
                location,
                f"unsupported notebook format {major}.{minor}; Blockbook reads nbformat 4.5+",
                SAVE_HINT,
            )
        ]
    cells = raw.get("cells")
    if not isinstance(cells, list):
        return None, [_bad(location, "not a notebook: `cells` is missing or not a list", SAVE_HINT)]
    problems: list[Problem] = []
    code_cells: list[CodeCell] = []
    seen_ids: dict[str, int] = {}
    for position, cell in enumerate(cells, start=1):
        here = Location(relative, position)
        if not isinstance(cell, dict) or not isinstance(cell.get("cell_type"), str):
            problems.append(_bad(here, "malformed cell: no `cell_type`", SAVE_HINT))
            continue
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            source = "".join(source)
        if not isinstance(source, str):
            problems.append(_bad(here, "malformed cell: `source` is not text", SAVE_HINT))
            continue
        cell_id = cell.get("id")
        if not isinstance(cell_id, str) or not cell_id:
            problems.append(
                _bad(
                    here,
                    f"cell has no id (notebook format 4.{minor}); Blockbook needs 4.5+ cell ids",
                    SAVE_HINT,
                )
            )
            continue
        if not _valid_cell_id(cell_id):
            problems.append(
                _bad(
                    here,
                    f"cell id `{cell_id}` is not a valid nbformat cell id (1 to 64 letters, "
                    "digits, `-` or `_`); a run notebook with it cannot be written",
                    "delete the `id` of that cell from the JSON and re-save in JupyterLab (it "
                    "gives the cell a new id), or edit the id to match",
                )
            )
            continue
        if cell_id in seen_ids:
            problems.append(
                _bad(
                    here,
                    f"cell id `{cell_id}` is also the id of cell {seen_ids[cell_id]}",
                    "cell ids must be unique: delete the cell and paste its code into a new one, "
                    "or remove the duplicate `id` from the JSON and re-save in JupyterLab",
                )
            )
            continue
        seen_ids[cell_id] = position
        if cell["cell_type"] == "code":
            code_cells.append(CodeCell(position, cell_id, source))
    if problems:
        return None, problems
    return NotebookFile(relative, tuple(code_cells), _kernel_name(raw)), []


@functools.cache
def _cell_id_rule() -> tuple[re.Pattern[str], int, int]:
    """nbformat's own rule for cell ids, from its 4.5 schema: the one `nbformat.write` (and so
    every run notebook) enforces."""
    schema_file = resources.files("nbformat") / "v4" / "nbformat.v4.5.schema.json"
    rule = json.loads(schema_file.read_text(encoding="utf-8"))["definitions"]["cell_id"]
    return re.compile(rule["pattern"]), int(rule["minLength"]), int(rule["maxLength"])


def _valid_cell_id(cell_id: str) -> bool:
    pattern, shortest, longest = _cell_id_rule()
    # `search` as JSON Schema does; the pattern is anchored with ^ and $ (and $ would accept a
    # trailing newline, which the schema's ECMAScript regex does not).
    return (
        shortest <= len(cell_id) <= longest
        and "\n" not in cell_id
        and bool(pattern.search(cell_id))
    )


def _kernel_name(raw: dict[str, Any]) -> str | None:
    metadata = raw.get("metadata")
    spec = metadata.get("kernelspec") if isinstance(metadata, dict) else None
    name = spec.get("name") if isinstance(spec, dict) else None
    return name if isinstance(name, str) and name else None


def _json_problem(relative: str, exc: NotJSONError) -> Problem:
    cause = exc.__cause__ or exc.__context__
    while cause is not None and not isinstance(cause, json.JSONDecodeError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return _bad(Location(relative), "not valid notebook JSON", SAVE_HINT)
    return _bad(
        Location(relative, line=cause.lineno),
        f"not valid notebook JSON: {cause.msg} (column {cause.colno})",
        "fix the JSON by hand or restore the file from version control",
    )


def _bad(location: Location, message: str, hint: str) -> Problem:
    return Problem(ProblemKind.BAD_NOTEBOOK, message, location, hint)
