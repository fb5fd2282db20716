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
    BADGE_BLOCK,
    BADGE_NOTEBOOK,
    DOUBLE_CODE,
    FAILING_BLOCK,
    FAILING_HEADER,
    FAILING_NOTEBOOK,
    LOAD_EXT,
    TWICE_NOTEBOOK,
    write_notebook,
)
from tests.browser.ui import (
    RUN_DEADLINE_MS,
    UI_DEADLINE_MS,
    Lab,
    active_cell,
    block_row,
    click_action,
    current_tab,
    graph_node,
    main_area,
    open_notebook,
    open_panel,
    page_errors,
    pipeline_row,
    run_from_palette,
    run_from_panel,
    run_page,
    run_row,
)

pytestmark = pytest.mark.xdist_group("lab")

Shot = Callable[..., Path]
BLOCK_ACTIONS = ("open-notebook", "log", "debug", "force")
EXECUTED = re.compile(r"\[\d+\]")
"""A code cell's prompt once the kernel ran it: `[1]:`."""
ACTIVE_DEADLINE_MS = 120_000
"""What a run started from the panel may take to be seen running (a kernel starts first)."""


def test_lab_loads_with_blockbook(lab: Lab, page: Page) -> None:
    """The harness itself: the lab serves the Blockbook extension and its REST API answers (so a
    failure below is the frontend's, not a missing install)."""
    config = json.loads(page.locator("#jupyter-config-data").text_content() or "{}")
    names = [extension["name"] for extension in config.get("federated_extensions", [])]
    assert "@blockbook/jupyterlab" in names, names
    listed = {p["pipeline"] for p in lab.api("GET", "pipelines")["pipelines"]}
    assert {"taxi", "broken", "bad", "slow", "hello"} <= listed, listed


def test_panel_lists_pipelines(page: Page, shot: Shot) -> None:
    panel = open_panel(page)
    for pipeline in ("taxi", "broken", "bad", "slow", "hello"):
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


def test_cell_badge_after_running_a_block(lab: Lab, page: Page, shot: Shot) -> None:
    """Open a notebook no test runs headlessly, run `%load_ext` then its block with Shift+Enter:
    the block's cell gets a success badge, which only that execution can have given it."""
    assert not lab.runs("hello"), "no test may run the hello pipeline headlessly"
    cells = open_notebook(page, lab, BADGE_NOTEBOOK)
    load_ext = cells.filter(has_text=LOAD_EXT).first
    block = cells.filter(has_text=f"%%block {BADGE_BLOCK}").first
    badge = block.locator(f'.bb-cell-badge[data-block="{BADGE_BLOCK}"]')
    expect(badge.and_(page.locator('[data-status="success"]'))).to_have_count(0)
    for cell in (load_ext, block):
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        expect(cell.locator(".jp-InputPrompt")).to_have_text(EXECUTED, timeout=RUN_DEADLINE_MS)
    expect(badge).to_have_attribute("data-status", "success", timeout=RUN_DEADLINE_MS)
    block.scroll_into_view_if_needed()
    shot("badge.png")


def test_cell_badges_show_the_newest_run(lab: Lab, page: Page) -> None:
    """A source notebook's badges tell how its blocks went in the pipeline's newest run. The
    run is started over REST so this test stands alone (and leaves taxi to the journey above)."""
    before = {run["run_id"] for run in lab.runs("broken")}
    run_id = lab.api("POST", "pipelines/broken/runs", {})["run_id"]
    assert run_id not in before
    assert lab.wait_for_end(run_id)["status"] == "failed"
    page.goto(lab.url(f"lab/tree/broken/{FAILING_NOTEBOOK}", reset=""))
    cells = main_area(page).locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell")
    # `total` is `cached` when an earlier test ran `broken` already (nothing of it changed since),
    # else `success`; either way the badge names this run.
    for block, status in (("total", re.compile(r"^(success|cached)$")), (FAILING_BLOCK, "failed")):
        cell = cells.filter(has_text=f"%%block {block} ").first
        badge = cell.locator(f'.bb-cell-badge[data-block="{block}"]')
        expect(badge).to_have_attribute("data-status", status, timeout=RUN_DEADLINE_MS)
        expect(badge).to_have_attribute("title", re.compile(run_id))


def test_palette_commands_in_a_notebook(lab: Lab, page: Page) -> None:
    """From a pipeline's notebook, like a user: the palette's Open Pipeline Graph shows that
    notebook's pipeline; Insert Block from Template adds a `%%block` cell below the active one
    (autosave is off in the test lab: the project's notebooks stay as they are)."""
    open_notebook(page, lab, "taxi/clean.ipynb")
    run_from_palette(page, "blockbook:open-graph", "Pipeline Graph")
    for block in lab.block_names("taxi"):
        expect(graph_node(page, block)).to_be_visible()

    cells = open_notebook(page, lab, f"bad/{BAD_NOTEBOOK}")
    expect(cells).to_have_count(3)
    run_from_palette(page, "blockbook:insert-template", "Block from Template")
    dialog = page.locator(".jp-Dialog")
    expect(dialog.locator('[name="template"]').first).to_be_visible()
    dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
    expect(dialog).to_have_count(0)
    expect(cells).to_have_count(4)
    expect(active_cell(page)).to_contain_text("%%block ")


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


