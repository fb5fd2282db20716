"""Headless runs: a checked runner, reading what runs left behind, the CLI, kernel processes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nbformat
import psutil

from pipelines.assembly.pipeline import assemble
from pipelines.rundir.artifacts import ArtifactStore
from pipelines.rundir.state import BlockState
from pipelines.runs.execution import Limits
from pipelines.runs.runner import Runner, RunOptions, RunResult
from pipelines.store.run_store import DATABASE_URL_ENV, RunStore

BLOCKBOOK = Path(sys.executable).parent / "blockbook"


# ---- running -----------------------------------------------------------------------------------


def source_hashes(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def kernels_in(folder: Path) -> list[psutil.Process]:
    """Live ipykernel processes whose working folder is inside `folder` (zombies don't count)."""
    found = []
    target = str(folder.resolve())
    for process in psutil.process_iter(["cmdline", "cwd", "status"]):
        info = process.info
        if info["status"] == psutil.STATUS_ZOMBIE or not info["cwd"] or not info["cmdline"]:
            continue
        if "ipykernel" in " ".join(info["cmdline"]) and info["cwd"].startswith(target):
            found.append(process)
    return found


def assert_no_kernels(folder: Path, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while kernels_in(folder) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = kernels_in(folder)
    assert not left, f"kernel processes outlived the run: {[p.info['cmdline'] for p in left]}"


def run_options(**fields: Any) -> RunOptions:
    """RunOptions from flat keyword arguments, the limits among them."""
    limits = {name: fields.pop(name) for name in ("concurrency", "grace_seconds") if name in fields}
    return RunOptions(**fields, limits=Limits(**limits))


class RunHelper:
    """Runs pipelines of one project and checks what every run must leave behind."""

    def __init__(self, project: Path, store: RunStore) -> None:
        self.project = project
        self.store = store
        self.events: list[BlockState] = []
        self.runner = Runner(project, store, on_block=self.events.append)

    def __call__(self, folder: Path, **options: Any) -> RunResult:
        before = source_hashes(folder)
        try:
            return self.runner.run(assemble(folder), run_options(**options))
        finally:
            assert source_hashes(folder) == before, "a run modified the source notebooks"
            assert_no_kernels(self.project)


# ---- what a run left behind --------------------------------------------------------------------


def statuses(result: RunResult) -> dict[str, str]:
    """Block -> status (and error), for assertion messages."""
    return {
        name: f"{state.status}" + (f" ({state.error})" if state.error else "")
        for name, state in result.blocks.items()
    }


def load_output(result: RunResult, block: str, name: str) -> Any:
    return ArtifactStore(result.run_dir).load(block, name)


def manifest(result: RunResult, block: str, name: str) -> dict[str, Any]:
    path = result.run_dir / "artifacts" / block / f"{name}.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def block_cell(notebook_path: Path, block: str) -> Any:
    """The cell of `block` in an executed (or input) run notebook."""
    notebook = nbformat.read(notebook_path, as_version=4)
    cells = [
        cell
        for cell in notebook.cells
        if cell.get("metadata", {}).get("blockbook", {}).get("block") == block
    ]
    assert len(cells) == 1, f"{notebook_path} holds {len(cells)} cells of block {block}"
    return cells[0]


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def cell_text(cell: Any) -> str:
    """Everything a cell shows: streams, results, errors (tracebacks without colour codes)."""
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.extend(str(v) for v in output.get("data", {}).values())
        if output.get("output_type") == "error":
            parts += [output["ename"], output["evalue"], *output["traceback"]]
    return ANSI.sub("", "\n".join(parts))


def files_containing(folder: Path, needles: Sequence[str]) -> list[str]:
    """Files under `folder` whose bytes contain any of `needles`, as `path: needle`."""
    hits = []
    for path in sorted([folder, *folder.rglob("*")]):
        if not path.is_file():
            continue
        data = path.read_bytes()
        hits += [f"{path}: {needle}" for needle in needles if needle.encode() in data]
    return hits


# ---- the command line --------------------------------------------------------------------------


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != DATABASE_URL_ENV}
    env.update(extra)
    return env


def blockbook(
    project: Path, *args: str, timeout: float = 120, **popen: Any
) -> subprocess.CompletedProcess[str]:
    """Run the installed `blockbook` command on `project` (its default SQLite store)."""
    return subprocess.run(
        [str(BLOCKBOOK), "--project", str(project), *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=timeout,
        check=False,
        **popen,
    )


def start_blockbook(project: Path, *args: str) -> subprocess.Popen[str]:
    """Start the installed `blockbook` command on `project` without waiting for it."""
    return subprocess.Popen(
        [str(BLOCKBOOK), "--project", str(project), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )


def blockbook_json(project: Path, *args: str) -> Any:
    result = blockbook(project, *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def start_scheduler(root: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """`blockbook scheduler` ticking fast, its output in a log file in the project."""
    log = (root / f"scheduler-{time.monotonic_ns()}.log").open("w")
    return subprocess.Popen(
        [str(BLOCKBOOK), "--project", str(root), "scheduler", "--tick", "0.2", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env or cli_env(),
    )


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    """Poll `predicate` until it holds; `timeout` is a deadline for a loaded machine, not a pace."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} ({timeout:.0f} s)")
