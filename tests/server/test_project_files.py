"""A project each test writes itself, while the server runs: the pipelines-changed events its
files cause, how the listing tells a pipeline whose pipeline.toml cannot be read, and the
latest status of a block run by hand twice."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from nbclient import NotebookClient
from nbformat import v4

from tests.helpers.notebooks import LOAD_EXT
from tests.server.conftest import Api, until, write_pipeline

LOAD = "%%block load\nrows = [1, 2, 3]"


async def test_pipelines_added_edited_and_removed_are_told(
    api: Api, root: Path, pipeline_events: list[dict[str, Any]]
) -> None:
    async def told(count: int, what: str) -> dict[str, Any]:
        await until(lambda: len(pipeline_events) >= count, what, timeout=60)
        assert len(pipeline_events) == count, pipeline_events
        return pipeline_events[-1]

    write_pipeline(root / "team", "etl", {"a.ipynb": [LOAD]})
    added = await told(1, "the new pipeline")
    (root / "team" / "etl" / "pipeline.toml").write_text('[params]\nday = "x"\n')
    edited = await told(2, "the edited pipeline")
    # Notebooks without blocks make no pipeline: writing one is no event of its own.
    write_pipeline(root, "scratch", {"notes.ipynb": ["print('hello')"]})
    shutil.rmtree(root / "team")
    removed = await told(3, "the removed pipeline")

    assert added == edited == removed == {"changed": ["team/etl"]}
    assert [p["path"] for p in (await api.get("pipelines")).body["pipelines"]] == []


async def test_a_pipeline_whose_config_cannot_be_read_lists_without_params(
    api: Api, root: Path
) -> None:
    write_pipeline(root, "broken", {"a.ipynb": [LOAD]}, '[params\nlabel = "sum"\n')

    listed = await api.get("pipelines")
    detail = await api.get("pipelines/{name}", name="broken")

    (summary,) = listed.body["pipelines"]
    assert (summary["pipeline"], summary["ok"], summary["params"]) == ("broken", False, {})
    assert (detail.code, detail.body["params"]) == (200, {})


async def test_a_block_fixed_by_hand_is_latest_as_it_went_last(api: Api, root: Path) -> None:
    folder = write_pipeline(root, "chain", {"a.ipynb": [LOAD]})
    failing = "%%block load\nraise ValueError('not yet')"
    await run_by_hand(folder, [LOAD_EXT, failing, LOAD])

    reply = await api.get("pipelines/{name}/latest", name="chain")

    latest = reply.body["blocks"]["load"]
    assert (latest["source"], latest["status"], latest["error"]) == ("interactive", "success", None)


async def run_by_hand(folder: Path, cells: list[str]) -> None:
    """Run `cells` in a fresh kernel working in `folder`, as JupyterLab does, on the server's
    loop (`execute_in_kernel` runs its own)."""
    notebook = v4.new_notebook(cells=[v4.new_code_cell(source) for source in cells])
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=120,
        allow_errors=True,
        resources={"metadata": {"path": str(folder)}},
    )
    await client.async_execute()
