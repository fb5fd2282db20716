"""The `blockbook` command line: arguments in, presentation out; the work is `Project`'s."""

from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipelines.api import Project
from pipelines.assembly.project import locate_root
from pipelines.cli.cancel import cancel
from pipelines.cli.diff import diff
from pipelines.cli.logs import logs
from pipelines.cli.schedule import backfill, scheduler, trigger
from pipelines.cli.schema import schema
from pipelines.cli.support import (
    EXIT_INVALID,
    assemble_argument,
    relative,
    resolve,
    stop_on_signals,
    store_errors,
    usage_errors,
)
from pipelines.forms.diagrams import RENDERERS, counted, size
from pipelines.forms.json_forms import run_json
from pipelines.params import parse_assignments
from pipelines.status import RunStatus

if TYPE_CHECKING:
    from pipelines.runs.runner import Runner

FORCE_ALL = "*"
"""What `--force` without a block name stands for (no block is named `*`)."""


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
    root = locate_root(project_dir)
    if project_dir is None and root.note is not None:
        click.echo(root.note, err=True)  # no marker decided: say where the runs go
    context.obj = context.with_resource(Project(root.folder))


@main.command("list")
@click.pass_obj
def list_command(project: Project) -> None:
    """List the pipelines under the project root."""
    root = project.root
    pipelines = project.pipeline_refs()
    if not pipelines:
        click.echo(
            f"no pipelines under {root} (a pipeline is a folder of notebooks with %%block cells)"
        )
        return
    width = max(len(ref.name) for ref in pipelines)
    for ref in pipelines:
        count = len(project.notebooks(ref))
        notebooks = counted(count, "notebook")
        click.echo(f"{ref.name:<{width}}  {relative(ref.folder, root)}  ({notebooks})")


@main.command()
@click.argument("pipeline")
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 1).")
@click.pass_obj
def validate(project: Project, pipeline: str, strict: bool) -> None:
    """Check a pipeline's notebooks, headers and graph; exit 1 when anything is wrong."""
    assembled = assemble_argument(project, pipeline)
    failing = assembled.problems if strict else assembled.errors
    for problem in assembled.problems:
        click.echo(problem.format(), err=problem.is_error or strict)
    if failing:
        what = "problem(s) (--strict)" if strict and assembled.warnings else "error(s)"
        click.echo(f"{assembled.name}: {len(failing)} {what}", err=True)
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
def graph(project: Project, pipeline: str, output_format: str) -> None:
    """Show a pipeline's blocks, edges and global order."""
    assembled = assemble_argument(project, pipeline)
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
@click.option(
    "--force",
    "force",
    multiple=True,
    is_flag=False,
    flag_value=FORCE_ALL,
    metavar="[BLOCK]",
    help="Run blocks even if nothing changed since their last run: all of them, or BLOCK "
    "(repeatable). Put it after PIPELINE.",
)
@click.option(
    "--executor",
    metavar="local|dask://HOST:PORT",
    help="Where notebooks execute, for this run (default: $BLOCKBOOK_EXECUTOR, else "
    "[executor] in blockbook.toml, else local).",
)
@click.option("--run-id", hidden=True, help="Id for the new run (for tools that watch it).")
@click.pass_obj
def run(
    project: Project,
    pipeline: str,
    params: tuple[str, ...],
    only: tuple[str, ...],
    isolate: bool,
    resume: str | None,
    force: tuple[str, ...],
    executor: str | None,
    run_id: str | None,
) -> None:
    """Run a pipeline headlessly; exit 0 on success, 1 on failure, 130 when cancelled.

    Blocks for which nothing changed since their last successful run (code, the outputs they
    read, parameters they read, settings) are not run again: their outputs are reused and
    their status is `cached`. Exporters and sensors always run; `--force` runs everything."""
    # Imported here for cost: only this command shows live progress.
    from rich.console import Console

    from pipelines.cli.progress import LiveProgress, run_summary
    from pipelines.cli.schema import block_drift
    from pipelines.runs.executors.choice import parse_executor
    from pipelines.runs.runner import RunOptions
    from pipelines.store.sealed import KEY_ENV, queued_params

    with usage_errors():
        assembled = project.assemble(pipeline)
        given = parse_assignments(params)
        chosen = parse_executor(executor, "--executor") if executor is not None else None
    with store_errors():
        project.store  # noqa: B018 (opened before the live view: its errors print plainly)
        # A queued run (a scheduler or `Project.start` launched this process) brings its own
        # parameters, secrets sealed: they are never on a runner's command line.
        queued = queued_params(project.store, project.root, run_id) if run_id else None
    # The kernels run the pipeline's code: it has no use for the key, and could print it.
    os.environ.pop(KEY_ENV, None)
    with usage_errors():
        options = RunOptions(
            params={**(queued or {}), **given},
            only=only,
            isolate=isolate,
            resume=resume,
            run_id=run_id,
            force=FORCE_ALL in force,
            force_blocks=tuple(name for name in force if name != FORCE_ALL),
        )
    console = Console()
    cancelling = "cancelling: stopping kernels (Ctrl-C again to stop at once)"
    order = [str(name) for name in assembled.order]
    with LiveProgress(console, order) as progress, ExitStack() as signals, usage_errors():

        def cancel_on_signals(runner: Runner) -> None:
            signals.enter_context(stop_on_signals(runner.cancel, cancelling))

        result = project.execute(
            assembled, options, progress.update, cancel_on_signals, executor=chosen
        )
    with store_errors():
        record = project.run(result.run_id)
    run_summary(console, record)
    block_drift(console, record)
    sys.exit(_RUN_EXIT_CODES.get(result.status, EXIT_INVALID))


