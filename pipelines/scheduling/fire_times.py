"""Schedules: parsing `cron`/`every`/`timezone` and computing fire times.

Everything here is a pure function: no I/O, no clock reads. Instants go in and come out as
timezone-aware datetimes in UTC; callers pass `now` (and the other moments) explicitly.

**Cron** expressions have five fields (minute hour day-of-month month day-of-week, croniter's
grammar, day-of-month and day-of-week OR-ed when both are restricted) or an alias (`@hourly`,
`@daily`, `@midnight`, `@weekly`, `@monthly`, `@yearly`, `@annually`). They are matched against the
wall clock of the schedule's `timezone`. Daylight-saving changes follow Vixie cron's documented
rule (cron(8), the cron of Debian and most Linux systems):

- A *fixed-time* entry is one whose minute and hour fields both do not start with `*`
  ("30 2 * * *", "0 9-17 * * 1-5", `@daily`). It fires at most once per matching wall-clock time:
  - spring forward: a time inside the skipped hour runs once, at the first instant after the gap
    ("30 2 * * *" in New York on 2024-03-10 fires at 03:00 EDT); several skipped times (and a
    time equal to the end of the gap, "0 2,3 * * *") collapse into that one fire;
  - fall back: a time inside the repeated hour runs once, at its first occurrence
    ("30 1 * * *" in New York on 2024-11-03 fires at 01:30 EDT, not again at 01:30 EST).
- A *wildcard* entry ("0 * * * *", "*/30 * * * *", `@hourly`, "*/5 2 * * *") fires whenever the
  clock shows a matching time: across both changes "0 * * * *" keeps firing every real hour
  (23 fires on the spring-forward day, 25 on the fall-back day); matching times inside the gap
  don't exist and are skipped.

Fire times are strictly increasing in UTC. Offset changes are found by probing the zone a day at
a time, which finds every change in tzdata since 1900 (changes are at least four days apart).

**Every** (`"15m"`, `"1h30m"`) is elapsed time: fires at `anchor + k * interval` for integers k,
where the anchor is the moment the scheduler first saw the schedule (normally `first_seen`), so
neither drift nor a restart moves them. It ignores daylight saving: use cron for wall-clock times.

**Catch-up** (`due_fire_times`): fire times at or before `first_seen` never run (a new schedule
doesn't run history); the missed fire times are those in `(max(first_seen, last_fired), now]`.

- "none": run only the newest missed fire time, and only if it is at most `grace` (60 s) old:
  what came due while the scheduler wasn't watching is skipped.
- "latest": run the newest missed fire time, however old (Airflow's `catchup=False`).
- "all": run every missed fire time, oldest first; with `max_catchup` only the newest that many.

A run at fire time t processes the interval that just ended: `interval_params` gives
`interval_start` (the fire time before t) and `interval_end` (t) in the schedule's timezone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from croniter import croniter

from pipelines.assembly.config import ScheduleConfig
from pipelines.assembly.timing import normalize_cron, parse_every
from pipelines.params import ParamValue

Catchup = Literal["none", "latest", "all"]
DEFAULT_GRACE = timedelta(seconds=60)

_TICK = timedelta(microseconds=1)
_PROBE = timedelta(days=1)  # offset changes are at least four days apart (tzdata since 1900)
_LOOKBACK = timedelta(days=2)  # longer than any repeated (fall-back) stretch: offsets are < 24 h
_MAX_GAP = timedelta(days=366 * 30)  # no valid cron expression is silent this long (Feb 29: 8 y)

# ---- schedules --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """When a pipeline runs: exactly one of `cron` (normalized to five fields) or `every`."""

    cron: str | None = None
    every: timedelta | None = None
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    catchup: Catchup = "none"
    max_catchup: int | None = None
    max_active_runs: int = 1
    run_retries: int = 0
    params: Mapping[str, ParamValue] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ValueError("a schedule has exactly one of `cron` or `every`")
        if self.cron is not None:
            object.__setattr__(self, "cron", normalize_cron(self.cron))
        if self.every is not None and self.every <= timedelta(0):
            raise ValueError("`every` must be longer than zero")

    @property
    def fixed_time(self) -> bool:
        """A cron entry whose minute and hour fields don't start with `*` (see the DST rules)."""
        return self.cron is not None and not any(f.startswith("*") for f in self.cron.split()[:2])


def fingerprint(config: ScheduleConfig) -> str:
    """Changes whenever the schedule does; a changed schedule starts afresh (no catch-up)."""
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]


def schedule_of(config: ScheduleConfig) -> Schedule:
    return Schedule(
        cron=config.cron,
        every=None if config.every is None else parse_every(config.every),
        timezone=ZoneInfo(config.timezone),
        catchup=config.catchup,
        max_catchup=config.max_catchup,
        max_active_runs=config.max_active_runs,
        run_retries=config.run_retries,
        params=dict(config.params),
    )


# ---- fire times -------------------------------------------------------------------------------


def iter_fire_times(
    schedule: Schedule, moment: datetime, anchor: datetime | None = None
) -> Iterator[datetime]:
    """The fire times strictly after `moment`, in order (endless). `anchor` is for `every`."""
    moment = _utc(moment, "moment")
    if schedule.every is not None:
        return _every_fires(schedule.every, _anchor(anchor), moment)
    return _cron_fires(schedule, moment)


def next_fire_after(
    schedule: Schedule, moment: datetime, anchor: datetime | None = None
) -> datetime:
    """The first fire time strictly after `moment`."""
    return next(iter_fire_times(schedule, moment, anchor))


