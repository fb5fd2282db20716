"""The one route table: it registers the handlers and writes the OpenAPI document, so the two
cannot drift. Paths are relative to `{base_url}blockbook/api/`; `{name}` is one path segment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from jupyter_server.utils import url_path_join

from pipelines import __version__
from pipelines.server import handlers as h
from pipelines.server.notebooks import DRIVE
from pipelines.server.schemas import SCHEMAS, Schema, enum, ref
from pipelines.status import RunStatus

API_PREFIX = "blockbook/api"
_PLACEHOLDER = re.compile(r"\{(\w+)\}")

JSON = "application/json"
TEXT = "text/plain"


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    schema: Schema
    description: str


@dataclass(frozen=True, slots=True)
class Operation:
    summary: str
    returns: str
    """A schema name in `SCHEMAS`, or TEXT for a plain-text answer."""
    permissions: tuple[str, ...] = ("read",)
    ok: tuple[HTTPStatus, ...] = (HTTPStatus.OK,)
    errors: tuple[HTTPStatus, ...] = (HTTPStatus.NOT_FOUND,)
    """Beyond 403 and 503, which every route can answer."""
    body: str | None = None
    query: tuple[Query, ...] = ()
    description: str = ""


@dataclass(frozen=True, slots=True)
class Route:
    path: str
    handler: type[h.BlockbookHandler]
    methods: Mapping[str, Operation] = field(default_factory=dict)
    """HTTP method (lower case, as tornado names the handler's methods) -> what it does."""


_PAGING = (
    Query("pipeline", {"type": "string"}, "only runs of this pipeline (its name)"),
    Query("status", enum(RunStatus), "only runs in this status"),
    Query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "page size"),
    Query("before", {"type": "string"}, "the page after this run: the last page's next_before"),
)

_RUN_NOTEBOOK = (
    f"Give `path` to the frontend's `{DRIVE}` drive, which reads notebooks with "
    "GET runs/{run_id}/notebooks/{notebook}, then scroll to `cell_index`. A running run with "
    "secret parameters answers 409 until it ended (its secrets are masked then)."
)

ROUTES: tuple[Route, ...] = (
    Route(
        "pipelines",
        h.PipelinesHandler,
        {"get": Operation("The pipelines under the server root", "PipelineList", errors=())},
    ),
    Route(
        "pipelines/{name}",
        h.PipelineHandler,
        {
            "get": Operation(
                "A pipeline's graph, with each block's status and duration in its newest run",
                "Pipeline",
                errors=(HTTPStatus.NOT_FOUND, HTTPStatus.BAD_REQUEST),
            )
        },
    ),
    Route(
        "pipelines/{name}/problems",
        h.ProblemsHandler,
        {
            "get": Operation(
                "What is wrong with a pipeline (errors and warnings)",
                "Problems",
                errors=(HTTPStatus.NOT_FOUND, HTTPStatus.BAD_REQUEST),
            )
        },
    ),
    Route(
        "pipelines/{name}/latest",
        h.LatestHandler,
        {
            "get": Operation(
                "Each block's latest status, for a badge on its cell",
                "LatestBlocks",
                errors=(HTTPStatus.NOT_FOUND, HTTPStatus.BAD_REQUEST),
                description="From the newest run that has the block, or from running it by "
                "hand in a notebook (`source`: interactive), whichever ended (or started) "
                "later. Blocks never executed are absent.",
            )
        },
    ),
    Route(
        "pipelines/{name}/runs",
        h.StartRunHandler,
        {
            "post": Operation(
                "Start a run in a runner process of its own; returns its id at once",
                "RunStarted",
                permissions=("write", "execute"),
                ok=(HTTPStatus.CREATED,),
                errors=(HTTPStatus.BAD_REQUEST, HTTPStatus.NOT_FOUND),
                body="RunRequest",
                description="The run is recorded (queued) before the answer, so GET "
                "runs/{run_id} and POST runs/{run_id}/cancel work at once.",
            )
        },
    ),
    Route(
        "templates",
        h.TemplatesHandler,
        {
            "get": Operation(
                "The block templates of %block_new, each with the cell it inserts",
                "TemplateList",
                errors=(),
                description="`text` is the whole cell (header with `default_name`, body, "
                "@test); to name the block otherwise, replace the name in its first line.",
            )
        },
    ),
    Route(
        "runs",
        h.RunsHandler,
        {
            "get": Operation(
                "Runs, newest first, a page at a time",
                "RunPage",
                errors=(HTTPStatus.BAD_REQUEST,),
                query=_PAGING,
            )
        },
    ),
    Route(
        "runs/{run_id}",
        h.RunHandler,
        {
            "get": Operation(
                "A run with its blocks (a unique prefix of the id will do)",
                "RunWithBlocks",
                errors=(HTTPStatus.NOT_FOUND, HTTPStatus.BAD_REQUEST),
            )
        },
    ),
    Route(
        "runs/{run_id}/diff/{other_id}",
        h.RunDiffHandler,
        {
            "get": Operation(
                "Run `run_id` (A) and run `other_id` (B) side by side",
                "RunDiff",
                errors=(HTTPStatus.NOT_FOUND, HTTPStatus.BAD_REQUEST),
                description="Parameters, each block's code hash, status, duration and outputs "
                "(row counts, columns added, removed or retyped, sha256), and each run's audit "
                "(who started it, the code hash of every notebook, Blockbook's version). As "
                "`blockbook diff A B --format json`; unique prefixes of ids will do.",
            )
        },
    ),
    Route(
        "runs/{run_id}/cancel",
        h.CancelHandler,
        {
            "post": Operation(
                "Ask a run to stop, whichever process runs it",
                "RunWithBlocks",
                permissions=("write",),
                errors=(HTTPStatus.NOT_FOUND, HTTPStatus.BAD_REQUEST, HTTPStatus.CONFLICT),
                description="A queued run is cancelled at once, a running one at its runner's "
                "next heartbeat (a few seconds). 409 when the run already ended.",
            )
        },
    ),
    Route(
        "runs/{run_id}/blocks/{block}/log",
        h.BlockLogHandler,
        {
            "get": Operation(
                "What the block's cell printed (stdout, stderr) and its traceback, as text",
                TEXT,
                errors=(HTTPStatus.NOT_FOUND, HTTPStatus.BAD_REQUEST, HTTPStatus.CONFLICT),
                description="From the run's executed notebook, secrets masked. A running run "
                "with secret parameters answers 409 until it ended.",
            )
        },
    ),
    Route(
        "runs/{run_id}/blocks/{block}/notebook",
        h.BlockNotebookHandler,
        {
            "get": Operation(
                "Where to open the block's executed notebook, and its cell",
                "NotebookLocation",
                errors=(HTTPStatus.NOT_FOUND, HTTPStatus.BAD_REQUEST, HTTPStatus.CONFLICT),
                description=_RUN_NOTEBOOK,
            )
        },
    ),
    Route(
        "runs/{run_id}/notebooks/{notebook}",
        h.RunNotebookHandler,
        {
            "get": Operation(
                f"An executed notebook of a run, as a read-only contents model ({DRIVE} drive)",
                "NotebookContents",
                errors=(HTTPStatus.NOT_FOUND, HTTPStatus.BAD_REQUEST, HTTPStatus.CONFLICT),
            )
        },
    ),
    Route(
        "runs/{run_id}/blocks/{block}/debug",
        h.DebugNotebookHandler,
        {
            "post": Operation(
                "Write a notebook that re-creates the block with its inputs, at a visible path",
                "DebugNotebook",
                permissions=("write",),
                ok=(HTTPStatus.CREATED, HTTPStatus.OK),
                errors=(HTTPStatus.NOT_FOUND, HTTPStatus.BAD_REQUEST),
                description="201 with a new notebook; 200 when it already existed (it is left "
                "as it is: it may have been edited).",
            )
        },
    ),
    Route(
        "schedules",
        h.SchedulesHandler,
        {
            "get": Operation(
                "Every valid [schedule] and its next fire time", "ScheduleList", errors=()
            )
        },
    ),
    Route(
        "openapi.json",
        h.OpenAPIHandler,
        {"get": Operation("This document", "OpenAPI", errors=())},
    ),
)


