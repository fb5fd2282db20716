"""`blockbook debug`: a new notebook that re-creates one block of a past run.

Its first cell sets up what the block saw (working folder, parameters, inputs loaded from the
run's stored artifacts; secrets from the environment, since runs never store them), the next
holds the block's code as plain Python, then (for a block with `@test`s) a cell calling its tests
as the run did after the body, and last the error the run recorded.
"""

from __future__ import annotations

import ast
import logging
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from pipelines.assembly.analysis import BlockAnalysis, analyze
from pipelines.assembly.header import TestPolicy, parse_header, split_block_cell
from pipelines.errors import ConflictError, ErrorKind, NotFoundError
from pipelines.params import is_secret_param
from pipelines.rundir.artifacts import ArtifactStore
from pipelines.rundir.fanout import parent_of
from pipelines.rundir.layout import (
    DEBUG_DIR,
    KERNELSPEC,
    debug_notebook,
    executed_notebook,
    input_notebook,
    run_notebook_path,
)
from pipelines.rundir.plan import RUN_CONTEXT_NAME, BlockPlan, RunPlan, load_plan
from pipelines.runs.build import block_of, write_notebook
from pipelines.store.records import RunRecord
from pipelines.store.run_store import RunStore, StoreError

log = logging.getLogger(__name__)


class DebugError(ConflictError):
    """The debug notebook cannot be built from what the run left behind."""


class DebugUsageError(DebugError):
    """An unknown run or block, or an output path that would overwrite a run or source file."""

    kind = ErrorKind.INVALID


def write_debug_notebook(
    store: RunStore, run_id: str, block: str, output: Path | None = None
) -> Path:
    """Write the debug notebook of `block` in run `run_id` (a unique prefix will do)."""
    record = find_run(store, run_id)
    run_dir = Path(record.run_dir)
    plan, block_plan = find_block(run_dir, block)
    check_inputs(record, block_plan)
    run_notebook, cell = recorded_cell(run_dir, block_plan)
    header_line, body = split_block_cell(cell.source)
    analysis = analyze(body)  # it ran: validation parsed it
    params = parameter_lines(plan, run_notebook, analysis)
    path = checked_output(output or debug_notebook(run_dir, block), plan)
    provenance = {
        "debug": True,
        "run_id": plan.run_id,
        "pipeline": plan.pipeline,
        "block": block,
        "source_notebook": block_plan.source_notebook,
        "cell": cell.metadata.blockbook.get("cell"),
        "cell_id": cell.get("id"),
        "created_at": datetime.now(UTC).isoformat(),
    }
    notebook = new_notebook(  # type: ignore[no-untyped-call]
        cells=[
            intro_cell(plan, block_plan, cell),
            setup_cell(plan, block_plan, params, analysis),
            code_cell(cell),
            *tests_cells(header_line, body, analysis, set(block_plan.sources) | set(plan.params)),
            error_cell(record, block),
        ],
        # The run's kernel: the block's own environment.
        metadata={
            "kernelspec": dict(run_notebook.metadata.get("kernelspec", KERNELSPEC)),
            "blockbook": provenance,
        },
    )
    write_notebook(notebook, path)  # temporary file + rename
    return path


@dataclass(frozen=True, slots=True)
class ExecutedNotebook:
    """Where a block of a run can be looked at: the executed notebook and the block's cell."""

    path: Path
    cell_index: int
    """0-based position of the block's cell in the executed notebook."""
    run_id: str
    """The run that executed the cell: for a block a run reused (`cached`, or kept by
    `--resume`), the run that ran it."""


def executed_cell(store: RunStore, record: RunRecord, block: str) -> ExecutedNotebook:
    """Where `block` of the run `record` can be looked at: its executed notebook and cell, in
    the run that last executed it."""
    record = ran_in(store, record, block)
    block_record = record.known_block(block)
    path = executed_notebook(Path(record.run_dir), block_record.notebook)
    if not path.is_file():
        raise NotFoundError(
            f"run `{record.run_id}` has no executed notebook for `{block}` ({path})",
            hint="the block did not start, or the run folder was removed",
        )
    notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    for index, cell in enumerate(notebook.cells):
        if block_of(cell) == block:
            return ExecutedNotebook(path, index, record.run_id)
    raise NotFoundError(f"{path} has no cell of block `{block}`", hint="run it again")


