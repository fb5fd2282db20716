"""Run parameters: `-p key=value` parsing with types, defaults merging, and secret masking."""

from __future__ import annotations

import datetime as dt
import keyword
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from pipelines.errors import InvalidInputError

ParamValue = bool | int | float | str | dt.date | dt.datetime

MASK = "********"
MIN_SECRET_LENGTH = 3
"""Shorter values are not masked in free text: masking "a" everywhere would garble it."""
_SECRET_NAME = re.compile(r"password|passwd|secret|token|key|credential", re.IGNORECASE)
# A URL in free text: whatever follows "://" (a scheme in any case: `POSTGRESQL://` too), up to
# the next whitespace. Found with str.find, not a regex for the scheme: a scheme pattern is
# tried at every letter of a long base64 image in a cell's output.
_URL_MARK = "://"
_WHITESPACE = re.compile(r"\s")
_URL_LENGTH = 8192
"""How far after "://" free text is searched for a URL's password and query."""
# `user:password@` when a raw "/", "?" or "#" in the password ends the authority early: read it
# as SQLAlchemy's `make_url` does (the password runs to the first "@")...
_EARLY_USERINFO = re.compile(r"[^:/?#@\s]*:(?P<password>[^@\s]*)@")
_PASSWORD_LENGTH = 1024
"""How far past a "/" in a password its "@" is looked for (bounds the work per URL)."""
# ...unless what follows the colon is a port number (`https://host:443/path?mail=a@b`).
_PORT = re.compile(r"\d*(?:[/?#]|\Z)")
_QUERY_ITEM = re.compile(r"(?P<key>[^=&#\s]+)=(?P<value>[^&#\s]*)")
_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?\Z")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


# Names the generated cells bind or read around the user's parameters: the parameters cell
# (`import datetime`, which every date parameter's literal needs, and the run context), the setup
# cell (`kernel_magics`, `%load_ext` -> `get_ipython()`, the `@test` decorator it defines) and the
# debug notebook's setup cell. A parameter with one of them would break those cells or be lost.
GENERATED_NAMES = frozenset(
    {"datetime", "kernel_magics", "get_ipython", "test", "os", "Path", "ArtifactStore", "warnings"}
)
_GENERATED_PREFIXES = ("_blockbook", "__blockbook")
NAME_HINT = (
    "name parameters with Python identifiers (letters, digits, underscores; not a keyword), "
    f"other than {', '.join(sorted(GENERATED_NAMES))} and names starting with _blockbook"
)
VALUE_HINT = "give a finite number, or quote it to pass the text"


class ParameterError(InvalidInputError):
    """A `-p NAME=VALUE` that cannot be read, or a parameter a run notebook cannot hold."""


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a parameter (the parameters cell assigns it), or None."""
    if not name.isidentifier():
        return f"`{name}` is not a Python identifier"
    if keyword.iskeyword(name):
        return f"`{name}` is a Python keyword"
    if name in GENERATED_NAMES or name.startswith(_GENERATED_PREFIXES):
        return f"`{name}` is a name the generated run notebook cells use"
    return None


def value_problem(value: object) -> str | None:
    """Why `value` cannot be a parameter's value, or None. `repr` of inf and nan is no Python
    literal: the parameters cell would fail with a NameError."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    return None


def check_params(params: Mapping[str, Any], where: str = "parameter") -> None:
    """Raise ParameterError for the first name or value a run notebook cannot hold; `where`
    says where the parameters came from, for the message."""
    for name, value in params.items():
        problem = name_problem(name)
        if problem is not None:
            raise ParameterError(f"bad {where} `{name}`: {problem}", hint=NAME_HINT)
        problem = value_problem(value)
        if problem is not None:
            raise ParameterError(f"bad {where} `{name}`: {problem}", hint=VALUE_HINT)


def is_secret(name: str) -> bool:
    """Names that look like credentials: their values never appear in notebooks, store or logs."""
    return bool(_SECRET_NAME.search(name))


def is_secret_param(name: str, value: object) -> bool:
    """A parameter to hide: a credential-like name, or a URL value that holds a password."""
    return is_secret(name) or (isinstance(value, str) and bool(url_secrets(value)))


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
    """`-p name=value` options as typed parameters; ParameterError names the bad option."""
    params: dict[str, ParamValue] = {}
    for item in items:
        name, separator, raw = item.partition("=")
        name = name.strip()
        if not separator:
            raise ParameterError(
                f"bad parameter `-p {item}`: no `=`",
                hint="write parameters as -p name=value, with a Python identifier as the name",
            )
        value = parse_value(raw)
        problem = name_problem(name)
        hint = NAME_HINT
        if problem is None:
            problem, hint = value_problem(value), VALUE_HINT
        if problem is not None:
            raise ParameterError(f"bad parameter `-p {item}`: {problem}", hint=hint)
        params[name] = value
    return params


