"""`blockbook diff RUN_A RUN_B`: two runs side by side, as tables or as JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from pipelines.api import Project
from pipelines.cli.support import store_errors, usage_errors
from pipelines.rundir.state import seconds_text

if TYPE_CHECKING:
    from rich.console import Console

    from pipelines.store.diff import Pair, RunDiff, SchemaChange
    from pipelines.store.records import RunRecord

HASH_SHOWN = 12
"""Leading hex digits of a hash shown in tables (the JSON form has them whole)."""


@click.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text")
@click.pass_obj
def diff(project: Project, run_a: str, run_b: str, output_format: str) -> None:
    """Compare run RUN_A with run RUN_B (unique prefixes will do): parameters, each block's
    code hash, status, duration and outputs (rows, columns, hashes), and who started each."""
    # Imported here for cost: only the commands that print tables load rich.
    from rich.console import Console

    from pipelines.store.diff import diff_json

    with store_errors():
        project.store  # noqa: B018 (a store that cannot open is not a usage error)
    with usage_errors():
        compared = project.diff(run_a, run_b)
    if output_format == "json":
        click.echo(json.dumps(diff_json(compared), indent=2))
    else:
        show_diff(Console(), compared)


def show_diff(console: Console, compared: RunDiff) -> None:
    # Imported here for cost: rich, which this module's importers need not load.
    from pipelines.cli.progress import Column, plain, show_table

    plain(console, f"A: {_run_line(compared.a)}")
    plain(console, f"B: {_run_line(compared.b)}")
    sections: list[tuple[str, list[Column], list[list[str]]]] = [
        (
            "parameters",
            [Column("parameter"), Column("A"), Column("B"), Column("")],
            [
                [name, _value(pair.a), _value(pair.b), _mark(pair)]
                for name, pair in compared.params.items()
            ],
        ),
        (
            "blocks",
            [
                Column("block"),
                Column("code"),
                Column("status A", styled=True),
                Column("status B", styled=True),
                Column("seconds A"),
                Column("seconds B"),
            ],
            [
                [
                    block.block,
                    _code(block.code),
                    block.status.a or "-",
                    block.status.b or "-",
                    _seconds(block.duration.a),
                    _seconds(block.duration.b),
                ]
                for block in compared.blocks
            ],
        ),
        (
            "outputs",
            [
                Column("output"),
                Column("rows A"),
                Column("rows B"),
                Column("sha256 A"),
                Column("sha256 B"),
                Column(""),
            ],
            [
                [
                    f"{block.block}.{output.name}",
                    _value(output.rows.a),
                    _value(output.rows.b),
                    _short(output.sha256.a),
                    _short(output.sha256.b),
                    "changed" if output.changed else "",
                ]
                for block in compared.blocks
                for output in block.outputs
            ],
        ),
        (
            "schema changes",
            [Column("output"), Column("change", whole=False)],
            [
                [f"{block}.{output.name}", change]
                for block, output in compared.schema_changes
                for change in _schema_lines(output.schema)
            ],
        ),
        (
            "audit",
            [Column(""), Column("A"), Column("B"), Column("")],
            _audit_rows(compared),
        ),
    ]
    for title, columns, rows in sections:
        console.print()
        plain(console, title)
        if rows:
            show_table(console, columns, rows)
        else:
            plain(console, "  (none)")


def _run_line(record: RunRecord) -> str:
    took = seconds_text(record.started_at, record.ended_at)
    timing = f", {took}s" if took else ""
    return f"{record.run_id}  {record.pipeline}  {record.status}{timing}"


def _audit_rows(compared: RunDiff) -> list[list[str]]:
    a, b = compared.a.audit, compared.b.audit
    rows = [
        [
            "started by",
            str(a.started_by) if a else "-",
            str(b.started_by) if b else "-",
            "",
        ],
        [
            "blockbook",
            a.blockbook_version if a else "-",
            b.blockbook_version if b else "-",
            "",
        ],
    ]
    rows += [
        [path, _short(pair.a), _short(pair.b), _mark(pair)]
        for path, pair in compared.notebooks.items()
    ]
    return rows


def _schema_lines(schema: SchemaChange) -> list[str]:
    return [
        *(f"added {column} ({dtype})" for column, dtype in schema.added),
        *(f"removed {column} ({dtype})" for column, dtype in schema.removed),
        *(f"retyped {r.column}: {r.a} -> {r.b}" for r in schema.retyped),
    ]


def _code(pair: Pair[str]) -> str:
    if pair.a is None and pair.b is None:
        return "?"
    if not pair.changed:
        return f"same {_short(pair.a)}"
    return f"{_short(pair.a)} -> {_short(pair.b)}"


def _mark(pair: Pair[Any]) -> str:
    return "changed" if pair.changed else ""


def _short(digest: str | None) -> str:
    return "-" if digest is None else digest[:HASH_SHOWN]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Mapping | list):
        return json.dumps(value)
    return str(value)
