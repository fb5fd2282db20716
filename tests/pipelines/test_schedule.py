"""Schedules on a fake clock: cron and `every`, time zones and DST, catch-up, backfill, checks."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import cache
from itertools import islice, pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.assembly.config import ScheduleConfig
from pipelines.assembly.timing import check_cron, check_timezone, parse_every
from pipelines.cli.main import main
from pipelines.scheduling.fire_times import (
    Catchup,
    Schedule,
    due_fire_times,
    fire_times_between,
    interval_params,
    iter_fire_times,
    next_fire_after,
    previous_fire_before,
    schedule_of,
)
from tests.helpers.notebooks import make_pipeline

UTC_ZONE = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type,misc]


def local(zone: ZoneInfo, *parts: int, fold: int = 0) -> datetime:
    """A wall-clock time in `zone`, as the UTC instant (fold=1: the repeated hour's second)."""
    return datetime(*parts, tzinfo=zone, fold=fold).astimezone(UTC)  # type: ignore[arg-type,misc]


def cron(expression: str, zone: ZoneInfo = UTC_ZONE, **options: object) -> Schedule:
    return Schedule(cron=expression, timezone=zone, **options)  # type: ignore[arg-type]


def every(text: str, **options: object) -> Schedule:
    return Schedule(every=parse_every(text), **options)  # type: ignore[arg-type]


def walls(fires: list[datetime], zone: ZoneInfo) -> list[str]:
    return [fire.astimezone(zone).strftime("%H:%M %Z") for fire in fires]


def fires_on(schedule: Schedule, day: date) -> list[datetime]:
    """The fire times whose local date is `day`."""
    zone = schedule.timezone
    start = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC) - 3 * HOUR
    fires = fire_times_between(schedule, start, start + 30 * HOUR)
    return [fire for fire in fires if fire.astimezone(zone).date() == day]


# ---- cron and every basics -------------------------------------------------------------------


def test_cron_next_fire_is_strictly_after() -> None:
    daily = cron("0 6 * * *")
    assert next_fire_after(daily, utc(2024, 1, 1, 5, 59, 59)) == utc(2024, 1, 1, 6)
    assert next_fire_after(daily, utc(2024, 1, 1, 6)) == utc(2024, 1, 2, 6)
    assert next_fire_after(daily, utc(2024, 1, 1, 6, 0, 0, 1)) == utc(2024, 1, 2, 6)
    every_15 = cron("*/15 * * * *")
    assert next_fire_after(every_15, utc(2024, 1, 1, 10, 7, 30)) == utc(2024, 1, 1, 10, 15)
    assert next_fire_after(every_15, utc(2024, 12, 31, 23, 59)) == utc(2025, 1, 1)


def test_cron_results_are_aware_utc_whatever_the_input_zone() -> None:
    fire = next_fire_after(cron("0 6 * * *"), datetime(2024, 1, 1, 12, tzinfo=PARIS))
    assert fire == utc(2024, 1, 2, 6)
    assert fire.tzinfo is UTC


def test_cron_aliases_weekdays_and_day_or() -> None:
    assert cron("@daily").cron == "0 0 * * *"
    assert cron("@HOURLY").cron == "0 * * * *"
    assert cron("  0   6 * *  1-5 ").cron == "0 6 * * 1-5"
    weekdays = cron("0 6 * * mon-fri")  # 2024-01-05 is a Friday
    assert next_fire_after(weekdays, utc(2024, 1, 5, 7)) == utc(2024, 1, 8, 6)
    # Both day fields restricted: either matches (Vixie cron).
    first_or_monday = cron("0 0 1 * 1")
    fires = fire_times_between(first_or_monday, utc(2024, 1, 1), utc(2024, 1, 31))
    assert [fire.day for fire in fires] == [8, 15, 22, 29]


def test_sparse_cron_leap_day() -> None:
    leap = cron("0 0 29 2 *")
    assert next_fire_after(leap, utc(2096, 3, 1)) == utc(2104, 2, 29)  # 2100 isn't a leap year
    assert previous_fire_before(leap, utc(2104, 2, 29)) == utc(2096, 2, 29)