def ran_in(store: RunStore, record: RunRecord, block: str) -> RunRecord:
    """The run whose kernel executed `block` for `record`: `record` itself, or the run it
    reused the block from, followed back (a reused run may have reused it in turn)."""
    seen = {record.run_id}
    while (origin := record.known_block(block).reused_from) is not None:
        earlier = store.get_run(origin)
        if earlier is None:
            raise NotFoundError(
                f"block `{block}` of run `{record.run_id}` was reused from run `{origin}`, "
                "which is no longer in the run store",
                hint=f"run it again: `blockbook run {record.pipeline} --force {block}`",
            )
        if earlier.run_id in seen or earlier.block(block) is None:
            break  # never loop; a run without the block can't have executed it
        seen.add(earlier.run_id)
        record = earlier
    return record


def find_run(store: RunStore, run_id: str) -> RunRecord:
    try:
        record = store.get_run(run_id)
    except StoreError as exc:  # an ambiguous prefix
        raise DebugUsageError(exc.message, exc.hint) from None
    if record is None:
        raise DebugUsageError(f"no run `{run_id}`", hint="`blockbook runs` lists run ids")
    return record


def find_block(run_dir: Path, block: str) -> tuple[RunPlan, BlockPlan]:
    try:
        plan = load_plan(run_dir)
    except FileNotFoundError:
        raise DebugError(f"{run_dir} has no plan.json", "run the pipeline again") from None
    child = parent_of(block)
    if child is not None and child[0] in plan.blocks:
        # One item of a mapped block: the block's plan, under the child's name and notebook.
        parent = plan.blocks[child[0]]
        own_notebook = run_notebook_path(parent.source_notebook, block)
        return plan, replace(parent, name=block, run_notebook=own_notebook)
    if block not in plan.blocks:
        raise DebugUsageError(
            f"run `{plan.run_id}` has no block `{block}`",
            hint=f"blocks of the run: {', '.join(plan.order)}",
        )
    return plan, plan.blocks[block]


def check_inputs(record: RunRecord, block: BlockPlan) -> None:
    """Every input must have been stored by the run: the notebook loads nothing else."""
    artifacts = ArtifactStore(Path(record.run_dir))
    for name, producer in block.sources.items():
        if artifacts.manifest(producer, name) is not None:
            continue
        upstream, own = record.block(producer), record.block(block.name)
        hint = (
            f"fix `{producer}` first (`blockbook debug {record.run_id} {producer}` re-creates "
            f"it), then `blockbook run {record.pipeline} --resume {record.run_id}`"
        )
        if not block.run:  # reused from an earlier run, or left out by --only
            origin = own.reused_from if own and own.reused_from else "RUN_ID"
            hint = f"`{block.name}` did not run here; debug the run that ran it: "
            hint += f"`blockbook debug {origin} {block.name}` (`blockbook runs` lists runs)"
        raise DebugError(
            f"block `{block.name}` reads `{name}` from block `{producer}`, but run "
            f"`{record.run_id}` stored no `{name}` (block `{producer}`: "
            f"{upstream.status if upstream else 'unknown'})",
            hint,
        )


def recorded_cell(run_dir: Path, block: BlockPlan) -> tuple[Any, Any]:
    """The block's generated run notebook and cell: the code as it ran (the source notebook
    may have changed since)."""
    path = input_notebook(run_dir, block.run_notebook)
    try:
        notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    except FileNotFoundError:
        raise DebugError(f"the run notebook {path} is missing", "run it again") from None
    for cell in notebook.cells:
        if block_of(cell) == block.name:
            return notebook, cell
    raise DebugError(f"{path} has no cell of block `{block.name}`", "run it again")


