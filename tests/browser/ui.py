"""What the browser tests do in JupyterLab, in the terms of the frontend's DOM contract:

- the sidebar panel is the widget `#blockbook-pipelines` (its tab in the left sidebar has
  `data-id="blockbook-pipelines"`); a pipeline is a row `[data-pipeline=NAME]` with buttons
  `[data-action=run|graph|runs|problems]`; problems are items `[data-problem]`;
- the graph is a main-area widget whose nodes are `[data-block=NAME][data-status=...]`;
- Run opens a JupyterLab dialog: inputs `param:NAME`, an accept button "Run";
- the runs view lists `[data-run=RUN_ID][data-status=...]`; a run's page has `data-run-status`
  on its root, block rows `tr[data-block][data-status]` with `[data-action=open-notebook|log|
  debug|force]`, run buttons `[data-action=cancel|resume]`, and `select[name=compare]`, whose
  choice shows `.bb-Diff[data-diff-a][data-diff-b]` with rows `[data-diff-block]`;
- cell badges are `.bb-cell-badge[data-block][data-status]` (`[data-stale=true]` once the
  saved code changed since the newest run); the status bar item is
  `#blockbook-status`.

Plus a small client of the REST API (docs/server.md) to arrange and check runs.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.sync_api import Locator, Page, expect

UI_DEADLINE_MS = 60_000
"""What the UI may take to show something it was asked for (a loaded 2-core machine)."""
RUN_DEADLINE_MS = 240_000
"""What a run may take to end, from the click."""
SHELL_DEADLINE_MS = 120_000
"""What the lab may take to load in a fresh page."""

PANEL = "#blockbook-pipelines"
MAIN = "#jp-main-dock-panel"


# ---- the server ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Lab:
    base_url: str
    """`http://127.0.0.1:PORT/`"""
    token: str
    root: Path
    """The project root, the server's root_dir."""
    log: Path

    def url(self, path: str, **query: str) -> str:
        """`path` under the server, with the token (a value "" gives a bare `?reset`)."""
        parts = [f"token={self.token}"] + [
            f"{key}={urllib.parse.quote(value)}" if value else key for key, value in query.items()
        ]
        return f"{self.base_url}{path}?{'&'.join(parts)}"

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Call the server (a path such as `blockbook/api/runs`) with the token; JSON back."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode("utf-8")
        return json.loads(text) if text else None

    def api(self, method: str, path: str, body: Any = None) -> Any:
        return self.request(method, f"blockbook/api/{path}", body)

    def is_up(self) -> bool:
        try:
            self.request("GET", "api/status")
        except (OSError, urllib.error.URLError, ValueError):
            return False
        return True

    def runs(self, pipeline: str) -> list[dict[str, Any]]:
        """The pipeline's runs, newest first."""
        runs: list[dict[str, Any]] = self.api("GET", f"runs?pipeline={pipeline}&limit=100")["runs"]
        return runs

    def block_names(self, pipeline: str) -> list[str]:
        return [block["name"] for block in self.api("GET", f"pipelines/{pipeline}")["blocks"]]

    def wait_for_run(
        self, pipeline: str, *, not_in: set[str], timeout: float = UI_DEADLINE_MS / 1000
    ) -> dict[str, Any]:
        """The newest run of `pipeline` whose id is not in `not_in`, once there is one."""
        deadline = time.monotonic() + timeout
        while True:
            fresh = [run for run in self.runs(pipeline) if run["run_id"] not in not_in]
            if fresh:
                return fresh[0]
            assert time.monotonic() < deadline, f"no new run of {pipeline} after {timeout}s"
            time.sleep(0.25)

    def wait_for_end(self, run_id: str, timeout: float = RUN_DEADLINE_MS / 1000) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run: dict[str, Any] = self.api("GET", f"runs/{run_id}")
            if run["status"] not in {"queued", "running"}:
                return run
            assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
            time.sleep(0.25)


# ---- the lab -------------------------------------------------------------------------------


def wait_for_shell(page: Page) -> None:
    """JupyterLab has started: its splash is gone, the launcher shows (a reset workspace opens
    it) and the file browser lists the project."""
    expect(page.locator("#jupyterlab-splash")).to_have_count(0, timeout=SHELL_DEADLINE_MS)
    expect(page.locator(f"{MAIN} .jp-Launcher")).to_be_visible(timeout=SHELL_DEADLINE_MS)
    expect(page.locator(".jp-DirListing-item").first).to_be_visible(timeout=SHELL_DEADLINE_MS)