def handler_specs(
    services: h.Services,
) -> list[tuple[str, type[h.BlockbookHandler], dict[str, Any]]]:
    """Tornado handler specs for `ExtensionApp.handlers` (which prepends the base URL)."""
    return [
        (
            url_path_join(API_PREFIX, tornado_pattern(route.path)),
            route.handler,
            {"services": services},
        )
        for route in ROUTES
    ]


def tornado_pattern(path: str) -> str:
    """`runs/{run_id}` -> `runs/(?P<run_id>[^/]+)`: handlers get each part by name."""
    parts = _PLACEHOLDER.split(path)  # literal text and names, taking turns
    return "".join(
        f"(?P<{part}>[^/]+)" if index % 2 else re.escape(part) for index, part in enumerate(parts)
    )


def openapi_document(base_url: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Blockbook",
            "version": __version__,
            "description": "Pipelines, runs and schedules of the project at the Jupyter "
            "server's root. Live run and block status changes, and changed pipelines, come "
            "as jupyter_events on the server's /api/events/subscribe websocket.",
        },
        "servers": [{"url": url_path_join(base_url, API_PREFIX)}],
        "paths": {f"/{route.path}": _path_item(route) for route in ROUTES},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "token": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`token <the server's token>`, or the server's login cookie",
                }
            },
        },
        "security": [{"token": []}],
    }


def _path_item(route: Route) -> dict[str, Any]:
    item: dict[str, Any] = {}
    names = _PLACEHOLDER.findall(route.path)
    if names:
        item["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in names
        ]
    for method, operation in route.methods.items():
        item[method] = _operation(route, method, operation)
    return item


def _operation(route: Route, method: str, operation: Operation) -> dict[str, Any]:
    document: dict[str, Any] = {
        "operationId": f"{method}_{route.handler.__name__.removesuffix('Handler')}",
        "summary": operation.summary,
        "x-blockbook-permissions": [
            f"{action}:{h.AUTH_RESOURCE}" for action in operation.permissions
        ],
        "responses": _responses(operation),
    }
    if operation.description:
        document["description"] = operation.description
    if operation.query:
        document["parameters"] = [
            {
                "name": q.name,
                "in": "query",
                "required": False,
                "schema": q.schema,
                "description": q.description,
            }
            for q in operation.query
        ]
    if operation.body is not None:
        document["requestBody"] = {
            "required": False,
            "content": {JSON: {"schema": ref(operation.body)}},
        }
    return document


def _responses(operation: Operation) -> dict[str, Any]:
    content = (
        {TEXT: {"schema": {"type": "string"}}}
        if operation.returns == TEXT
        else {JSON: {"schema": ref(operation.returns)}}
    )
    responses: dict[str, Any] = {
        str(int(status)): {"description": status.phrase, "content": content}
        for status in operation.ok
    }
    error = {JSON: {"schema": ref("Error")}}
    for status in (*operation.errors, HTTPStatus.SERVICE_UNAVAILABLE):
        responses[str(int(status))] = {"description": status.phrase, "content": error}
    responses["403"] = {
        "description": "no token or login, or the user may not do this (jupyter_server's body)"
    }
    return responses
