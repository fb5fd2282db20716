"""`blockbook schema pin RUN BLOCK`: write the contract a block's `--schema-file` compares
with; and the schema drift part of `blockbook show`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipelines.api import Project
from pipelines.cli.support import store_errors
from pipelines.status import BlockStatus

if TYPE_CHECKING:
    from rich.console import Console

    from pipelines.store.records import RunRecord


@click.group()
def schema() -> None:
    """Pinned schemas: contracts a block's stored DataFrames are compared with."""


@schema.command()
@click.argument("run_id")
@click.argument("block")
@click.option(
    "--output",
    "outputs",
    multiple=True,
    metavar="NAME",
    help="Pin this stored frame only (repeat for more; default: every frame the block stored).",
)
@click.option(
    "-o",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write it (default: schemas/BLOCK.json beside the block's notebook).",
)
@click.pass_obj
def pin(
    project: Project, run_id: str, block: str, outputs: tuple[str, ...], path: Path | None
) -> None:
    """Write the columns, dtypes and row bounds (half to twice the rows) of BLOCK's stored
    frames in run RUN_ID (a unique prefix will do) as a schema file, and say how to use it."""
    with store_errors():
        pinned = project.pin_schema(run_id, block, outputs, path)
    click.echo(f"wrote {pinned.path} ({', '.join(pinned.outputs)})")
    click.echo(
        f"compare with it: add `--schema-file {pinned.header_path}` to the header of block "
        f"`{block}` (relative to its notebook's folder; edit min_rows/max_rows as you see fit)"
    )


def block_drift(console: Console, record: RunRecord) -> None:
    """Each block's schema drift: how its stored frames differ from their baseline."""
    for block in record.blocks:
        if not block.schema_drift:
            continue
        baseline = block.schema_drift[0].get("baseline") or "its baseline"
        verdict = "failed" if block.status is BlockStatus.FAILED else "warning"
        _plain(console, f"schema drift of {block.block} against {baseline} ({verdict}):")
        for drift in block.schema_drift:
            _plain(console, f"  {drift.get('kind', '?'):8} {drift.get('message', '')}")


def _plain(console: Console, text: str) -> None:
    # As `progress.plain`: data as it is, never wrapped (progress imports rich at load).
    console.print(text, markup=False, highlight=False, soft_wrap=True)
