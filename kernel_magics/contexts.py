"""Where a block's inputs come from and where its results go: a headless run or the dev area.

The executor (`kernel_magics.runtime`) is the same for both; only these contexts differ, which
is how interactive and headless runs stay alike.
"""

from __future__ import annotations

import enum
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kernel_magics.prefetch import prefetch_inputs
from pipelines.assembly.header import BlockName, TriggerRule
from pipelines.errors import BlockbookError, ErrorKind
from pipelines.params import Secrets
from pipelines.rundir.artifacts import ArtifactStore
from pipelines.rundir.location import RemoteFolder, RunFolder, run_folder_at
from pipelines.rundir.plan import SECRETS_ENV, RunPlan, load_plan
from pipelines.rundir.schema_drift import Baseline
from pipelines.rundir.state import (
    CANCEL_FLAG,
    BlockState,
    InputSource,
    LoadedInput,
    interrupt_reason,
    read_state,
    write_state,
)
from pipelines.status import BlockStatus

if TYPE_CHECKING:
    from pipelines.assembly.pipeline import Pipeline


@dataclass(frozen=True, slots=True)
class PollDelays:
    """How often a wait looks at state files: from `first`, doubling up to `quick_cap` for the
    first `quick_seconds`, then up to `slow_cap`."""

    first: float
    quick_cap: float
    slow_cap: float
    quick_seconds: float = 2.0


LOCAL_POLLS = PollDelays(0.002, 0.01, 0.05)
"""Most hand-offs in a run come within a second or two, and each is late by half a poll on
average; a long wait (an upstream running for minutes) needs no such haste."""
REMOTE_POLLS = PollDelays(0.05, 0.1, 0.25)
"""The same in object storage, where each look is a request (~20 ms, and billed)."""


def polls_for(root: RunFolder) -> PollDelays:
    return REMOTE_POLLS if isinstance(root, RemoteFolder) else LOCAL_POLLS


def wait_until_ended(
    root: RunFolder,
    blocks: Sequence[str],
    cancelled: Callable[[], bool],
    delays: PollDelays,
    first_wait: Callable[[list[str]], bool] | None = None,
) -> dict[str, BlockState] | None:
    """The terminal states of `blocks` (read from their state files under `root`), once all
    have one; None when `cancelled()` says so first. `first_wait(pending)` runs once, when the
    wait first has to sleep; True from it means look again at once (it took a while)."""
    ended: dict[str, BlockState] = {}
    pending = list(blocks)
    delay = delays.first
    since = time.monotonic()
    waited = False
    while pending:
        for block in list(pending):
            state = read_state(root, block)
            if state is not None and state.status.is_terminal:
                ended[block] = state
                pending.remove(block)
        if not pending:
            break
        if cancelled():
            return None
        if not waited:
            waited = True
            if first_wait is not None and first_wait(pending):
                continue
        time.sleep(delay)
        quick = time.monotonic() - since < delays.quick_seconds
        delay = min(delay * 2, delays.quick_cap if quick else delays.slow_cap)
    return ended


class UpstreamNotStored(BlockbookError):
    """A block run by hand reads a value another block produces, and no copy is stored yet:
    said before the body runs, where it would only fail with a bare NameError."""

    kind = ErrorKind.NOT_FOUND


class Readiness(enum.Enum):
    PROCEED = "proceed"
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"
    REUSED = "reused"
    CACHED = "cached"
    """Reused because nothing it depends on changed (the runner decided and wrote its state)."""
    SKIPPED = "skipped"


@dataclass(slots=True)
class Preparation:
    readiness: Readiness
    reason: str = ""
    loaded: list[LoadedInput] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def judge_upstream(rule: TriggerRule, upstream: Mapping[str, BlockState]) -> tuple[Readiness, str]:
    """Whether a block runs, from the terminal states of its upstream blocks: (readiness, reason).

    Each upstream counts as succeeded, skipped (skipped itself, or a condition whose result was
    false) or failed (failed, upstream_failed, cancelled).
    """
    succeeded: list[str] = []
    skipped: list[str] = []
    failed: list[str] = []
    for name, state in upstream.items():
        if state.status.succeeded and state.condition_result is not False:
            succeeded.append(name)
        elif state.status.succeeded:
            skipped.append(f"condition `{name}` was false")
        elif state.status is BlockStatus.SKIPPED:
            skipped.append(f"upstream `{name}` was skipped")
        else:
            failed.append(f"{name} ({state.status})")
    if rule is TriggerRule.ALL_DONE:
        return Readiness.PROCEED, ""
    if rule is TriggerRule.ONE_SUCCESS:
        if succeeded or not upstream:
            return Readiness.PROCEED, ""
        if not failed:
            return Readiness.SKIPPED, "skipped: " + ", ".join(skipped)
        return (
            Readiness.UPSTREAM_FAILED,
            "no upstream succeeded (--trigger-rule one_success): " + ", ".join(failed + skipped),
        )
    if failed:
        return Readiness.UPSTREAM_FAILED, "upstream did not succeed: " + ", ".join(failed)
    if skipped:
        return Readiness.SKIPPED, "skipped: " + ", ".join(skipped)
    return Readiness.PROCEED, ""


