"""Interactive and headless runs agree: the same `%%block` cells, run the way a person runs them
(each notebook top to bottom in its own kernel, in JupyterLab's working folder) and run by the
runner, store equal outputs; interactively, loaded values say where they came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from pandas.testing import assert_frame_equal

from pipelines.assembly.pipeline import assemble
from pipelines.rundir.artifacts import ArtifactStore
from pipelines.runs.runner import Runner, RunOptions
from pipelines.status import RunStatus
from pipelines.store.run_store import DATABASE_URL_ENV, RunStore
from tests.helpers.notebooks import make_pipeline

LOAD = """%%block load
import pandas as pd

frame = pd.DataFrame(
    {
        "name": ["a", "b", "c", "d"],
        "amount": [10.5, -2.0, 7.25, 0.0],
        "count": pd.array([1, 2, None, 4], dtype="Int64"),
        "day": pd.to_datetime(["2024-03-01", "2024-03-02", "2024-03-02", "2024-03-04"]),
    }
)
meta = {"source": "fixture", "version": (1, 2)}
"""

TRANSFORM = """%%block transform
clean = frame[frame.amount > 0].reset_index(drop=True)
clean["share"] = clean.amount / clean.amount.sum()
"""

REPORT = """%%block report --out summary
summary = clean.groupby("day", as_index=False).agg(total=("amount", "sum"))
label = f"{meta['source']} v{meta['version'][0]}"
"""

FINAL = """%%block final
final = {"days": len(summary), "label": label}
"""


def execute_interactively(folder: Path, name: str) -> Any:
    """Run a notebook like a person in JupyterLab: its own kernel, cwd = the notebook's folder."""
    notebook = nbformat.read(folder / name, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=60,
        resources={"metadata": {"path": str(folder)}},
    )
    client.execute()
    return notebook


def printed(notebook: Any) -> str:
    """What the cells show as text: printed streams and the text twin of block status views."""
    return "".join(
        output.get("text", "") + output.get("data", {}).get("text/plain", "")
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") in ("stream", "display_data")
    )


def stored_outputs(root: Path) -> dict[str, dict[str, Any]]:
    """Block -> output name -> loaded value, for everything stored under an artifact root."""
    store = ArtifactStore(root)
    return {
        folder.name: {
            manifest.stem: store.load(folder.name, manifest.stem)
            for manifest in sorted(folder.glob("*.json"))
        }
        for folder in sorted((root / "artifacts").iterdir())
    }


def test_interactive_and_headless_store_the_same_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    (tmp_path / "blockbook.toml").write_text("")
    folder = make_pipeline(
        tmp_path,
        {
            "a.ipynb": ["%load_ext kernel_magics", LOAD, TRANSFORM],
            "b.ipynb": ["%load_ext kernel_magics", REPORT, FINAL],
        },
        name="parity",
    )

    first = execute_interactively(folder, "a.ipynb")
    second = execute_interactively(folder, "b.ipynb")

    # The second notebook's kernel never ran `load` or `transform`: it loaded their outputs
    # from the dev area and said so.
    output = printed(second)
    assert "loaded clean from transform in a.ipynb (dev area)" in output
    assert "loaded meta from load in a.ipynb (dev area)" in output
    assert "block report: success" in output
    assert "loaded" not in printed(first)
    dev = tmp_path / ".blockbook" / "dev" / "parity"
    interactive = stored_outputs(dev)

    with RunStore.open(tmp_path) as store:
        result = Runner(tmp_path, store).run(assemble(folder), RunOptions())
    assert result.status is RunStatus.SUCCESS
    headless = stored_outputs(result.run_dir)

    assert {block: sorted(values) for block, values in interactive.items()} == {
        "load": ["frame", "meta"],
        "report": ["summary"],  # --out replaces the inferred outputs
        "transform": ["clean"],
    }
    assert {b: sorted(v) for b, v in headless.items()} == {
        b: sorted(v) for b, v in interactive.items()
    }
    for block, values in interactive.items():
        for name, value in values.items():
            other = headless[block][name]
            if isinstance(value, pd.DataFrame):
                assert_frame_equal(value, other)
            else:
                assert value == other, (block, name)
    expected = pd.DataFrame({"amount": [10.5, 7.25]})
    assert list(interactive["transform"]["clean"].amount) == list(expected.amount)


def test_interactive_failure_raises_in_the_cell(tmp_path: Path) -> None:
    (tmp_path / "blockbook.toml").write_text("")
    folder = make_pipeline(
        tmp_path,
        {
            "a.ipynb": [
                "%load_ext kernel_magics",
                "%%block checked\nrows = [1, -5]\n\n@test\ndef positive(rows):\n"
                "    assert min(rows) > 0, 'found a negative row'",
            ]
        },
        name="oops",
    )
    with pytest.raises(CellExecutionError) as caught:
        execute_interactively(folder, "a.ipynb")
    assert "TestsFailed" in str(caught.value)
    assert "found a negative row" in str(caught.value)
