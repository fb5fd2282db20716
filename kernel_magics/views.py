"""What a `%%block` execution shows: a live ipywidgets view in a notebook, text elsewhere.

Both render the same `BlockReport`, built from the block's state and outcome, so a terminal
IPython session or a headless run's executed notebook says what the widget says.
"""

from __future__ import annotations

import html
import sys
from dataclasses import dataclass, field
from typing import Any, Protocol

from kernel_magics.runtime import Outcome
from pipelines.forms.palette import html_colour
from pipelines.rundir.state import (
    BlockState,
    InputSource,
    LoadedInput,
    TestOutcome,
    TestRecord,
    seconds_between,
)
from pipelines.status import BlockStatus

_TEST_MARKS = {
    TestOutcome.PASSED: "&#10003;",
    TestOutcome.FAILED: "&#10007;",
    TestOutcome.WARNED: "!",
}


@dataclass(frozen=True, slots=True)
class BlockReport:
    block: str
    state: str
    """A block status, or `warned` for a success with warned tests or schema drift."""
    seconds: float | None = None
    attempts: int = 0
    error: str | None = None
    outputs: tuple[str, ...] = ()
    loaded: tuple[str, ...] = ()
    tests: tuple[TestRecord, ...] = ()
    notes: tuple[str, ...] = field(default=())
    previews: tuple[tuple[str, str], ...] = ()
    """(output, first rows as a text table), collapsed in the widget."""
    drift: tuple[str, ...] = ()
    """Schema drift: one line per difference from the baseline, saying which baseline."""

    @property
    def headline(self) -> str:
        text = f"block {self.block}: {self.state}"
        if self.seconds is not None:
            text += f" in {self.seconds:.2f}s"
        if self.attempts > 1:
            text += f" after {self.attempts} attempts"
        return text


def report_running(state: BlockState) -> BlockReport:
    attempts = len(state.attempts)
    label = "retrying" if state.status is BlockStatus.RETRYING else str(state.status)
    pokes = state.attempts[-1].pokes if state.attempts else 0
    notes = (f"sensor: {pokes} check(s) so far, condition not met yet",) if pokes else ()
    return BlockReport(state.block, label, attempts=attempts, error=state.error, notes=notes)


def report(outcome: Outcome) -> BlockReport:
    state = outcome.state
    final = state.attempts[-1] if state.attempts else None
    warned = any(t.outcome is TestOutcome.WARNED for t in outcome.tests)
    label = str(state.status)
    if state.status is BlockStatus.SUCCESS and (warned or state.schema_drift):
        label = "warned"
    seconds = seconds_between(state.started_at, state.ended_at) if state.attempts else None
    outputs: list[str] = []
    if final is not None:
        outputs += [_manifest_line(m) for m in final.outputs]
        outputs += [_summary_line(s) for s in final.summaries]
    loaded = [_loaded_line(item) for item in outcome.preparation.loaded]
    notes = tuple(outcome.preparation.notes)
    if state.status is BlockStatus.CACHED and state.error:
        notes = (state.error, *notes)  # why it was reused: not an error
    return BlockReport(
        block=state.block,
        state=label,
        seconds=seconds,
        attempts=len(state.attempts),
        error=state.error if not state.status.succeeded else None,
        outputs=tuple(outputs),
        loaded=tuple(loaded),
        tests=outcome.tests,
        notes=notes,
        previews=outcome.previews,
        drift=tuple(_drift_line(d) for d in state.schema_drift),
    )


def as_text(block: BlockReport) -> str:
    lines = [block.headline]
    if block.error:
        lines.append(f"  {block.error}")
    lines += [f"  loaded {line}" for line in block.loaded]
    lines += [f"  note: {note}" for note in block.notes]
    lines += [f"  output {line}" for line in block.outputs]
    lines += [f"  schema drift: {line}" for line in block.drift]
    for name, table in block.previews:
        lines.append(f"  first rows of {name}:")
        lines += [f"    {row}" for row in table.splitlines()]
    for test in block.tests:
        mark = "FAILED" if test.outcome is TestOutcome.FAILED else str(test.outcome)
        lines.append(f"  test {test.name}: {mark}" + (f" - {test.message}" if test.message else ""))
    return "\n".join(lines)


