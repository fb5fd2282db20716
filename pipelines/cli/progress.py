"""Showing a run while it happens and summarizing it afterwards, for the terminal.

Everything shown here is data (block names, errors, paths): it goes through `escape` or
`markup=False`, because rich reads `[...]` as markup and would drop text such as
`[connections.warehouse]`. Ids and paths are never cut: a terminal gets a table only when they
fit whole, and output that is not a terminal (a file, a CI log) gets plain aligned lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from pipelines.forms.palette import rich_style
from pipelines.rundir.fanout import children_under_parents, count_children, parent_of
from pipelines.rundir.layout import executed_notebook
from pipelines.rundir.state import BlockState, seconds_text
from pipelines.status import BlockStatus
from pipelines.store.records import BlockRunRecord, RunRecord

WRAPPED_MIN = 20
"""Columns a wrapping cell (an error) needs at least for a table to be worth drawing."""


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    whole: bool = True
    """Ids, names, paths, figures: never wrapped nor cut. False: free text that may wrap."""
    styled: bool = False
    """Cells are statuses, coloured with the palette on a terminal."""


class LiveProgress:
    """A per-block table refreshed in place on a terminal; one line per change elsewhere."""

    def __init__(self, console: Console, order: list[str]) -> None:
        self.console = console
        self.order = order
        self.states: dict[str, BlockState] = {}
        self.live: Live | None = None
        if console.is_terminal:
            self.live = Live(self._table(), console=console, refresh_per_second=8, transient=True)

    def __enter__(self) -> LiveProgress:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def update(self, state: BlockState) -> None:
        previous = self.states.get(state.block)
        self.states[state.block] = state
        if self.live is not None:
            self.live.update(self._table())
        elif previous is None or previous.status != state.status:
            attempt = f" (attempt {len(state.attempts)})" if len(state.attempts) > 1 else ""
            plain(self.console, f"{state.block}: {state.status}{attempt}")

    def _table(self) -> Table:
        rows = []
        # Fan-out children appear under their block once they report.
        names = children_under_parents([*self.order, *(n for n in self.states if parent_of(n))])
        for name in names:
            state = self.states.get(name)
            status = state.status if state is not None else BlockStatus.PENDING
            rows.append(
                [
                    f"  {name}" if parent_of(name) else name,
                    str(status),
                    str(len(state.attempts)) if state and state.attempts else "",
                    seconds_text(state.started_at, state.ended_at) if state else "",
                ]
            )
        return rich_table(_PROGRESS_COLUMNS, rows)


_PROGRESS_COLUMNS = (
    Column("block"),
    Column("status", styled=True),
    Column("attempts"),
    Column("seconds"),
)
_SUMMARY_COLUMNS = (*_PROGRESS_COLUMNS, Column("note", whole=False))
_RUNS_COLUMNS = (
    Column("run"),
    Column("pipeline"),
    Column("status", styled=True),
    Column("trigger"),
    Column("started"),
    Column("seconds"),
)


def run_summary(console: Console, record: RunRecord) -> None:
    status = record.status
    seconds = seconds_text(record.started_at, record.ended_at)
    if console.is_terminal:
        console.print(
            f"run [bold]{escape(record.run_id)}[/] of {escape(record.pipeline)}: "
            f"[{rich_style(status)}]{status}[/] in {seconds}s",
            highlight=False,
            soft_wrap=True,
        )
    else:
        plain(console, f"run {record.run_id} of {record.pipeline}: {status} in {seconds}s")
    by_name = {block.block: block for block in record.blocks}
    items = count_children(by_name)
    rows = [
        [
            # A fan-out's children are listed under their block, indented.
            f"  {block.block}" if parent_of(block.block) else block.block,
            str(block.status),
            str(block.attempts) if block.attempts else "",
            seconds_text(block.started_at, block.ended_at),
            _note(block, items.get(block.block)),
        ]
        for block in (by_name[name] for name in children_under_parents(by_name))
    ]
    show_table(console, _SUMMARY_COLUMNS, rows)
    failed = [b for b in record.blocks if b.status is BlockStatus.FAILED]
    for block in failed:
        path = executed_notebook(Path(record.run_dir), block.notebook)
        plain(console, f"executed notebook of {block.block}: {path}")


def _note(block: BlockRunRecord, items: int | None = None) -> str:
    """The error of a block that did not succeed; for one that did, why it was cached or why it
    ran (what changed since its last run); for a mapped block, how many items it ran for."""
    if items is not None and not block.error:
        return f"{items} item{'' if items == 1 else 's'}"
    if block.error:
        return block.error  # a cached block's says which run it reuses and why
    if block.status is BlockStatus.SUCCESS and block.reused_from:
        return f"reused from {block.reused_from}"
    if block.status is BlockStatus.SUCCESS and block.schema_drift:
        count = len(block.schema_drift)
        return f"schema drift: {count} change{'s' if count > 1 else ''} (below)"
    if block.status is BlockStatus.SUCCESS and block.cache_note:
        return f"ran: {block.cache_note}"
    return ""


def runs_table(console: Console, records: list[RunRecord]) -> None:
    rows = [
        [
            record.run_id,
            record.pipeline,
            str(record.status),
            str(record.trigger),
            record.started_at.strftime("%Y-%m-%d %H:%M:%S") if record.started_at else "",
            seconds_text(record.started_at, record.ended_at),
        ]
        for record in records
    ]
    show_table(console, _RUNS_COLUMNS, rows)


def plain(console: Console, text: str) -> None:
    """One line of data as it is: no markup, no highlighting, never wrapped."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def show_table(console: Console, columns: Sequence[Column], rows: list[list[str]]) -> None:
    """A rich table on a terminal wide enough to hold every whole cell; plain lines otherwise."""
    if console.is_terminal and _fits(console.width, columns, rows):
        console.print(rich_table(columns, rows))
        return
    for line in plain_lines(columns, rows):
        plain(console, line)


