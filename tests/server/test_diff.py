"""GET runs/{run_id}/diff/{other_id} on a real Jupyter server: two real runs of a pipeline that
includes a notebook of another folder, compared (answers checked against the OpenAPI
document); an unknown run is a 404, a request without the token is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pipelines.assembly.pipeline import assemble
from pipelines.runs.runner import Runner, RunOptions
from pipelines.status import RunStatus
from pipelines.store.run_store import RunStore
from tests.helpers.notebooks import nb, write_notebook
from tests.server.conftest import Api, write_pipeline

LOAD = """%%block load
import pandas as pd
trips = pd.DataFrame({"km": [1, 2, 3]}).astype({"km": km_type})
"""
CLEAN = "%%block clean\nshort = trips[trips.km < 3]"
REPORT = "%%block report\nlongest = short.km.max()"


def two_runs(root: Path) -> tuple[str, str]:
    folder = root / "trips"
    with RunStore.open(root) as store:
        runner = Runner(root, store)
        first = runner.run(assemble(folder))
        second = runner.run(assemble(folder), RunOptions(params={"km_type": "float64"}))
    assert first.status is RunStatus.SUCCESS, first.blocks
    assert second.status is RunStatus.SUCCESS, second.blocks
    return first.run_id, second.run_id


async def test_the_diff_route_compares_two_runs_of_a_pipeline_with_an_include(
    api: Api, root: Path
) -> None:
    write_notebook(root / "common" / "clean.ipynb", nb(CLEAN))
    write_pipeline(
        root,
        "trips",
        {"load.ipynb": [LOAD], "report.ipynb": [REPORT]},
        'include = ["../common/clean.ipynb"]\n[params]\nkm_type = "int64"\n',
    )
    detail = await api.get("pipelines/{name}", name="trips")
    run_a, run_b = await asyncio.to_thread(two_runs, root)

    reply = await api.get("runs/{run_id}/diff/{other_id}", run_id=run_a, other_id=run_b[:17])
    unknown = await api.get("runs/{run_id}/diff/{other_id}", run_id=run_a, other_id="nope")

    assert detail.code == 200
    graph = {block["name"]: block for block in detail.body["blocks"]}
    assert graph["clean"]["notebook"] == "../common/clean.ipynb"
    assert detail.body["order"] == ["load", "clean", "report"]
    assert reply.code == 200, reply.body
    diff = reply.body
    assert (diff["a"]["run_id"], diff["b"]["run_id"]) == (run_a, run_b)
    assert diff["changed"]["params"] == ["km_type"]
    assert diff["changed"]["notebooks"] == []
    outputs = {
        f"{block['block']}.{output['name']}": output
        for block in diff["blocks"]
        for output in block["outputs"]
    }
    assert outputs["clean.short"]["rows"] == {"a": 2, "b": 2, "changed": False}
    assert outputs["clean.short"]["schema"]["retyped"] == [
        {"column": "km", "a": "int64", "b": "float64"}
    ]
    assert set(diff["a"]["audit"]["notebooks"]) == {
        "../common/clean.ipynb",
        "load.ipynb",
        "report.ipynb",
    }
    assert (unknown.code, unknown.body["kind"]) == (404, "not_found")


async def test_the_diff_route_refuses_a_request_without_the_token(
    started: Any, http_server_client: Any, jp_base_url: str, jp_auth_header: dict[str, str]
) -> None:
    url = f"{jp_base_url}blockbook/api/runs/a/diff/b"

    refused = await http_server_client.fetch(url, method="GET", raise_error=False)
    with_token = await http_server_client.fetch(
        url, method="GET", headers=jp_auth_header, raise_error=False
    )

    assert refused.code == 403
    assert with_token.code == 404, "the route answers whoever has the token (no such runs)"
