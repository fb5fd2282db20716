"""Fixtures for the browser tests: a real JupyterLab with Blockbook over a throwaway project,
driven by Playwright in Debian's Chromium (/usr/bin/chromium; never `playwright install`).

One lab and one browser per pytest process (the tests are one xdist group: one worker), shared
by every test of this folder; each test gets a fresh page on a reset workspace. The helpers the
tests import (clicking through the UI, waiting on runs) are in `tests.browser.ui`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from pipelines.store.run_store import DATABASE_URL_ENV
from tests.browser.project import write_project
from tests.browser.ui import SHELL_DEADLINE_MS, UI_DEADLINE_MS, Lab, wait_for_shell

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
"""Every screenshot, the lab's log and, for a failed test, its last screen and console."""
README_SHOTS = REPO / "docs" / "screenshots"
UPDATE_README_SHOTS = "BLOCKBOOK_UPDATE_SCREENSHOTS"
"""Set to 1 to also write the README's named screenshots to docs/screenshots/ (committed)."""

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_DEADLINE = 120.0
"""Seconds JupyterLab may take to answer /api/status: generous, CI machines are loaded."""
STOP_DEADLINE = 20.0

expect.set_options(timeout=UI_DEADLINE_MS)


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


# ---- Chromium ------------------------------------------------------------------------------


def _install_chromium() -> None:
    """`apt-get install -y chromium` once, under a lock so xdist workers don't race."""
    lock_path = Path(tempfile.gettempdir()) / "blockbook-browser-tests-chromium.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if CHROMIUM.exists():
            return
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "chromium"]
        if subprocess.run(install, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=False)
            subprocess.run(install, env=env, check=False)


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        if os.geteuid() != 0:
            pytest.fail(
                f"the browser tests need Debian's Chromium at {CHROMIUM}: run "
                "`sudo apt-get install -y chromium` (never `playwright install`)"
            )
        _install_chromium()
        if not CHROMIUM.exists():
            pytest.fail(f"`apt-get install -y chromium` did not install {CHROMIUM}")
    return CHROMIUM


# ---- JupyterLab ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        return f"(no log: {error})"
    return "\n".join(text.splitlines()[-lines:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the lab and everything it started: SIGTERM to its process group (the server shuts
    its kernels down), SIGKILL after a deadline; then whatever it started in sessions of their
    own (kernels, runners) and is still there, by pid."""
    try:
        started = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        started = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_DEADLINE)
    alive = [child for child in started if child.is_running()]
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    _, still = psutil.wait_procs(alive, timeout=5)
    for child in still:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def _quiet_settings(settings: Path) -> None:
    """User settings of the test lab: no "get notified about Jupyter news?" toast over the
    screenshots, no update check (no network), no autosave (a test that edits a notebook of
    the project, say inserting a block, must not change the pipelines other tests run)."""
    chosen = {
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
        "docmanager-extension/plugin": {"autosave": False},
    }
    for plugin, values in chosen.items():
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab (`python -m jupyterlab`, this interpreter's) over a throwaway project: the
    example pipelines copied from notebooks/ plus the ones in `tests.browser.project`."""
    base = tmp_path_factory.mktemp("lab")
    root = write_project(base / "project", REPO / "notebooks")
    home = base / "jupyter"  # settings, workspaces and runtime of this lab only
    _quiet_settings(home / "settings")
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"lab-{_worker()}.log"
    port, token = _free_port(), secrets.token_hex(16)

    env = {key: value for key, value in os.environ.items() if key != DATABASE_URL_ENV}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        PYTHONUNBUFFERED="1",
    )
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.token={token}",
        "--allow-root",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        f"--ServerApp.root_dir={root}",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    lab = Lab(base_url=f"http://127.0.0.1:{port}/", token=token, root=root, log=log_path)
    try:
        deadline = time.monotonic() + START_DEADLINE
        while not lab.is_up():
            if process.poll() is not None:
                pytest.fail(
                    f"JupyterLab exited with {process.returncode} while starting; the end of "
                    f"{log_path}:\n{_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"JupyterLab did not answer /api/status within {START_DEADLINE:.0f}s; the "
                    f"end of {log_path}:\n{_tail(log_path)}"
                )
            time.sleep(0.25)
        yield lab
    finally:
        _stop(process)


# ---- the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Browser]:
    # Module scope, not session: Playwright's sync API keeps an asyncio loop running while it is
    # open, and the server tests that share this xdist worker need to run their own loop.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, so `page` knows at teardown if it failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(lab: Lab, browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page on the lab (a reset workspace: the launcher, no tab of an earlier test),
    its shell ready. A failed test leaves its last screen and console in artifacts/."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(UI_DEADLINE_MS)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    page.goto(lab.url("lab", reset=""), wait_until="domcontentloaded")
    page.wait_for_selector("#jp-main-dock-panel", state="visible", timeout=SHELL_DEADLINE_MS)
    wait_for_shell(page)
    try:
        yield page
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            name = request.node.name.replace("/", "_")
            with contextlib.suppress(Exception):
                page.screenshot(path=ARTIFACTS / f"FAILED-{name}.png")
            (ARTIFACTS / f"FAILED-{name}-console.txt").write_text(
                "\n".join(console) + "\n", encoding="utf-8"
            )
        context.close()


@pytest.fixture
def shot(page: Page) -> Callable[..., Path]:
    """`shot("graph.png", readme=True)`: a screenshot of the page in artifacts/; a README shot
    also goes to docs/screenshots/ when BLOCKBOOK_UPDATE_SCREENSHOTS=1 (so a test run does not
    rewrite committed images every time)."""

    def take(name: str, *, readme: bool = False) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        # Toasts ("Run ... ended") come and go with timing; keep them out of the pictures.
        style = page.add_style_tag(content=".Toastify { visibility: hidden !important; }")
        try:
            page.screenshot(path=path)
        finally:
            style.evaluate("element => element.remove()")
        if readme and os.environ.get(UPDATE_README_SHOTS) == "1":
            README_SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, README_SHOTS / name)
        return path

    return take
