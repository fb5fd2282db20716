"""Block state files: how a kernel tells the runner (and other kernels) where a block stands.

Each block of a run has one JSON file under `RUN_DIR/blocks/`, replaced atomically on every
change. The kernel that runs the block writes it; the runner writes it only for blocks a kernel
can no longer speak for (a dead kernel, a cancelled run). Kernels of other notebooks read it to
wait for their upstream blocks; the runner reads it to record progress in the run store.
"""

from __future__ import annotations

import enum
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.rundir.location import RemoteFolder, RunFolder
from pipelines.status import BlockStatus

STATE_DIR = "blocks"
CANCEL_FLAG = "CANCELLED"
"""A file in the run folder whose presence tells every kernel the run is being cancelled."""
TEMPORARY_SUFFIX = ".tmp"
"""Atomic writes go to `.NAME.XXXX.tmp` beside their target first (see `write_bytes_atomic`)."""
INTERRUPT_DIR = "interrupts"
"""`INTERRUPT_DIR/BLOCK` holds why the runner interrupted that block's kernel."""


def now() -> datetime:
    return datetime.now(UTC)


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """How long something took, when both ends are known."""
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def seconds_text(start: datetime | None, end: datetime | None) -> str:
    """`2.58`, or "" when either end is unknown: for tables and status lines."""
    seconds = seconds_between(start, end)
    return "" if seconds is None else f"{seconds:.2f}"


class TestOutcome(enum.StrEnum):
    __test__ = False  # keep pytest from collecting it (nor TestRecord) where tests import it

    PASSED = "passed"
    FAILED = "failed"
    WARNED = "warned"
    """Failed under `--tests warn`: reported, but the block still succeeds."""


@dataclass(frozen=True, slots=True)
class TestRecord:
    """One `@test` of an attempt. The kernel makes it, state files and the run store keep it
    (as `to_json`), views show it."""

    __test__ = False

    name: str
    outcome: TestOutcome
    message: str = ""

    def __post_init__(self) -> None:
        # Store rows and older callers hold the outcome as text: keep the enum either way.
        object.__setattr__(self, "outcome", TestOutcome(self.outcome))

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "outcome": str(self.outcome), "message": self.message}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TestRecord:
        return cls(data["name"], TestOutcome(data["outcome"]), data.get("message", ""))


class InputSource(enum.StrEnum):
    """Where a kernel found an input its namespace lacked."""

    RUN = "run"
    """A run's stored output: this run's, or the one a resumed run reused."""
    DEV = "dev"
    """The dev area, where blocks run by hand store their outputs."""
    PARAMS = "params"
    """`[params]` of pipeline.toml."""


@dataclass(frozen=True, slots=True)
class LoadedInput:
    """An input a kernel loaded for a block, and where from: kept on the block's state (as
    `to_json`) and shown by its view."""

    name: str
    source: InputSource
    block: str = ""
    """The producing block; "" for a parameter."""
    notebook: str = ""
    """The producer's source notebook, relative to the pipeline folder."""
    run: str = ""
    """The run that stored the value; "" outside runs."""

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "block": self.block,
            "notebook": self.notebook,
            "source": str(self.source),
            "run": self.run,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, str]) -> LoadedInput:
        return cls(
            name=data["name"],
            source=InputSource(data["source"]),
            block=data.get("block", ""),
            notebook=data.get("notebook", ""),
            run=data.get("run", ""),
        )


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    """1 for the first try, 2 for the first retry, ..."""
    status: BlockStatus
    started_at: datetime
    ended_at: datetime | None = None
    error: str | None = None
    """One line: exception type and message."""
    traceback: str | None = None
    tests: tuple[TestRecord, ...] = ()
    outputs: tuple[dict[str, Any], ...] = ()
    """Manifests of the stored outputs (see `pipelines.rundir.artifacts.OutputManifest.to_json`)."""
    summaries: tuple[dict[str, Any], ...] = ()
    """Short descriptions of outputs nobody reads (not stored)."""
    pokes: int = 0
    """Sensors: how many times this attempt ran the body so far (0 for other blocks)."""


