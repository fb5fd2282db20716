"""User journeys through Blockbook in a real JupyterLab, in headless Chromium.

Each test starts from a fresh page on a reset workspace; they share one lab (one xdist group,
so one worker and one lab under `pytest -n auto`) over the project of `tests.browser.project`.
Only `test_taxi_graph_run_and_run_page` runs the taxi pipeline, so the graph it opens first has
never run (`none`) in any order of the tests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.project import (
    BAD_HEADER,
    BAD_NOTEBOOK,
    FAILING_BLOCK,
    FAILING_HEADER,
)
from tests.browser.ui import (
    RUN_DEADLINE_MS,
    Lab,
    active_cell,
    block_row,
    click_action,
    current_tab,
    graph_node,
    main_area,
    open_panel,
    page_errors,
    pipeline_row,
    run_from_panel,
    run_page,
    run_row,
)

pytestmark = pytest.mark.xdist_group("lab")

Shot = Callable[..., Path]
BLOCK_ACTIONS = ("open-notebook", "log", "debug")
ACTIVE_DEADLINE_MS = 120_000
"""What a run started from the panel may take to be seen running (a kernel starts first)."""


def test_lab_loads_with_blockbook(lab: Lab, page: Page) -> None:
    """The harness itself: the lab serves the Blockbook extension and its REST API answers (so a
    failure below is the frontend's, not a missing install)."""
    config = json.loads(page.locator("#jupyter-config-data").text_content() or "{}")
    names = [extension["name"] for extension in config.get("federated_extensions", [])]
    assert "@blockbook/jupyterlab" in names, names
    listed = {p["pipeline"] for p in lab.api("GET", "pipelines")["pipelines"]}
    assert {"taxi", "broken", "bad", "slow"} <= listed, listed


def test_panel_lists_pipelines(page: Page, shot: Shot) -> None:
    panel = open_panel(page)
    for pipeline in ("taxi", "broken", "bad", "slow"):
        expect(panel.locator(f'[data-pipeline="{pipeline}"]')).to_be_visible()
    row = pipeline_row(page, "taxi")
    for action in ("run", "graph", "runs"):
        expect(row.locator(f'[data-action="{action}"]')).to_be_visible()
    shot("panel.png", readme=True)


def test_taxi_graph_run_and_run_page(lab: Lab, page: Page, shot: Shot) -> None:
    """Graph (never run) -> Run with its parameters form -> every node green -> the runs view
    -> the run's page with its blocks."""
    blocks = lab.block_names("taxi")
    assert blocks, "the taxi pipeline has no blocks"
    before = {run["run_id"] for run in lab.runs("taxi")}
    assert not before, "only this test runs taxi, the graph must start from `none`"

    click_action(page, "taxi", "graph")
    for block in blocks:
        expect(graph_node(page, block)).to_have_attribute("data-status", "none")
    shot("graph.png", readme=True)

    click_action(page, "taxi", "run")
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator('[name="param:database_url"]')).to_have_value("sqlite:///taxi.sqlite")
    dialog.get_by_role("button", name="Run", exact=True).click()
    expect(dialog).to_have_count(0)
    run = lab.wait_for_run("taxi", not_in=before)

    for block in blocks:
        expect(graph_node(page, block)).to_have_attribute(
            "data-status", "success", timeout=RUN_DEADLINE_MS
        )
    assert lab.wait_for_end(run["run_id"])["status"] == "success"
    shot("graph-success.png", readme=True)

    click_action(page, "taxi", "runs")
    row = run_row(page, run["run_id"])
    expect(row).to_have_attribute("data-status", "success", timeout=RUN_DEADLINE_MS)
    row.click()
    view = run_page(page)
    expect(view).to_have_attribute("data-run-status", "success")
    for block in blocks:
        line = block_row(view, block)
        expect(line).to_have_attribute("data-status", "success")
        for action in BLOCK_ACTIONS:
            expect(line.locator(f'[data-action="{action}"]')).to_have_count(1)
    for action in ("cancel", "resume"):
        expect(view.locator(f'[data-action="{action}"]')).to_have_count(1)
    shot("run.png", readme=True)
    assert not page_errors(view), "the run page shows an error"


def test_failed_run_opens_the_failing_cell(lab: Lab, page: Page, shot: Shot) -> None:
    before = {run["run_id"] for run in lab.runs("broken")}
    run_from_panel(page, "broken", {"divisor": "0"})
    run_id = lab.wait_for_run("broken", not_in=before)["run_id"]

    click_action(page, "broken", "runs")
    row = run_row(page, run_id)
    expect(row).to_have_attribute("data-status", "failed", timeout=RUN_DEADLINE_MS)
    row.click()
    view = run_page(page)
    expect(view).to_have_attribute("data-run-status", "failed")
    expect(block_row(view, "numbers")).to_have_attribute("data-status", "success")
    failing = block_row(view, FAILING_BLOCK)
    expect(failing).to_have_attribute("data-status", "failed")
    errors = page_errors(view)

    where = lab.api("GET", f"runs/{run_id}/blocks/{FAILING_BLOCK}/notebook")
    assert where["path"].startswith("BlockbookRuns:"), where
    failing.locator('[data-action="open-notebook"]').click()
    expect(current_tab(page)).to_have_text(Path(where["path"]).name)
    cell = active_cell(page)
    expect(cell).to_contain_text(FAILING_HEADER)
    expect(cell).to_contain_text("ZeroDivisionError")
    shot("failed-cell.png", readme=True)
    assert not errors, "the run page shows an error"


def test_cell_badge_shows_the_newest_run(lab: Lab, page: Page, shot: Shot) -> None:
    # Started over REST so this test stands alone; the badge must come from that run.
    run_id = lab.api("POST", "pipelines/taxi/runs", {})["run_id"]
    assert lab.wait_for_end(run_id)["status"] == "success"
    page.goto(lab.url("lab/tree/taxi/load.ipynb", reset=""))
    notebook = main_area(page).locator(".jp-NotebookPanel").filter(visible=True)
    block = notebook.locator(".jp-Notebook .jp-Cell").filter(has_text="%%block load_trips").first
    badge = block.locator('.bb-cell-badge[data-block="load_trips"]')
    expect(badge).to_have_attribute("data-status", "success", timeout=RUN_DEADLINE_MS)
    expect(badge).to_have_attribute("title", re.compile(run_id))
    block.scroll_into_view_if_needed()
    shot("badge.png")


def test_problem_list_opens_the_notebook(page: Page, shot: Shot) -> None:
    row = pipeline_row(page, "bad")
    row.locator('[data-action="problems"]').click()
    problem = row.locator("[data-problem]").filter(has_text="upsteam").first
    expect(problem).to_be_visible()
    shot("problems.png")
    problem.click()
    expect(current_tab(page)).to_have_text(BAD_NOTEBOOK)
    expect(active_cell(page)).to_contain_text(BAD_HEADER)


def test_status_bar_shows_an_active_run(lab: Lab, page: Page) -> None:
    before = {run["run_id"] for run in lab.runs("slow")}
    run_from_panel(page, "slow")
    run_id = lab.wait_for_run("slow", not_in=before)["run_id"]
    status = page.locator("#blockbook-status")
    try:
        expect(status).to_contain_text("running", timeout=ACTIVE_DEADLINE_MS)
    finally:
        if lab.api("GET", f"runs/{run_id}")["status"] in {"queued", "running"}:
            lab.api("POST", f"runs/{run_id}/cancel")
    assert lab.wait_for_end(run_id)["status"] in {"cancelled", "failed"}
    expect(status).not_to_contain_text("running", timeout=RUN_DEADLINE_MS)