def rich_table(columns: Sequence[Column], rows: list[list[str]]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in columns:
        # Free text folds; whole cells keep their width (`_fits` checked they have room).
        table.add_column(column.header, no_wrap=column.whole, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(column, value) for column, value in zip(columns, row, strict=True)))
    return table


def plain_lines(columns: Sequence[Column], rows: list[list[str]]) -> list[str]:
    """Header and rows aligned with two spaces; the last column unpadded, nothing wrapped."""
    table = [[column.header for column in columns], *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    return [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]


def _cell(column: Column, value: str) -> str:
    if column.styled:
        return f"[{rich_style(value)}]{escape(value)}[/]"
    return escape(value)


def _fits(width: int, columns: Sequence[Column], rows: list[list[str]]) -> bool:
    """Whether a table holds every whole cell uncut at `width` (one column of padding each
    side between columns), leaving wrapping columns WRAPPED_MIN each."""
    needed = 2 * (len(columns) - 1)
    for index, column in enumerate(columns):
        longest = max([len(column.header), *(len(row[index]) for row in rows)])
        needed += longest if column.whole else min(longest, WRAPPED_MIN)
    return needed <= width


def block_tests(console: Console, record: RunRecord) -> None:
    """Each block's `@test` results of its last attempt: outcome, name and message."""
    for block in record.blocks:
        tests = block.attempt_records[-1].tests if block.attempt_records else []
        if not tests:
            continue
        plain(console, f"tests of {block.block}:")
        for test in tests:
            message = f": {test['message']}" if test.get("message") else ""
            outcome = str(test["outcome"])
            if console.is_terminal:
                console.print(
                    f"  [{rich_style(outcome)}]{outcome}[/]  {escape(test['name'] + message)}",
                    highlight=False,
                    soft_wrap=True,
                )
            else:
                plain(console, f"  {outcome}  {test['name']}{message}")
