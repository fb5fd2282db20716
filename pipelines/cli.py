"""The `blockbook` command line."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

from pipelines.assembly import Pipeline, assemble
from pipelines.errors import BlockbookError
from pipelines.params import parse_assignments
from pipelines.project import (
    PipelineRef,
    find_root,
    list_pipelines,
    notebook_files,
    resolve_pipeline,
)
from pipelines.render import RENDERERS, counted, size
from pipelines.status import RunStatus
from pipelines.store import RunStore

if TYPE_CHECKING:
    from pipelines.runner import Runner

EXIT_INVALID = 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--project",
    "project_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Project folder (default: nearest with blockbook.toml, else the git root, else cwd).",
)
@click.version_option(package_name="blockbook")
@click.pass_context
def main(context: click.Context, project_dir: Path | None) -> None:
    """Blockbook: run the %%block cells of your notebooks as one pipeline."""
    context.obj = find_root(project_dir)


@main.command("list")
@click.pass_obj
def list_command(root: Path) -> None:
    """List the pipelines under the project root."""
    pipelines = list_pipelines(root)
    if not pipelines:
        click.echo(
            f"no pipelines under {root} (a pipeline is a folder of notebooks with %%block cells)"
        )
        return
    width = max(len(ref.name) for ref in pipelines)
    for ref in pipelines:
        count = len(notebook_files(ref.folder))
        notebooks = counted(count, "notebook")
        click.echo(f"{ref.name:<{width}}  {_relative(ref.folder, root)}  ({notebooks})")


@main.command()
@click.argument("pipeline")
@click.pass_obj
def validate(root: Path, pipeline: str) -> None:
    """Check a pipeline's notebooks, headers and graph; exit 1 when anything is wrong."""
    assembled = _assemble(root, pipeline)
    for problem in assembled.problems:
        click.echo(problem.format(), err=problem.is_error)
    if assembled.errors:
        click.echo(f"{assembled.name}: {len(assembled.errors)} error(s)", err=True)
        sys.exit(EXIT_INVALID)
    click.echo(f"{assembled.name}: valid, {size(assembled)}")


@main.command()
@click.argument("pipeline")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(sorted(RENDERERS)),
    default="text",
    show_default=True,
)
@click.pass_obj
def graph(root: Path, pipeline: str, output_format: str) -> None:
    """Show a pipeline's blocks, edges and global order."""
    assembled = _assemble(root, pipeline)
    if assembled.errors:
        for problem in assembled.problems:
            click.echo(problem.format(), err=True)
        click.echo(f"{assembled.name}: fix the errors above to see the graph", err=True)
        sys.exit(EXIT_INVALID)
    for problem in assembled.warnings:
        click.echo(problem.format(), err=True)
    click.echo(RENDERERS[output_format](assembled))


@main.command()
@click.argument("pipeline")
@click.option(
    "-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="Set a parameter."
)
@click.option("--only", multiple=True, metavar="BLOCK", help="Run only these blocks.")
@click.option("--isolate", is_flag=True, help="One kernel per block instead of per notebook.")
@click.option("--resume", metavar="RUN_ID", help="Re-run only what did not succeed in RUN_ID.")
@click.option("--run-id", hidden=True, help="Id for the new run (for tools that watch it).")
@click.pass_obj
def run(
    root: Path,
    pipeline: str,
    params: tuple[str, ...],
    only: tuple[str, ...],
    isolate: bool,
    resume: str | None,
    run_id: str | None,
) -> None:
    """Run a pipeline headlessly; exit 0 on success, 1 on failure, 130 when cancelled."""
    from pipelines.progress import LiveProgress, run_summary
    from pipelines.runner import Runner, RunOptions

    ref = _resolve(root, pipeline)
    try:
        options = RunOptions(
            params=parse_assignments(params),
            only=only,
            isolate=isolate,
            resume=resume,
            run_id=run_id,
        )
    except BlockbookError as exc:
        raise click.UsageError(str(exc)) from None
    console = Console()
    order = [str(name) for name in assemble(ref.folder).order]
    with _open_store(root) as store, LiveProgress(console, order) as progress:
        runner = Runner(root, store, on_block=progress.update)
        with _cancel_on_signals(runner, console):
            try:
                result = runner.run(ref.folder, options)
            except BlockbookError as exc:
                raise click.UsageError(str(exc)) from None
    with _open_store(root) as store:
        record = store.get_run(result.run_id)
    if record is not None:
        run_summary(console, record)
    sys.exit(_RUN_EXIT_CODES.get(result.status, EXIT_INVALID))


@main.command()
@click.argument("pipeline", required=False)
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.pass_obj
def runs(root: Path, pipeline: str | None, output_format: str, limit: int) -> None:
    """List recent runs, newest first."""
    from pipelines.progress import run_json, runs_table

    name = _resolve(root, pipeline).name if pipeline else None
    with _open_store(root) as store:
        records = store.list_runs(name, limit=limit)
    if output_format == "json":
        click.echo(json.dumps([run_json(r, with_blocks=False) for r in records], indent=2))
    elif records:
        runs_table(Console(), records)
    else:
        click.echo("no runs yet")