class BlockContext(Protocol):
    state_root: RunFolder
    notebook: str

    def prepare(
        self,
        name: str,
        inputs: tuple[str, ...],
        namespace: dict[str, Any],
        trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS,
    ) -> Preparation:
        """Wait for upstream blocks if needed, decide by `trigger_rule` whether the block runs,
        and load the inputs the namespace lacks."""

    def stored_outputs(self, name: str, outputs: tuple[str, ...]) -> dict[str, list[str]]:
        """Which outputs to materialize and who reads each."""

    def schema_baseline(self, name: str) -> Baseline | None:
        """What the block's stored frames are compared with; None: nothing."""

    @property
    def artifacts(self) -> ArtifactStore: ...

    def cancelled(self) -> bool: ...

    def interrupt_reason(self, name: str) -> str | None:
        """Why the runner interrupted this block, if it did."""

    def redact(self, text: str) -> str:
        """`text` with every secret of the run masked."""

    def finished(self, name: str, state: BlockState) -> None: ...

    def record(self, state: BlockState) -> None:
        """Write the block's state where this context keeps it."""


class HeadlessContext:
    """A block inside a papermill run: the plan says everything, upstream states are waited on."""

    def __init__(self, run_context: dict[str, Any], namespace: dict[str, Any]) -> None:
        self.state_root = run_folder_at(run_context["run_dir"])
        self.notebook: str = run_context["notebook"]
        self.plan: RunPlan = load_plan(self.state_root)
        self._artifacts = ArtifactStore(self.state_root)
        self._ran_here: set[str] = set()
        self.secrets: dict[str, Any] = json.loads(os.environ.get(SECRETS_ENV, "{}"))
        namespace.update(self.secrets)
        # Only secret parameters reach the kernel: each one's whole value is masked too.
        self._masking = Secrets.of(self.secrets, whole_values=True)

    @property
    def artifacts(self) -> ArtifactStore:
        return self._artifacts

    def cancelled(self) -> bool:
        return (self.state_root / CANCEL_FLAG).exists()

    def redact(self, text: str) -> str:
        return self._masking.mask(text)

    def interrupt_reason(self, name: str) -> str | None:
        return interrupt_reason(self.state_root, name)

    def prepare(
        self,
        name: str,
        inputs: tuple[str, ...],
        namespace: dict[str, Any],
        trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS,
    ) -> Preparation:
        block = self.plan.blocks[name]
        if not block.run:
            return self._not_running(name, namespace)
        earlier = read_state(self.state_root, name)
        if earlier is not None and earlier.status.succeeded:
            # An earlier execution of this notebook finished the block, then its worker was
            # lost and the executor runs the notebook again: running the block a second time
            # would repeat what it did outside (an export twice). Its stored outputs stand in.
            loaded = self._load_outputs(name, namespace, self.plan.run_id)
            reason = "finished by an earlier execution of this notebook in this run"
            return Preparation(Readiness.REUSED, reason, loaded)
        if self.cancelled():
            return Preparation(Readiness.CANCELLED, "the run was cancelled")
        upstream_states = self._wait_for(name, block.upstream, self._prefetch)
        if upstream_states is None or self.cancelled():
            return Preparation(Readiness.CANCELLED, "the run was cancelled")
        readiness, reason = judge_upstream(trigger_rule, upstream_states)
        if readiness is not Readiness.PROCEED:
            return Preparation(readiness, reason)
        loaded = []
        for input_name, producer in block.sources.items():
            if producer in self._ran_here:
                continue  # same kernel: the value is already in the namespace
            state = upstream_states.get(producer) or read_state(self.state_root, producer)
            if state is not None and not state.status.succeeded:
                # all_done / one_success: a producer that did not succeed has nothing to load.
                continue
            origin = self._from_run(producer, input_name, self.plan.run_id)
            loaded.append(_load(namespace, self._artifacts, origin))
        return Preparation(Readiness.PROCEED, loaded=loaded)

    def stored_outputs(self, name: str, outputs: tuple[str, ...]) -> dict[str, list[str]]:
        return self.plan.blocks[name].stored

    def schema_baseline(self, name: str) -> Baseline | None:
        schema = self.plan.blocks[name].schema
        return None if schema is None else Baseline.from_json(schema)

    def record(self, state: BlockState) -> None:
        write_state(self.state_root, state)

    def finished(self, name: str, state: BlockState) -> None:
        if state.status is BlockStatus.SUCCESS and state.reused_from is None:
            self._ran_here.add(name)

    def _not_running(self, name: str, namespace: dict[str, Any]) -> Preparation:
        state = read_state(self.state_root, name)
        if state is not None and state.status.succeeded:
            loaded = self._load_outputs(name, namespace, state.reused_from)
            if state.status is BlockStatus.CACHED:
                return Preparation(Readiness.CACHED, state.error or "cached", loaded)
            return Preparation(Readiness.REUSED, f"reused from run {state.reused_from}", loaded)
        return Preparation(Readiness.SKIPPED, "not selected for this run")

    def _load_outputs(
        self, name: str, namespace: dict[str, Any], run_id: str | None
    ) -> list[LoadedInput]:
        """Load the stored outputs of block `name` (of run `run_id`) into the namespace."""
        return [
            _load(namespace, self._artifacts, self._from_run(name, output, run_id))
            for output in self.plan.blocks[name].stored
        ]

    def _from_run(self, producer: str, output: str, run_id: str | None) -> LoadedInput:
        notebook = self.plan.blocks[producer].source_notebook
        return LoadedInput(output, InputSource.RUN, producer, notebook, run_id or "")

    def _prefetch(self, name: str) -> None:
        """While waiting, import what loading the block's inputs from other kernels will need
        (pandas, pyarrow): the hand-off then doesn't pay for it once the upstream is done."""
        sources = self.plan.blocks[name].sources
        prefetch_inputs(
            self._artifacts, {i: p for i, p in sources.items() if p not in self._ran_here}
        )

    def _wait_for(
        self,
        name: str,
        upstream: tuple[str, ...],
        meanwhile: Callable[[str], None] | None = None,
    ) -> dict[str, BlockState] | None:
        """The terminal states of `upstream`, once all have one; None when the run is cancelled
        meanwhile. `meanwhile(name)` runs once, when the block first has to wait."""

        def announce(pending: list[str]) -> bool:
            waiting = BlockState(
                name, BlockStatus.PENDING, self.notebook, waiting_for=tuple(pending)
            )
            write_state(self.state_root, waiting)
            if meanwhile is None:
                return False
            meanwhile(name)
            return True  # that took a while: look again before sleeping

        delays = polls_for(self.state_root)
        return wait_until_ended(self.state_root, upstream, self.cancelled, delays, announce)


