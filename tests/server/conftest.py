"""Fixtures for the server extension: a real Jupyter server (pytest-jupyter) with `blockbook`
loaded over a project root, and a client for its REST API that checks every answer against the
OpenAPI document the server publishes (status documented, body of the documented schema).

Runs are real: runner processes, kernels, the project's SQLite store under the root.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jsonschema import Draft202012Validator
from jupyter_server.auth.identity import IdentityProvider, User
from nbformat import v4

# The plugin: its fixtures (jp_fetch, jp_serverapp, ...) and its hooks that run async tests,
# for the tests of this folder only: named in `pytest_plugins` (read only from the top-level
# conftest) its autouse clean-up fixture would make a ServerApp for every test of the suite.
from pytest_jupyter.jupyter_server import *  # noqa: F403
from traitlets.config import Config

from pipelines.server.routes import openapi_document
from pipelines.store.run_store import DATABASE_URL_ENV

LOAD_EXT = "%load_ext kernel_magics"
DEADLINE = 180.0
"""Seconds a run may take to reach a state: generous, CI machines are loaded."""


# ---- the server ----------------------------------------------------------------------------


@pytest.fixture
def warm_kernels() -> int:
    """The server's `warm_kernels`: parametrize a test with it to run its runs on warm kernels
    in the server's process instead of runner processes."""
    return 0


USER_HEADER = "X-Test-User"


class HeaderIdentity(IdentityProvider):
    """Names the user of a request that carries `USER_HEADER` (authenticated by the token as
    usual), as JupyterHub's provider names its logged-in users; others stay anonymous."""

    async def get_user(self, handler: Any) -> User | None:
        user: User | None = await super().get_user(handler)
        name = handler.request.headers.get(USER_HEADER)
        return User(username=name, name=name) if user is not None and name else user


@pytest.fixture
def jp_server_config(warm_kernels: int) -> Config:
    return Config(
        {
            "ServerApp": {
                "jpserver_extensions": {"pipelines.server": True},
                "identity_provider_class": HeaderIdentity,
            },
            # Quick looks so event tests wait little; the defaults are 0.5 s and 2 s. Warm
            # kernels only where a test asks (each test's server would start its own).
            "BlockbookExtension": {
                "poll_interval": 0.1,
                "idle_poll_interval": 0.2,
                "warm_kernels": warm_kernels,
            },
        }
    )


