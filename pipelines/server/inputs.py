"""What a REST request asks for: JSON bodies and query values read into frozen values.

Everything here raises `InvalidInputError` (400) for input it cannot read, with the field named,
so a bad request never reaches `Project` and never ends as a 500.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.choices import RunChoices
from pipelines.errors import InvalidInputError
from pipelines.params import ParamValue, parse_value
from pipelines.status import RunStatus

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
_RUN_FIELDS = frozenset({"params", "only", "resume", "force"})


@dataclass(frozen=True, slots=True)
class RunRequest:
    """The body of POST pipelines/{name}/runs."""

    params: Mapping[str, ParamValue]
    choices: RunChoices = RunChoices()


@dataclass(frozen=True, slots=True)
class RunsQuery:
    """The query of GET runs: filters and a page (`before`: the last run id of the page before)."""

    pipeline: str | None = None
    status: RunStatus | None = None
    limit: int = DEFAULT_LIMIT
    before: str | None = None


def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object; an empty body is `{}`."""
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidInputError(
            f"the request body is not JSON: {exc}", hint='send a JSON object such as {"params": {}}'
        ) from None
    if not isinstance(data, dict):
        raise InvalidInputError(
            f"the request body is a JSON {type(data).__name__}, not an object",
            hint='send a JSON object such as {"params": {}}',
        )
    return data


def run_request(body: bytes) -> RunRequest:
    data = json_object(body)
    unknown = sorted(set(data) - _RUN_FIELDS)
    if unknown:
        # A misspelt field would otherwise start a run that ignores it.
        raise InvalidInputError(
            f"unknown field(s) in the run request: {', '.join(unknown)}",
            hint=f"a run request has {', '.join(sorted(_RUN_FIELDS))}",
        )
    force = data.get("force", False)
    forced = _names(force, "force") if isinstance(force, list) else ()
    choices = RunChoices(
        only=_names(data.get("only", []), "only"),
        resume=_optional_text(data.get("resume"), "resume"),
        force=_flag(force, "force", 'or a list of block names, as in {"force": ["clean"]}')
        if not isinstance(force, list)
        else False,
        force_blocks=forced,
    )
    return RunRequest(params=_params(data.get("params", {})), choices=choices)


def runs_query(arguments: Mapping[str, list[bytes]]) -> RunsQuery:
    """GET runs?pipeline=&status=&limit=&before= (tornado's `request.query_arguments`)."""
    values = {
        name: _single(name, raw)
        for name, raw in arguments.items()
        if not _is_cache_buster(name, raw)
    }
    unknown = sorted(set(values) - {"pipeline", "status", "limit", "before"})
    if unknown:
        raise InvalidInputError(
            f"unknown query parameter(s): {', '.join(unknown)}",
            hint="runs takes pipeline, status, limit and before",
        )
    return RunsQuery(
        pipeline=values.get("pipeline") or None,
        status=_status(values["status"]) if values.get("status") else None,
        limit=_limit(values["limit"]) if values.get("limit") else DEFAULT_LIMIT,
        before=values.get("before") or None,
    )


# ---- fields ------------------------------------------------------------------------------


def _params(value: Any) -> dict[str, ParamValue]:
    if not isinstance(value, dict):
        raise InvalidInputError(
            "`params` must be an object of parameter names to values",
            hint='for example {"params": {"day": "2024-01-31", "limit": 10}}',
        )
    return {_param_name(name): _param_value(name, item) for name, item in value.items()}


def _param_name(name: str) -> str:
    if not name.isidentifier():
        raise InvalidInputError(
            f"bad parameter name `{name}`", hint="parameter names are Python identifiers"
        )
    return name


def _param_value(name: str, value: Any) -> ParamValue:
    """JSON numbers and booleans as they are; text typed as `-p name=text` types it, since the
    runner receives parameters as that text: "2024-01-31" is a date there, whatever we keep."""
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        parsed = parse_value(value)
        return parsed if isinstance(parsed, dt.date) else value
    raise InvalidInputError(
        f"parameter `{name}` is a JSON {type(value).__name__}",
        hint="parameter values are strings, numbers or booleans",
    )


def _names(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInputError(
            f"`{field}` must be a list of block names", hint=f'for example {{"{field}": ["load"]}}'
        )
    return tuple(value)


def _flag(value: Any, field: str, otherwise: str = "") -> bool:
    if isinstance(value, bool):
        return value
    hint = f'for example {{"{field}": true}}' + (f", {otherwise}" if otherwise else "")
    raise InvalidInputError(f"`{field}` must be true or false", hint=hint)


def _optional_text(value: Any, field: str) -> str | None:
    if value is None or (isinstance(value, str) and value):
        return value
    raise InvalidInputError(f"`{field}` must be a run id (text)", hint="GET runs lists run ids")


def _is_cache_buster(name: str, raw: list[bytes]) -> bool:
    """JupyterLab's `ServerConnection` appends `&<milliseconds>` (a bare key) to GET requests
    by default; any frontend extension may send one, so it is no misspelt parameter."""
    return name.isdigit() and raw == [b""]


def _single(name: str, raw: list[bytes]) -> str:
    if len(raw) != 1:
        raise InvalidInputError(
            f"query parameter `{name}` is given {len(raw)} times", hint="give it once"
        )
    try:
        return raw[0].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"query parameter `{name}` is not UTF-8", hint="encode it as UTF-8"
        ) from None


def _status(text: str) -> RunStatus:
    try:
        return RunStatus(text)
    except ValueError:
        raise InvalidInputError(
            f"unknown run status `{text}`",
            hint=f"statuses: {', '.join(status.value for status in RunStatus)}",
        ) from None


def _limit(text: str) -> int:
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInputError(
            f"`limit` must be a whole number from 1 to {MAX_LIMIT}, not `{text}`",
            hint="page on with `before` for more",
        )
    return limit
