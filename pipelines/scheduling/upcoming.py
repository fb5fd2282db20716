"""A project's schedules as people look at them: each with its next and its last fire time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipelines.assembly.config import ScheduleConfig, load_pipeline_config
from pipelines.assembly.project import PipelineRef
from pipelines.scheduling.fire_times import Schedule, fingerprint, next_fire_after, schedule_of
from pipelines.store.queue import schedule_states
from pipelines.store.run_store import RunStore


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    pipeline: str
    folder: Path
    config: ScheduleConfig
    schedule: Schedule
    next_fire: datetime
    last_fired: datetime | None


def upcoming(store: RunStore, refs: Sequence[PipelineRef], moment: datetime) -> list[ScheduleInfo]:
    """The valid schedules among `refs`. A schedule the scheduler already watches keeps its
    anchor and last fire time from the store; a new or changed one counts from `moment`, as the
    scheduler will when it sees it."""
    states = schedule_states(store)
    found: list[ScheduleInfo] = []
    for ref in refs:
        config, problems = load_pipeline_config(ref.folder)
        if config.schedule is None or any(p.is_error for p in problems):
            continue
        schedule = schedule_of(config.schedule)
        state = states.get(ref.name)
        known = state is not None and state.fingerprint == fingerprint(config.schedule)
        anchor = state.first_seen_at if state is not None and known else moment
        last_fired = state.last_fired if state is not None and known else None
        found.append(
            ScheduleInfo(
                ref.name,
                ref.folder,
                config.schedule,
                schedule,
                next_fire_after(schedule, max(moment, anchor), anchor),
                last_fired,
            )
        )
    return found
