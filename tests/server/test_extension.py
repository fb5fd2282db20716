"""The extension itself: how jupyter_server finds and enables it, the route table against its
handlers and its OpenAPI document, who may call which route, and the run watcher's lifetime."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest
from jupyter_server.auth import Authorizer
from traitlets.config import Config

from pipelines.server import _jupyter_server_extension_points
from pipelines.server.events import BLOCK_EVENT, RUN_EVENT, RunState, changes
from pipelines.server.extension import BlockbookExtension
from pipelines.server.routes import ROUTES, openapi_document, tornado_pattern
from tests.server.conftest import Api

REPO = Path(__file__).resolve().parents[2]
HTTP_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


def test_the_enable_file_names_the_package_with_the_extension_points() -> None:
    enable = REPO / "jupyter-config" / "jupyter_server_config.d" / "blockbook.json"
    extensions = json.loads(enable.read_text(encoding="utf-8"))["ServerApp"]["jpserver_extensions"]

    assert extensions == {"pipelines.server": True}
    assert _jupyter_server_extension_points() == [
        {"module": "pipelines.server.extension", "app": BlockbookExtension}
    ]


def test_each_route_documents_exactly_the_methods_its_handler_has() -> None:
    for route in ROUTES:
        implemented = {m for m in HTTP_METHODS if m in vars(route.handler)}
        assert implemented == set(route.methods), route.path


def test_the_openapi_document_has_every_route_and_resolves_its_references() -> None:
    document = openapi_document("/base/")
    text = json.dumps(document)

    assert document["openapi"].startswith("3.")
    assert document["servers"] == [{"url": "/base/blockbook/api"}]
    assert set(document["paths"]) == {f"/{route.path}" for route in ROUTES}
    for name in set(re.findall(r'"#/components/schemas/(\w+)"', text)):
        assert name in document["components"]["schemas"], name
    operation_ids = [
        op["operationId"]
        for item in document["paths"].values()
        for key, op in item.items()
        if key in HTTP_METHODS
    ]
    assert len(operation_ids) == len(set(operation_ids))


async def test_the_server_publishes_the_document(api: Api, jp_base_url: str) -> None:
    reply = await api.get("openapi.json")

    assert reply.body == openapi_document(jp_base_url)


def test_path_values_are_one_segment_each() -> None:
    pattern = re.compile(tornado_pattern("runs/{run_id}/blocks/{block}/log") + "$")

    assert pattern.match("runs/r1/blocks/load/log").groupdict() == {"run_id": "r1", "block": "load"}
    assert pattern.match("runs/r1/x/blocks/load/log") is None


async def test_every_route_refuses_a_request_without_the_token(
    started: Any, http_server_client: Any, jp_base_url: str
) -> None:
    document = openapi_document(jp_base_url)
    refused = {}
    for path, item in document["paths"].items():
        url = jp_base_url + "blockbook/api" + re.sub(r"\{\w+\}", "x", path)
        for method in (key for key in item if key in HTTP_METHODS):
            response = await http_server_client.fetch(
                url,
                method=method.upper(),
                body="{}" if method == "post" else None,
                raise_error=False,
            )
            refused[f"{method.upper()} {path}"] = response.code

    assert len(refused) == sum(len(route.methods) for route in ROUTES)
    assert {code for code in refused.values()} <= {401, 403}, refused


# ---- authorization -----------------------------------------------------------------------


class ReadOnly(Authorizer):
    """Lets a user read Blockbook (and use the rest of the server), nothing more of it."""

    asked: ClassVar[list[tuple[str, str]]] = []

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        if resource != "blockbook":
            return True
        self.asked.append((action, resource))
        return action == "read"


@pytest.fixture
def read_only(jp_server_config: Config) -> Config:
    ReadOnly.asked.clear()
    jp_server_config["ServerApp"]["authorizer_class"] = ReadOnly
    return jp_server_config


async def test_starting_a_run_needs_write_and_execute(
    read_only: Config, api: Api, root: Path
) -> None:
    listed = await api.get("pipelines")
    refused = await api.post("pipelines/{name}/runs", {}, name="anything")

    assert listed.code == 200
    assert refused.code == 403
    assert ReadOnly.asked == [("read", "blockbook"), ("write", "blockbook")]


# ---- the run watcher ---------------------------------------------------------------------


def test_changes_tell_the_new_run_its_status_changes_and_each_block_that_changed() -> None:
    queued = RunState("r1", "chain", "queued")
    running = RunState("r1", "chain", "running", {"load": "running", "double": "pending"})
    loaded = RunState("r1", "chain", "running", {"load": "success", "double": "pending"})

    assert [(e.schema_id, e.data["status"], e.data["previous"]) for e in changes(None, queued)] == [
        (RUN_EVENT, "queued", None)
    ]
    assert [(e.data["status"], e.data.get("block")) for e in changes(queued, running)] == [
        ("running", None),
        ("running", "load"),
        ("pending", "double"),
    ]
    assert [(e.schema_id, e.data) for e in changes(running, loaded)] == [
        (
            BLOCK_EVENT,
            {
                "run_id": "r1",
                "pipeline": "chain",
                "block": "load",
                "status": "success",
                "previous": "running",
            },
        )
    ]
    assert changes(loaded, loaded) == []


def test_a_runs_end_comes_after_its_blocks_last_changes() -> None:
    running = RunState("r1", "chain", "running", {"load": "running"})
    ended = RunState("r1", "chain", "success", {"load": "success"})

    assert [(e.schema_id, e.data["status"]) for e in changes(running, ended)] == [
        (BLOCK_EVENT, "success"),
        (RUN_EVENT, "success"),
    ]


async def test_the_watcher_stops_with_the_extension(started: Any, root: Path) -> None:
    app = started.extension_manager.extension_points["blockbook"].app

    assert app.watcher.running
    await app.stop_extension()
    assert not app.watcher.running