def test_every_fires_on_anchor_multiples() -> None:
    anchor = utc(2024, 1, 1, 10, 7, 13)
    quarter = every("15m")
    assert next_fire_after(quarter, anchor, anchor) == anchor + 15 * MINUTE
    assert next_fire_after(quarter, utc(2024, 1, 1, 12), anchor) == utc(2024, 1, 1, 12, 7, 13)
    assert next_fire_after(quarter, utc(2024, 1, 1, 12, 7, 13), anchor) == utc(
        2024, 1, 1, 12, 22, 13
    )
    # Before the anchor the same grid extends backwards.
    assert next_fire_after(quarter, utc(2024, 1, 1, 10), anchor) == utc(2024, 1, 1, 10, 7, 13)
    assert parse_every("1h30m") == timedelta(hours=1, minutes=30)


def test_every_ignores_daylight_saving() -> None:
    daily = every("1d", timezone=NEW_YORK)
    anchor = local(NEW_YORK, 2024, 3, 9, 6)
    fires = list(islice(iter_fire_times(daily, anchor, anchor), 2))
    assert fires == [anchor + DAY, anchor + 2 * DAY]  # 24 real hours: 07:00 EDT after the change
    assert walls(fires, NEW_YORK) == ["07:00 EDT", "07:00 EDT"]


