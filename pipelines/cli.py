"""The `blockbook` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipelines.assembly import Pipeline, assemble
from pipelines.errors import BlockbookError
from pipelines.project import (
    PipelineRef,
    find_root,
    list_pipelines,
    notebook_files,
    resolve_pipeline,
)
from pipelines.render import RENDERERS

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
        click.echo(f"{ref.name:<{width}}  {_relative(ref.folder, root)}  ({count} notebooks)")


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
    notebooks = len({block.notebook for block in assembled.blocks.values()})
    click.echo(f"{assembled.name}: valid, {len(assembled.blocks)} blocks in {notebooks} notebooks")


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
