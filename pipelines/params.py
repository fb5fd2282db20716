"""Run parameters: `-p key=value` parsing with types, defaults merging, and secret masking."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines.errors import InvalidInputError

ParamValue = bool | int | float | str | dt.date | dt.datetime

MASK = "********"
MIN_SECRET_LENGTH = 3
"""Shorter values are not masked in free text: masking "a" everywhere would garble it."""
_SECRET_NAME = re.compile(r"password|passwd|secret|token|key|credential", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s/]+)(?=@)")
_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?\Z")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


class ParameterError(InvalidInputError):
    """A `-p NAME=VALUE` that cannot be read."""


def is_secret(name: str) -> bool:
    """Names that look like credentials: their values never appear in notebooks, store or logs."""
    return bool(_SECRET_NAME.search(name))


def is_secret_param(name: str, value: object) -> bool:
    """A parameter to hide: a credential-like name, or a URL value that holds a password."""
    return is_secret(name) or (isinstance(value, str) and _URL_PASSWORD.search(value) is not None)


def parse_value(text: str) -> ParamValue:
    """Type a command-line value: bool, int, float, ISO date or datetime, else the string."""
    lowered = text.lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    if _DATE.match(text):
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            return text
    if _DATETIME.match(text):
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            return text
    return text


def parse_assignments(items: Iterable[str]) -> dict[str, ParamValue]:
    params: dict[str, ParamValue] = {}
    for item in items:
        name, separator, raw = item.partition("=")
        name = name.strip()
        if not separator or not name.isidentifier():
            raise ParameterError(
                f"bad parameter `{item}`",
                hint="write parameters as -p name=value, with a Python identifier as the name",
            )
        params[name] = parse_value(raw)
    return params


def merge(
    defaults: Mapping[str, ParamValue], overrides: Mapping[str, ParamValue]
) -> dict[str, ParamValue]:
    return {**defaults, **overrides}


def masked(params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy safe to show or store: secret-named values masked, URL passwords masked."""
    return {
        name: MASK if is_secret(name) else (mask_text(value) if isinstance(value, str) else value)
        for name, value in params.items()
    }


def secret_values(params: Mapping[str, Any]) -> list[str]:
    """The literal strings that must never be shown, longest first."""
    values = {str(v) for k, v in params.items() if is_secret(k) and str(v)}
    for value in params.values():
        if isinstance(value, str):
            values.update(match.group("secret") for match in _URL_PASSWORD.finditer(value))
    return sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask URL passwords and every given secret value inside free text."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


@dataclass(frozen=True, slots=True)
class Secrets:
    """A run's secret parameters and the literal strings to mask, worked out once per run."""

    params: Mapping[str, Any] = field(default_factory=dict)
    """Name -> real value of each parameter to hide (see `is_secret_param`)."""
    values: tuple[str, ...] = ()
    """The strings `mask` replaces, longest first."""

    @classmethod
    def of(cls, params: Mapping[str, Any], *, whole_values: bool = False) -> Secrets:
        """The secrets among `params`. `whole_values` also masks each secret parameter's whole
        value (the kernel's view: it only ever receives the secret parameters)."""
        hidden = {name: value for name, value in params.items() if is_secret_param(name, value)}
        values = set(secret_values(hidden))
        if whole_values:
            values.update(str(v) for v in hidden.values() if len(str(v)) >= MIN_SECRET_LENGTH)
        return cls(hidden, tuple(sorted(values, key=len, reverse=True)))

    def __bool__(self) -> bool:
        return bool(self.values)

    def mask(self, text: str) -> str:
        """`text` with URL passwords and every secret value masked."""
        return mask_text(text, self.values)


def json_value(value: Any) -> Any:
    """A parameter value as JSON holds it: dates and datetimes as ISO text."""
    return value.isoformat() if isinstance(value, dt.date) else value


def json_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {name: json_value(value) for name, value in params.items()}


def python_literal(value: ParamValue) -> str:
    """Source text that evaluates to `value` in a parameters cell."""
    if isinstance(value, dt.datetime):
        return f"datetime.datetime.fromisoformat({value.isoformat()!r})"
    if isinstance(value, dt.date):
        return f"datetime.date.fromisoformat({value.isoformat()!r})"
    return repr(value)