def merge(
    defaults: Mapping[str, ParamValue], overrides: Mapping[str, ParamValue]
) -> dict[str, ParamValue]:
    """The run's parameters. The overrides come from anywhere (command line, REST, a schedule,
    the %pipeline magic), so they are checked here, before any run starts; the defaults are
    `pipeline.toml`'s, which `blockbook validate` reports with their lines."""
    check_params(overrides)
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
            values.update(url_secrets(value))
    return sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def mask_text(text: str, secrets: Iterable[str] = (), *, mask: str = MASK) -> str:
    """Mask URL passwords (and query values named like secrets) and every given secret value
    inside free text. A URL runs from its scheme to the next whitespace."""
    text = _replace(text, _secret_spans(text, whole=False), mask)
    for secret in secrets:
        text = text.replace(secret, mask)
    return text


# ---- URLs: the one masker -----------------------------------------------------------------------
# Every place that shows or stores a URL (messages, the store, plans, run and debug notebooks,
# CLI output, alerts) goes through these, so they all agree on where a password is.


def mask_url(url: str, mask: str = MASK) -> str:
    """`url` (the whole string, spaces and all, is one URL) with its password and secret-named
    query values masked."""
    return _replace(url, _secret_spans(url, whole=True), mask)


def url_secrets(text: str) -> list[str]:
    """The passwords and secret-named query values of the URLs in `text`, each as written and
    percent-decoded (a driver's error message shows the decoded one)."""
    found: set[str] = set()
    for start, end in _secret_spans(text, whole=False):
        if end > start:
            found |= {text[start:end], unquote(text[start:end])}
    return sorted(found, key=len, reverse=True)


def userinfo_span(
    text: str, start: int = 0, stop: int | None = None, *, end: int | None = None
) -> UserInfo | None:
    """Where the `user[:password]@` part of the URL in `text[start:stop]` sits; `start` is where
    its authority begins (just after "://"), `end` where it ends if known (the first "/", "?"
    or "#"). None when the URL names no user."""
    stop = len(text) if stop is None else stop
    if end is None:
        end = min(
            (index for index in (text.find(c, start, stop) for c in "/?#") if index != -1),
            default=stop,
        )
    at = text.rfind("@", start, end)
    if at != -1:
        colon = text.find(":", start, at)
        return UserInfo(start, None if colon == -1 else colon + 1, at)
    # The first "@" not far past the early end; without one (most URLs), no regex runs at all.
    first_at = text.find("@", end, min(stop, end + _PASSWORD_LENGTH))
    match = _EARLY_USERINFO.match(text, start, first_at + 1) if first_at != -1 else None
    if match and not _PORT.match(match["password"]):
        return UserInfo(start, match.start("password"), match.end("password"))
    return None


@dataclass(frozen=True, slots=True)
class UserInfo:
    """Offsets of a URL's `user:password@` in some text."""

    start: int
    password: int | None
    """Where the password starts (None without a colon: a user alone)."""
    at: int
    """Where the "@" that ends the part is."""


def _secret_spans(text: str, *, whole: bool) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    following = _Following(text)
    space = -1  # the next whitespace after the URL, kept while URLs follow each other
    mark = text.find(_URL_MARK)
    while mark != -1:
        start = mark + len(_URL_MARK)
        mark = text.find(_URL_MARK, start)
        stop = len(text)
        if not whole:
            if space < start:
                found = _WHITESPACE.search(text, start)
                space = found.start() if found else len(text)
            # Bounded, so a long text without whitespace costs each of its URLs little.
            stop = min(space, start + _URL_LENGTH)
        end = min(stop, *(following(c, start) for c in "/?#"))
        userinfo = userinfo_span(text, start, stop, end=end)
        if userinfo is not None and userinfo.password is not None:
            spans.append((userinfo.password, userinfo.at))
        query = following("?", userinfo.at if userinfo else start)
        if query < stop:
            fragment = min(stop, following("#", query))
            for item in _QUERY_ITEM.finditer(text, query + 1, fragment):
                if is_secret(item["key"]):
                    spans.append(item.span("value"))
    return spans


class _Following:
    """The next offset of a character at or after a rising position (the text's length when
    there is none): a text with many URLs is searched about once per character, not per URL."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.found: dict[str, int] = {}

    def __call__(self, char: str, start: int) -> int:
        found = self.found.get(char, -1)
        if found < start:
            found = self.text.find(char, start)
            found = len(self.text) if found == -1 else found
            self.found[char] = found
        return found


def _replace(text: str, spans: list[tuple[int, int]], mask: str) -> str:
    """`text` with each span (overlapping ones merged) replaced by `mask`."""
    pieces, done = [], 0
    for start, end in sorted(spans):
        if start < done:  # overlaps the span masked last: extend it
            done = max(done, end)
            continue
        pieces += [text[done:start], mask]
        done = end
    return "".join(pieces) + text[done:]


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