@dataclass(frozen=True, slots=True)
class BlockState:
    block: str
    status: BlockStatus
    notebook: str
    """The executed run notebook that holds the block, relative to the run folder."""
    attempts: tuple[Attempt, ...] = ()
    error: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    waiting_for: tuple[str, ...] = ()
    reused_from: str | None = None
    """Run id whose successful result a resumed run reused instead of running again."""
    loaded: tuple[dict[str, str], ...] = field(default=())
    """Where each loaded input came from, as `LoadedInput.to_json`."""
    condition_result: bool | None = None
    """Condition blocks that succeeded: their result. False skips the blocks downstream."""
    schema_drift: tuple[dict[str, Any], ...] = ()
    """How its stored frames differ from their baseline (`schema_drift.Drift.to_json`): the
    warnings of a block that succeeded, the error of one `--schema fail` failed."""
    map_items: int | None = None
    """A mapped block (`--map`): how many items, so children, it fans out to, once known."""

    def with_attempt(self, attempt: Attempt) -> BlockState:
        """Add or replace (same number) an attempt."""
        kept = tuple(a for a in self.attempts if a.number != attempt.number)
        return replace(self, attempts=(*kept, attempt))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = _jsonable(asdict(self))
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BlockState:
        attempts = tuple(
            Attempt(
                number=a["number"],
                status=BlockStatus(a["status"]),
                started_at=_time(a["started_at"]) or now(),
                ended_at=_time(a.get("ended_at")),
                error=a.get("error"),
                traceback=a.get("traceback"),
                tests=tuple(TestRecord.from_json(t) for t in a.get("tests", ())),
                outputs=tuple(a.get("outputs", ())),
                summaries=tuple(a.get("summaries", ())),
                pokes=a.get("pokes", 0),
            )
            for a in data.get("attempts", ())
        )
        return cls(
            block=data["block"],
            status=BlockStatus(data["status"]),
            notebook=data["notebook"],
            attempts=attempts,
            error=data.get("error"),
            started_at=_time(data.get("started_at")),
            ended_at=_time(data.get("ended_at")),
            waiting_for=tuple(data.get("waiting_for", ())),
            reused_from=data.get("reused_from"),
            loaded=tuple(data.get("loaded", ())),
            condition_result=data.get("condition_result"),
            schema_drift=tuple(data.get("schema_drift", ())),
            map_items=data.get("map_items"),
        )


def state_path(run_dir: RunFolder, block: str) -> RunFolder:
    return run_dir / STATE_DIR / f"{block}.json"


def write_state(run_dir: RunFolder, state: BlockState, *, keep_terminal: bool = True) -> None:
    """Replace the block's state file atomically. In a run a terminal state is never overwritten
    (`keep_terminal`); in the dev area each execution by hand is a new one, so it replaces."""
    path = state_path(run_dir, state.block)
    current = read_state(run_dir, state.block) if keep_terminal else None
    if current is not None and current.status.is_terminal and current.status != state.status:
        return
    write_json_atomic(path, state.to_json())


def read_state(run_dir: RunFolder, block: str) -> BlockState | None:
    path = state_path(run_dir, block)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return BlockState.from_json(data)


def raise_stop_flag(run_dir: RunFolder, reason: str) -> None:
    """Tell every kernel of the run to start no further block (they check `CANCEL_FLAG` before
    a block starts and while they wait for upstream): a cancel, or a run that ended elsewhere."""
    (run_dir / CANCEL_FLAG).write_text(f"{reason}\n", encoding="utf-8")


def record_interrupt(run_dir: RunFolder, block: str, reason: str) -> None:
    """Say why the runner is about to interrupt `block`'s kernel (the kernel reports it)."""
    path = run_dir / INTERRUPT_DIR / block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(reason, encoding="utf-8")


def interrupt_reason(run_dir: RunFolder, block: str) -> str | None:
    try:
        return (run_dir / INTERRUPT_DIR / block).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def state_stamps(run_dir: RunFolder) -> dict[str, Any]:
    """Each block state file's name (`BLOCK.json`) -> a stamp that changes when it is rewritten:
    how the runner finds the states that changed without reading them all."""
    folder = run_dir / STATE_DIR
    if isinstance(folder, RemoteFolder):
        return folder.stamps()
    try:
        return {entry.name: _stamp(entry.stat()) for entry in os.scandir(folder)}
    except FileNotFoundError:
        return {}


def _stamp(stat: os.stat_result) -> tuple[int, int, int]:
    # The modification time alone can repeat: two writes within the file system's timestamp
    # granularity (a few ms) get the same one, and the runner would miss the second (a block's
    # last state). Every atomic write is a new file, so its inode differs from the file it
    # replaced; the size tells most states apart besides.
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def write_json_atomic(path: RunFolder, data: Any) -> None:
    write_bytes_atomic(path, json.dumps(data, indent=1, sort_keys=True).encode())


def write_bytes_atomic(path: RunFolder, payload: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over the target (in object
    storage: one PUT, which is atomic there)."""
    if isinstance(path, RemoteFolder):
        path.write_bytes(payload)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX
    )
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