def test_every_needs_an_anchor_and_moments_must_be_aware() -> None:
    with pytest.raises(ValueError, match="anchor"):
        next_fire_after(every("1h"), utc(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire_after(cron("0 6 * * *"), datetime(2024, 1, 1))


def test_schedule_of_config() -> None:
    config = ScheduleConfig(
        cron="@daily",
        timezone="Europe/Paris",
        catchup="all",
        max_catchup=3,
        params={"region": "eu"},
        max_active_runs=2,
        run_retries=1,
    )
    schedule = schedule_of(config)
    assert schedule == Schedule(
        cron="0 0 * * *",
        timezone=PARIS,
        catchup="all",
        max_catchup=3,
        params={"region": "eu"},
        max_active_runs=2,
        run_retries=1,
    )
    assert schedule.fixed_time
    hash(schedule)  # usable as a key, params and all
    assert schedule_of(ScheduleConfig(every="90s")).every == timedelta(seconds=90)
    with pytest.raises(ValueError, match="exactly one"):
        Schedule(cron="0 6 * * *", every=HOUR)


# ---- time zones and daylight saving ----------------------------------------------------------


def test_cron_in_a_time_zone() -> None:
    paris_six = cron("0 6 * * *", PARIS)
    assert next_fire_after(paris_six, utc(2024, 1, 15)) == utc(2024, 1, 15, 5)  # CET, UTC+1
    assert next_fire_after(paris_six, utc(2024, 7, 15)) == utc(2024, 7, 15, 4)  # CEST, UTC+2


# (zone, spring-forward day, fall-back day, a wall time in the skipped hour, in the repeated hour)
DST_ZONES = [
    pytest.param(NEW_YORK, date(2024, 3, 10), date(2024, 11, 3), "30 2", "30 1", id="new-york"),
    pytest.param(PARIS, date(2024, 3, 31), date(2024, 10, 27), "30 2", "30 2", id="paris"),
]


@pytest.mark.parametrize(("zone", "spring", "fall", "skipped", "repeated"), DST_ZONES)
def test_fixed_time_in_the_skipped_hour_runs_once_at_its_end(
    zone: ZoneInfo, spring: date, fall: date, skipped: str, repeated: str
) -> None:
    for expression in [f"{skipped} * * *", "0,30 2 * * *", "0 2,3 * * *"]:
        fires = fires_on(cron(expression, zone), spring)
        assert fires == [local(zone, spring.year, spring.month, spring.day, 3)], expression
    # The day before and after, nothing unusual.
    before = fires_on(cron(f"{skipped} * * *", zone), spring - DAY)
    assert walls(before, zone) == [f"{skipped.split()[1].zfill(2)}:30 {_standard(zone)}"]
    assert len(fires_on(cron(f"{skipped} * * *", zone), spring + DAY)) == 1


@pytest.mark.parametrize(("zone", "spring", "fall", "skipped", "repeated"), DST_ZONES)
def test_fixed_time_in_the_repeated_hour_runs_once_at_its_first_occurrence(
    zone: ZoneInfo, spring: date, fall: date, skipped: str, repeated: str
) -> None:
    minute, hour = (int(part) for part in repeated.split())
    fires = fires_on(cron(f"{repeated} * * *", zone), fall)
    assert fires == [local(zone, fall.year, fall.month, fall.day, hour, minute, fold=0)]
    assert walls(fires, zone) == [f"{hour:02}:{minute:02} {_summer(zone)}"]
    # Resuming from inside the repeated hour doesn't fire it again.
    second_pass = local(zone, fall.year, fall.month, fall.day, hour, 10, fold=1)
    assert next_fire_after(cron(f"{repeated} * * *", zone), second_pass) > fires[0] + 20 * HOUR


@pytest.mark.parametrize(("zone", "spring", "fall", "skipped", "repeated"), DST_ZONES)
def test_daily_job_outside_the_changing_hour(
    zone: ZoneInfo, spring: date, fall: date, skipped: str, repeated: str
) -> None:
    six = cron("0 6 * * *", zone)
    for day, length in [(spring, 23 * HOUR), (fall, 25 * HOUR)]:
        (previous,) = fires_on(six, day - DAY)
        (fire,) = fires_on(six, day)
        assert fire - previous == length
        assert fire.astimezone(zone).hour == 6


@pytest.mark.parametrize(("zone", "spring", "fall", "skipped", "repeated"), DST_ZONES)
@pytest.mark.parametrize(
    ("expression", "step", "spring_count", "fall_count"),
    [("0 * * * *", HOUR, 23, 25), ("*/30 * * * *", 30 * MINUTE, 46, 50), ("@hourly", HOUR, 23, 25)],
)
def test_wildcard_jobs_fire_every_real_interval(
    zone: ZoneInfo,
    spring: date,
    fall: date,
    skipped: str,
    repeated: str,
    expression: str,
    step: timedelta,
    spring_count: int,
    fall_count: int,
) -> None:
    schedule = cron(expression, zone)
    for day, count in [(spring, spring_count), (fall, fall_count)]:
        fires = fires_on(schedule, day)
        assert len(fires) == count
        assert all(later - earlier == step for earlier, later in pairwise(fires))
    normal = fires_on(schedule, fall + DAY)
    assert len(normal) == 24 * HOUR // step


def test_hour_ranges_are_fixed_times_and_starred_minutes_are_wildcards() -> None:
    # Vixie cron's rule looks at how the fields are written, not at what they match.
    every_hour = cron("0 0-23 * * *", NEW_YORK)
    assert every_hour.fixed_time
    assert len(fires_on(every_hour, date(2024, 3, 10))) == 23  # 02:00 runs at 03:00, with it
    assert len(fires_on(every_hour, date(2024, 11, 3))) == 24  # 01:00 runs once
    during_two = cron("*/20 2 * * *", NEW_YORK)
    assert not during_two.fixed_time
    assert fires_on(during_two, date(2024, 3, 10)) == []  # no 02:xx that day
    assert len(fires_on(during_two, date(2024, 11, 3))) == 3


def test_fire_times_are_strictly_increasing_across_changes() -> None:
    for zone in [PARIS, NEW_YORK]:
        for expression in ["30 1 * * *", "30 2 * * *", "0 * * * *", "*/30 * * * *", "0 0-23 * * *"]:
            schedule = cron(expression, zone)
            for start in [utc(2024, 3, 1), utc(2024, 10, 20)]:
                fires = fire_times_between(schedule, start, start + 21 * DAY)
                assert all(earlier < later for earlier, later in pairwise(fires))


# An oracle that walks every real minute: independent of the implementation's stretch logic.


def oracle(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    assert schedule.cron is not None
    zone, expression, fixed = schedule.timezone, schedule.cron, schedule.fixed_time
    expanded = croniter.expand(expression)[0]
    minutes, hours = ({*field} if field != ["*"] else None for field in expanded[:2])

    @cache
    def day_matches(day: date) -> bool:
        midnight = datetime(day.year, day.month, day.day)
        first: datetime = croniter(expression, midnight - timedelta(microseconds=1)).get_next(
            datetime
        )
        return first.date() == day

    def matches(wall: datetime) -> bool:
        return (
            (minutes is None or wall.minute in minutes)
            and (hours is None or wall.hour in hours)
            and day_matches(wall.date())
        )

    fires: set[datetime] = set()
    instant = start.replace(second=0, microsecond=0) + MINUTE
    while instant <= end:
        here = instant.astimezone(zone)
        wall = here.replace(tzinfo=None)
        first_time = wall.replace(tzinfo=zone, fold=0).astimezone(UTC) == instant
        if matches(wall) and (first_time or not fixed):
            fires.add(instant)
        before, after = (instant - MINUTE).astimezone(zone).utcoffset(), here.utcoffset()
        assert before is not None
        assert after is not None
        if fixed and after > before:  # the clock just jumped: did it skip a matching time?
            skipped = wall - (after - before)
            while skipped < wall:
                if matches(skipped):
                    fires.add(instant)
                skipped += MINUTE
        instant += MINUTE
    return sorted(fires)


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        (NEW_YORK, date(2024, 3, 10)),
        (NEW_YORK, date(2024, 11, 3)),
        (PARIS, date(2024, 3, 31)),
        (PARIS, date(2024, 10, 27)),
        (ZoneInfo("Australia/Lord_Howe"), date(2024, 4, 7)),  # 30-minute change, back
        (ZoneInfo("Australia/Lord_Howe"), date(2024, 10, 6)),  # and forward
        (ZoneInfo("America/Santiago"), date(2024, 9, 8)),  # at midnight: 00:00 doesn't exist
        (ZoneInfo("America/Santiago"), date(2024, 4, 6)),  # 23:00-24:00 happens twice
        (ZoneInfo("Pacific/Apia"), date(2011, 12, 29)),  # a whole day (the 30th) skipped
    ],
)
@pytest.mark.parametrize(
    "expression",
    ["0 * * * *", "*/30 * * * *", "30 2 * * *", "0 0 * * *", "15,45 1-3 * * *", "*/20 2 * * *"],
)
def test_dst_days_match_the_minute_by_minute_oracle(
    zone: ZoneInfo, day: date, expression: str
) -> None:
    schedule = cron(expression, zone)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC) - DAY
    end = start + 3 * DAY
    assert fire_times_between(schedule, start, end) == oracle(schedule, start, end)