@pytest.fixture
def root(jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The server's root as a project (blockbook.toml), its store the default SQLite file."""
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    (jp_root_dir / "blockbook.toml").touch()
    return jp_root_dir


# ---- pipelines -----------------------------------------------------------------------------


def write_pipeline(
    root: Path, name: str, notebooks: dict[str, list[str]], pipeline_toml: str = ""
) -> Path:
    """`root/name/` with one notebook per entry, each starting with `%load_ext kernel_magics`."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for filename, cells in notebooks.items():
        notebook = v4.new_notebook()
        notebook.nbformat_minor = 5
        for position, source in enumerate([LOAD_EXT, *cells], start=1):
            cell_id = f"{Path(filename).stem}-{position}"
            notebook.cells.append(v4.new_code_cell(source, id=cell_id))
        nbformat.write(notebook, folder / filename)
    if pipeline_toml:
        (folder / "pipeline.toml").write_text(pipeline_toml, encoding="utf-8")
    return folder


# ---- the API -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    code: int
    body: Any
    """The JSON answer, or the text of a text/plain one."""
    content_type: str


class Api:
    """Calls `blockbook/api/TEMPLATE` with the path values filled in, and checks the answer
    against the OpenAPI document: its status is documented, and its body has the schema."""

    def __init__(self, fetch: Callable[..., Awaitable[Any]], base_url: str) -> None:
        self.fetch = fetch
        self.document = openapi_document(base_url)

    async def get(self, template: str, query: dict[str, str] | None = None, **values: str) -> Reply:
        return await self.call("GET", template, query=query, **values)

    async def post(self, template: str, body: Any = None, **values: str) -> Reply:
        raw = (
            body if isinstance(body, str | bytes) else json.dumps(body if body is not None else {})
        )
        return await self.call("POST", template, body=raw, **values)

    async def call(
        self,
        method: str,
        template: str,
        *,
        body: str | bytes | None = None,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        **values: str,
    ) -> Reply:
        path = template.format(**values)  # jp_fetch escapes it
        response = await self.fetch(
            "blockbook/api",
            path,
            method=method,
            body=body,
            params=query,
            headers=headers,
            raise_error=False,
        )
        content_type = response.headers.get("Content-Type", "")
        text = response.body.decode("utf-8")
        data = json.loads(text) if content_type.startswith("application/json") else text
        reply = Reply(response.code, data, content_type)
        self.check(method, template, reply)
        return reply

    def check(self, method: str, template: str, reply: Reply) -> None:
        operation = self.document["paths"][f"/{template}"][method.lower()]
        documented = operation["responses"]
        assert str(reply.code) in documented, (
            f"{method} {template} answered {reply.code}, documented: {sorted(documented)}: "
            f"{reply.body}"
        )
        content = documented[str(reply.code)].get("content")
        if content is None:
            return
        (kind, spec), *_ = content.items()
        assert reply.content_type.startswith(kind), f"{method} {template}: {reply.content_type}"
        schema = {**spec["schema"], "components": self.document["components"]}
        errors = sorted(Draft202012Validator(schema).iter_errors(reply.body), key=str)
        assert not errors, f"{method} {template} {reply.code}: " + "; ".join(
            f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]
        )


@pytest.fixture
def started(jp_serverapp: Any, jp_asyncio_loop: asyncio.AbstractEventLoop) -> Any:
    """The server with its extensions started, as `jupyter server` starts them once its loop
    runs (pytest-jupyter never does): the run watcher polls."""
    jp_asyncio_loop.run_until_complete(jp_serverapp.extension_manager.start_all_extensions())
    return jp_serverapp


def full_kernel_pool(server: Any) -> None:
    """Wait until the server's warm kernels are all started, so the next run is warm."""
    [extension] = server.extension_manager.extension_apps["pipelines.server"]
    assert extension.kernels is not None, "this server keeps no warm kernels"
    assert extension.kernels.wait_until_full(DEADLINE), "the warm kernels did not start"


@pytest.fixture
def api(started: Any, jp_fetch: Callable[..., Awaitable[Any]], jp_base_url: str) -> Api:
    return Api(jp_fetch, jp_base_url)


# ---- waiting -------------------------------------------------------------------------------


async def until(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll `check` (plain or async) until it returns something true, and return that: never a
    fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        assert time.monotonic() < deadline, f"still waiting for {what} after {timeout}s"
        await asyncio.sleep(0.2)


async def run_reaching(api: Api, run_id: str, statuses: set[str]) -> dict[str, Any]:
    """GET runs/{run_id} until its status is one of `statuses`."""

    async def check() -> dict[str, Any] | None:
        reply = await api.get("runs/{run_id}", run_id=run_id)
        assert reply.code == 200, reply.body
        return reply.body if reply.body["status"] in statuses else None

    found: dict[str, Any] = await until(check, f"run {run_id} to be {statuses}")
    return found


def wait_for_end(root: Path, run_id: str, timeout: float = DEADLINE) -> None:
    """Block until a run (started by other means than the API) ended."""
    from pipelines.api import Project

    deadline = time.monotonic() + timeout
    with Project(root) as project:
        while not project.run(run_id).status.is_terminal:
            assert time.monotonic() < deadline, f"run {run_id} did not end"
            time.sleep(0.2)


@pytest.fixture
def events(started: Any) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every blockbook event the server emits during the test: (schema id, data)."""
    from pipelines.server.events import BLOCK_EVENT, RUN_EVENT

    seen: list[tuple[str, dict[str, Any]]] = []

    async def listener(logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        seen.append((schema_id, dict(data)))

    for schema_id in (RUN_EVENT, BLOCK_EVENT):
        started.event_logger.add_listener(schema_id=schema_id, listener=listener)
    yield seen
    started.event_logger.remove_listener(listener=listener)


@pytest.fixture
def pipeline_events(
    started: Any, jp_asyncio_loop: asyncio.AbstractEventLoop
) -> Iterator[list[dict[str, Any]]]:
    """The data of every pipelines-changed event the server emits during the test, once the
    watcher took its first look at the pipelines (changes are told against it)."""
    from pipelines.server.events import PIPELINES_EVENT

    seen: list[dict[str, Any]] = []

    async def listener(logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        seen.append(dict(data))

    watcher = started.extension_manager.extension_points["blockbook"].app.watcher
    started.event_logger.add_listener(schema_id=PIPELINES_EVENT, listener=listener)
    jp_asyncio_loop.run_until_complete(
        until(lambda: watcher.watching_pipelines, "the first look at the pipelines")
    )
    yield seen
    started.event_logger.remove_listener(listener=listener)