def test_compare_runs_run_a_block_again_and_see_changed_code(
    lab: Lab, page: Page, shot: Shot
) -> None:
    """Two identical runs (the second all cached) -> the second run's page: a cached block
    opens the first run's cell; compare with the first run; "Run again" on one block runs only
    it; then editing that block's code marks its cell badge `changed`."""
    assert not lab.runs("twice"), "only this test runs the twice pipeline"
    first = lab.api("POST", "pipelines/twice/runs", {})["run_id"]
    assert lab.wait_for_end(first)["status"] == "success"
    second = lab.api("POST", "pipelines/twice/runs", {})["run_id"]
    cached = lab.wait_for_end(second)
    assert {b["name"]: b["status"] for b in cached["blocks"]} == {
        "load": "cached",
        "double": "cached",
    }

    page.goto(lab.url("lab", reset=""))
    click_action(page, "twice", "runs")
    run_row(page, second).click()
    view = run_page(page)
    expect(view).to_have_attribute("data-run-status", "success")
    double = block_row(view, "double")
    expect(double).to_have_attribute("data-status", "cached")
    expect(double.locator('[data-action="open-notebook"]')).to_be_enabled()
    where = lab.api("GET", f"runs/{second}/blocks/double/notebook")
    assert where["run_id"] == first, where

    view.locator('select[name="compare"]').select_option(first)
    compared = view.locator(f'.bb-Diff[data-diff-a="{first}"][data-diff-b="{second}"]')
    expect(compared).to_be_visible(timeout=UI_DEADLINE_MS)
    changed = compared.locator('[data-diff-block="double"]')
    expect(changed).to_contain_text("success → cached")
    expect(changed).to_have_attribute("data-code-changed", "false")
    shot("run-compare.png", readme=True)
    assert not page_errors(view), "the run page shows an error"

    double.locator('[data-action="force"]').click()
    forced = lab.wait_for_run("twice", not_in={first, second})
    ended = lab.wait_for_end(forced["run_id"])
    assert {b["name"]: b["status"] for b in ended["blocks"]} == {
        "load": "cached",
        "double": "success",
    }

    source = lab.root / TWICE_NOTEBOOK
    write_notebook(
        source,
        [
            LOAD_EXT,
            "%%block load --kind loader\nnumbers = [1, 2, 3]",
            f"%%block double --kind transformer\n{DOUBLE_CODE.replace('2', '3')}\nprint(doubled)",
        ],
    )
    cells = open_notebook(page, lab, TWICE_NOTEBOOK)
    stale = cells.filter(has_text="%%block double").first.locator(".bb-cell-badge")
    fresh = cells.filter(has_text="%%block load").first.locator(".bb-cell-badge")
    expect(stale).to_have_attribute("data-stale", "true", timeout=UI_DEADLINE_MS)
    expect(stale).to_contain_text("changed")
    expect(fresh).to_have_attribute("data-status", "cached")
    expect(fresh).not_to_have_attribute("data-stale", "true")
    shot("stale-badge.png")


def test_a_drifted_block_says_so_on_its_run_page(lab: Lab, page: Page, shot: Shot) -> None:
    """A frame stored as int64, then as float64 (a parameter): the second run's page marks the
    block with its schema drift, the change in its title."""
    assert not lab.runs("shapes"), "only this test runs the shapes pipeline"
    first = lab.api("POST", "pipelines/shapes/runs", {})["run_id"]
    assert lab.wait_for_end(first)["status"] == "success"
    second = lab.api("POST", "pipelines/shapes/runs", {"params": {"kind": "float64"}})["run_id"]
    ended = lab.wait_for_end(second)
    assert ended["status"] == "success", ended
    [drift] = next(b for b in ended["blocks"] if b["name"] == "frame")["schema_drift"]
    assert (drift["kind"], drift["before"], drift["after"]) == ("retyped", "int64", "float64")

    page.goto(lab.url("lab", reset=""))
    click_action(page, "shapes", "runs")
    run_row(page, second).click()
    view = run_page(page)
    chip = block_row(view, "frame").locator("[data-drift]")
    expect(chip).to_have_attribute("data-drift", "1", timeout=UI_DEADLINE_MS)
    expect(chip).to_have_attribute("title", re.compile(f"run {first}"))
    expect(chip).to_have_attribute("title", re.compile(re.escape(drift["message"])))
    shot("drift.png")