def test_a_skipped_day_still_runs_a_daily_job_once() -> None:
    apia = ZoneInfo("Pacific/Apia")  # 2011-12-30 never happened there
    daily = cron("0 6 * * *", apia)
    fires = fire_times_between(daily, local(apia, 2011, 12, 28), local(apia, 2012, 1, 2))
    assert [fire.astimezone(apia).strftime("%d %H:%M") for fire in fires] == [
        "28 06:00",
        "29 06:00",
        "31 00:00",  # the 30th's run, at the first instant after the jump
        "31 06:00",
        "01 06:00",
    ]


def _standard(zone: ZoneInfo) -> str:
    return datetime(2024, 1, 15, tzinfo=zone).strftime("%Z")


def _summer(zone: ZoneInfo) -> str:
    return datetime(2024, 7, 15, tzinfo=zone).strftime("%Z")


# ---- backfill windows ------------------------------------------------------------------------


def test_fire_times_between_is_start_exclusive_end_inclusive() -> None:
    daily = cron("0 6 * * *")
    assert fire_times_between(daily, utc(2024, 1, 1, 6), utc(2024, 1, 3, 6)) == [
        utc(2024, 1, 2, 6),
        utc(2024, 1, 3, 6),
    ]
    assert fire_times_between(daily, utc(2024, 1, 1), utc(2024, 1, 8)) == [
        utc(2024, 1, day, 6) for day in range(1, 8)
    ]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (utc(2024, 1, 1, 7), utc(2024, 1, 2, 5)),  # between two fire times
        (utc(2024, 1, 1, 6), utc(2024, 1, 1, 6)),  # a single instant
        (utc(2024, 1, 3), utc(2024, 1, 1)),  # backwards
    ],
)
def test_empty_backfill_windows(start: datetime, end: datetime) -> None:
    assert fire_times_between(cron("0 6 * * *"), start, end) == []


def test_every_backfill_keeps_the_anchor_grid() -> None:
    anchor = utc(2023, 6, 1, 0, 0, 7)
    fires = fire_times_between(every("6h"), utc(2024, 1, 1), utc(2024, 1, 2), anchor)
    assert fires == [utc(2024, 1, 1, hour, 0, 7) for hour in (0, 6, 12, 18)]


# ---- catch-up --------------------------------------------------------------------------------

FIRST_SEEN = utc(2024, 1, 1, 6, 30)
LATE = utc(2024, 1, 5, 7)  # the scheduler was down since first_seen: Jan 2-5 06:00 missed
MISSED = [utc(2024, 1, day, 6) for day in (2, 3, 4, 5)]