class InteractiveContext:
    """A block run by hand in a notebook: results go to the project's dev area; missing inputs
    come from the newest stored value (dev area or the latest successful run)."""

    def __init__(self, folder: Path) -> None:
        # Imported here: headless kernels never assemble, and assembly pulls in pydantic.
        from pipelines.assembly.cache import AssemblyCache

        self.folder = folder
        self.notebook = ""
        self.notes: list[str] = []
        self._assemblies = AssemblyCache()
        self.relocate()

    def relocate(self) -> None:
        """Find the project root again: a blockbook.toml or `git init` made since the kernel
        started counts from the next block on, without a restart (a few stat calls)."""
        from pipelines.assembly.project import locate_root
        from pipelines.rundir.layout import dev_dir

        located = locate_root(self.folder)
        self.root = located.folder
        self.root_note = located.note
        self.state_root = dev_dir(self.root, self.folder.name)
        self._artifacts = ArtifactStore(self.state_root)

    @property
    def artifacts(self) -> ArtifactStore:
        return self._artifacts

    def cancelled(self) -> bool:
        return False

    def interrupt_reason(self, name: str) -> str | None:
        return None

    def redact(self, text: str) -> str:
        return text

    def record(self, state: BlockState) -> None:
        # Each execution by hand is a new one: its state replaces the last, whatever it was.
        write_state(self.state_root, state, keep_terminal=False)

    def finished(self, name: str, state: BlockState) -> None:
        pass

    def prepare(
        self,
        name: str,
        inputs: tuple[str, ...],
        namespace: dict[str, Any],
        trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS,
    ) -> Preparation:
        # Trigger rules need a run's upstream states; by hand, the person decides what runs.
        missing = [n for n in inputs if n not in namespace]
        if self.root_note is not None:
            # No marker file decided the root: say which one was taken and how to pin it.
            self.notes.append(self.root_note)
        if not missing:
            notes, self.notes = self.notes, []
            return Preparation(Readiness.PROCEED, notes=notes)
        pipeline = self._pipeline()
        runs = _RunLookup(self.root, self.notes)
        try:
            loaded = self._load_missing(pipeline, name, missing, namespace, runs)
        finally:
            runs.close()
            notes, self.notes = self.notes, []  # a failed preparation leaves none for the next
        return Preparation(Readiness.PROCEED, loaded=loaded, notes=notes)

    def _load_missing(
        self,
        pipeline: Pipeline,
        name: str,
        missing: list[str],
        namespace: dict[str, Any],
        runs: _RunLookup,
    ) -> list[LoadedInput]:
        params = pipeline.config.params
        loaded: list[LoadedInput] = []
        unstored: list[str] = []
        for input_name in missing:
            if input_name in params:
                namespace[input_name] = params[input_name]
                loaded.append(LoadedInput(input_name, InputSource.PARAMS))
                continue
            producer = pipeline.producer_of(name, input_name)
            if producer is None:
                continue  # nobody produces it: the body's own NameError says it best
            found = self._newest(pipeline.name, producer, input_name, runs)
            if found is None:
                unstored.append(_not_stored(pipeline, producer, input_name))
                continue
            store, source, run_id = found
            notebook = pipeline.blocks[producer].notebook if producer in pipeline.blocks else ""
            origin = LoadedInput(input_name, source, producer, notebook, run_id)
            loaded.append(_load(namespace, store, origin))
        if unstored:
            raise UpstreamNotStored(
                "; ".join(unstored), hint="run that cell or `%pipeline run`, then this one again"
            )
        return loaded

    def stored_outputs(self, name: str, outputs: tuple[str, ...]) -> dict[str, list[str]]:
        # The saved notebook may lag behind the cell: readers not wired yet count too.
        pipeline = self._pipeline()
        read = pipeline.readers_of(name, include_unwired=True)
        stored = {output: [str(r) for r in read[output]] for output in outputs if output in read}
        block = pipeline.blocks.get(BlockName(name))
        for explicit in (block.header.out or ()) if block is not None else ():
            stored.setdefault(explicit, [])
        return stored

    def schema_baseline(self, name: str) -> Baseline | None:
        # Runs compare (their runner finds the baseline); work by hand in the dev area is
        # expected to change shape while it is written.
        return None

    def _pipeline(self) -> Pipeline:
        """The pipeline as saved on disk, assembled again only when a file of it changed."""
        return self._assemblies.get(self.folder)

    def _newest(
        self, pipeline: str, block: str, name: str, runs: _RunLookup
    ) -> tuple[ArtifactStore, InputSource, str] | None:
        """The store holding the newest copy of an output: (store, dev or run, run id)."""
        candidates: list[tuple[str, ArtifactStore, InputSource, str]] = []
        dev = self._artifacts.manifest(block, name)
        if dev is not None:
            candidates.append((dev.created_at, self._artifacts, InputSource.DEV, ""))
        run = runs.last_success(pipeline, block)
        if run is not None:
            store, run_id = run
            manifest = store.manifest(block, name)
            if manifest is not None:
                candidates.append((manifest.created_at, store, InputSource.RUN, run_id))
        if not candidates:
            return None
        _, store, source, run_id = max(candidates, key=lambda c: c[0])
        return store, source, run_id


