"""The `blockbook` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

from pipelines.assembly.pipeline import assemble
from pipelines.assembly.project import (
    find_root,
    list_pipelines,
    notebook_files,
)
from pipelines.cli.cancel import cancel
from pipelines.cli.schedule import backfill, scheduler, trigger
from pipelines.cli.support import (
    EXIT_INVALID,
    assemble_argument,
    open_store,
    relative,
    resolve,
    stop_on_signals,
)
from pipelines.errors import BlockbookError
from pipelines.forms.diagrams import RENDERERS, counted, size
from pipelines.params import parse_assignments
from pipelines.status import RunStatus

if TYPE_CHECKING:
    pass


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
        click.echo(f"{ref.name:<{width}}  {relative(ref.folder, root)}  ({notebooks})")


@main.command()
@click.argument("pipeline")
@click.pass_obj
def validate(root: Path, pipeline: str) -> None:
    """Check a pipeline's notebooks, headers and graph; exit 1 when anything is wrong."""
    assembled = assemble_argument(root, pipeline)
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
    assembled = assemble_argument(root, pipeline)
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
    from pipelines.cli.progress import LiveProgress, run_summary
    from pipelines.runs.runner import Runner, RunOptions

    ref = resolve(root, pipeline)
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
    with open_store(root) as store, LiveProgress(console, order) as progress:
        runner = Runner(root, store, on_block=progress.update)
        with stop_on_signals(
            runner.cancel, "cancelling: stopping kernels (Ctrl-C again to stop at once)"
        ):
            try:
                result = runner.run(ref.folder, options)
            except BlockbookError as exc:
                raise click.UsageError(str(exc)) from None
    with open_store(root) as store:
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
    from pipelines.cli.progress import run_json, runs_table

    name = resolve(root, pipeline).name if pipeline else None
    with open_store(root) as store:
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
    from pipelines.cli.progress import run_json, run_summary

    with open_store(root) as store:
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
    from pipelines.runs.debug import DebugUsageError, write_debug_notebook

    with open_store(root) as store:
        try:
            path = write_debug_notebook(store, run_id, block, output)
        except DebugUsageError as exc:
            raise click.UsageError(str(exc)) from None
        except BlockbookError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_INVALID)
    click.echo(str(path))


_RUN_EXIT_CODES = {RunStatus.SUCCESS: 0, RunStatus.FAILED: 1, RunStatus.CANCELLED: 130}


for _command in (scheduler, backfill, trigger, cancel):
    main.add_command(_command)
