"""Fan-out children's names (`per_day[3]`): read back, ordered under their block, counted, and
shown under it in the live progress of `blockbook run` on a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from pipelines.assembly.header import format_header, parse_header
from pipelines.assembly.mapping import block_inputs
from pipelines.cli.progress import LiveProgress
from pipelines.rundir.fanout import (
    block_of_child,
    child_name,
    children_under_parents,
    count_children,
    parent_of,
)
from pipelines.rundir.state import BlockState
from pipelines.status import BlockStatus


def test_a_child_name_gives_back_its_block_and_index() -> None:
    assert child_name("per_day", 12) == "per_day[12]"
    assert parent_of("per_day[12]") == ("per_day", 12)
    assert parent_of("per_day") is None
    assert parent_of("per_day[x]") is None
    assert parent_of("Per_day[1]") is None  # not a block name
    assert block_of_child("per_day[3]") == "per_day"
    assert block_of_child("report") == "report"


def test_children_follow_their_block_by_index_whatever_order_they_reported_in() -> None:
    names = ["load", "per_day", "report", "per_day[10]", "per_day[2]", "per_day[0]"]

    assert children_under_parents(names) == [
        "load",
        "per_day",
        "per_day[0]",
        "per_day[2]",
        "per_day[10]",
        "report",
    ]
    assert count_children(names) == {"per_day": 3}
    # A child whose block is not listed stays where it is.
    assert children_under_parents(["other[1]", "load"]) == ["other[1]", "load"]


def test_map_survives_formatting_the_header() -> None:
    header = parse_header("%%block per_day --map days --retries 2")

    assert header.map == "days"
    assert format_header(header) == "%%block per_day --retries 2 --map days"
    assert parse_header(format_header(header)) == header


def test_a_mapped_block_reads_its_list_and_not_item() -> None:
    header = parse_header("%%block per_day --map days")

    assert block_inputs(header, ("item", "item_index", "rate")) == ("days", "rate")
    assert block_inputs(header, ("days", "item")) == ("days",)
    plain = parse_header("%%block other")
    assert block_inputs(plain, ("item", "rate")) == ("item", "rate")


def test_the_live_table_lists_children_under_their_block() -> None:
    output = io.StringIO()
    console = Console(file=output, force_terminal=True, width=100, color_system=None)
    progress = LiveProgress(console, ["make_days", "per_day", "report"])
    for name in ("per_day[1]", "per_day[0]", "per_day"):
        progress.update(BlockState(name, BlockStatus.RUNNING, "nb.ipynb"))

    console.print(progress._table())

    lines = [line.strip() for line in output.getvalue().splitlines() if line.strip()]
    blocks = [line.split()[0] for line in lines[-5:]]
    assert blocks == ["make_days", "per_day", "per_day[0]", "per_day[1]", "report"]
