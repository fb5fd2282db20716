"""`blockbook logs`: what a run's blocks printed and how their attempts failed, as plain text
(secrets are already masked in what it reads; URL passwords are masked again on the way out)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import click

from pipelines.api import Project
from pipelines.cli.support import store_errors
from pipelines.errors import NotFoundError
from pipelines.params import mask_text

if TYPE_CHECKING:
    from pipelines.store.records import BlockRunRecord, RunRecord

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
"""Colour codes of IPython tracebacks: noise in a file or a CI log."""


@click.command()
@click.argument("run_id")
@click.argument("block", required=False)
@click.pass_obj
def logs(project: Project, run_id: str, block: str | None) -> None:
    """Show each block's attempts (errors, tracebacks) and what it printed in run RUN_ID (a
    unique prefix will do), or only BLOCK's. Exit 1 when the run or block is unknown."""
    with store_errors():
        record = project.run(run_id)
        blocks = [record.known_block(block)] if block else list(record.blocks)
        for index, found in enumerate(blocks):
            if index:
                click.echo()
            for line in block_log(project, record, found):
                click.echo(mask_text(line))


def block_log(project: Project, record: RunRecord, block: BlockRunRecord) -> list[str]:
    """The lines of one block: a heading, each attempt, then the output of its cell."""
    lines = [f"== {block.block} ({block.status}) =="]
    if block.reused_from:
        lines.append(f"reused from run {block.reused_from}")
    for attempt in block.attempt_records:
        lines.append(f"-- attempt {attempt.number}: {attempt.status}")
        if attempt.traceback:
            lines += _ANSI.sub("", attempt.traceback).rstrip("\n").splitlines()
        elif attempt.error:
            lines.append(attempt.error)
    lines += _cell_output(project, record, block)
    return lines


def _cell_output(project: Project, record: RunRecord, block: BlockRunRecord) -> list[str]:
    """stdout and stderr of the block's last attempt, as its executed notebook cell holds them."""
    if not block.attempt_records:
        return []  # never started: there is no cell output to read
    try:
        executed = project.executed_notebook(record.run_id, block.block)
    except NotFoundError as exc:
        return [f"(no output: {exc.message})"]
    import nbformat  # for cost: only this command reads notebooks here

    notebook = nbformat.read(executed.path, as_version=4)  # type: ignore[no-untyped-call]
    cell: Any = notebook.cells[executed.cell_index]
    lines: list[str] = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            lines.append(f"-- {output.get('name', 'stdout')} (last attempt)")
            lines += str(output.get("text", "")).rstrip("\n").splitlines()
    return lines
