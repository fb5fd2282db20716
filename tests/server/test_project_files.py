"""Routes over a project each test writes itself, without runs: how the listing tells a
pipeline whose pipeline.toml cannot be read."""

from __future__ import annotations

from pathlib import Path

from tests.server.conftest import Api, write_pipeline

LOAD = "%%block load\nrows = [1, 2, 3]"


async def test_a_pipeline_whose_config_cannot_be_read_lists_without_params(
    api: Api, root: Path
) -> None:
    write_pipeline(root, "broken", {"a.ipynb": [LOAD]}, '[params\nlabel = "sum"\n')

    listed = await api.get("pipelines")
    detail = await api.get("pipelines/{name}", name="broken")

    (summary,) = listed.body["pipelines"]
    assert (summary["pipeline"], summary["ok"], summary["params"]) == ("broken", False, {})
    assert (detail.code, detail.body["params"]) == (200, {})