@pytest.mark.parametrize(
    ("catchup", "max_catchup", "now", "expected"),
    [
        ("all", None, LATE, MISSED),
        ("all", 2, LATE, MISSED[-2:]),
        ("all", 10, LATE, MISSED),
        ("latest", None, LATE, MISSED[-1:]),
        ("none", None, LATE, []),  # an hour late: skipped
        ("none", None, utc(2024, 1, 5, 6, 0, 45), MISSED[-1:]),  # just due: runs
        ("none", None, utc(2024, 1, 5, 6, 1), MISSED[-1:]),  # exactly the grace
        ("none", None, utc(2024, 1, 5, 6, 1, 1), []),
        ("all", None, utc(2024, 1, 2, 5), []),  # nothing due yet
        ("latest", None, utc(2024, 1, 2, 5), []),
    ],
)
def test_catchup_policies(
    catchup: Catchup, max_catchup: int | None, now: datetime, expected: list[datetime]
) -> None:
    schedule = cron("0 6 * * *", catchup=catchup, max_catchup=max_catchup)
    assert due_fire_times(schedule, first_seen=FIRST_SEEN, last_fired=None, now=now) == expected


def test_grace_is_a_parameter() -> None:
    schedule = cron("0 6 * * *")
    due = due_fire_times(schedule, first_seen=FIRST_SEEN, last_fired=None, now=LATE, grace=2 * HOUR)
    assert due == MISSED[-1:]


@pytest.mark.parametrize("catchup", ["none", "latest", "all"])
def test_history_before_first_seen_never_runs(catchup: Catchup) -> None:
    schedule = cron("0 6 * * *", catchup=catchup)
    # Seen exactly at a fire time: that one is history too.
    first_seen = utc(2024, 1, 1, 6)
    for now in [first_seen, first_seen + HOUR, first_seen - DAY]:
        assert due_fire_times(schedule, first_seen=first_seen, last_fired=None, now=now) == []
    # A last_fired older than first_seen (the schedule was re-created) doesn't reopen history.
    due = due_fire_times(
        schedule, first_seen=first_seen, last_fired=utc(2023, 1, 1), now=utc(2024, 1, 2, 6)
    )
    assert due == [utc(2024, 1, 2, 6)]


def test_restart_continues_after_last_fired() -> None:
    schedule = cron("0 6 * * *", catchup="all")
    due = due_fire_times(schedule, first_seen=FIRST_SEEN, last_fired=MISSED[1], now=LATE)
    assert due == MISSED[2:]
    assert due_fire_times(schedule, first_seen=FIRST_SEEN, last_fired=MISSED[-1], now=LATE) == []
    # A clock that went backwards starts nothing.
    assert due_fire_times(schedule, first_seen=FIRST_SEEN, last_fired=LATE, now=MISSED[0]) == []


def test_every_catchup_uses_first_seen_as_anchor() -> None:
    first_seen = utc(2024, 1, 1, 10, 7, 13)
    schedule = every("1h", catchup="all")
    due = due_fire_times(
        schedule, first_seen=first_seen, last_fired=None, now=utc(2024, 1, 1, 13, 30)
    )
    assert due == [utc(2024, 1, 1, hour, 7, 13) for hour in (11, 12, 13)]
    # After a restart the grid doesn't move: last_fired and the original anchor.
    due = due_fire_times(
        schedule, first_seen=first_seen, last_fired=due[-1], now=utc(2024, 1, 1, 15, 8)
    )
    assert due == [utc(2024, 1, 1, 14, 7, 13), utc(2024, 1, 1, 15, 7, 13)]
    capped = every("1h", catchup="all", max_catchup=1)
    due = due_fire_times(capped, first_seen=first_seen, last_fired=None, now=utc(2024, 1, 2))
    assert due == [utc(2024, 1, 1, 23, 7, 13)]
    anchored = due_fire_times(
        every("1h", catchup="latest"),
        first_seen=first_seen,
        last_fired=None,
        now=utc(2024, 1, 2),
        anchor=utc(2020, 1, 1),
    )
    assert anchored == [utc(2024, 1, 2)]