def checked_output(path: Path, plan: RunPlan) -> Path:
    """`path`, if a debug notebook may be written there: never over a file Blockbook's debug
    did not write (the run store, a source notebook, anyone's file), and never inside the
    state folder but in this run's debug folder."""
    path, run_dir = path.absolute(), Path(plan.run_dir).resolve()
    resolved = path.resolve()
    state_dir = run_dir.parent.parent  # <root>/.blockbook/runs/<run id>
    hint = "leave out --output (the notebook goes to the run's debug folder), or give a new file"
    if resolved.is_relative_to(state_dir) and not resolved.is_relative_to(run_dir / DEBUG_DIR):
        raise DebugUsageError(
            f"--output {path} is in Blockbook's state folder {state_dir}: a debug notebook "
            "never replaces anything there and goes only in its run's debug folder",
            hint=hint,
        )
    if resolved.exists() and not _written_by_debug(resolved):
        raise DebugUsageError(
            f"--output {path} exists and is not a notebook `blockbook debug` wrote; a debug "
            "notebook never replaces another file",
            hint=hint,
        )
    return path


def _written_by_debug(path: Path) -> bool:
    """Whether `path` is a notebook an earlier `blockbook debug` wrote (so may be rewritten)."""
    if not path.is_file() or path.suffix != ".ipynb":
        return False
    try:
        notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    # nbformat's reader raises internal errors (KeyError, AttributeError) on JSON that is not a
    # notebook: any failure means "not ours", and the caller refuses the path.
    except Exception as exc:
        log.info("not overwriting %s: cannot read it as a notebook (%s)", path, exc)
        return False
    provenance = notebook.get("metadata", {}).get("blockbook", {})
    return isinstance(provenance, dict) and provenance.get("debug") is True


def parameter_lines(plan: RunPlan, run_notebook: Any, analysis: BlockAnalysis) -> list[str]:
    """The run's parameters cell, typed as it was (dates stay dates). Secrets the block reads
    come from the environment: the run stored only their masks."""
    cells = run_notebook.cells
    source = next(c.source for c in cells if "parameters" in c.metadata.get("tags", []))
    lines = []
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if name == RUN_CONTEXT_NAME:
            continue
        if not is_secret_param(name, plan.params.get(name)):
            lines.append(ast.get_source_segment(source, node) or "")
        elif name in analysis.inputs:
            variable = re.sub(r"\W", "_", name).upper()
            lines.append(
                f"# a secret the run does not store: export {variable} before Jupyter starts"
            )
            lines.append(f"{name} = os.environ[{variable!r}]")
        else:
            lines.append(f"# {name}: a secret this block does not read")
    return lines


def intro_cell(plan: RunPlan, block: BlockPlan, cell: Any) -> Any:
    return _markdown(
        f"# Debug block `{block.name}` of run `{plan.run_id}`\n\n"
        f"Made by `blockbook debug` from pipeline `{plan.pipeline}`, `{block.source_notebook}` "
        f"cell {cell.metadata.blockbook.get('cell')}. The first cell sets up what the block saw "
        "in that run: working folder, parameters, and its inputs loaded from the run's stored "
        "outputs. The next cell is the block's code as it ran, as plain Python: run it to "
        "reproduce the result or the failure in place. A block's `@test` checks follow, "
        "called on its outputs as the run called them. The last cell is the run's error.\n\n"
        f"This is a copy: edits here change nothing. Put fixes in `{block.source_notebook}`.",
        "blockbook-provenance",
    )


