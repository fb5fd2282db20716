"""`blockbook scheduler`, `backfill` and `trigger`: the commands of scheduled work."""

from __future__ import annotations

import sys
from datetime import date, datetime, time
from pathlib import Path

import click

from pipelines.cli.support import open_store, resolve, stop_on_signals
from pipelines.errors import BlockbookError
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
def scheduler(root: Path, once: bool, max_runs: int, tick: float, heartbeat_timeout: float) -> None:
    """Start runs when schedules fire (and queued runs); stops cleanly on Ctrl-C or SIGTERM."""
    from datetime import timedelta

    from pipelines.scheduling.scheduler import Scheduler, SchedulerOptions

    _log_to_stderr()
    options = SchedulerOptions(
        max_runs=max_runs, tick_seconds=tick, heartbeat_timeout=timedelta(seconds=heartbeat_timeout)
    )
    with open_store(root) as store:
        daemon = Scheduler(root, store, options)
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
def backfill(root: Path, pipeline: str, start_text: str, end_text: str, max_runs: int) -> None:
    """One run per fire time between --start and --end (inclusive, in the schedule's timezone);
    starting it again skips fire times that already have a run."""
    from pipelines.scheduling.scheduler import Scheduler, SchedulerOptions
    from pipelines.scheduling.scheduler import backfill as run_backfill

    ref = resolve(root, pipeline)
    _log_to_stderr()
    with open_store(root) as store:
        try:
            start, end = (
                _instant(ref.folder, text, end=flag)
                for text, flag in ((start_text, False), (end_text, True))
            )
            daemon = Scheduler(root, store, SchedulerOptions(max_runs=max_runs))
            queued = run_backfill(daemon, ref.folder, start, end)
        except BlockbookError as exc:
            raise click.UsageError(str(exc)) from None
        records = [store.get_run(run_id) for run_id in queued]
    failed = [r for r in records if r is not None and r.status is not RunStatus.SUCCESS]
    click.echo(f"backfill of {ref.name}: {len(queued)} new run(s), {len(failed)} not successful")
    for record in records:
        if record is not None:
            when = record.scheduled_for.isoformat() if record.scheduled_for else ""
            click.echo(f"  {when}  {record.run_id}  {record.status}")
    sys.exit(1 if failed else 0)


@click.command()
@click.argument("pipeline")
@click.option(
    "-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="Set a parameter."
)
@click.pass_obj
def trigger(root: Path, pipeline: str, params: tuple[str, ...]) -> None:
    """Queue a run for the scheduler to start; prints its run id."""
    from pipelines.api import trigger as queue_run
    from pipelines.status import Trigger

    ref = resolve(root, pipeline)
    try:
        run_id = queue_run(ref.folder, parse_assignments(params), root=root, trigger=Trigger.MANUAL)
    except BlockbookError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(run_id)


def _instant(folder: Path, text: str, *, end: bool) -> datetime:
    """A --start/--end value: an ISO date (the whole day) or datetime, in the schedule's zone."""
    from zoneinfo import ZoneInfo

    from pipelines.assembly.config import load_pipeline_config

    config, _ = load_pipeline_config(folder)
    zone = ZoneInfo(config.schedule.timezone if config.schedule else "UTC")
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time.max if end else time.min)
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise BlockbookError(
            f"`{text}` is not a date or datetime", hint="write 2024-01-31 or 2024-01-31T06:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def _log_to_stderr() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
