"""The `%pipeline` line magic, run in real kernels the way a notebook user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError

from kernel_magics.pipeline_magics import _parser
from pipelines.store.run_store import DATABASE_URL_ENV
from tests.helpers.notebooks import execute_in_kernel as execute
from tests.helpers.notebooks import make_pipeline

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
MERMAID = "text/vnd.mermaid"

SOURCES = {
    "a.ipynb": [
        "%load_ext kernel_magics",
        "%%block load\nimport pandas as pd\nframe = pd.DataFrame({'x': [1, 2, 3]})",
    ],
    "b.ipynb": [
        "%load_ext kernel_magics",
        "%%block double\ndoubled = frame.assign(x=frame.x * 2)",
        "%%block check\nif bad:\n    raise ValueError('bad was set')\nok = len(doubled)",
    ],
}
TOML = "[params]\nbad = false\n"


def outputs(notebook: Any, index: int) -> list[Any]:
    return list(notebook.cells[index].outputs)


def shown_text(notebook: Any, index: int) -> str:
    parts = []
    for output in outputs(notebook, index):
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
        if output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}")
    return "\n".join(parts)


def widget_value(notebook: Any, index: int) -> str:
    [view] = [o for o in outputs(notebook, index) if WIDGET_VIEW in o.get("data", {})]
    states = notebook.metadata.widgets[WIDGET_STATE]["state"]
    return str(states[view.data[WIDGET_VIEW]["model_id"]]["state"]["value"])


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    root = tmp_path_factory.mktemp("pipeline_magic")
    (root / "blockbook.toml").write_text("")
    folder = make_pipeline(root, SOURCES, TOML, name="shop")
    cells = [
        "%load_ext kernel_magics",
        "%pipeline graph",  # 1: before any run
        "%pipeline runs",  # 2: no runs yet
        "%pipeline run",  # 3: a live run
        "%pipeline wait",  # 4
        "__session__ = 'b.ipynb'\n%pipeline graph",  # 5: after the run, this notebook marked
        "%pipeline status",  # 6
        "%pipeline runs",  # 7
        "%pipeline load double\nprint(doubled.x.tolist())",  # 8
        "%pipeline run -p bad=true",  # 9: a failing run
        "%pipeline wait",  # 10
        "%pipeline load nothing_like_this",  # 11
        "%pipeline frobnicate",  # 12
        # 13: `double` edited and saved (as JupyterLab saves it), then 14: the graph marks it.
        "import nbformat\n"
        "_edited = nbformat.read('b.ipynb', as_version=4)\n"
        "_edited.cells[1].source = _edited.cells[1].source.replace('* 2', '* 3')\n"
        "nbformat.write(_edited, 'b.ipynb')",
        "%pipeline graph",  # 14
    ]
    mp = pytest.MonkeyPatch()
    mp.delenv(DATABASE_URL_ENV, raising=False)
    try:
        notebook = execute(folder, cells)
    finally:
        mp.undo()
    return folder, notebook


def test_graph_renders_mermaid_with_a_text_fallback(session: tuple[Path, Any]) -> None:
    _, notebook = session
    [output] = outputs(notebook, 1)
    mermaid = output.data[MERMAID]
    assert mermaid.startswith("flowchart TD")
    assert 'b_load -- "frame" --> b_double' in mermaid
    assert "classDef" not in mermaid  # no run yet, so no statuses
    assert "pipeline shop: 3 blocks in 2 notebooks" in output.data["text/plain"]


def test_graph_after_a_run_shows_statuses_and_this_notebook(session: tuple[Path, Any]) -> None:
    _, notebook = session
    [output] = outputs(notebook, 5)
    mermaid = output.data[MERMAID]
    assert "classDef success" in mermaid
    assert "class b_check,b_double,b_load success" in mermaid
    assert "style b_double stroke-width:3px" in mermaid
    assert "style b_load stroke-width:3px" not in mermaid
    assert "last run: load=success" in output.data["text/plain"]


def test_graph_marks_a_block_whose_code_changed_since_the_last_run(
    session: tuple[Path, Any],
) -> None:
    _, notebook = session
    [output] = outputs(notebook, 14)
    mermaid = output.data[MERMAID]
    assert "style b_double stroke-dasharray:5 3" in mermaid
    assert 'b_double["double<br/><i>' in mermaid
    assert " · changed</i>" in mermaid
    assert "stroke-dasharray" not in mermaid.replace("style b_double stroke-dasharray", "")
    assert "changed since that run (the next run runs them): double" in output.data["text/plain"]


def test_live_run_reaches_a_terminal_state(session: tuple[Path, Any]) -> None:
    _, notebook = session
    html = widget_value(notebook, 3)
    assert "of shop" in html
    assert ">success</span>" in html
    for block in ("load", "double", "check"):
        assert f"<td>{block}</td>" in html
    assert "shop: success in" in shown_text(notebook, 4)


def test_status_and_runs(session: tuple[Path, Any]) -> None:
    _, notebook = session
    assert "no runs yet" in shown_text(notebook, 2)
    assert ">success</span>" in widget_value(notebook, 6)
    [table] = outputs(notebook, 7)
    assert "<th>status</th>" in table.data["text/html"]
    assert "success  manual" in table.data["text/plain"]


def test_load_puts_stored_outputs_in_the_namespace(session: tuple[Path, Any]) -> None:
    _, notebook = session
    text = shown_text(notebook, 8)
    assert "loaded doubled from double (run " in text
    assert "[2, 4, 6]" in text


def test_failed_run_links_the_executed_notebook(session: tuple[Path, Any]) -> None:
    _, notebook = session
    text = shown_text(notebook, 10)
    assert "shop: failed" in text
    assert "check: failed" in text
    assert "ValueError: bad was set" in text
    line = next(ln for ln in text.splitlines() if "executed notebook:" in ln)
    executed = Path(line.split("executed notebook:", 1)[1].strip())
    assert executed.is_file()
    assert executed.name == "b.ipynb"
    assert "bad was set" in executed.read_text()
    assert "executed notebook:" in widget_value(notebook, 9)


def test_usage_errors_are_clear(session: tuple[Path, Any]) -> None:
    _, notebook = session
    assert "no block `nothing_like_this` in pipeline shop" in shown_text(notebook, 11)
    assert "invalid choice: 'frobnicate'" in shown_text(notebook, 12)


def test_terminal_ipython_gets_text(tmp_path: Path) -> None:
    (tmp_path / "blockbook.toml").write_text("")
    folder = make_pipeline(tmp_path, SOURCES, TOML, name="shop")
    script = tmp_path / "session.py"
    script.write_text(
        "ip = get_ipython()\n"
        "ip.run_line_magic('load_ext', 'kernel_magics')\n"
        "ip.run_line_magic('pipeline', 'run')\n"
        "ip.run_line_magic('pipeline', 'wait')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--quick", str(script)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != DATABASE_URL_ENV},
    )
    assert result.returncode == 0, result.stderr
    assert "started run " in result.stdout
    assert "of shop: success in" in result.stdout
    assert "VBox" not in result.stdout
    assert "HTML(" not in result.stdout


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("grpah", "invalid choice: 'grpah' (choose from graph, run, wait"),
        ("grpah", "; did you mean `graph`?"),
        ("-P shop stauts", "did you mean `status`?"),
        ("frobnicate", "invalid choice: 'frobnicate'"),
    ],
)
def test_a_misspelt_subcommand_suggests_the_closest(line: str, expected: str) -> None:
    with pytest.raises(UsageError) as caught:
        _parser().parse_args(line.split())
    assert expected in str(caught.value)
    assert ("did you mean" in str(caught.value)) == (line != "frobnicate")
