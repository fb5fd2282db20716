"""Where Blockbook keeps things under a project's `.blockbook/` folder: every path in one place.

.blockbook/
  blockbook.db                  the run store (SQLite default)
  dev/PIPELINE/                 outputs of blocks run by hand in notebooks
  launch/RUN_ID.log             output of a runner process started in the background
  runs/RUN_ID/                  one run: plan.json, input/, notebooks/, blocks/, logs/, debug/
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar, cast

from pipelines.rundir.location import RunFolder

STATE_DIR = ".blockbook"
RUNS_DIR = "runs"
DEV_DIR = "dev"
LAUNCH_DIR = "launch"
INPUT_DIR = "input"
NOTEBOOK_DIR = "notebooks"
DEBUG_DIR = "debug"
LOG_DIR = "logs"

PRIVATE_MODE = 0o700
"""Run folders hold parameters, data and logs that can quote secrets: their owner's only."""

Folder = TypeVar("Folder", bound=RunFolder)
"""A run folder on disk or in object storage: what is inside it is of the same kind."""

KERNEL_NAME = "python3"
"""The kernelspec of debug notebooks, and of run notebooks whose source names none."""
KERNELSPEC = {"name": KERNEL_NAME, "display_name": "Python 3", "language": "python"}


def state_dir(root: Path) -> Path:
    return root / STATE_DIR


def run_dir(root: Path, run_id: str) -> Path:
    return root / STATE_DIR / RUNS_DIR / run_id


def make_run_dir(run_folder: Path) -> Path:
    """Create a run's folder readable by its owner only (whatever the umask allows others),
    before anything is written into it."""
    run_folder.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
    os.chmod(run_folder, PRIVATE_MODE)  # mkdir's mode is masked by the umask, and may exist
    return run_folder


def dev_dir(root: Path, pipeline: str) -> Path:
    return root / STATE_DIR / DEV_DIR / pipeline


def launch_log(root: Path, run_id: str) -> Path:
    return root / STATE_DIR / LAUNCH_DIR / f"{run_id}.log"


def run_notebook_path(source_notebook: str, block: str | None) -> str:
    """A run notebook relative to its run folder: one per source notebook, or per block when
    the run isolates blocks."""
    stem = run_notebook_stem(source_notebook)
    name = f"{stem}.{block}.ipynb" if block else f"{stem}.ipynb"
    return f"{NOTEBOOK_DIR}/{name}"


def run_notebook_stem(source_notebook: str) -> str:
    """The name (without `.ipynb`) of a source notebook's run notebooks. A notebook included
    from another folder (`../common/clean.ipynb`) gets a flat one (`common--clean`): run
    notebooks sit side by side in the run folder, and nothing may climb out of it."""
    parts = [part for part in source_notebook.split("/") if part not in ("", ".", "..")]
    return "--".join(parts).removesuffix(".ipynb")


def _inside(folder: Folder, *parts: str) -> Folder:
    """`folder / parts`, of the folder's own kind."""
    inside: RunFolder = folder
    for part in parts:
        inside = inside / part
    return cast(Folder, inside)


def executed_notebook(run_folder: Folder, run_notebook: str) -> Folder:
    """The executed notebook that holds a block (`run_notebook` as the plan and store keep it)."""
    return _inside(run_folder, run_notebook)


def input_notebook(run_folder: Folder, run_notebook: str) -> Folder:
    """The generated notebook papermill executed to produce `executed_notebook`."""
    return _inside(run_folder, INPUT_DIR, Path(run_notebook).name)


def kernel_log(run_folder: Folder, run_notebook: str) -> Folder:
    return _inside(run_folder, LOG_DIR, f"{Path(run_notebook).stem}.kernel.log")


def debug_notebook(run_folder: Path, block: str) -> Path:
    return run_folder / DEBUG_DIR / f"{block}.ipynb"