def test_catchup_across_fall_back_runs_every_real_hour() -> None:
    schedule = cron("0 * * * *", NEW_YORK, catchup="all")
    first_seen = local(NEW_YORK, 2024, 11, 3)
    due = due_fire_times(
        schedule, first_seen=first_seen, last_fired=None, now=local(NEW_YORK, 2024, 11, 4)
    )
    assert len(due) == 25
    assert walls(due[:4], NEW_YORK) == ["01:00 EDT", "01:00 EST", "02:00 EST", "03:00 EST"]


@pytest.mark.parametrize("catchup", ["none", "latest", "all"])
def test_a_ticking_scheduler_with_outages_runs_each_fire_time_at_most_once(
    catchup: Catchup,
) -> None:
    rng = random.Random(catchup)
    schedule = cron("*/20 * * * *", PARIS, catchup=catchup)
    first_seen = local(PARIS, 2024, 10, 26, 12, 5)
    now, end = first_seen, first_seen + 2 * DAY
    last_fired: datetime | None = None
    started: list[datetime] = []
    outages = 0
    while now < end:
        due = due_fire_times(schedule, first_seen=first_seen, last_fired=last_fired, now=now)
        started += due
        last_fired = due[-1] if due else last_fired
        evaluated = now
        if rng.random() < 0.03:  # now and then the scheduler is away for hours
            outages += 1
            now += timedelta(hours=rng.randint(1, 6))
        else:
            now += timedelta(seconds=rng.randint(5, 30))
    assert outages > 0
    assert started == sorted(set(started))
    every_fire = fire_times_between(schedule, first_seen, evaluated)
    if catchup == "all":
        assert started == every_fire
    else:
        assert set(started) < set(every_fire)


# ---- interval parameters ---------------------------------------------------------------------


def test_interval_params_cover_the_interval_that_just_ended() -> None:
    schedule = cron("0 6 * * *", PARIS)
    params = interval_params(schedule, utc(2024, 1, 5, 5))
    assert params == {
        "interval_start": datetime(2024, 1, 4, 6, tzinfo=PARIS),
        "interval_end": datetime(2024, 1, 5, 6, tzinfo=PARIS),
    }
    assert params["interval_end"].tzinfo is PARIS
    spring = interval_params(schedule, local(PARIS, 2024, 3, 31, 6))
    # (Subtract in UTC: Python subtracts same-zone datetimes as wall-clock times.)
    length = spring["interval_end"].astimezone(UTC) - spring["interval_start"].astimezone(UTC)
    assert length == 23 * HOUR
    monthly = interval_params(cron("@monthly", NEW_YORK), local(NEW_YORK, 2024, 3, 1))
    assert monthly["interval_start"] == datetime(2024, 2, 1, tzinfo=NEW_YORK)


def test_interval_params_for_every() -> None:
    anchor = utc(2024, 1, 1, 0, 0, 7)
    params = interval_params(every("15m"), utc(2024, 1, 1, 1, 0, 7), anchor)
    assert params == {
        "interval_start": utc(2024, 1, 1, 0, 45, 7),
        "interval_end": utc(2024, 1, 1, 1, 0, 7),
    }


# ---- properties ------------------------------------------------------------------------------

ZONES = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Asia/Kolkata",
    "Pacific/Apia",
    "America/Sao_Paulo",
    "Asia/Tehran",
    "Pacific/Chatham",
]


def cron_field(low: int, high: int) -> st.SearchStrategy[str]:
    number = st.integers(low, high)
    span = st.tuples(number, number).map(sorted).map(lambda pair: f"{pair[0]}-{pair[1]}")
    stepped = st.tuples(st.sampled_from(["*"]) | span, st.integers(1, high - low)).map(
        lambda pair: f"{pair[0]}/{pair[1]}"
    )
    listed = st.lists(number.map(str) | span, min_size=2, max_size=3).map(",".join)
    return st.one_of(st.just("*"), number.map(str), span, stepped, listed)