class _RunLookup:
    """The run store, opened at most once per block execution, only if a value is needed."""

    def __init__(self, root: Path, notes: list[str]) -> None:
        self.root = root
        self.notes = notes
        self._store: Any = None
        self._unavailable = False

    def last_success(self, pipeline: str, block: str) -> tuple[ArtifactStore, str] | None:
        from pipelines.errors import BlockbookError
        from pipelines.store.run_store import RunStore

        if self._unavailable:
            return None
        try:
            if self._store is None:
                self._store = RunStore.open(self.root)
            record = self._store.last_success(pipeline, block)
        except BlockbookError as exc:
            # The dev area still works without the run store; say why runs were not consulted.
            self.notes.append(f"run store not consulted: {exc.message}")
            self._unavailable = True
            return None
        if record is None:
            return None
        return ArtifactStore(run_folder_at(record.run_dir)), record.run_id

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def _not_stored(pipeline: Pipeline, producer: str, name: str) -> str:
    """Where a value nobody stored yet comes from, as the person would look for it."""
    block = pipeline.blocks.get(BlockName(producer))
    where = f" ({block.notebook}, cell {block.cell})" if block is not None else ""
    return f"`{name}` comes from block `{producer}`{where}; it has not been run or stored yet"


def _load(namespace: dict[str, Any], store: ArtifactStore, origin: LoadedInput) -> LoadedInput:
    """Put a stored output into the namespace under its name; `origin` says where it came from."""
    namespace[origin.name] = store.load(origin.block, origin.name)
    return origin
