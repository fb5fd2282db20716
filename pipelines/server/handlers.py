"""The REST handlers: each checks who asks, reads its request, runs one `views` function in a
worker thread (store queries and notebook reads block) and writes what it returns.

A `BlockbookError` becomes `{"message", "hint", "kind"}` with the status its kind maps to;
anything else is a 500 of the same shape, its traceback in the server log only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast

import tornado.web
from jupyter_server.auth import decorator
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin

from pipelines.api import Project
from pipelines.errors import BlockbookError, ErrorKind
from pipelines.server import inputs, views
from pipelines.store.diff import diff_json

AUTH_RESOURCE = "blockbook"
"""The resource an `Authorizer` is asked about: read for GET, write for POST, and execute too
for starting a run, since a run executes the pipeline's code."""

STATUS_OF_KIND: Mapping[ErrorKind, HTTPStatus] = {
    ErrorKind.NOT_FOUND: HTTPStatus.NOT_FOUND,
    ErrorKind.AMBIGUOUS: HTTPStatus.BAD_REQUEST,
    ErrorKind.CONFLICT: HTTPStatus.CONFLICT,
    ErrorKind.INVALID: HTTPStatus.BAD_REQUEST,
    ErrorKind.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
    ErrorKind.INTERNAL: HTTPStatus.INTERNAL_SERVER_ERROR,
}

P = ParamSpec("P")
T = TypeVar("T")
_Method = TypeVar("_Method", bound=Callable[..., Awaitable[None]])


class _Authorized(Protocol):
    def __call__(self, action: str, resource: str) -> Callable[[_Method], _Method]: ...


# jupyter_server's own decorator; its annotations lose the decorated method's type for mypy.
authorized = cast(_Authorized, decorator.authorized)


@dataclass(frozen=True, slots=True)
class Services:
    """What the extension hands every handler."""

    project: Project
    started: Callable[[], None]
    """Tells the run watcher a run was just started, so it looks at once."""
    openapi: Mapping[str, Any]


class BlockbookHandler(ExtensionHandlerMixin, APIHandler):
    auth_resource = AUTH_RESOURCE

    def initialize(self, name: str, services: Services) -> None:
        super().initialize(name)
        self.services = services

    async def call(
        self, view: Callable[Concatenate[Project, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        return await asyncio.to_thread(view, self.services.project, *args, **kwargs)

    def _user_name(self) -> str:
        """Who asked, as the server's identity provider names them (JupyterHub: the login)."""
        return getattr(self.current_user, "username", None) or "anonymous"

    def send_json(self, data: Mapping[str, Any], status: HTTPStatus = HTTPStatus.OK) -> None:
        self.set_status(status)
        self.finish(dict(data))  # APIHandler.finish says application/json

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = _exception(kwargs)
        if isinstance(error, BlockbookError):
            self.set_status(STATUS_OF_KIND[error.kind])
            self.finish(error.to_json())
        elif status_code == HTTPStatus.INTERNAL_SERVER_ERROR:
            self.finish(
                {
                    "message": "the Blockbook server extension failed on this request",
                    "hint": "the Jupyter server's log has the traceback",
                    "kind": str(ErrorKind.INTERNAL),
                }
            )
        else:  # tornado's and jupyter_server's own (403 without a token): their shape
            super().write_error(status_code, **kwargs)

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(value, BlockbookError) and value.kind is not ErrorKind.INTERNAL:
            # The caller's mistake or a known state, answered in full: no traceback.
            self.log.info("%s %s: %s", self.request.method, self.request.path, value.message)
            return
        super().log_exception(typ, value, tb)


def _exception(kwargs: Mapping[str, Any]) -> BaseException | None:
    exc_info = kwargs.get("exc_info")
    return exc_info[1] if exc_info else None


# ---- pipelines ---------------------------------------------------------------------------


class PipelinesHandler(BlockbookHandler):
    @tornado.web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self) -> None:
        self.send_json(await self.call(views.pipelines))


class PipelineHandler(BlockbookHandler):
    @tornado.web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self, name: str) -> None:
        self.send_json(await self.call(views.pipeline, name))


class ProblemsHandler(BlockbookHandler):
    @tornado.web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self, name: str) -> None:
        self.send_json(await self.call(views.problems, name))


class LatestHandler(BlockbookHandler):
    @tornado.web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self, name: str) -> None:
        self.send_json(await self.call(views.latest, name))


class StartRunHandler(BlockbookHandler):
    @tornado.web.authenticated
    @authorized("write", resource=AUTH_RESOURCE)
    @authorized("execute", resource=AUTH_RESOURCE)
    async def post(self, name: str) -> None:
        request = inputs.run_request(self.request.body)
        started = await self.call(views.start, name, request, self._user_name())
        self.services.started()
        self.send_json(started, HTTPStatus.CREATED)


class TemplatesHandler(BlockbookHandler):
    @tornado.web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self) -> None:
        self.send_json(await self.call(views.templates))


# ---- runs --------------------------------------------------------------------------------


class RunsHandler(BlockbookHandler):
    @tornado.web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self) -> None:
        query = inputs.runs_query(self.request.query_arguments)
        self.send_json(await self.call(views.runs, query))


class RunHandler(BlockbookHandler):
    @tornado.web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self, run_id: str) -> None:
        self.send_json(await self.call(views.run, run_id))


class RunDiffHandler(BlockbookHandler):
    @tornado.web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self, run_id: str, other_id: str) -> None:
        self.send_json(await self.call(_run_diff, run_id, other_id))


def _run_diff(project: Project, run_a: str, run_b: str) -> dict[str, Any]:
    return diff_json(project.diff(run_a, run_b))


class CancelHandler(BlockbookHandler):
    @tornado.web.authenticated
    @authorized("write", resource=AUTH_RESOURCE)
    async def post(self, run_id: str) -> None:
        self.send_json(await self.call(views.cancel, run_id, f"{self._user_name()}@jupyter-server"))


class BlockLogHandler(BlockbookHandler):
    @tornado.web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self, run_id: str, block: str) -> None:
        text = await self.call(views.block_log, run_id, block)
        self.finish(text, set_content_type="text/plain; charset=UTF-8")


class BlockNotebookHandler(BlockbookHandler):
    @tornado.web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self, run_id: str, block: str) -> None:
        self.send_json(await self.call(views.block_notebook, run_id, block))


class RunNotebookHandler(BlockbookHandler):
    @tornado.web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self, run_id: str, notebook: str) -> None:
        self.send_json(await self.call(views.run_notebook, run_id, notebook))


class DebugNotebookHandler(BlockbookHandler):
    @tornado.web.authenticated
    @authorized("write", resource=AUTH_RESOURCE)
    async def post(self, run_id: str, block: str) -> None:
        written = await self.call(views.debug_notebook, run_id, block)
        self.send_json(written, HTTPStatus.CREATED if written["created"] else HTTPStatus.OK)


# ---- schedules and the API itself --------------------------------------------------------


class SchedulesHandler(BlockbookHandler):
    @tornado.web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self) -> None:
        self.send_json(await self.call(views.schedules))


class OpenAPIHandler(BlockbookHandler):
    @tornado.web.authenticated
    @authorized("read", resource=AUTH_RESOURCE)
    async def get(self) -> None:
        self.send_json(self.services.openapi)
