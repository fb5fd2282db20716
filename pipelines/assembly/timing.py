"""The grammar of schedule timings in `pipeline.toml`: cron expressions, `every` intervals and
IANA time zones. Pure checks that raise ValueError with a message saying how to write the value;
`pipelines.scheduling.fire_times` computes fire times from values these functions accepted.
"""

from __future__ import annotations

import difflib
import re
from datetime import datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterBadDateError, croniter

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-7 or sun-sat, 0 and 7 being Sunday"),
)
_EXAMPLE = 'e.g. "0 6 * * *" (06:00 every day) or "*/15 * * * *"'
_EVERY = re.compile(
    r"(?:(?P<d>\d+)\s*d)?\s*(?:(?P<h>\d+)\s*h)?\s*(?:(?P<m>\d+)\s*m)?\s*"
    r"(?:(?P<s>\d+)\s*s)?"
)
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_SPELLED = {"sec": "s", "second": "s", "min": "m", "minute": "m", "hour": "h", "hr": "h",
            "day": "d", "week": "w"}  # fmt: skip


def normalize_cron(expression: str) -> str:
    """The five fields of `expression` (aliases expanded), single-spaced; raises ValueError."""
    check_cron(expression)
    text = expression.strip()
    return _ALIASES.get(text.lower(), " ".join(text.split()))


def check_cron(expression: str) -> None:
    text = expression.strip()
    if text.startswith("@"):
        if text.lower() in _ALIASES:
            return
        raise ValueError(f"`{expression}` is not a cron alias: use one of {', '.join(_ALIASES)}")
    fields = text.split()
    if len(fields) != len(_FIELDS):
        seconds = (
            '; there is no seconds field: for intervals under a minute use `every`, e.g. "30s"'
            if len(fields) == 6
            else ""
        )
        raise ValueError(
            f"`{expression}` has {len(fields)} field(s); cron needs 5 (minute hour day-of-month "
            f"month day-of-week), {_EXAMPLE}{seconds}"
        )
    for position, (name, allowed) in enumerate(_FIELDS):
        alone = ["*"] * len(_FIELDS)
        alone[position] = fields[position]
        if not croniter.is_valid(" ".join(alone)):
            raise ValueError(
                f"`{expression}`: the {name} field `{fields[position]}` is out of range or "
                f"malformed: use {allowed}, with `*`, lists (`1,15`), ranges (`1-5`) and "
                f"steps (`*/10`)"
            )
    if not croniter.is_valid(text):
        raise ValueError(f"`{expression}` is not a valid cron expression, {_EXAMPLE}")
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(
            f"`{expression}` never fires (that day doesn't exist in those months): "
            "pick a day of the month that does"
        ) from None


def parse_every(text: str) -> timedelta:
    """An interval such as "30s", "15m", "1h", "1d" or "1h30m" (units largest first)."""
    stripped = text.strip()
    match = _EVERY.fullmatch(stripped)
    if match is None or not stripped:
        hint = 'write a number and a unit (d, h, m or s), e.g. "30s", "15m", "1h", "1h30m"'
        words = re.fullmatch(r"(\d+)\s*([a-z]+?)s?", stripped.lower())
        if words and _SPELLED.get(words.group(2), words.group(2)) == "w":
            hint = f'weeks are not a unit: write "{int(words.group(1)) * 7}d"'
        elif words and words.group(2) in _SPELLED:
            hint = f'write "{words.group(1)}{_SPELLED[words.group(2)]}"'
        raise ValueError(f"`{text}` is not an interval: {hint}")
    interval = timedelta(
        **{_UNITS[unit]: int(count) for unit, count in match.groupdict().items() if count}
    )
    if interval <= timedelta(0):
        raise ValueError(f'`{text}` is not an interval: it must be longer than zero, e.g. "15m"')
    return interval


def check_timezone(name: str) -> None:
    if name == "localtime":
        raise ValueError(
            '`localtime` depends on the machine: name the zone, e.g. "Europe/Paris" or "UTC"'
        )
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        close = difflib.get_close_matches(name.lower(), _zone_names(), n=1, cutoff=0.6)
        guess = f"did you mean `{_zone_names()[close[0]]}`? " if close else ""
        raise ValueError(
            f'`{name}` is not an IANA time zone: {guess}write a name such as "Europe/Paris", '
            '"America/New_York" or "UTC"'
        ) from None


@cache
def _zone_names() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones() if name != "localtime"}