def fire_times_between(
    schedule: Schedule, start: datetime, end: datetime, anchor: datetime | None = None
) -> list[datetime]:
    """The fire times in `(start, end]`, oldest first (a backfill window)."""
    end = _utc(end, "end")
    fires: list[datetime] = []
    for fire in iter_fire_times(schedule, start, anchor):
        if fire > end:
            break
        fires.append(fire)
    return fires


def previous_fire_before(
    schedule: Schedule, moment: datetime, anchor: datetime | None = None
) -> datetime:
    """The last fire time strictly before `moment`."""
    moment = _utc(moment, "moment")
    fires = _newest(schedule, moment - _MAX_GAP, moment - _TICK, 1, anchor)
    if not fires:
        raise ValueError(f"`{schedule.cron}` has no fire time in the 30 years before {moment}")
    return fires[0]


def due_fire_times(
    schedule: Schedule,
    *,
    first_seen: datetime,
    last_fired: datetime | None,
    now: datetime,
    anchor: datetime | None = None,
    grace: timedelta = DEFAULT_GRACE,
) -> list[datetime]:
    """The fire times the scheduler must start now, oldest first (see the module docstring).

    `anchor` (for `every`) defaults to `first_seen`.
    """
    first_seen, now = _utc(first_seen, "first_seen"), _utc(now, "now")
    lower = first_seen if last_fired is None else max(first_seen, _utc(last_fired, "last_fired"))
    anchor = first_seen if anchor is None else anchor
    if now <= lower:
        return []
    if schedule.catchup == "all" and schedule.max_catchup is None:
        return fire_times_between(schedule, lower, now, anchor)
    count = (schedule.max_catchup or 1) if schedule.catchup == "all" else 1
    fires = _newest(schedule, lower, now, count, anchor)
    if schedule.catchup == "none" and fires and now - fires[-1] > grace:
        return []
    return fires


def interval_params(
    schedule: Schedule, fire_time: datetime, anchor: datetime | None = None
) -> dict[str, datetime]:
    """The data interval a run at `fire_time` processes: from the previous fire time to this one."""
    start = previous_fire_before(schedule, fire_time, anchor)
    return {
        "interval_start": start.astimezone(schedule.timezone),
        "interval_end": _utc(fire_time, "fire_time").astimezone(schedule.timezone),
    }


def _newest(
    schedule: Schedule, lower: datetime, upper: datetime, count: int, anchor: datetime | None
) -> list[datetime]:
    """At most `count` newest fire times in `(lower, upper]`, oldest first."""
    if schedule.every is not None:
        base, every = _anchor(anchor), schedule.every
        last = (upper - base) // every
        first = max((lower - base) // every + 1, last - count + 1)
        return [base + k * every for k in range(first, last + 1)]
    window = timedelta(hours=count)
    while True:  # look back further and further: a cron has no cheap "previous"
        start = max(lower, upper - window)
        fires = fire_times_between(schedule, start, upper)
        if len(fires) >= count or start == lower:
            return fires[-count:]
        window *= 4


def _every_fires(every: timedelta, anchor: datetime, moment: datetime) -> Iterator[datetime]:
    k = (moment - anchor) // every + 1
    while True:
        yield anchor + k * every
        k += 1


def _cron_fires(schedule: Schedule, moment: datetime) -> Iterator[datetime]:
    """Walk the zone's constant-offset stretches, matching wall-clock times (naive) in each."""
    assert schedule.cron is not None
    expression, zone, fixed = schedule.cron, schedule.timezone, schedule.fixed_time
    start = moment  # the offset `offset` holds from `start` until the next change
    offset = _offset(zone, start)
    first_wall = _wall(moment, offset) + _TICK  # walls at or after this one are candidates
    if fixed:  # inside a repeated stretch, a fixed-time entry's walls have already fired
        earlier = moment - _LOOKBACK
        change = _first_change(zone, earlier, moment, _offset(zone, earlier))
        if change is not None and _offset(zone, change - _TICK) > offset:
            first_wall = max(first_wall, _wall(change, _offset(zone, change - _TICK)))
    walls = croniter(expression, first_wall - _TICK)
    while True:
        wall: datetime = walls.get_next(datetime)
        fire = (wall - offset).replace(tzinfo=UTC)
        change = _first_change(zone, start, fire, offset)
        if change is None:
            yield fire
            start = fire
            continue
        new_offset = _offset(zone, change)
        if fixed and new_offset > offset and wall < _wall(change, new_offset):
            yield change  # the wall fell into the skipped stretch: run at its end
            first_wall = _wall(change, new_offset) + _TICK
        elif fixed and new_offset < offset:
            first_wall = _wall(change, offset)  # skip the repeated stretch
        else:
            first_wall = _wall(change, new_offset)
        start, offset = change, new_offset
        walls = croniter(expression, first_wall - _TICK)


def _first_change(
    zone: ZoneInfo, start: datetime, end: datetime, offset: timedelta
) -> datetime | None:
    """The first instant in `(start, end]` whose UTC offset isn't `offset` (the one at start)."""
    low = start
    while low < end:
        high = min(low + _PROBE, end)
        if _offset(zone, high) != offset:
            while high - low > _TICK:  # bisect to the microsecond
                middle = low + (high - low) // 2
                if _offset(zone, middle) == offset:
                    low = middle
                else:
                    high = middle
            return high
        low = high
    return None


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def _wall(instant: datetime, offset: timedelta) -> datetime:
    return (instant + offset).replace(tzinfo=None)


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"`{name}` must be timezone-aware, e.g. datetime.now(UTC)")
    return moment.astimezone(UTC)


def _anchor(anchor: datetime | None) -> datetime:
    if anchor is None:
        raise ValueError("an `every` schedule needs its anchor (the moment it was first seen)")
    return _utc(anchor, "anchor")
