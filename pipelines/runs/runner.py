"""Headless runs: one papermill execution per notebook (or per block with `isolate`), in
parallel, coordinated through block state files, recorded in the run store.

`Runner.run` reads as the recipe; the parts that watch kernels live in `pipelines.runs.execution`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipelines.alerts import dispatch as alerts
from pipelines.assembly.header import BlockKind, BlockName
from pipelines.assembly.pipeline import Pipeline
from pipelines.choices import RunChoices
from pipelines.errors import BlockbookError
from pipelines.params import (
    ParamValue,
    Secrets,
    json_params,
    masked,
    merge,
)
from pipelines.rundir.artifacts import ArtifactStore, remove_leftover_writes
from pipelines.rundir.layout import executed_notebook, input_notebook, make_run_dir
from pipelines.rundir.location import RunFolder, run_folder_at
from pipelines.rundir.plan import RunPlan, write_plan
from pipelines.rundir.state import (
    BlockState,
    now,
    read_state,
    write_state,
)
from pipelines.runs import caching
from pipelines.runs.build import build_plan, build_run_notebooks, notebook_kernel, write_notebook
from pipelines.runs.execution import BlockListener, Execution, Limits
from pipelines.runs.executors import Executor
from pipelines.runs.finishing import finish_executed_notebooks
from pipelines.runs.pool import KernelPool
from pipelines.runs.schema_baselines import baselines, with_baselines
from pipelines.runs.selection import RunError, check_forced, check_only, check_runnable
from pipelines.runs.storage import run_folder_for
from pipelines.status import BlockStatus, RunStatus, Trigger
from pipelines.store.audit import StartedBy, adopted, run_audit
from pipelines.store.db import RunConflict, StoreUnavailable
from pipelines.store.queue import adopt
from pipelines.store.records import RunRecord
from pipelines.store.retry import retrying
from pipelines.store.run_store import RunId, RunStore, new_run_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunOptions:
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    only: tuple[str, ...] = ()
    isolate: bool = False
    resume: str | None = None
    trigger: Trigger = Trigger.MANUAL
    run_id: str | None = None
    """Use this id instead of a new one, so a caller can watch a run it starts elsewhere."""
    limits: Limits = field(default_factory=Limits)
    force: bool = False
    """Run every block, even those nothing changed for (`--force`)."""
    force_blocks: tuple[str, ...] = ()
    """Run these blocks even if nothing changed for them (`--force BLOCK`)."""
    cache: bool | None = None
    """Reuse unchanged blocks: None decides by trigger (manual runs do, scheduled and API runs
    don't; `pipelines.runs.caching`)."""

    @classmethod
    def chosen(cls, choices: RunChoices, run_id: str | None = None) -> RunOptions:
        """The options of a run started with `choices` (`Project.start`)."""
        return cls(
            only=choices.only,
            isolate=choices.isolate,
            resume=choices.resume,
            run_id=run_id,
            force=choices.force,
            force_blocks=choices.force_blocks,
        )


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: RunId
    status: RunStatus
    run_dir: RunFolder
    blocks: Mapping[str, BlockState]


class Runner:
    def __init__(
        self,
        root: Path,
        store: RunStore,
        on_block: BlockListener | None = None,
        kernels: KernelPool | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.root = root
        self.store = store
        self.on_block = on_block
        self.kernels = kernels
        """Warm kernels to run notebooks on, in a long-lived process (`pipelines.runs.pool`)."""
        self.executor = executor
        """Where notebooks execute (`pipelines.runs.executors`); None: this process's threads."""
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Ask the current run to stop: kernels are interrupted, then killed after a grace."""
        self._cancel.set()

    def run(self, pipeline: Pipeline, options: RunOptions = RunOptions()) -> RunResult:
        """Run an assembled pipeline to its end; RunError (before anything is recorded, unless
        the run was queued) when the pipeline or the options don't allow a run. Any error once
        the run is recorded and before it starts ends it `failed` with the reason. The status
        returned is the one the store holds (another process may have ended the run)."""
        run_id = _checked_run_id(options.run_id) if options.run_id else new_run_id()
        queued = self._queued(run_id) if options.run_id else None
        try:
            check_runnable(pipeline)
            reused = self._reusable_blocks(pipeline, options)
            selected = self._selected_blocks(pipeline, options)
            params = merge(pipeline.config.params, options.params)
            run_dir = run_folder_for(self.root, run_id)
            trigger = queued.trigger if queued is not None else options.trigger
            caches = self._cache_decisions(
                pipeline, options, trigger, params, selected - set(reused)
            )
            not_run = frozenset(pipeline.order) - selected | frozenset(reused) | caches.cached
            plan = build_plan(  # checks that each notebook's kernel is installed
                pipeline, run_id, run_dir, params, isolate=options.isolate, skipped=not_run
            )
            running = [name for name in plan.order if plan.blocks[name].run]
            plan = with_baselines(plan, baselines(pipeline, self.store, running))
        except Exception as exc:
            if queued is not None:
                # A scheduler or trigger queued it: it must still end, with the reason.
                self._fail(run_id, exc)
            raise
        self._clean_up_after_crashes(pipeline, options)
        blocks = [(name, plan.blocks[name].run_notebook) for name in plan.order]
        self._record(run_id, pipeline, options, queued, params, run_dir, blocks)
        try:
            notebooks = self._prepare(pipeline, plan, params, reused, not_run, caches)
            retrying(lambda: self.store.start_run(run_id, now()), f"start run {run_id}")
        except BaseException as exc:
            # Recorded but never started: a queued row left behind would be launched later.
            self._fail(run_id, exc)
            raise
        secrets = Secrets.of(params)
        execution = Execution(
            self.store,
            pipeline,
            plan,
            secrets,
            options.limits,
            self._cancel,
            self.on_block,
            kernels=self.kernels,
            executor=self.executor,
        )
        try:
            status = execution.execute(list(notebooks))
            finish_executed_notebooks(plan, execution.states(), secrets)
        finally:
            remove_leftover_writes(run_dir)  # no kernel of this run writes any more
        states = execution.states()
        if execution.reporter.ended_elsewhere is not None:
            # Marked crashed while this runner was paused: the run is not ours to finish.
            return RunResult(run_id, execution.reporter.ended_elsewhere, run_dir, states)
        self._record_fingerprints(run_id, pipeline, run_dir, caches)
        error = _first_error(plan, states)
        if error is not None:
            error = secrets.mask(error)
        retrying(
            lambda: self.store.finish_run(run_id, status, now(), error=error),
            f"finish run {run_id}",
        )
        alerts.notify_finished(pipeline.config.alerts, self.store, run_id)  # never raises
        return RunResult(run_id, self._stored_status(run_id, status), run_dir, states)

    # ---- steps -------------------------------------------------------------------------

    def _record(
        self,
        run_id: RunId,
        pipeline: Pipeline,
        options: RunOptions,
        queued: RunRecord | None,
        params: Mapping[str, ParamValue],
        run_dir: RunFolder,
        blocks: list[tuple[str, str]],
    ) -> None:
        """Record the run (or fill in the queued one), riding out a brief store outage."""
        trigger = queued.trigger if queued is not None else options.trigger
        audit = run_audit(pipeline, StartedBy.here(trigger))
        if queued is not None:
            retrying(
                lambda: adopt(
                    self.store,
                    run_id,
                    params=json_params(masked(params)),
                    run_dir=str(run_dir),
                    blocks=blocks,
                ),
                f"adopt run {run_id}",
            )
            # Who queued it started it; the code is what this runner runs.
            retrying(
                lambda: self.store.record_audit(run_id, adopted(queued.audit, audit)),
                f"record the audit of run {run_id}",
            )
            return
        tried = False

        def create() -> None:
            nonlocal tried
            try:
                self.store.create_run(
                    run_id,
                    pipeline=pipeline.name,
                    pipeline_path=str(pipeline.folder),
                    trigger=options.trigger,
                    params=json_params(masked(params)),
                    run_dir=str(run_dir),
                    blocks=blocks,
                    resumed_from=options.resume,
                    audit=audit,
                )
            except RunConflict:
                # An attempt cut off by the outage may have been committed after all.
                if not tried:
                    raise
            finally:
                tried = True

        retrying(create, f"record run {run_id}")

    def _prepare(
        self,
        pipeline: Pipeline,
        plan: RunPlan,
        params: Mapping[str, ParamValue],
        reused: Mapping[str, str],
        not_run: frozenset[str],
        caches: _Caching,
    ) -> dict[str, Any]:
        """Write the run folder: the plan, the carried-over blocks' states, the run notebooks."""
        run_dir = run_folder_at(plan.run_dir)
        if isinstance(run_dir, Path):
            make_run_dir(run_dir)  # object storage has no folders, nor modes to set
        write_plan(plan)
        self._carry_over(plan, reused, not_run - caches.cached)
        _carry_over_cached(plan, caches)
        notebooks = build_run_notebooks(pipeline, plan, params)
        for path, notebook in notebooks.items():
            write_notebook(notebook, input_notebook(run_dir, path))
            executed_notebook(run_dir, path).parent.mkdir(parents=True, exist_ok=True)
        return notebooks

    def _fail(self, run_id: RunId, exc: BaseException) -> None:
        """End a run that could not start `failed`, with the reason (the exception goes on)."""
        reason = exc.message if isinstance(exc, BlockbookError) else f"{type(exc).__name__}: {exc}"
        try:
            retrying(
                lambda: self.store.finish_run(
                    run_id, RunStatus.FAILED, now(), error=f"the run could not start: {reason}"
                ),
                f"fail run {run_id}",
            )
        except BlockbookError as store_error:
            # The original error is the one to report; this one is logged beside it.
            logger.error("run %s could not be marked failed: %s", run_id, store_error)

    def _stored_status(self, run_id: RunId, status: RunStatus) -> RunStatus:
        """The status the store holds, which the exit code must match: another process may
        have ended the run first (marked it crashed during an outage)."""
        record = retrying(lambda: self.store.get_run(run_id), f"read run {run_id}")
        if record is None or record.status == status:
            return status
        logger.warning(
            "run %s ended %s here, but the store has it %s", run_id, status, record.status
        )
        return record.status

    def _clean_up_after_crashes(self, pipeline: Pipeline, options: RunOptions) -> None:
        """Remove the temporary files that killed writers left in this pipeline's crashed runs
        (their runners are gone) and in the run being resumed."""
        try:
            crashed = self.store.list_runs(pipeline.name, limit=20, status=RunStatus.CRASHED)
            resumed = self.store.get_run(options.resume) if options.resume else None
        except StoreUnavailable as exc:
            # Housekeeping only: the next run cleans up; recording this run rides the outage out.
            logger.warning("leftover temporary files not looked for: %s", exc.message)
            return
        folders = {run_folder_at(record.run_dir) for record in crashed}
        if resumed is not None and resumed.status.is_terminal:
            folders.add(run_folder_at(resumed.run_dir))
        for folder in sorted(folders, key=str):
            remove_leftover_writes(folder)

    def _queued(self, run_id: RunId) -> RunRecord | None:
        """The run a scheduler or trigger queued under this id, if there is one."""
        record = self.store.get_run(run_id)
        if record is None or record.run_id != run_id:
            return None
        if record.status is not RunStatus.QUEUED:
            raise RunError(
                f"run `{run_id}` is already {record.status}",
                hint="start a new run, or `--resume` this one",
            )
        return record

    def _selected_blocks(self, pipeline: Pipeline, options: RunOptions) -> frozenset[str]:
        check_only(pipeline, options.only)
        return frozenset(options.only) if options.only else frozenset(pipeline.order)

    def _reusable_blocks(self, pipeline: Pipeline, options: RunOptions) -> dict[str, str]:
        """Block -> run id whose stored outputs this run reuses instead of running it."""
        reused: dict[str, str] = {}
        if options.resume is not None:
            previous = self.store.get_run(options.resume)
            if previous is None:
                raise RunError(
                    f"no run `{options.resume}` to resume",
                    hint="`blockbook runs` lists run ids",
                )
            if previous.pipeline != pipeline.name:
                raise RunError(
                    f"run `{previous.run_id}` belongs to pipeline `{previous.pipeline}`",
                    hint=f"resume it with `blockbook run {previous.pipeline_path} --resume ...`",
                )
            succeeded = _succeeded_in_folder(previous)
            for block in previous.blocks:
                if (
                    (block.status.succeeded or block.block in succeeded)
                    and block.block in pipeline.blocks
                    # A condition is decided again: its false result is not kept with the run.
                    and pipeline.blocks[BlockName(block.block)].header.kind
                    is not BlockKind.CONDITION
                ):
                    reused[block.block] = block.reused_from or previous.run_id
        if options.only:
            needed = {
                parent
                for name in options.only
                for parent in pipeline.upstream.get(BlockName(name), ())
                if parent not in options.only
            }
            for parent in sorted(needed):
                record = self.store.last_success(pipeline.name, parent)
                if record is None:
                    raise RunError(
                        f"--only needs the outputs of `{parent}`, which has never succeeded",
                        hint=f"run the whole pipeline once, or add --only {parent}",
                    )
                reused.setdefault(parent, record.run_id)
        return reused

    def _cache_decisions(
        self,
        pipeline: Pipeline,
        options: RunOptions,
        trigger: Trigger,
        params: Mapping[str, ParamValue],
        candidates: frozenset[str],
    ) -> _Caching:
        """Which of `candidates` (the blocks this run would run) it reuses instead, and why the
        others run (`pipelines.runs.caching`)."""
        check_forced(pipeline, options.force_blocks)
        selective = "run by --resume" if options.resume else "run by --only" if options.only else ""
        policy = caching.run_policy(
            trigger,
            force_all=options.force,
            force_blocks=options.force_blocks,
            selective=selective,
            cache=options.cache,
        )
        own: dict[str, caching.Fingerprint] = {
            name: caching.own_fingerprint(
                pipeline, name, params, notebook_kernel(pipeline, pipeline.blocks[name].notebook)
            )
            for name in pipeline.order
            if name in candidates
        }
        previous: dict[str, caching.Previous] = {}
        if policy.enabled:
            # Like recording the run, reading the last results rides out a brief outage.
            last_results = retrying(
                lambda: self.store.last_results(pipeline.name, candidates),
                f"read the last results of {pipeline.name}",
            )
            for name, last in last_results.items():
                fingerprint = caching.Fingerprint.from_json(last.fingerprint)
                if fingerprint is not None:
                    previous[name] = caching.Previous(last.origin, last.run_dir, fingerprint)
        stored = {name: pipeline.stored_outputs(BlockName(name)) for name in own}
        decisions = caching.decide(
            pipeline, candidates, policy, own, previous, stored, _stored_hash
        )
        return _Caching(own, decisions)

    def _record_fingerprints(
        self, run_id: RunId, pipeline: Pipeline, run_dir: RunFolder, caches: _Caching
    ) -> None:
        """Keep, with each block this run decided about, what its result depends on and why it
        ran or was cached: the next run compares with it, `show` tells the why."""
        fingerprints: dict[str, dict[str, Any]] = {}
        folders: dict[str, str] = {
            name: str(run_dir) for name in pipeline.order
        }  # cached outputs are linked
        for name, decision in caches.decisions.items():
            if decision.cached_from is not None:
                fingerprint = decision.cached_from.fingerprint
            else:
                inputs = caching.input_hashes(pipeline, BlockName(name), folders, _stored_hash)
                fingerprint = replace(caches.own[name], inputs=inputs)
            fingerprints[name] = fingerprint.to_json(decision.reason)
        try:
            retrying(
                lambda: self.store.record_fingerprints(run_id, fingerprints),
                f"record the fingerprints of run {run_id}",
            )
        except BlockbookError as exc:
            # Only an optimisation is lost: the next run runs these blocks again.
            logger.warning("run %s: block fingerprints not recorded: %s", run_id, exc.message)

    def _carry_over(
        self, plan: RunPlan, reused: Mapping[str, str], not_run: frozenset[str]
    ) -> None:
        """Write the final state of every block this run will not execute."""
        run_dir = run_folder_at(plan.run_dir)
        artifacts = ArtifactStore(run_dir)
        # Most reused blocks come from one earlier run: read each run's record once.
        source_runs = {run_id: self.store.get_run(run_id) for run_id in set(reused.values())}
        for name in plan.order:
            if name not in not_run:
                continue
            block = plan.blocks[name]
            if name in reused:
                source_run = source_runs[reused[name]]
                if source_run is not None:
                    artifacts.link_block(ArtifactStore(run_folder_at(source_run.run_dir)), name)
                state = BlockState(
                    name,
                    BlockStatus.SUCCESS,
                    block.run_notebook,
                    reused_from=reused[name],
                    started_at=now(),
                    ended_at=now(),
                )
            else:
                state = BlockState(
                    name,
                    BlockStatus.SKIPPED,
                    block.run_notebook,
                    error="not selected by --only",
                    ended_at=now(),
                )
            write_state(run_dir, state)


@dataclass(frozen=True, slots=True)
class _Caching:
    """What a run decided about reusing unchanged blocks."""

    own: Mapping[str, caching.Fingerprint]
    """Each block the run would run: its fingerprint's parts known before the run."""
    decisions: Mapping[str, caching.Decision]

    @property
    def cached(self) -> frozenset[str]:
        return frozenset(n for n, d in self.decisions.items() if d.cached_from is not None)


def _carry_over_cached(plan: RunPlan, caches: _Caching) -> None:
    """Link the outputs of each cached block from its earlier run and write its final state."""
    run_dir = run_folder_at(plan.run_dir)
    artifacts = ArtifactStore(run_dir)
    for name in plan.order:
        decision = caches.decisions.get(name)
        if decision is None or decision.cached_from is None:
            continue
        artifacts.link_block(ArtifactStore(run_folder_at(decision.cached_from.run_dir)), name)
        moment = now()
        state = BlockState(
            name,
            BlockStatus.CACHED,
            plan.blocks[name].run_notebook,
            error=decision.reason,
            reused_from=decision.cached_from.run_id,
            started_at=moment,
            ended_at=moment,
        )
        write_state(run_dir, state)


def _stored_hash(folder: str, block: str, output: str) -> str | None:
    manifest = ArtifactStore(run_folder_at(folder)).manifest(block, output)
    return None if manifest is None else manifest.sha256


def _checked_run_id(run_id: str) -> RunId:
    # It names a folder under .blockbook/runs: nothing that could climb out of it.
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", run_id):
        raise RunError(
            f"invalid run id `{run_id}`",
            hint="use letters, digits, '.', '_' and '-' only, or leave it out",
        )
    return RunId(run_id)


def _succeeded_in_folder(previous: RunRecord) -> frozenset[str]:
    """Blocks of a crashed run whose kernel finished them (state file `success`, outputs stored)
    though the store never heard of it: its runner was paused, killed or cut off meanwhile.
    A resume must not run them again: an export would happen twice."""
    if previous.status is not RunStatus.CRASHED:
        return frozenset()
    folder = run_folder_at(previous.run_dir)
    return frozenset(
        block.block
        for block in previous.blocks
        if block.status is not BlockStatus.SUCCESS
        and (state := read_state(folder, block.block)) is not None
        and state.status is BlockStatus.SUCCESS
        and state.reused_from is None
    )


def _first_error(plan: RunPlan, states: Mapping[str, BlockState]) -> str | None:
    for name in plan.order:
        state = states.get(name)
        if state is not None and state.status is BlockStatus.FAILED:
            return f"block {name}: {state.error}"
    return None
