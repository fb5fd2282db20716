"""The `blockbook` jupyter_server extension: the composition root of the REST API.

It builds one `Project` for the server's root folder and hands it to the handlers of the route
table, registers the event schemas, and runs the run watcher while the server runs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_events import EventLogger
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.serverapp import ServerApp
from traitlets import Float, Int

from pipelines.api import Project
from pipelines.server.events import SCHEMAS, Event, RunWatcher
from pipelines.server.handlers import Services
from pipelines.server.routes import handler_specs, openapi_document

if TYPE_CHECKING:
    from pipelines.runs.pool import KernelPool


class BlockbookExtension(ExtensionApp):
    name = "blockbook"
    description = "Blockbook's REST API and run events for JupyterLab"

    poll_interval = Float(
        0.5, help="Seconds between looks at the run store while runs are active."
    ).tag(config=True)
    idle_poll_interval = Float(
        2.0,
        help="Seconds between looks at the run store while no run is active, and between "
        "looks at the pipelines' files (for the pipelines-changed event).",
    ).tag(config=True)

    warm_kernels = Int(
        3,
        help="Kernels kept started, with Blockbook, pandas and pyarrow imported, for the runs "
        "this server starts (per kernelspec; a run takes one per notebook and discards it). "
        "Runs then execute in the server's process. 0: runs start in runner processes of their "
        "own, with kernels started for them.",
    ).tag(config=True)

    def initialize_settings(self) -> None:
        # The server's root is the project root: every contents path the API hands out is
        # relative to it, so the frontend can open what it names.
        self.kernels = self._kernel_pool()
        self.project = Project(Path(self.server.root_dir), kernels=self.kernels)
        self.watcher = RunWatcher(
            self.project,
            self._emit,
            interval=self.poll_interval,
            idle_interval=self.idle_poll_interval,
            log=self.log,
        )
        for schema in SCHEMAS:
            self.events.register_event_schema(schema)

    def initialize_handlers(self) -> None:
        base_url = self.server.base_url
        services = Services(self.project, self.watcher.wake, openapi_document(base_url))
        self.handlers.extend(handler_specs(services))

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        self.watcher.start()

    async def stop_extension(self) -> None:
        await self.watcher.stop()
        # Waits for the runs of this process to stop and their kernels to go: off the loop.
        await asyncio.to_thread(self.project.close)
        if self.kernels is not None:
            await asyncio.to_thread(self.kernels.close)

    def _kernel_pool(self) -> KernelPool | None:
        if self.warm_kernels <= 0:
            return None
        # Imported here for cost: only a server that keeps warm kernels needs the pool.
        from pipelines.runs.pool import KernelPool, PoolOptions

        return KernelPool(PoolOptions(size=self.warm_kernels))

    @property
    def server(self) -> ServerApp:
        assert self.serverapp is not None, "linked to a server before it is initialized"
        return self.serverapp

    @property
    def events(self) -> EventLogger:
        logger = self.server.event_logger
        assert logger is not None, "a server has its event logger once initialized"
        return logger

    def _emit(self, event: Event) -> None:
        self.events.emit(schema_id=event.schema_id, data=event.data)
