"""Backfills: one run per fire time of a pipeline's schedule over a past stretch of time."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from pipelines.assembly.config import load_pipeline_config
from pipelines.errors import BlockbookError
from pipelines.scheduling.fire_times import fire_times_between, schedule_of
from pipelines.scheduling.queueing import FireTime
from pipelines.scheduling.scheduler import Scheduler
from pipelines.status import Trigger
from pipelines.store.run_store import RunId


def backfill(scheduler: Scheduler, folder: Path, start: datetime, end: datetime) -> list[RunId]:
    """One run per fire time of the pipeline's schedule in [start, end], run now within its
    max_active_runs. Fire times that already have a run are skipped, so an interrupted backfill
    continues where it stopped when started again."""
    config, problems = load_pipeline_config(folder)
    errors = [p for p in problems if p.is_error]
    if errors:
        raise BlockbookError(errors[0].format(), hint="fix pipeline.toml first")
    if config.schedule is None:
        raise BlockbookError(
            f"pipeline `{folder.name}` has no [schedule] to backfill",
            hint='add a [schedule] to pipeline.toml, e.g. cron = "0 6 * * *" or every = "1h"',
        )
    if end < start:
        raise BlockbookError("--end is before --start", hint="swap them")
    schedule = schedule_of(config.schedule)
    queued: list[RunId] = []
    fire_times = fire_times_between(schedule, start - timedelta(microseconds=1), end, start)
    for fire_time in fire_times:
        run_id = scheduler.queue_fire_time(
            FireTime(folder.name, folder, schedule, fire_time, start, Trigger.BACKFILL)
        )
        if run_id is not None:
            queued.append(run_id)
    scheduler.limits[folder.name] = schedule.max_active_runs
    scheduler.drain(folder.name)
    return queued
