"""Live run and block status changes, and changed pipelines, as jupyter_events for the
frontend's event websocket.

A background task polls the run store for active (queued or running) runs, so runs started by
any process (this server, the CLI, the scheduler) show up. It polls a few times a second while
runs are active and every few seconds otherwise, when one query finds there are none; a run
started through this server wakes it at once. Each change is one event: a run's status, or
one block's status in a run.

Every few seconds (the idle interval) it also looks at the pipelines' files under the root
(`Project.pipeline_changes`: stat calls, a listing only when one can differ) and tells in one
event which pipelines were added, removed or edited. A big tree makes looking slow, so it
looks less often: looking takes at most a twentieth of the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines.api import Project
from pipelines.errors import BlockbookError, NotFoundError
from pipelines.forms.json_forms import run_json
from pipelines.server.views import contents_path
from pipelines.status import BlockStatus, RunStatus

# URNs: an id needs to be a URI, not to resolve, and Blockbook has no domain to put them under.
RUN_EVENT = "urn:blockbook:event:run:v1"
BLOCK_EVENT = "urn:blockbook:event:block:v1"
PIPELINES_EVENT = "urn:blockbook:event:pipelines:v1"

_COMMON: dict[str, Any] = {
    "run_id": {"type": "string", "title": "run id"},
    "pipeline": {"type": "string", "title": "pipeline name"},
}

RUN_SCHEMA: dict[str, Any] = {
    "$id": RUN_EVENT,
    "version": "1",
    "title": "Blockbook run status",
    "description": "A run was first seen, or its status changed.",
    "type": "object",
    "required": ["run_id", "pipeline", "status", "previous"],
    "properties": {
        **_COMMON,
        "status": {"enum": [str(s) for s in RunStatus], "title": "status now"},
        "previous": {
            "enum": [*[str(s) for s in RunStatus], None],
            "title": "status before (null: first seen)",
        },
    },
}

BLOCK_SCHEMA: dict[str, Any] = {
    "$id": BLOCK_EVENT,
    "version": "1",
    "title": "Blockbook block status",
    "description": "A block of a run was first seen, or its status changed.",
    "type": "object",
    "required": ["run_id", "pipeline", "block", "status", "previous"],
    "properties": {
        **_COMMON,
        "block": {"type": "string", "title": "block name"},
        "status": {"enum": [str(s) for s in BlockStatus], "title": "status now"},
        "previous": {
            "enum": [*[str(s) for s in BlockStatus], None],
            "title": "status before (null: first seen)",
        },
    },
}

PIPELINES_SCHEMA: dict[str, Any] = {
    "$id": PIPELINES_EVENT,
    "version": "1",
    "title": "Blockbook pipelines changed",
    "description": "Pipelines under the server root were added, removed or edited (a notebook "
    "or pipeline.toml): list them again.",
    "type": "object",
    "required": ["changed"],
    "properties": {
        "changed": {
            "type": "array",
            "items": {"type": "string"},
            "title": "the pipelines' folders, as contents paths ('' for the root)",
        },
    },
}

SCHEMAS = (RUN_SCHEMA, BLOCK_SCHEMA, PIPELINES_SCHEMA)
_ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
_MOST_ACTIVE = 500
"""Active runs watched at once (per status): far more than a project runs together."""
_LOOKING_SHARE = 20
"""Looks at the pipelines' files are at least this many times as far apart as one takes."""


@dataclass(frozen=True, slots=True)
class Event:
    schema_id: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RunState:
    """What the watcher compares between polls."""

    run_id: str
    pipeline: str
    status: str
    blocks: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, run: Mapping[str, Any]) -> RunState:
        """From `run_json(record, with_blocks=True)`."""
        return cls(
            run["run_id"],
            run["pipeline"],
            run["status"],
            {block["name"]: block["status"] for block in run["blocks"]},
        )


def changes(before: RunState | None, after: RunState) -> list[Event]:
    """The events that take a run from `before` (None: not seen yet) to `after`: the run's
    own first, unless it ended, whose end comes after its blocks' last changes."""
    common = {"run_id": after.run_id, "pipeline": after.pipeline}
    seen = before.blocks if before is not None else {}
    blocks = [
        Event(
            BLOCK_EVENT, {**common, "block": block, "status": status, "previous": seen.get(block)}
        )
        for block, status in after.blocks.items()
        if seen.get(block) != status
    ]
    previous = before.status if before is not None else None
    if after.status == previous:
        return blocks
    run = Event(RUN_EVENT, {**common, "status": after.status, "previous": previous})
    return [*blocks, run] if RunStatus(after.status).is_terminal else [run, *blocks]