def setup_cell(plan: RunPlan, block: BlockPlan, params: list[str], analysis: BlockAnalysis) -> Any:
    folder = (Path(plan.pipeline_folder) / block.source_notebook).parent
    lines = ["import datetime", "import os", "from pathlib import Path", ""]
    if analysis.tests:
        lines += ["from kernel_magics import test  # the block defines @test functions"]
    lines += ["from pipelines.rundir.artifacts import ArtifactStore"]
    lines += [
        "",
        "# The run's kernel worked in the notebook's folder: relative paths in the block need it.",
        f"os.chdir({str(folder)!r})",
    ]
    if params:
        lines += ["", "# The run's parameters", *params]
    if block.sources:
        lines += ["", f"# The block's inputs, as run {plan.run_id} stored them"]
        lines += [f"_blockbook_run = ArtifactStore(Path({plan.run_dir!r}))"]
        lines += [f"{n} = _blockbook_run.load({p!r}, {n!r})" for n, p in block.sources.items()]
    child = parent_of(block.name)
    if block.map is not None and child is not None:
        lines += ["", f"# The item child `{block.name}` ran for"]
        lines += ["from kernel_magics.fanout import item_at"]
        lines += [f"item_index = {child[1]}", f"item = item_at({block.map}, item_index)"]
    return _code("\n".join(lines), "blockbook-debug-setup")


def code_cell(cell: Any) -> Any:
    header, body = split_block_cell(cell.source)
    # The header stays, as a comment, so line numbers match the run's traceback.
    return _code(f"# {header}\n{body}", "blockbook-debug-block", blockbook=cell.metadata.blockbook)


def tests_cells(header: str, body: str, analysis: BlockAnalysis, seen: set[str]) -> list[Any]:
    """The block's `@test`s, called after its body as a run calls them: each receives the
    values its parameters name. Plain calls, so a failed check raises with its own traceback
    (`--tests warn` blocks only warn, as in the run). No cell for a block without tests."""
    if not analysis.tests:
        return []
    warn = parse_header(header).tests is TestPolicy.WARN
    known = seen | set(analysis.outputs)
    functions = {
        node.name: node
        for node in ast.parse(body).body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    lines = ["# The block's @test checks, called as the run called them after the body."]
    if warn:
        lines = ["import warnings", "", *lines, "# --tests warn: a failure only warns."]
    for name in analysis.tests:
        call = f"{name}({', '.join(f'{a}={a}' for a in _test_arguments(functions[name], known))})"
        if warn:
            call = (
                f"try:\n    {call}\nexcept Exception as _blockbook_failure:\n"
                f"    warnings.warn(f'test {name} failed: {{_blockbook_failure!r}}')"
            )
        lines.append(call)
    return [_code("\n".join(lines), "blockbook-debug-tests")]


def _test_arguments(function: ast.FunctionDef | ast.AsyncFunctionDef, known: set[str]) -> list[str]:
    """The parameters a run passes: all without a default (a missing one is a NameError here,
    as it fails the test in a run); one with a default only when the block could see the name."""
    args = function.args
    positional = [*args.posonlyargs, *args.args]
    defaulted = {a.arg for a in positional[len(positional) - len(args.defaults) :]}
    defaulted |= {
        a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None
    }
    names = [a.arg for a in [*positional, *args.kwonlyargs]]
    return [n for n in names if n not in defaulted or n in known]


def error_cell(record: RunRecord, block: str) -> Any:
    state = record.block(block)
    if state is None or state.error is None:
        status = state.status if state is not None else "unknown"
        text = f"Block `{block}` ended `{status}` in run `{record.run_id}`, with no error."
    else:
        attempts = state.attempt_records
        trace = (attempts[-1].traceback if attempts else None) or state.error
        fence = "`" * max([3, *(len(m) + 1 for m in re.findall(r"`+", trace))])
        text = (
            f"## The error run `{record.run_id}` recorded\n\nBlock `{block}` ended "
            f"`{state.status}`: {state.error}\n\n{fence}text\n{trace.rstrip()}\n{fence}"
        )
    return _markdown(text, "blockbook-debug-error")


def _code(source: str, tag: str, **metadata: Any) -> Any:
    return new_code_cell(source, metadata={"tags": [tag], **metadata})  # type: ignore[no-untyped-call]


def _markdown(source: str, tag: str) -> Any:
    return new_markdown_cell(source, metadata={"tags": [tag]})  # type: ignore[no-untyped-call]