@main.command()
@click.argument("run_id")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text")
@click.pass_obj
def show(root: Path, run_id: str, output_format: str) -> None:
    """Show one run and its blocks (RUN_ID may be a unique prefix)."""
    from pipelines.progress import run_json, run_summary

    with _open_store(root) as store:
        try:
            record = store.get_run(run_id)
        except BlockbookError as exc:
            raise click.UsageError(str(exc)) from None
    if record is None:
        raise click.UsageError(f"no run `{run_id}`; `blockbook runs` lists run ids")
    if output_format == "json":
        click.echo(json.dumps(run_json(record, with_blocks=True), indent=2))
    else:
        run_summary(Console(), record)


@main.command()
@click.argument("run_id")
@click.argument("block")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the notebook (default: RUN_DIR/debug/BLOCK.ipynb).",
)
@click.pass_obj
def debug(root: Path, run_id: str, block: str, output: Path | None) -> None:
    """Write a notebook that re-creates BLOCK of run RUN_ID, with its inputs; print its path."""
    from pipelines.debug import DebugUsageError, write_debug_notebook

    with _open_store(root) as store:
        try:
            path = write_debug_notebook(store, run_id, block, output)
        except DebugUsageError as exc:
            raise click.UsageError(str(exc)) from None
        except BlockbookError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_INVALID)
    click.echo(str(path))


@main.command()
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

    from pipelines.scheduler import Scheduler, SchedulerOptions

    _log_to_stderr()
    options = SchedulerOptions(
        max_runs=max_runs, tick_seconds=tick, heartbeat_timeout=timedelta(seconds=heartbeat_timeout)
    )
    with _open_store(root) as store:
        daemon = Scheduler(root, store, options)
        if once:
            daemon.run_once()
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        requests = 0

        def handle(signum: int, frame: object) -> None:
            nonlocal requests
            requests += 1
            if requests > 1:
                raise KeyboardInterrupt
            click.echo(
                "scheduler: stopping; waiting for running runs (again to quit now)", err=True
            )
            daemon.stop()

        for sig in previous:
            signal.signal(sig, handle)
        try:
            daemon.serve()
        except KeyboardInterrupt:
            sys.exit(130)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@main.command()
@click.argument("pipeline")
@click.option("--start", "start_text", required=True, metavar="DATE", help="First day or instant.")
@click.option("--end", "end_text", required=True, metavar="DATE", help="Last day or instant.")
@click.option("--max-runs", type=click.IntRange(min=1), default=4, show_default=True)
@click.pass_obj
def backfill(root: Path, pipeline: str, start_text: str, end_text: str, max_runs: int) -> None:
    """One run per fire time between --start and --end (inclusive, in the schedule's timezone);
    starting it again skips fire times that already have a run."""
    from pipelines.scheduler import Scheduler, SchedulerOptions
    from pipelines.scheduler import backfill as run_backfill

    ref = _resolve(root, pipeline)
    _log_to_stderr()
    with _open_store(root) as store:
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


@main.command()
@click.argument("pipeline")
@click.option(
    "-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="Set a parameter."
)
@click.pass_obj
def trigger(root: Path, pipeline: str, params: tuple[str, ...]) -> None:
    """Queue a run for the scheduler to start; prints its run id."""
    from pipelines.api import trigger as queue_run
    from pipelines.status import Trigger

    ref = _resolve(root, pipeline)
    try:
        run_id = queue_run(ref.folder, parse_assignments(params), root=root, trigger=Trigger.MANUAL)
    except BlockbookError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(run_id)


def _instant(folder: Path, text: str, *, end: bool) -> datetime:
    """A --start/--end value: an ISO date (the whole day) or datetime, in the schedule's zone."""
    from zoneinfo import ZoneInfo

    from pipelines.config import load_pipeline_config

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


_RUN_EXIT_CODES = {RunStatus.SUCCESS: 0, RunStatus.FAILED: 1, RunStatus.CANCELLED: 130}


@contextlib.contextmanager
def _open_store(root: Path) -> Iterator[RunStore]:
    try:
        store = RunStore.open(root)
    except BlockbookError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INVALID)
    try:
        yield store
    finally:
        store.close()


@contextlib.contextmanager
def _cancel_on_signals(runner: Runner, console: Console) -> Iterator[None]:
    """First Ctrl-C or SIGTERM cancels cleanly; a second one stops at once."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    requests = 0

    def handle(signum: int, frame: object) -> None:
        nonlocal requests
        requests += 1
        if requests > 1:
            raise KeyboardInterrupt
        console.print("cancelling: stopping kernels (Ctrl-C again to stop at once)")
        runner.cancel()

    for sig in previous:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _assemble(root: Path, argument: str) -> Pipeline:
    ref = _resolve(root, argument)
    return assemble(ref.folder)


def _resolve(root: Path, argument: str) -> PipelineRef:
    try:
        return resolve_pipeline(argument, root)
    except BlockbookError as exc:
        raise click.UsageError(str(exc)) from None


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)
