"""Schedules: parsing `cron`/`every`/`timezone` and computing fire times (pure functions).

Placeholder checks so configuration validates; the scheduling logic lands with its tests.
"""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_EVERY = re.compile(r"(?P<count>\d+)\s*(?P<unit>s|m|h|d)\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_every(text: str) -> timedelta:
    match = _EVERY.match(text.strip())
    if match is None or int(match.group("count")) == 0:
        raise ValueError(
            f'`{text}` is not an interval: write a number and a unit, e.g. "30s", "15m", "1h"'
        )
    return timedelta(**{_UNITS[match.group("unit")]: int(match.group("count"))})


def check_cron(expression: str) -> None:
    from croniter import croniter

    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise ValueError(f'`{expression}` is not a 5-field cron expression, e.g. "0 6 * * *"')


def check_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f'`{name}` is not an IANA time zone, e.g. "Europe/Paris"') from None
