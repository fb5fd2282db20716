"""Showing a run while it happens and summarizing it afterwards, for the terminal."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from pipelines.forms.palette import rich_style
from pipelines.rundir.layout import executed_notebook
from pipelines.rundir.state import BlockState, seconds_text
from pipelines.status import BlockStatus
from pipelines.store.records import RunRecord


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
            self.console.print(f"{state.block}: {state.status}{attempt}", highlight=False)

    def _table(self) -> Table:
        table = Table(box=None, pad_edge=False)
        for column in ("block", "status", "attempts", "seconds"):
            table.add_column(column)
        for name in self.order:
            state = self.states.get(name)
            status = state.status if state is not None else BlockStatus.PENDING
            table.add_row(
                name,
                f"[{rich_style(status)}]{status}[/]",
                str(len(state.attempts)) if state and state.attempts else "",
                seconds_text(state.started_at, state.ended_at) if state else "",
            )
        return table


def run_summary(console: Console, record: RunRecord) -> None:
    status = record.status
    console.print(
        f"run [bold]{record.run_id}[/] of {record.pipeline}: [{rich_style(status)}]{status}[/]"
        f" in {seconds_text(record.started_at, record.ended_at)}s",
        highlight=False,
    )
    table = Table(box=None, pad_edge=False)
    for column in ("block", "status", "attempts", "seconds", "error"):
        table.add_column(column, overflow="fold")
    for block in record.blocks:
        table.add_row(
            block.block,
            f"[{rich_style(block.status)}]{block.status}[/]",
            str(block.attempts) if block.attempts else "",
            seconds_text(block.started_at, block.ended_at),
            block.error or ("reused from " + block.reused_from if block.reused_from else ""),
        )
    console.print(table)
    failed = [b for b in record.blocks if b.status is BlockStatus.FAILED]
    for block in failed:
        path = executed_notebook(Path(record.run_dir), block.notebook)
        console.print(f"executed notebook of {block.block}: {path}")


def runs_table(console: Console, records: list[RunRecord]) -> None:
    table = Table(box=None, pad_edge=False)
    for column in ("run", "pipeline", "status", "trigger", "started", "seconds"):
        table.add_column(column)
    for record in records:
        table.add_row(
            record.run_id,
            record.pipeline,
            f"[{rich_style(record.status)}]{record.status}[/]",
            str(record.trigger),
            record.started_at.strftime("%Y-%m-%d %H:%M:%S") if record.started_at else "",
            seconds_text(record.started_at, record.ended_at),
        )
    console.print(table)
