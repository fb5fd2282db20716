"""`pipeline.toml` and `blockbook.toml`: validated, with unknown keys reported where they stand."""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.errors import Location, Problem, ProblemKind

PIPELINE_FILE = "pipeline.toml"
PROJECT_FILE = "blockbook.toml"

ParamValue = bool | int | float | str | dt.date | dt.datetime


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PipelineConfig(_Strict):
    description: str = ""
    params: dict[str, ParamValue] = Field(default_factory=dict)
    concurrency: Annotated[int, Field(ge=1)] | None = None
    """At most this many notebooks of one run execute at once (default: the CPU count)."""


class StoreConfig(_Strict):
    url: str | None = None


class ConnectionConfig(_Strict):
    url: str


class ProjectConfig(_Strict):
    store: StoreConfig = Field(default_factory=StoreConfig)
    connections: dict[str, ConnectionConfig] = Field(default_factory=dict)


def load_pipeline_config(
    folder: Path, relative_name: str = PIPELINE_FILE
) -> tuple[PipelineConfig, list[Problem]]:
    """Read `folder/pipeline.toml`; a missing file means defaults, a bad one means problems."""
    return _load(folder / PIPELINE_FILE, relative_name, PipelineConfig)


def load_project_config(root: Path) -> tuple[ProjectConfig, list[Problem]]:
    return _load(root / PROJECT_FILE, PROJECT_FILE, ProjectConfig)


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def _load(file: Path, relative: str, model: type[ConfigT]) -> tuple[ConfigT, list[Problem]]:
    if not file.is_file():
        return model(), []
    try:
        text = file.read_text(encoding="utf-8-sig")  # editors on Windows add a BOM
    except (OSError, UnicodeDecodeError) as exc:
        return model(), [
            _problem(relative, None, f"cannot read the file: {exc}", "save it as UTF-8")
        ]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or _line_from_message(str(exc))
        return model(), [_problem(relative, line, f"not valid TOML: {exc}", "fix the TOML syntax")]
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return model(), _problems_from(relative, text, exc.errors())


def _problems_from(relative: str, text: str, errors: list[Any]) -> list[Problem]:
    problems: list[Problem] = []
    reported_params: set[str] = set()
    for error in errors:
        location = [str(part) for part in error["loc"]]
        if location[0] == "params" and len(location) > 2:
            # One complaint per parameter, not one per member of the allowed-types union.
            name = location[1]
            if name not in reported_params:
                reported_params.add(name)
                problems.append(
                    _problem(
                        relative,
                        _line_of_key(text, location[:2]),
                        f"`params.{name}`: parameters are strings, numbers, booleans, dates "
                        "or datetimes",
                        "give it a single value of one of those types",
                    )
                )
            continue
        problems.append(_from_validation(relative, text, error))
    return problems


def _from_validation(relative: str, text: str, error: Any) -> Problem:
    path = [str(part) for part in error["loc"]]
    dotted = ".".join(path)
    line = _line_of_key(text, path)
    if error["type"] == "extra_forbidden":
        return _problem(
            relative,
            line,
            f"unknown key `{dotted}`",
            "remove it or check its spelling; see the README for the keys Blockbook reads",
        )
    return _problem(relative, line, f"`{dotted}`: {error['msg']}", "correct the value")


def _problem(relative: str, line: int | None, message: str, hint: str) -> Problem:
    return Problem(ProblemKind.BAD_CONFIG, message, Location(relative, line=line), hint)


def _line_from_message(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None


def _line_of_key(text: str, path: list[str]) -> int | None:
    """Best-effort line of a dotted key: the key's line inside its table, else the table's."""
    if not path:
        return None
    *tables, key = path
    table = ".".join(tables)
    in_table = not tables
    table_line: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            name = stripped.strip("[] ")
            if name == ".".join(path) or name.startswith(".".join(path) + "."):
                return number  # the key is itself a table: `[paramz]`, `[[paramz]]`, `[a.b]`
            in_table = name == table
            if in_table:
                table_line = number
            continue
        if in_table and re.match(rf'["\']?{re.escape(key)}["\']?\s*[=.]', stripped):
            return number
        if not tables and re.match(rf"{re.escape(path[0])}\s*[=.]", stripped):
            return number
    return table_line
