"""Named connections from `blockbook.toml`, with `${ENV_VAR}` references filled in.

    [connections.warehouse]
    url = "postgresql+psycopg://etl:${WAREHOUSE_PASSWORD}@db/warehouse"

A block calls `connection_url(database)` where `database` is either such a name or a URL, so the
same block runs against a URL parameter or the project's named connection. Passwords stay out of
notebooks and TOML files: they live in the environment of whoever starts Jupyter or the runner.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path

from pipelines import envrefs
from pipelines.assembly.config import PROJECT_FILE, ConnectionConfig, load_project_config
from pipelines.assembly.project import find_root
from pipelines.errors import InvalidInputError
from pipelines.params import mask_url

URL_MASK = "***"
"""What stands for a password in `describe_url`; SQLAlchemy shows hidden passwords the same way."""

_EXAMPLE_URL = "postgresql+psycopg://user@host:5432/database"


class ConnectionConfigError(InvalidInputError):
    """A connection name that is unknown, badly configured, or needs an unset variable."""


def looks_like_url(value: str) -> bool:
    return "://" in value


def connection_url(
    name: str, root: Path | None = None, *, environ: Mapping[str, str] | None = None
) -> str:
    """The URL of connection `name` from the project's `blockbook.toml`; a URL is returned as is.

    `root` is the project root (default: the project around the current folder, which in a
    kernel is the notebook's folder). `${VAR}` references are filled from `environ` (default:
    the process environment); values filled into the `user:password@` part are percent-encoded,
    so a password may contain `@`, `/` or `:`.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConnectionConfigError(
            f"expected a connection name or a URL, got {name!r}",
            hint=f"set it to a name defined in {PROJECT_FILE} under [connections.NAME], "
            f"or to a URL such as {_EXAMPLE_URL}",
        )
    if looks_like_url(name):
        return name
    project = find_root() if root is None else root
    connections = _connections(project)
    if name not in connections:
        raise _unknown(name, connections, project)
    return expand_variables(connections[name].url, f"connection `{name}`", environ)


def expand_variables(template: str, what: str, environ: Mapping[str, str] | None = None) -> str:
    """`template` (a URL) with each `${VAR}` replaced from `environ` (default: os.environ).

    `what` names the setting in errors ("connection `warehouse`"). Values filled into the
    `user:password@` part of the URL are percent-encoded; everything else goes in as is.
    """
    return envrefs.expand(
        template,
        what=what,
        error=ConnectionConfigError,
        where="in the shell that starts Jupyter or `blockbook run`; a running kernel keeps the "
        "environment it started with, so restart it afterwards",
        environ=environ,
        url=True,
    )


def describe_url(url: str) -> str:
    """`url` fit to show: its password, and query values named like secrets, masked (by the
    masker every message, notebook and stored record uses: `pipelines.params`)."""
    return mask_url(url, URL_MASK)


def _connections(root: Path) -> dict[str, ConnectionConfig]:
    config, problems = load_project_config(root)
    if problems:
        details = "; ".join(f"{problem.location}: {problem.message}" for problem in problems)
        raise ConnectionConfigError(
            f"cannot read the connections in {root / PROJECT_FILE}: {details}",
            hint=problems[0].hint or f"fix {PROJECT_FILE}",
        )
    return dict(config.connections)


def _unknown(name: str, connections: Mapping[str, ConnectionConfig], root: Path) -> Exception:
    file = root / PROJECT_FILE
    define = f'define it in {file} as [connections.{name}] with url = "...", or pass a URL such '
    define += f"as {_EXAMPLE_URL}"
    if not file.is_file():
        return ConnectionConfigError(
            f"no connection named `{name}`: the project at {root} has no {PROJECT_FILE}",
            hint=define,
        )
    if not connections:
        return ConnectionConfigError(
            f"no connection named `{name}`: {file} defines no connections", hint=define
        )
    known = sorted(connections)
    guess = difflib.get_close_matches(name, known, n=1)
    suggestion = f"did you mean `{guess[0]}`? " if guess else ""
    return ConnectionConfigError(
        f"no connection named `{name}` in {file}",
        hint=f"{suggestion}known connections: {', '.join(known)}; or {define}",
    )
