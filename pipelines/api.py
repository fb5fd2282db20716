"""The service layer: `Project`, the one composition root every entry point goes through.

The CLI, `%pipeline`, the scheduler and the REST server hold presentation only; what they show
and do comes from a `Project`: one run store (opened on first use), a cache of assembled
pipelines (assembled again only when a file changed), and the launcher of runner processes.
Collaborators are constructor arguments, which is also how tests swap them. The README's
"From Python" section shows it in use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from subprocess import Popen
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pipelines.assembly.cache import AssemblyCache
from pipelines.assembly.changes import PipelineChanges
from pipelines.assembly.config import PipelineConfig, ScheduleConfig, load_pipeline_config
from pipelines.assembly.pipeline import Pipeline
from pipelines.assembly.project import (
    PipelineRef,
    find_root,
    list_pipelines,
    notebook_files,
    resolve_pipeline,
)
from pipelines.assembly.templates import TEMPLATES, Template
from pipelines.choices import RunChoices
from pipelines.errors import InvalidInputError, NotFoundError
from pipelines.params import ParamValue, merge
from pipelines.rundir.artifacts import ArtifactStore
from pipelines.rundir.layout import dev_dir, launch_log
from pipelines.rundir.state import now as clock
from pipelines.runs.selection import check_forced, check_only, check_runnable
from pipelines.scheduling.launcher import LaunchRequest, SubprocessLauncher
from pipelines.status import RunStatus, Trigger

if TYPE_CHECKING:
    from pipelines.runs.debug import ExecutedNotebook
    from pipelines.runs.execution import BlockListener
    from pipelines.runs.executors.choice import ExecutorChoice
    from pipelines.runs.pool import KernelPool
    from pipelines.runs.runner import Runner, RunOptions, RunResult
    from pipelines.runs.schema_baselines import PinnedSchema
    from pipelines.runs.warm import WarmRuns
    from pipelines.scheduling.scheduler import Scheduler, SchedulerOptions
    from pipelines.scheduling.upcoming import ScheduleInfo
    from pipelines.store.diff import RunDiff
    from pipelines.store.latest import LatestBlocks
    from pipelines.store.records import BlockRunRecord, RunId, RunRecord
    from pipelines.store.run_store import RunStore


@dataclass(frozen=True, slots=True)
class PipelineSummary:
    """One line of `pipelines()`: enough to list pipelines without assembling twice."""

    ref: PipelineRef
    pipeline: Pipeline
    last_run: RunRecord | None

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def schedule(self) -> ScheduleConfig | None:
        return self.pipeline.config.schedule


@dataclass(frozen=True, slots=True)
class PipelineDetail:
    """`pipeline(name)`: the graph, its problems and schedule, and how each block last ran."""

    pipeline: Pipeline
    last_run: RunRecord | None

    @property
    def last_blocks(self) -> dict[str, BlockRunRecord]:
        """Block name -> its record in the pipeline's newest run (blocks it had)."""
        if self.last_run is None:
            return {}
        return {block.block: block for block in self.last_run.blocks}