@main.command()
@click.argument("pipeline", required=False)
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.pass_obj
def runs(project: Project, pipeline: str | None, output_format: str, limit: int) -> None:
    """List recent runs, newest first."""
    from rich.console import Console

    from pipelines.cli.progress import runs_table
    from pipelines.store.liveness import crash_runs_without_runner

    name = resolve(project, pipeline).name if pipeline else None
    with store_errors():
        # A run whose runner died on this host shows as crashed even when no scheduler runs.
        crash_runs_without_runner(project.store)
        records = project.runs(name, limit=limit)
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
def show(project: Project, run_id: str, output_format: str) -> None:
    """Show one run and its blocks (RUN_ID may be a unique prefix)."""
    from rich.console import Console

    from pipelines.cli.progress import block_tests, run_summary
    from pipelines.cli.schema import block_drift

    with store_errors():
        project.store  # noqa: B018 (a store that cannot open is not a usage error)
    with usage_errors():
        record = project.run(run_id)
    if output_format == "json":
        shown = run_json(record, with_blocks=True)
        # Who started the run, with which code: the audit trail, in `show` only.
        shown["audit"] = None if record.audit is None else record.audit.to_json()
        click.echo(json.dumps(shown, indent=2))
    else:
        console = Console()
        run_summary(console, record)
        block_drift(console, record)
        block_tests(console, record)


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
def debug(project: Project, run_id: str, block: str, output: Path | None) -> None:
    """Write a notebook that re-creates BLOCK of run RUN_ID, with its inputs; print its path."""
    from pipelines.runs.debug import DebugUsageError

    with store_errors():
        project.store  # noqa: B018 (a store that cannot open is not a usage error)
        try:
            path = project.debug_notebook(run_id, block, output)
        except DebugUsageError as exc:
            raise click.UsageError(str(exc)) from None
    click.echo(str(path))


_RUN_EXIT_CODES = {RunStatus.SUCCESS: 0, RunStatus.FAILED: 1, RunStatus.CANCELLED: 130}


for _command in (scheduler, backfill, trigger, cancel, logs, diff, schema):
    main.add_command(_command)
