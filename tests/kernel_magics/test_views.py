"""The block status view: an ipywidgets view in a notebook (with a text twin), text elsewhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from pipelines.store.run_store import DATABASE_URL_ENV
from tests.helpers.notebooks import make_pipeline

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

CELLS = [
    "%load_ext kernel_magics",
    "%%block make\nimport pandas as pd\n"
    "frame = pd.DataFrame({'a': [1, 2, 3], 'b': list('xyz')})\n"
    "engine = object()\n\n@test\ndef has_rows(frame):\n    assert len(frame) == 3",
    "%%block use\ntotal = int(frame.a.sum())",
    "%%block flaky --retries 1 --retry-delay 0\n"
    "tries = globals().get('tries', 0) + 1\n"
    "if tries < 2:\n    raise RuntimeError('first try fails')",
    "%%block soft --tests warn\nvalue = 1\n\n@test\ndef too_strict(value):\n"
    "    assert value > 5, 'value is small'",
    "%%block broken\nraise ValueError('broken on purpose')",
]


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One notebook, run in one kernel the way JupyterLab runs it; cell errors allowed."""
    root = tmp_path_factory.mktemp("views")
    (root / "blockbook.toml").write_text("")
    folder = make_pipeline(root, {"a.ipynb": CELLS}, name="views")
    notebook = nbformat.read(folder / "a.ipynb", as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=60,
        allow_errors=True,
        store_widget_state=True,
        resources={"metadata": {"path": str(folder)}},
    )
    mp = pytest.MonkeyPatch()
    mp.delenv(DATABASE_URL_ENV, raising=False)
    try:
        client.execute()
    finally:
        mp.undo()
    return notebook


def widget_html(notebook: Any, cell_index: int) -> str:
    """The HTML values shown by the widget view a cell displayed, in their final state."""
    [view] = [o for o in notebook.cells[cell_index].outputs if WIDGET_VIEW in o.get("data", {})]
    states = notebook.metadata.widgets[WIDGET_STATE]["state"]
    box = states[view.data[WIDGET_VIEW]["model_id"]]["state"]
    children = [child.removeprefix("IPY_MODEL_") for child in box["children"]]
    return "\n".join(states[child]["state"]["value"] for child in children)


def text_twin(notebook: Any, cell_index: int) -> str:
    [view] = [o for o in notebook.cells[cell_index].outputs if WIDGET_VIEW in o.get("data", {})]
    return str(view.data["text/plain"])


def test_success_shows_outputs_and_tests(executed: Any) -> None:
    html = widget_html(executed, 1)
    assert "<b>make</b>" in html
    assert ">success</span>" in html
    assert "frame: 3 rows x 2 columns (a, b), stored as parquet" in html
    assert "engine: object (not stored: no other block reads it)" in html
    assert "test has_rows: passed" in html
    text = text_twin(executed, 1)
    assert text.startswith("block make: success in ")
    assert "output frame: 3 rows x 2 columns (a, b), stored as parquet" in text


def test_retries_are_shown(executed: Any) -> None:
    assert "after 2 attempts" in widget_html(executed, 3)
    assert "block flaky: success" in text_twin(executed, 3)


def test_warned_tests_make_a_warned_block(executed: Any) -> None:
    html = widget_html(executed, 4)
    assert ">warned</span>" in html
    assert "test too_strict: warned &mdash; value is small" in html


def test_failure_keeps_the_traceback_below_the_widget(executed: Any) -> None:
    outputs = executed.cells[5].outputs
    assert WIDGET_VIEW in outputs[0].get("data", {})
    assert outputs[-1].output_type == "error"
    assert outputs[-1].ename == "ValueError"
    html = widget_html(executed, 5)
    assert ">failed</span>" in html
    assert "ValueError: broken on purpose" in html


def test_terminal_ipython_shows_text(tmp_path: Path) -> None:
    (tmp_path / "blockbook.toml").write_text("")
    folder = make_pipeline(tmp_path, {"a.ipynb": ["%%block solo\nx = 1"]}, name="term")
    script = tmp_path / "session.py"
    script.write_text(
        "ip = get_ipython()\n"
        "ip.run_line_magic('load_ext', 'kernel_magics')\n"
        "ip.run_cell_magic('block', 'solo', 'x = 41 + 1')\n"
        "print('x is', x)\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--quick", str(script)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "block solo: success in " in result.stdout
    assert "x is 42" in result.stdout
    assert "VBox" not in result.stdout


def test_a_waiting_sensor_shows_its_checks_while_it_runs() -> None:
    from datetime import UTC, datetime

    from kernel_magics.views import as_html, report_running
    from pipelines.rundir.state import Attempt, BlockState
    from pipelines.status import BlockStatus

    attempt = Attempt(1, BlockStatus.RUNNING, datetime.now(UTC), pokes=3)
    state = BlockState("wait_for_file", BlockStatus.RUNNING, "a.ipynb", attempts=(attempt,))
    headline, details = as_html(report_running(state))
    assert ">running</span>" in headline
    assert "sensor: 3 check(s) so far, condition not met yet" in details
