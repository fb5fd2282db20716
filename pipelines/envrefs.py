"""`${ENV_VAR}` references in settings (connection URLs, alert destinations): one grammar, one
expansion, shared so every setting says the same thing about an unset variable."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from pipelines.errors import BlockbookError
from pipelines.params import MIN_SECRET_LENGTH, userinfo_span

REFERENCE = re.compile(r"\$\{([^}]*)\}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def expand(
    template: str,
    *,
    what: str,
    error: type[BlockbookError],
    where: str,
    environ: Mapping[str, str] | None = None,
    url: bool = False,
) -> str:
    """`template` with each `${VAR}` replaced from `environ` (default: os.environ).

    Raises `error` for a malformed reference or an unset variable, naming the setting (`what`)
    and the variables, never a value; `where` ends the hint ("... in the shell that starts
    Jupyter"). With `url`, values filled into a `user:password@` part are percent-encoded, so a
    password may hold `@`, `/` or `:`.
    """
    environ = os.environ if environ is None else environ
    names = [match.group(1) for match in REFERENCE.finditer(template)]
    malformed = [name for name in names if not _VARIABLE.match(name)]
    if malformed:
        raise error(
            f"{what}: `${{{malformed[0]}}}` is not a variable reference",
            hint="write ${NAME}, with a name made of letters, digits and underscores",
        )
    missing = list(dict.fromkeys(name for name in names if name not in environ))
    if missing:
        listed = " and ".join(f"`{name}`" for name in missing)
        plural = "s" if len(missing) > 1 else ""
        raise error(
            f"{what} needs the environment variable{plural} {listed}, which is not set",
            hint="; ".join(f"export {name}=..." for name in missing) + f" {where}",
        )
    credentials = credentials_span(template) if url else None

    def value(match: re.Match[str]) -> str:
        filled = environ[match.group(1)]
        if credentials is not None and credentials[0] <= match.start() < credentials[1]:
            return quote(filled, safe="")
        return filled

    return REFERENCE.sub(value, template)


def expanded_values(
    texts: Sequence[str | None], environ: Mapping[str, str] | None = None
) -> list[str]:
    """The values `${VAR}` references in `texts` expand to: strings to mask, longest first."""
    environ = os.environ if environ is None else environ
    values = {
        environ[match.group(1)]
        for text in texts
        if text
        for match in REFERENCE.finditer(text)
        if match.group(1) in environ
    }
    return sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def credentials_span(template: str) -> tuple[int, int] | None:
    """Where `user:password` sits in a URL template, as (start, end) offsets, if it has one
    (read as `pipelines.params.userinfo_span` reads every URL)."""
    separator = template.find("://")
    if separator == -1:
        return None
    userinfo = userinfo_span(template, separator + 3)
    return None if userinfo is None else (userinfo.start, userinfo.at)
