"""`blockbook scheduler`, `backfill` and `trigger`: the commands of scheduled work."""

from __future__ import annotations

import sys
from datetime import date, datetime, time

import click

from pipelines.api import Project
from pipelines.assembly.config import PipelineConfig
from pipelines.cli.support import stop_on_signals, store_errors, usage_errors
from pipelines.errors import InvalidInputError
from pipelines.params import parse_assignments
from pipelines.status import RunStatus


@click.command()
@click.option("--once", is_flag=True, help="Start what is due now, wait for it, and exit.")
@click.option("--max-runs", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--tick", type=click.FloatRange(min=0.05), default=0.5, show_default=True)
@click.option(
    "--heartbeat-timeout",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    help="Seconds without a heartbeat after which a running run is marked crashed.",
)
@click.pass_obj
def scheduler(
    project: Project, once: bool, max_runs: int, tick: float, heartbeat_timeout: float
) -> None:
    """Start runs when schedules fire (and queued runs); stops cleanly on Ctrl-C or SIGTERM."""
    from datetime import timedelta

    from pipelines.scheduling.scheduler import SchedulerOptions

    _log_to_stderr()
    options = SchedulerOptions(
        max_runs=max_runs, tick_seconds=tick, heartbeat_timeout=timedelta(seconds=heartbeat_timeout)
    )
    with store_errors():
        daemon = project.scheduler(options)
    if once:
        daemon.run_once()
        return
    stopping = "scheduler: stopping; waiting for running runs (again to quit now)"
    try:
        with stop_on_signals(daemon.stop, stopping):
            daemon.serve()
    except KeyboardInterrupt:
        sys.exit(130)


@click.command()
@click.argument("pipeline")
@click.option("--start", "start_text", required=True, metavar="DATE", help="First day or instant.")
@click.option("--end", "end_text", required=True, metavar="DATE", help="Last day or instant.")
@click.option("--max-runs", type=click.IntRange(min=1), default=4, show_default=True)
@click.pass_obj
def backfill(
    project: Project, pipeline: str, start_text: str, end_text: str, max_runs: int
) -> None:
    """One run per fire time between --start and --end (inclusive, in the schedule's timezone);
    starting it again skips fire times that already have a run."""
    _log_to_stderr()
    with usage_errors():
        ref = project.resolve(pipeline)
        config = project.config(ref.folder)
        start, end = (
            _instant(config, text, end=flag)
            for text, flag in ((start_text, False), (end_text, True))
        )
    with store_errors():
        project.store  # noqa: B018 (a store that cannot open is not a usage error)
    with usage_errors():
        records = project.backfill(ref.folder, start, end, max_runs=max_runs)
    failed = [r for r in records if r.status is not RunStatus.SUCCESS]
    click.echo(f"backfill of {ref.name}: {len(records)} new run(s), {len(failed)} not successful")
    for record in records:
        when = record.scheduled_for.isoformat() if record.scheduled_for else ""
        click.echo(f"  {when}  {record.run_id}  {record.status}")
    sys.exit(1 if failed else 0)


@click.command()
@click.argument("pipeline")
@click.option(
    "-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="Set a parameter."
)
@click.pass_obj
def trigger(project: Project, pipeline: str, params: tuple[str, ...]) -> None:
    """Queue a run for the scheduler to start; prints its run id."""
    from pipelines.status import Trigger

    with usage_errors():
        ref = project.resolve(pipeline)
        values = parse_assignments(params)
        pipeline_ok = project.valid_pipeline(ref.folder)
    with store_errors():
        project.store  # noqa: B018 (a store that cannot open is not a usage error)
    with usage_errors():
        run_id = project.trigger(pipeline_ok.folder, values, trigger=Trigger.MANUAL)
    click.echo(run_id)


def _instant(config: PipelineConfig, text: str, *, end: bool) -> datetime:
    """A --start/--end value: an ISO date (the whole day) or datetime, in the schedule's zone."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(config.schedule.timezone if config.schedule else "UTC")
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time.max if end else time.min)
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(
            f"`{text}` is not a date or datetime", hint="write 2024-01-31 or 2024-01-31T06:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def _log_to_stderr() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