class RunWatcher:
    """Polls the store (and looks at the pipelines' files) and hands each change to `emit`;
    `start` and `stop` on the server's loop."""

    def __init__(
        self,
        project: Project,
        emit: Callable[[Event], None],
        *,
        interval: float,
        idle_interval: float,
        log: logging.Logger,
    ) -> None:
        self.project = project
        self.emit = emit
        self.interval = interval
        self.idle_interval = idle_interval
        self.log = log
        self._known: dict[str, RunState] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._pipelines = project.pipeline_changes()
        self._next_look = 0.0
        """When to look at the pipelines' files next (`time.monotonic`)."""
        self._looking_fails = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="blockbook-runs")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def watching_pipelines(self) -> bool:
        """Whether the first look at the pipelines was taken: changes after it are told."""
        return self._pipelines.started

    def wake(self) -> None:
        """Look now: a run was just started here."""
        self._wake.set()

    async def stop(self, timeout: float = 10.0) -> None:
        """Let the current poll finish (it runs in a thread), then end the task."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(task, timeout)
        except TimeoutError:  # wait_for cancelled it
            self.log.warning("blockbook: the run watcher did not stop within %ss", timeout)

    def poll(self) -> list[Event]:
        """One look at the store (blocking): the events since the last look."""
        active = {state.run_id: state for state in self._active()}
        for run_id in self._known.keys() - active.keys():
            latest = self._latest(run_id)  # ended or gone since the last look, mostly
            if latest is not None:
                active[run_id] = latest
        events = [
            event
            for state in active.values()
            for event in changes(self._known.get(state.run_id), state)
        ]
        # A run the two status queries missed (queued, then running between them) stays known.
        self._known = {
            run_id: state
            for run_id, state in active.items()
            if not RunStatus(state.status).is_terminal
        }
        return events

    def look_at_pipelines(self) -> list[Event]:
        """One look at the pipelines' files (blocking): an event if some changed since the last
        (none on the first look)."""
        changed = self._pipelines.look()
        if not changed:
            return []
        paths = [contents_path(self.project, folder) for folder in changed]
        return [Event(PIPELINES_EVENT, {"changed": paths})]

    async def _loop(self) -> None:
        while not self._stopping:
            # Before the look, so a run started during it wakes the next one.
            self._wake.clear()
            events = await self._poll()
            if time.monotonic() >= self._next_look:
                events += await self._look()
            for event in events:
                try:
                    self.emit(event)
                except Exception:  # one bad event must not end the watching
                    self.log.exception("blockbook: cannot emit %s", event)
            delay = self.interval if self._known else self.idle_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _poll(self) -> list[Event]:
        try:
            events = await asyncio.to_thread(self.poll)
        except BlockbookError as error:  # the store is down: say so once, keep looking
            if not self._failing:
                self.log.warning("blockbook: cannot watch runs: %s", error)
            self._failing = True
            return []
        except Exception:
            self.log.exception("blockbook: the run watcher failed; it goes on")
            return []
        if self._failing:
            self.log.info("blockbook: watching runs again")
        self._failing = False
        return events

    async def _look(self) -> list[Event]:
        started = time.monotonic()
        try:
            events = await asyncio.to_thread(self.look_at_pipelines)
        except Exception:  # a folder that cannot be read: say so once, keep looking
            if not self._looking_fails:
                self.log.exception("blockbook: cannot look at the pipelines; looking on")
            self._looking_fails = True
            events = []
        else:
            self._looking_fails = False
        took = time.monotonic() - started
        self._next_look = time.monotonic() + max(self.idle_interval, took * _LOOKING_SHARE)
        return events

    def _active(self) -> Iterable[RunState]:
        for status in _ACTIVE:
            for record in self.project.runs(limit=_MOST_ACTIVE, status=status):
                yield RunState.of(run_json(record, with_blocks=True))

    def _latest(self, run_id: str) -> RunState | None:
        process = self.project.runner_process(run_id)
        if process is not None:
            process.poll()  # collect a runner this server started, once it exited
        try:
            record = self.project.run(run_id)
        except NotFoundError:
            return None
        return RunState.of(run_json(record, with_blocks=True))