def as_html(block: BlockReport) -> tuple[str, str]:
    """(headline, details) HTML for the widget."""
    badge = status_badge(block.state)
    timing = f" {block.seconds:.2f}s" if block.seconds is not None else ""
    retries = f" after {block.attempts} attempts" if block.attempts > 1 else ""
    headline = f"<b>{html.escape(block.block)}</b> {badge}{timing}{retries}"
    rows: list[str] = []
    if block.error:
        tone = html_colour(BlockStatus.FAILED)
        rows.append(f'<div style="color:{tone}">{html.escape(block.error)}</div>')
    rows += [f"<div>&larr; {html.escape(line)}</div>" for line in block.loaded]
    rows += [f"<div>&rarr; {html.escape(line)}</div>" for line in block.outputs]
    rows += [
        f"<details><summary>first rows of {html.escape(name)}</summary>"
        f'<pre style="margin:0">{html.escape(table)}</pre></details>'
        for name, table in block.previews
    ]
    rows += [f"<div><i>{html.escape(note)}</i></div>" for note in block.notes]
    drift_tone = html_colour(TestOutcome.WARNED)
    rows += [
        f'<div style="color:{drift_tone}">&#9888; schema drift: {html.escape(line)}</div>'
        for line in block.drift
    ]
    for test in block.tests:
        mark = _TEST_MARKS[test.outcome]
        tone = html_colour(test.outcome)
        text = f"test {html.escape(test.name)}: {html.escape(test.outcome)}"
        if test.message:
            text += f" &mdash; {html.escape(test.message)}"
        rows.append(f'<div style="color:{tone}">{mark} {text}</div>')
    return headline, "".join(rows)


class BlockView(Protocol):
    def update(self, state: BlockState) -> None: ...

    def finish(self, outcome: Outcome) -> None: ...


class TextBlockView:
    """For terminal IPython and headless runs: one block of text when the block ends."""

    def update(self, state: BlockState) -> None:
        pass

    def finish(self, outcome: Outcome) -> None:
        # The status is the cell's own output, like any text a cell prints.
        sys.stdout.write(as_text(report(outcome)) + "\n")


class WidgetBlockView:
    """One ipywidgets view per execution, updated as the block moves through its states."""

    def __init__(self, block: str) -> None:
        import ipywidgets as widgets
        from IPython.display import display

        self._headline = widgets.HTML(f"<b>{html.escape(block)}</b> starting")
        self._details = widgets.HTML("")
        self.box = widgets.VBox(
            [self._headline, self._details],
            layout=widgets.Layout(border="1px solid #d0d7de", padding="2px 8px"),
        )
        self.box.add_class("blockbook-block")
        # Shown with a text/plain twin so frontends without widgets (nbconvert, GitHub, a
        # terminal reading the notebook) still see the status; updated in place at the end.
        self._handle = display(self._bundle(f"block {block}: starting"), raw=True, display_id=True)

    def update(self, state: BlockState) -> None:
        headline, details = as_html(report_running(state))
        self._headline.value = headline
        self._details.value = details

    def finish(self, outcome: Outcome) -> None:
        block = report(outcome)
        self._headline.value, self._details.value = as_html(block)
        self._handle.update(self._bundle(as_text(block)), raw=True)

    def _bundle(self, text: str) -> dict[str, Any]:
        view = {"version_major": 2, "version_minor": 0, "model_id": self.box.model_id}
        return {"application/vnd.jupyter.widget-view+json": view, "text/plain": text}


def status_badge(status: str) -> str:
    """A status as a small coloured label, for views of blocks and runs."""
    return (
        f'<span style="background:{html_colour(status)};color:white;border-radius:3px;'
        f'padding:0 6px">{html.escape(status)}</span>'
    )


def make_view(shell: Any, block: str, *, headless: bool) -> BlockView:
    if headless or not has_frontend(shell):
        return TextBlockView()
    return WidgetBlockView(block)


def has_frontend(shell: Any) -> bool:
    """True in a kernel talking to a Jupyter frontend (which can render widgets)."""
    return type(shell).__name__ == "ZMQInteractiveShell"


def _manifest_line(manifest: dict[str, Any]) -> str:
    columns = manifest.get("columns") or []
    if manifest.get("rows") is not None and columns:
        names = ", ".join(str(c[0]) for c in columns[:4])
        more = ", ..." if len(columns) > 4 else ""
        shape = f"{manifest['rows']} rows x {len(columns)} columns ({names}{more})"
    else:
        shape = f"{manifest['type']}, {_size(manifest['bytes'])}"
    return f"{manifest['name']}: {shape}, stored as {manifest['format']}"


def _drift_line(drift: dict[str, Any]) -> str:
    against = f" (against {drift['baseline']})" if drift.get("baseline") else ""
    return f"{drift.get('message', '')}{against}"


def _summary_line(summary: dict[str, Any]) -> str:
    detail = summary["type"]
    if "shape" in summary:
        detail += " " + " x ".join(str(n) for n in summary["shape"])
    elif "length" in summary:
        detail += f" of length {summary['length']}"
    return f"{summary['name']}: {detail} (not stored: no other block reads it)"


def _loaded_line(item: LoadedInput) -> str:
    if item.source is InputSource.PARAMS:
        return f"{item.name} from pipeline.toml [params]"
    notebook = f" in {item.notebook}" if item.notebook else ""
    origin = "dev area" if item.source is InputSource.DEV else f"run {item.run}"
    return f"{item.name} from {item.block}{notebook} ({origin})"


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024  # type: ignore[assignment]
    return f"{count} B"
