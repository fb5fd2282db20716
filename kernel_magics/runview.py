"""A run as the `%pipeline` magic shows it: a table of blocks refreshed from the run store."""

from __future__ import annotations

import html
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernel_magics.views import status_badge
from pipelines.rundir.layout import executed_notebook
from pipelines.rundir.state import seconds_text
from pipelines.status import BlockStatus

if TYPE_CHECKING:
    from pipelines.store.records import RunRecord

REFRESH_SECONDS = 0.5


def run_text(record: RunRecord | None, run_id: str, order: Sequence[str]) -> str:
    if record is None:
        return f"run {run_id}: starting"
    lines = [f"run {record.run_id} of {record.pipeline}: {record.status}{_seconds(record)}"]
    blocks = {block.block: block for block in record.blocks}
    for name in order or list(blocks):
        block = blocks.get(name)
        if block is None:
            continue
        retries = f", {block.attempts} attempts" if block.attempts > 1 else ""
        seconds = _block_seconds(block)
        line = f"  {name}: {block.status}{seconds}{retries}"
        if block.error and block.status is not BlockStatus.SUCCESS:
            line += f" - {block.error}"
        elif block.schema_drift:
            line += f" - {drift_text(block.schema_drift)}"
        lines.append(line)
    for path in failed_notebooks(record):
        lines.append(f"  executed notebook: {path}")
    return "\n".join(lines)


def run_html(record: RunRecord | None, run_id: str, order: Sequence[str]) -> str:
    if record is None:
        return f"<b>run {html.escape(run_id)}</b> starting&hellip;"
    rows = []
    blocks = {block.block: block for block in record.blocks}
    for name in order or list(blocks):
        block = blocks.get(name)
        if block is None:
            continue
        status = str(block.status)
        error = html.escape(block.error or "") if block.status is not BlockStatus.SUCCESS else ""
        if not error and block.schema_drift:
            error = html.escape(drift_text(block.schema_drift))
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{status_badge(status)}</td>"
            f"<td>{_block_seconds(block).strip()}</td>"
            f"<td>{block.attempts if block.attempts > 1 else ''}</td><td>{error}</td></tr>"
        )
    links = "".join(
        f"<div>executed notebook: <code>{html.escape(str(path))}</code></div>"
        for path in failed_notebooks(record)
    )
    return (
        f"<b>run {html.escape(record.run_id)}</b> of {html.escape(record.pipeline)} "
        f"{status_badge(str(record.status))}{_seconds(record)}"
        "<table><tr><th>block</th><th>status</th><th>seconds</th><th>attempts</th>"
        f"<th>error</th></tr>{''.join(rows)}</table>{links}"
    )


def drift_text(drifts: Sequence[dict[str, Any]]) -> str:
    """A succeeded block's schema drift warnings on one line."""
    return "schema drift: " + "; ".join(str(d.get("message", "")) for d in drifts)


def failed_notebooks(record: RunRecord) -> list[Path]:
    paths: list[Path] = []
    for block in record.blocks:
        path = executed_notebook(Path(record.run_dir), block.notebook)
        if block.status is BlockStatus.FAILED and path not in paths:
            paths.append(path)
    return paths


class RunView:
    """A widget (or text, without a frontend) showing one run; `watch` refreshes it until the
    run ends, from a background thread so the kernel stays free."""

    def __init__(self, run_id: str, order: Sequence[str], *, widgets: bool) -> None:
        self.run_id = run_id
        self.order = list(order)
        self.record: RunRecord | None = None
        self.finished = threading.Event()
        self._widget: Any = None
        self._handle: Any = None
        if widgets:
            import ipywidgets
            from IPython.display import display

            self._widget = ipywidgets.HTML(run_html(None, run_id, self.order))
            self._widget.add_class("blockbook-run")
            self._handle = display(self._bundle(), raw=True, display_id=True)

    def show(self, record: RunRecord | None) -> None:
        self.record = record
        if self._widget is None:
            return
        self._widget.value = run_html(record, self.run_id, self.order)
        self._handle.update(self._bundle(), raw=True)

    def print_text(self) -> None:
        sys.stdout.write(run_text(self.record, self.run_id, self.order) + "\n")

    def watch(self, fetch: Callable[[], RunRecord | None], process: Any = None) -> threading.Thread:
        """Refresh from `fetch` (the run's record, read through the notebook's `Project`) until
        the run ends, or until `process`, its runner, exits without ending it."""
        thread = threading.Thread(
            target=self._poll, args=(fetch, process), name=f"watch:{self.run_id}", daemon=True
        )
        thread.start()
        return thread

    def _poll(self, fetch: Callable[[], RunRecord | None], process: Any) -> None:
        try:
            while True:
                record = fetch()
                self.show(record)
                if record is not None and record.status.is_terminal:
                    break
                if process is not None and process.poll() is not None:
                    # The runner process ended without finishing the run: one last read.
                    self.show(fetch())
                    break
                self.finished.wait(REFRESH_SECONDS)
        finally:
            self.finished.set()

    def _bundle(self) -> dict[str, Any]:
        view = {"version_major": 2, "version_minor": 0, "model_id": self._widget.model_id}
        text = run_text(self.record, self.run_id, self.order)
        return {"application/vnd.jupyter.widget-view+json": view, "text/plain": text}


def _seconds(record: RunRecord) -> str:
    seconds = seconds_text(record.started_at, record.ended_at)
    return f" in {seconds}s" if seconds else ""


def _block_seconds(block: Any) -> str:
    seconds = seconds_text(block.started_at, block.ended_at)
    return f" {seconds}s" if seconds else ""