cron_expressions = st.tuples(
    cron_field(0, 59), cron_field(0, 23), cron_field(1, 28), cron_field(1, 12), cron_field(0, 6)
).map(" ".join)
zones = st.sampled_from(ZONES).map(ZoneInfo)
instants = st.datetimes(
    min_value=datetime(2005, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
)


@cache
def offset_changes(zone: ZoneInfo, year: int) -> list[datetime]:
    """Found hour by hour, independently of pipelines.scheduling.fire_times."""
    changes, instant = [], utc(year, 1, 1)
    while instant.year == year:
        if instant.astimezone(zone).utcoffset() != (instant + HOUR).astimezone(zone).utcoffset():
            changes.append(instant)
        instant += HOUR
    return changes


@st.composite
def near_changes(draw: Callable[..., object], zone: ZoneInfo) -> datetime:
    """Half the time a random instant, half the time one within a day of an offset change."""
    instant = draw(instants)
    assert isinstance(instant, datetime)
    changes = offset_changes(zone, instant.year)
    if changes and draw(st.booleans()):
        change = draw(st.sampled_from(changes))
        assert isinstance(change, datetime)
        seconds = draw(st.integers(-DAY // timedelta(seconds=1), 0))
        assert isinstance(seconds, int)
        return change + timedelta(seconds=seconds)
    return instant


PROPERTIES = settings(max_examples=100, deadline=None)


@PROPERTIES
@given(expression=cron_expressions, zone=zones, start=instants)
def test_successive_fire_times_strictly_increase(
    expression: str, zone: ZoneInfo, start: datetime
) -> None:
    schedule = cron(expression, zone)
    moment = start
    for fire in islice(iter_fire_times(schedule, start), 40):
        assert fire > moment
        assert fire == next_fire_after(schedule, moment)
        moment = fire


@PROPERTIES
@given(data=st.data(), expression=cron_expressions, zone=zones)
def test_fire_times_match_the_oracle(data: st.DataObject, expression: str, zone: ZoneInfo) -> None:
    schedule = cron(expression, zone)
    start = data.draw(near_changes(zone))
    end = start + timedelta(hours=data.draw(st.integers(1, 30)))
    assert fire_times_between(schedule, start, end) == oracle(schedule, start, end)
    # Where the walk starts doesn't change what it finds.
    earlier = start - timedelta(minutes=data.draw(st.integers(1, 3000)))
    found = fire_times_between(schedule, earlier, end)
    assert [fire for fire in found if fire > start] == fire_times_between(schedule, start, end)


@PROPERTIES
@given(
    seconds=st.integers(1, 3 * 86_400),
    anchor=instants,
    moment=instants,
)
def test_every_fire_times_are_evenly_spaced_from_the_anchor(
    seconds: int, anchor: datetime, moment: datetime
) -> None:
    interval = timedelta(seconds=seconds)
    schedule = Schedule(every=interval)
    fires = list(islice(iter_fire_times(schedule, moment, anchor), 5))
    assert moment < fires[0] <= moment + interval
    for fire in fires:
        assert (fire - anchor) % interval == timedelta(0)
    assert all(later - earlier == interval for earlier, later in pairwise(fires))


schedules = st.one_of(
    st.builds(lambda expression, zone: cron(expression, zone), cron_expressions, zones),
    st.integers(30, 86_400).map(lambda seconds: Schedule(every=timedelta(seconds=seconds))),
)


@PROPERTIES
@given(
    data=st.data(),
    schedule=schedules,
    catchup=st.sampled_from(["none", "latest", "all"]),
    max_catchup=st.none() | st.integers(1, 5),
    first_seen=instants,
)
def test_due_fire_times_are_new_unique_sorted_and_due(
    data: st.DataObject,
    schedule: Schedule,
    catchup: Catchup,
    max_catchup: int | None,
    first_seen: datetime,
) -> None:
    schedule = Schedule(
        cron=schedule.cron,
        every=schedule.every,
        timezone=schedule.timezone,
        catchup=catchup,
        max_catchup=max_catchup,
    )
    now = first_seen + timedelta(minutes=data.draw(st.integers(-60, 12 * 60)))
    last_fired = data.draw(
        st.none() | st.integers(-120, 12 * 60).map(lambda m: first_seen + timedelta(minutes=m))
    )
    due = due_fire_times(schedule, first_seen=first_seen, last_fired=last_fired, now=now)
    assert due == sorted(set(due))
    assert all(first_seen < fire <= now for fire in due)
    assert last_fired is None or all(fire > last_fired for fire in due)
    lower = first_seen if last_fired is None else max(first_seen, last_fired)
    missed = fire_times_between(schedule, lower, now, first_seen)
    if catchup == "all":
        assert due == missed[-max_catchup:] if max_catchup else due == missed
    elif catchup == "latest":
        assert due == missed[-1:]
    else:
        assert due in ([], missed[-1:])


# ---- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 6 * *", "has 4 field(s); cron needs 5 (minute hour day-of-month month day-of-week)"),
        ("0 0 6 * * *", "there is no seconds field: for intervals under a minute use `every`"),
        ("", "has 0 field(s)"),
        ("60 * * * *", "the minute field `60` is out of range or malformed: use 0-59"),
        ("0 24 * * *", "the hour field `24` is out of range or malformed: use 0-23"),
        ("0 0 32 * *", "the day-of-month field `32` is out of range or malformed: use 1-31"),
        ("0 0 * 13 *", "the month field `13` is out of range or malformed: use 1-12 or jan-dec"),
        ("0 0 * * 8", "the day-of-week field `8` is out of range or malformed: use 0-7 or sun-sat"),
        ("*/0 * * * *", "the minute field `*/0`"),
        ("0 0 30 2 *", "never fires"),
        ("@fortnightly", "is not a cron alias: use one of @yearly"),
    ],
)
def test_bad_cron_messages(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\.|use|pick") as error:
        check_cron(expression)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0m", "it must be longer than zero"),
        ("5 minutes", 'write "5m"'),
        ("2 hours", 'write "2h"'),
        ("1w", 'weeks are not a unit: write "7d"'),
        ("1.5h", 'write a number and a unit (d, h, m or s), e.g. "30s"'),
        ("", "write a number and a unit"),
        ("-5m", "write a number and a unit"),
        ("30m1h", "write a number and a unit"),
    ],
)
def test_bad_every_messages(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="is not an interval") as error:
        parse_every(text)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Europe/Pari", "did you mean `Europe/Paris`?"),
        ("europe/paris", "did you mean `Europe/Paris`?"),
        ("Mars/Olympus_Mons", 'write a name such as "Europe/Paris"'),
        ("", "is not an IANA time zone"),
        ("America", "is not an IANA time zone"),
        ("../etc/passwd", "is not an IANA time zone"),
        ("localtime", "depends on the machine"),
    ],
)
def test_bad_timezone_messages(name: str, message: str) -> None:
    with pytest.raises(ValueError, match="Europe/Paris") as error:
        check_timezone(name)
    assert message in str(error.value)


