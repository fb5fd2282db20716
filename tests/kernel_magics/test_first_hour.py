"""What a new user meets in the first hour, in real kernels: a project without a marker file,
values another block produces, tracebacks and the first rows of a frame."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipelines.assembly.project import locate_root
from pipelines.store.run_store import DATABASE_URL_ENV
from tests.helpers.notebooks import execute_in_kernel as execute
from tests.helpers.notebooks import make_pipeline
from tests.helpers.runs import BLOCKBOOK

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

GREEN_TAXI = {
    "load.ipynb": [
        "%load_ext kernel_magics",
        "%%block load_green_taxi\ngreen_taxi_raw = [1, 2, 3]",
    ],
    "count.ipynb": [
        "%load_ext kernel_magics",
        "%%block count_trips\ntrips = len(green_taxi_raw)",
    ],
}


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder no blockbook.toml or .git above decides, with no database configured."""
    if locate_root(tmp_path).marker:
        pytest.skip("the temporary folder lies inside a project; the fallback can't show")
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    return tmp_path


def shown(notebook: Any, index: int) -> str:
    """Everything a cell showed as text: streams, text twins, its error and traceback."""
    parts = []
    for output in notebook.cells[index].outputs:
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
        if output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}")
            parts.extend(output.traceback)
    return "\n".join(parts)


def widget_html(notebook: Any, index: int) -> str:
    """The HTML the widget view of a cell ended with."""
    outputs = notebook.cells[index].outputs
    [view] = [o for o in outputs if WIDGET_VIEW in o.get("data", {})]
    states = notebook.metadata.widgets[WIDGET_STATE]["state"]
    box = states[view.data[WIDGET_VIEW]["model_id"]]["state"]
    children = [child.removeprefix("IPY_MODEL_") for child in box["children"]]
    return "\n".join(states[child]["state"]["value"] for child in children)


# ---- A: one project root for the CLI and the kernel -------------------------------------------


def test_kernel_in_the_pipeline_folder_sees_what_the_cli_stored(bare: Path) -> None:
    parent = bare / "parent"
    folder = make_pipeline(parent, GREEN_TAXI, name="green_taxi")
    run = subprocess.run(
        [str(BLOCKBOOK), "run", "green_taxi"],
        cwd=parent,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    block = "%%block count_trips\ntrips = len(green_taxi_raw)\nprint('trips:', trips)"
    notebook = execute(
        folder,
        [
            "%load_ext kernel_magics",
            block,  # 1: no marker anywhere: the pipeline folder's parent, as for the CLI
            "open('../blockbook.toml', 'w').close()\ndel green_taxi_raw",
            block,  # 3: the new blockbook.toml counts, without a kernel restart
            "open('blockbook.toml', 'w').close()\ndel green_taxi_raw",
            block,  # 5: a nearer blockbook.toml: a new project, where nothing is stored
        ],
    )
    first = shown(notebook, 1)
    assert "trips: 3" in first, first
    note = (
        f"project root: {parent} (no blockbook.toml or .git found; "
        f"create {parent}/blockbook.toml to pin it)"
    )
    assert note in widget_html(notebook, 1)
    pinned = shown(notebook, 3)
    assert "trips: 3" in pinned, pinned
    assert "project root:" not in widget_html(notebook, 3)
    assert "green_taxi_raw" in shown(notebook, 5)
    assert "trips: 3" not in shown(notebook, 5)
    assert (folder / ".blockbook" / "dev" / "green_taxi").is_dir()


# ---- B: a value another block produces, not stored yet -------------------------------------


def test_an_unstored_upstream_value_says_which_cell_to_run(tmp_path: Path) -> None:
    (tmp_path / "blockbook.toml").write_text("")
    folder = make_pipeline(tmp_path, GREEN_TAXI, name="green_taxi")
    notebook = execute(
        folder, ["%load_ext kernel_magics", "%%block count_trips\ntrips = len(green_taxi_raw)"]
    )
    message = (
        "`green_taxi_raw` comes from block `load_green_taxi` (load.ipynb, cell 2); "
        "it has not been run or stored yet"
    )
    [error] = [o for o in notebook.cells[1].outputs if o.output_type == "error"]
    assert error.ename == "UpstreamNotStored"
    assert message in error.evalue
    assert "run that cell or `%pipeline run`" in error.evalue
    html = widget_html(notebook, 1)
    assert message in html
    assert "NameError" not in shown(notebook, 1) + html


# ---- C: tracebacks show the user's frames only ---------------------------------------------


def test_interactive_tracebacks_show_only_the_users_frames(tmp_path: Path) -> None:
    (tmp_path / "blockbook.toml").write_text("")
    folder = make_pipeline(tmp_path, GREEN_TAXI, name="green_taxi")
    notebook = execute(
        folder,
        [
            "%load_ext kernel_magics",
            "def helper():\n    raise ValueError('broken on purpose')",
            "%%block broken\nvalue = 1\nhelper()",
            "%%block checked\nvalue = 1\n\n@test\ndef big(value):\n    assert value > 5, 'small'",
        ],
    )
    broken = plain(error_output(notebook, 2).traceback)
    assert "----> 3 helper()" in broken, broken
    assert "raise ValueError('broken on purpose')" in broken
    assert "ValueError: broken on purpose" in broken
    assert "kernel_magics/" not in broken
    assert "run_cell_magic" not in broken
    checked = error_output(notebook, 3)
    assert checked.ename == "TestsFailed"
    text = plain(checked.traceback)
    assert "big: small" in text
    assert "kernel_magics/" not in text


def plain(traceback: list[str]) -> str:
    """A traceback as text, without the terminal colours IPython adds."""
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(traceback))


def error_output(notebook: Any, index: int) -> Any:
    [error] = [o for o in notebook.cells[index].outputs if o.output_type == "error"]
    return error


# ---- D: the first rows of a frame ------------------------------------------------------------


def test_the_view_shows_the_first_rows_of_a_frame(tmp_path: Path) -> None:
    (tmp_path / "blockbook.toml").write_text("")
    folder = make_pipeline(tmp_path, GREEN_TAXI, name="green_taxi")
    block = (
        "%%block trips_frame\nimport pandas as pd\n"
        "frame = pd.DataFrame({'vendor': ['vendor_first', 'b'], 'fare': [12.5, 7.0]})"
    )
    notebook = execute(folder, ["%load_ext kernel_magics", block])
    html = widget_html(notebook, 1)
    assert "<details><summary>first rows of frame</summary>" in html
    assert "vendor_first" in html
    assert "12.5" in html
    [view] = [o for o in notebook.cells[1].outputs if WIDGET_VIEW in o.get("data", {})]
    text = view.data["text/plain"]
    assert "first rows of frame:" in text
    assert "vendor_first" in text
    assert "12.5" in text


def test_previews_mask_secrets() -> None:
    import pandas as pd

    from kernel_magics.runtime import previews_of

    class Masking:
        def redact(self, text: str) -> str:
            return text.replace("s3cr3t-token", "****")

    frame = pd.DataFrame({"token": ["s3cr3t-token"], "n": [1]})
    namespace = {"frame": frame, "other": 1}
    [(name, table)] = previews_of(Masking(), ("frame", "other"), namespace)  # type: ignore[arg-type]
    assert name == "frame"
    assert "****" in table
    assert "s3cr3t-token" not in table