def wait_for_kernel(page: Page) -> None:
    """The open notebook's kernel has started: the status bar says `| Idle` (the toolbar's
    execution indicator says idle already while the kernel is still initializing)."""
    kernel = page.locator("#jp-main-statusbar").get_by_text(re.compile(r"\|\s*Idle"))
    expect(kernel).to_be_visible(timeout=RUN_DEADLINE_MS)


def open_notebook(page: Page, lab: Lab, path: str) -> Locator:
    """Load the lab at `lab/tree/PATH` (a reset workspace) and wait until the notebook shows
    and its kernel is idle; its cells."""
    page.goto(lab.url(f"lab/tree/{path}", reset=""))
    expect(page.locator("#jupyterlab-splash")).to_have_count(0, timeout=SHELL_DEADLINE_MS)
    expect(current_tab(page)).to_have_text(Path(path).name, timeout=SHELL_DEADLINE_MS)
    wait_for_kernel(page)
    return page.locator(f"{MAIN} .jp-NotebookPanel:visible .jp-Notebook .jp-Cell")


def main_area(page: Page) -> Locator:
    return page.locator(MAIN)


def current_tab(page: Page) -> Locator:
    """The label of the main area's current tab."""
    return page.locator(f"{MAIN} .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel")


def active_cell(page: Page) -> Locator:
    """The active cell of the notebook shown in the main area."""
    return page.locator(f"{MAIN} .jp-NotebookPanel:visible .jp-Notebook .jp-Cell.jp-mod-active")


# ---- the panel -----------------------------------------------------------------------------


def open_panel(page: Page) -> Locator:
    """Click Blockbook's tab in the left sidebar (unless its panel already shows)."""
    panel = page.locator(PANEL)
    if not panel.is_visible():
        page.locator('.jp-SideBar [data-id="blockbook-pipelines"]').click()
    expect(panel).to_be_visible()
    return panel


def pipeline_row(page: Page, pipeline: str) -> Locator:
    row = open_panel(page).locator(f'[data-pipeline="{pipeline}"]')
    expect(row).to_be_visible()
    return row


def click_action(page: Page, pipeline: str, action: str) -> None:
    pipeline_row(page, pipeline).locator(f'[data-action="{action}"]').click()


def run_from_panel(page: Page, pipeline: str, params: dict[str, str] | None = None) -> Locator:
    """Click the pipeline's Run, fill the dialog's parameters, press its Run; the dialog."""
    click_action(page, pipeline, "run")
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_be_visible()
    for name, value in (params or {}).items():
        dialog.locator(f'[name="param:{name}"]').fill(value)
    dialog.get_by_role("button", name="Run", exact=True).click()
    expect(dialog).to_have_count(0)
    return dialog


def run_from_palette(page: Page, command: str, search: str) -> None:
    """Open the command palette (Ctrl+Shift+C), type `search`, click the command's item."""
    page.keyboard.press("Control+Shift+C")
    palette = page.locator(".jp-ModalCommandPalette .lm-CommandPalette")
    expect(palette).to_be_visible()
    palette.locator(".lm-CommandPalette-input").fill(search)
    palette.locator(f'.lm-CommandPalette-item[data-command="{command}"]').first.click()
    expect(palette).to_be_hidden()


# ---- main-area views -----------------------------------------------------------------------


def graph_node(page: Page, block: str) -> Locator:
    return main_area(page).locator(f'[data-block="{block}"][data-status]').filter(visible=True)


def run_row(page: Page, run_id: str | None = None, status: str | None = None) -> Locator:
    """A row of the runs view."""
    selector = f'[data-run="{run_id}"]' if run_id else "[data-run]"
    if status:
        selector += f'[data-status="{status}"]'
    return main_area(page).locator(selector).filter(visible=True)


def run_page(page: Page) -> Locator:
    """The run page shown in the main area: the element with `data-run-status` in the current
    tab (the contract puts it on the page's root; any element of the page will do here)."""
    return main_area(page).locator("[data-run-status]").filter(visible=True)


def page_errors(view: Locator) -> list[str]:
    """The errors a view shows (`role="alert"`), as text: a view renders them together with
    its data, so once that data shows, this is complete."""
    return view.locator('[role="alert"]').all_inner_texts()


def block_row(run: Locator, block: str) -> Locator:
    return run.locator(f'tr[data-block="{block}"]')