def test_good_values_pass() -> None:
    for expression in ["0 6 * * *", "*/15 9-17 * * mon-fri", "@daily", "0 0 29 2 *", "0 0 L * *"]:
        check_cron(expression)
    for name in ["UTC", "Europe/Paris", "America/New_York", "Etc/GMT+5"]:
        check_timezone(name)
    assert parse_every("30s") == timedelta(seconds=30)
    assert parse_every(" 2d 12h ") == timedelta(days=2, hours=12)


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            '[schedule]\ntimezone = "UTC"\ncron = "61 * * * *"\n',
            "pipeline.toml:line 3: `schedule.cron`: `61 * * * *`: the minute field `61` is out "
            "of range or malformed: use 0-59",
        ),
        (
            '[schedule]\nevery = "5 minutes"\n',
            'pipeline.toml:line 2: `schedule.every`: `5 minutes` is not an interval: write "5m"',
        ),
        (
            '[schedule]\ncron = "0 6 * * *"\ntimezone = "Europe/Pari"\n',
            "pipeline.toml:line 3: `schedule.timezone`: `Europe/Pari` is not an IANA time zone: "
            "did you mean `Europe/Paris`?",
        ),
        (
            'description = "d"\n[schedule]\ncatchup = "all"\n',
            "pipeline.toml:line 2: `schedule`: set exactly one of `cron`",
        ),
    ],
)
def test_blockbook_validate_reports_schedule_problems_with_lines(
    tmp_path: Path, toml: str, expected: str
) -> None:
    folder = make_pipeline(tmp_path, {"a.ipynb": ["%%block x\nv = 1"]}, pipeline_toml=toml)
    result = CliRunner().invoke(main, ["--project", str(tmp_path), "validate", str(folder)])
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[0].startswith(expected), result.stderr


def test_blockbook_validate_accepts_a_schedule(tmp_path: Path) -> None:
    toml = '[schedule]\ncron = "0 6 * * *"\ntimezone = "Europe/Paris"\ncatchup = "latest"\n'
    folder = make_pipeline(tmp_path, {"a.ipynb": ["%%block x\nv = 1"]}, pipeline_toml=toml)
    result = CliRunner().invoke(main, ["--project", str(tmp_path), "validate", str(folder)])
    assert result.exit_code == 0, result.output