class Project:
    """A project folder and everything Blockbook keeps for it. Safe to share between threads."""

    def __init__(
        self,
        root: Path,
        *,
        store: RunStore | None = None,
        assembly: AssemblyCache | None = None,
        launcher: SubprocessLauncher | None = None,
        kernels: KernelPool | None = None,
    ) -> None:
        self.root = root.resolve()
        self.assembly = assembly or AssemblyCache()
        self.launcher = launcher or SubprocessLauncher(self.root)
        self._store = store
        self._store_lock = threading.Lock()
        self._children: dict[str, Popen[bytes]] = {}
        self._warm: WarmRuns | None = None
        if kernels is not None:
            # Imported here for cost: the runner and papermill, for long-lived processes only.
            from pipelines.runs.warm import WarmRuns

            # With warm kernels, `start` runs in this process instead of a runner process.
            self._warm = WarmRuns(self.root, kernels)

    @classmethod
    def find(cls, start: Path | None = None) -> Project:
        """The project that `start` (default: the working folder) belongs to (see `find_root`)."""
        return cls(find_root(start))

    # ---- lifetime ----------------------------------------------------------------------

    @property
    def store(self) -> RunStore:
        """The project's run store, opened on first use (raises StoreUnavailable when down)."""
        # Imported here for cost: commands that never touch runs (list, validate, graph) start
        # without SQLAlchemy.
        from pipelines.store.run_store import RunStore

        with self._store_lock:
            if self._store is None:
                self._store = RunStore.open(self.root)
            return self._store

    def close(self) -> None:
        if self._warm is not None:
            self._warm.close()
            self._warm = None
        with self._store_lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def __enter__(self) -> Project:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ---- pipelines ---------------------------------------------------------------------

    def resolve(self, argument: str | Path) -> PipelineRef:
        """A pipeline folder path, or the name of a pipeline under the root."""
        return resolve_pipeline(str(argument), self.root)

    def assemble(self, argument: str | Path) -> Pipeline:
        """The pipeline as saved on disk, valid or not (see `Pipeline.problems`)."""
        return self.assembly.get(self.resolve(argument).folder)

    def valid_pipeline(self, argument: str | Path) -> Pipeline:
        """The assembled pipeline; InvalidInputError listing the problems when it has errors."""
        pipeline = self.assemble(argument)
        if not pipeline.ok:
            problems = "\n".join(p.format() for p in pipeline.errors)
            raise InvalidInputError(
                f"pipeline `{pipeline.name}` is not valid:\n{problems}",
                hint=f"`blockbook validate {pipeline.folder}` lists the problems",
            )
        return pipeline

    def pipeline_refs(self) -> list[PipelineRef]:
        return list_pipelines(self.root)

    def pipeline_changes(self) -> PipelineChanges:
        """A watch whose `look()` tells the pipeline folders added, removed or edited since."""
        return PipelineChanges(self.root, lambda: [ref.folder for ref in self.pipeline_refs()])

    def notebooks(self, ref: PipelineRef) -> list[Path]:
        return notebook_files(ref.folder)

    def pipelines(self) -> list[PipelineSummary]:
        refs = self.pipeline_refs()
        latest = self._latest_runs([ref.name for ref in refs])
        return [
            PipelineSummary(ref, self.assembly.get(ref.folder), latest.get(ref.name))
            for ref in refs
        ]

    def pipeline(self, name: str | Path) -> PipelineDetail:
        pipeline = self.assemble(name)
        return PipelineDetail(pipeline, self._latest_runs([pipeline.name]).get(pipeline.name))

    def config(self, name: str | Path) -> PipelineConfig:
        """`pipeline.toml`, raising InvalidInputError when it has errors."""
        folder = self.resolve(name).folder
        config, problems = load_pipeline_config(folder)
        errors = [p for p in problems if p.is_error]
        if errors:
            raise InvalidInputError(errors[0].format(), hint="fix pipeline.toml first")
        return config

    def templates(self) -> tuple[Template, ...]:
        """The block templates `%block_new` inserts, for a frontend's "new block" menu."""
        return TEMPLATES

    # ---- runs --------------------------------------------------------------------------

    def runs(
        self,
        pipeline: str | None = None,
        *,
        limit: int = 50,
        status: RunStatus | None = None,
        before: str | None = None,
    ) -> list[RunRecord]:
        """Runs newest first, of one pipeline (the name its runs recorded, so the history of a
        removed pipeline stays reachable) or of all; `before` (a run id) pages on."""
        return self.store.list_runs(pipeline, limit=limit, status=status, before=before)

    def run(self, run_id: str) -> RunRecord:
        """One run with its blocks, attempts and tests; `run_id` may be a unique prefix."""
        record = self.store.get_run(run_id)
        if record is None:
            raise NotFoundError(f"no run `{run_id}`", hint="`blockbook runs` lists run ids")
        return record

    def diff(self, run_a: str, run_b: str) -> RunDiff:
        """Runs `run_a` and `run_b` side by side (ids or unique prefixes): parameters, code
        hashes, statuses, durations and outputs of each block, and each run's audit."""
        from pipelines.store.diff import diff_runs, stored_outputs

        a, b = self.run(run_a), self.run(run_b)
        return diff_runs(a, b, stored_outputs(a), stored_outputs(b))

    def latest(self, name: str | Path) -> LatestBlocks:
        """Each block's latest status: from the newest run that has it, or from running it by
        hand (the dev area), whichever is newer; blocks never executed are left out."""
        from pipelines.store.latest import latest_blocks

        pipeline = self.assemble(name)
        dev_area = dev_dir(self.root, pipeline.folder.name)  # as the %%block magic names it
        return latest_blocks(self.store, pipeline.name, pipeline.blocks, dev_area)

    def last_success(self, pipeline: str, block: str) -> RunRecord | None:
        """The newest run of `pipeline` in which `block` succeeded."""
        return self.store.last_success(pipeline, block)

    def execute(
        self,
        pipeline: Pipeline,
        options: RunOptions,
        on_block: BlockListener | None = None,
        on_runner: Callable[[Runner], None] | None = None,
        executor: ExecutorChoice | None = None,
    ) -> RunResult:
        """Run `pipeline` in this process until it ends (`blockbook run` in the foreground).

        `on_runner` receives the runner before it starts, so a caller can wire Ctrl-C to
        `runner.cancel`. `executor` overrides where notebooks execute for this run
        (`pipelines.runs.executors.choice`); a cluster that cannot run the pipeline is refused
        before the run is recorded."""
        # Imported here for cost: papermill and the runner are only needed by runs.
        from pipelines.runs.executors.choice import executor_for_run
        from pipelines.runs.runner import Runner

        kernels = self._warm.kernels if self._warm is not None else None
        with executor_for_run(
            self.root, self.store, pipeline, executor, queued_run=options.run_id
        ) as opened:
            runner = Runner(
                self.root, self.store, on_block=on_block, kernels=kernels, executor=opened
            )
            if on_runner is not None:
                on_runner(runner)
            return runner.run(pipeline, options)

    def start(
        self,
        name: str | Path,
        params: Mapping[str, ParamValue] | None = None,
        choices: RunChoices = RunChoices(),
        *,
        trigger: Trigger = Trigger.MANUAL,
        detached: bool = False,
        requested_by: str | None = None,
    ) -> RunId:
        """Start a run and return its id at once: on warm kernels in this process when the
        project has a kernel pool (it then ends with this process, `detached` or not), else in
        a runner process of its own. The run is recorded (queued) before this returns, so
        `run(run_id)` and `cancel(run_id)` work. `requested_by` names the person the run is
        audited as when it is not this process's user (a JupyterLab user of the server)."""
        pipeline = self.assemble(name)
        check_runnable(pipeline)
        check_only(pipeline, choices.only)
        check_forced(pipeline, choices.force_blocks)
        if choices.resume is not None:
            choices = replace(choices, resume=self.run(choices.resume).run_id)
        run_id = self._queue(
            pipeline, params, trigger, resumed_from=choices.resume, requested_by=requested_by
        )
        from pipelines.store.queue import claim_launch

        claim_launch(self.store, run_id)  # this process launches it, not a scheduler
        if self._warm is not None:
            from pipelines.runs.runner import RunOptions

            self._warm.launch(pipeline, RunOptions.chosen(choices, run_id), self.store)
            return run_id
        request = LaunchRequest(run_id, str(pipeline.folder), choices, detached=detached)
        self._children[run_id] = self.launcher.launch(request)
        self._reap_children()
        return run_id

    def runner_process(self, run_id: str) -> Popen[bytes] | None:
        """The runner process of a run this `Project` started, while it is known."""
        return self._children.get(run_id)

    def launch_log(self, run_id: str) -> Path:
        """What a runner process started in the background printed (why it did not start)."""
        return launch_log(self.root, run_id)

    def trigger(
        self,
        name: str | Path,
        params: Mapping[str, ParamValue] | None = None,
        *,
        trigger: Trigger = Trigger.API,
    ) -> RunId:
        """Queue a run for a scheduler to start; returns its id at once. Its secret parameters
        are stored sealed (`store/sealed.py`): the scheduler's host needs the same key."""
        return self._queue(self.valid_pipeline(name), params, trigger)

    def cancel(self, run_id: str, by: str, at: datetime | None = None) -> RunRecord:
        """Ask a run to stop, whichever process runs it: a queued run is cancelled at once, a
        running one at its runner's next heartbeat. `by` says who asks (`user@host`, `api`).
        ConflictError when it has already ended; `run_id` may be a unique prefix."""
        from pipelines.store.queue import request_cancel

        record = request_cancel(self.store, run_id, by, at)
        if self._warm is not None:
            self._warm.cancel(record.run_id)  # its runner is here: no heartbeat to wait for
        return record

    def executed_notebook(self, run_id: str, block: str) -> ExecutedNotebook:
        """The executed notebook that holds `block` in run `run_id`, and the block's cell: for
        a block the run reused (`cached`, `--resume`), those of the run that executed it."""
        from pipelines.runs.debug import executed_cell  # for cost: nbformat

        return executed_cell(self.store, self.run(run_id), block)

    def outputs(self, run_id: str, block: str) -> dict[str, Any]:
        """The stored outputs of `block` in run `run_id`, loaded: name -> value."""
        record = self.run(run_id)
        artifacts = ArtifactStore(Path(record.run_dir))
        return {name: artifacts.load(block, name) for name in artifacts.names(block)}

    def pin_schema(
        self, run_id: str, block: str, outputs: Sequence[str] = (), path: Path | None = None
    ) -> PinnedSchema:
        """Write the schema of `block`'s stored frames in run `run_id` as a contract for its
        `--schema-file` (default: `schemas/BLOCK.json` beside its notebook)."""
        from pipelines.runs.schema_baselines import pin_schema  # for cost: the store, at first use

        record = self.run(run_id)
        pipeline = self.assemble(Path(record.pipeline_path))
        return pin_schema(self.store, pipeline, record, block, tuple(outputs), path)

    def debug_notebook(self, run_id: str, block: str, output: Path | None = None) -> Path:
        """Write a notebook that re-creates `block` of run `run_id` with its inputs."""
        from pipelines.runs.debug import write_debug_notebook  # for cost: nbformat

        return write_debug_notebook(self.store, run_id, block, output)

    # ---- schedules ---------------------------------------------------------------------

    def schedules(self, now: datetime | None = None) -> list[ScheduleInfo]:
        """Every valid `[schedule]` under the root, with its next fire time after `now`."""
        from pipelines.scheduling.upcoming import upcoming

        return upcoming(self.store, self.pipeline_refs(), now or clock())

    def scheduler(self, options: SchedulerOptions) -> Scheduler:
        """A scheduler daemon over this project's store, starting runs through its launcher."""
        from pipelines.scheduling.scheduler import Scheduler  # for cost: only daemons need it

        return Scheduler(self.root, self.store, options, launcher=self.launcher)

    def backfill(
        self, name: str | Path, start: datetime, end: datetime, *, max_runs: int = 4
    ) -> list[RunRecord]:
        """Run every fire time of the pipeline's schedule in [start, end] that has no run yet,
        within its max_active_runs, and return those runs once they ended."""
        from pipelines.scheduling.backfill import backfill
        from pipelines.scheduling.scheduler import SchedulerOptions

        folder = self.resolve(name).folder
        daemon = self.scheduler(SchedulerOptions(max_runs=max_runs))
        queued = backfill(daemon, folder, start, end)
        return [self.run(run_id) for run_id in queued]

    # ---- helpers -----------------------------------------------------------------------

    def _latest_runs(self, names: Sequence[str]) -> dict[str, RunRecord]:
        latest: dict[str, RunRecord] = {}
        for name in names:
            runs = self.store.list_runs(name, limit=1)
            if runs:
                latest[name] = runs[0]
        return latest

    def _queue(
        self,
        pipeline: Pipeline,
        params: Mapping[str, ParamValue] | None,
        trigger: Trigger,
        resumed_from: str | None = None,
        requested_by: str | None = None,
    ) -> RunId:
        """Record a queued run: its parameters as shown to people (secrets masked), and its
        secrets sealed for the runner that adopts it."""
        from pipelines.store.audit import StartedBy, run_audit
        from pipelines.store.queue import QueuedRun, enqueue
        from pipelines.store.run_store import new_run_id
        from pipelines.store.sealed import seal

        values = seal(self.root, merge(pipeline.config.params, dict(params or {})))
        run_id = new_run_id()
        queued = QueuedRun(
            run_id=run_id,
            pipeline=pipeline.name,
            pipeline_path=str(pipeline.folder),
            trigger=trigger,
            params=values.shown,
            sealed_params=values.sealed,
            run_dir="",
            resumed_from=resumed_from,
        )
        enqueue(self.store, queued)
        started_by = StartedBy.here(trigger)
        if requested_by is not None:
            started_by = replace(started_by, user=requested_by)
        self.store.record_audit(run_id, run_audit(pipeline, started_by))
        return run_id

    def _reap_children(self) -> None:
        """Forget runner processes that ended, so a long-lived process collects them."""
        for run_id, process in list(self._children.items()):
            if process.poll() is not None:
                del self._children[run_id]


def trigger(
    pipeline: str | Path,
    params: Mapping[str, ParamValue] | None = None,
    *,
    root: Path | None = None,
    trigger: Trigger = Trigger.API,
) -> RunId:
    """Queue a run of `pipeline` (a folder, or a pipeline name under the project root) for the
    scheduler to start; returns its run id at once (see `Project.trigger`)."""
    start = Path(pipeline) if Path(pipeline).is_dir() else None
    with Project(root or find_root(start)) as project:
        return project.trigger(pipeline, params, trigger=trigger)
