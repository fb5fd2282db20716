"""Assembling a pipeline folder into one validated graph: the recipe, step by step."""

from __future__ import annotations

import difflib
import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.assembly.blocks import Block, compile_notebook
from pipelines.assembly.config import (
    PIPELINE_FILE,
    PipelineConfig,
    load_pipeline_config,
    load_project_config,
)
from pipelines.assembly.config import _line_of_key as line_of_key
from pipelines.assembly.graph import (
    Wiring,
    find_cycles,
    merge_upstream,
    topological_order,
    wire_inputs,
)
from pipelines.assembly.header import BlockName
from pipelines.assembly.includes import Include, include_paths, resolve_includes
from pipelines.assembly.mapping import map_problems
from pipelines.assembly.notebooks import NotebookFile, read_notebook
from pipelines.assembly.project import find_root, notebook_files
from pipelines.assembly.scope import Scope, unprovided_names
from pipelines.errors import Location, Problem, ProblemKind, Severity
from pipelines.params import NAME_HINT, VALUE_HINT, name_problem, value_problem


@dataclass(frozen=True)
class Pipeline:
    """A pipeline folder, compiled: blocks in global order, edges, wiring and problems."""

    name: str
    folder: Path
    config: PipelineConfig
    blocks: Mapping[BlockName, Block]
    """Every uniquely named block; in global order when the pipeline is valid."""
    upstream: Mapping[BlockName, tuple[BlockName, ...]]
    sources: Mapping[BlockName, Mapping[str, BlockName]]
    """For each block, input name -> the block whose output feeds it."""
    order: tuple[BlockName, ...]
    problems: tuple[Problem, ...] = field(default=())
    notebooks: tuple[NotebookFile, ...] = field(default=())
    """Every notebook read, the included ones among them (by their path relative to `folder`)."""
    watched: tuple[Path, ...] = field(default=())
    """The files `include` points at, existing or not: the assembly cache watches them too."""

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.is_error)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if not p.is_error)

    @property
    def ok(self) -> bool:
        return not self.errors

    @functools.cached_property
    def readers(self) -> dict[BlockName, dict[str, list[BlockName]]]:
        """For each block, output name -> the blocks that read it (in global order)."""
        result: dict[BlockName, dict[str, list[BlockName]]] = {name: {} for name in self.blocks}
        for reader in self.order or tuple(self.blocks):
            for input_name, producer in self.sources.get(reader, {}).items():
                result[producer].setdefault(input_name, []).append(reader)
        return result

    def readers_of(
        self, block: str, *, include_unwired: bool = False
    ) -> Mapping[str, tuple[BlockName, ...]]:
        """Output name -> the blocks that read it from `block`, in global order.

        `include_unwired` adds, under each name, the blocks that read it with no producer
        wired to them (several or none produce it, or only a later cell does): run by hand,
        they take whatever value the kernel or the dev area holds, so `block` may feed them.
        Those names need not be outputs of `block` (the caller knows what it produces).
        """
        wired = self.readers.get(BlockName(block), {})
        found = {name: list(readers) for name, readers in wired.items()}
        if include_unwired:
            for name, readers in self._unwired_readers.items():
                found.setdefault(name, []).extend(r for r in readers if r != block)
        position = {name: index for index, name in enumerate(self.blocks)}
        return {
            name: tuple(sorted(readers, key=position.__getitem__))
            for name, readers in found.items()
            if readers
        }

    def producer_of(self, reader: str, name: str) -> BlockName | None:
        """The block `reader` takes `name` from: the one wired to it; without wiring (several
        producers, or `reader` not saved yet), the last block in global order that outputs
        it, as in a kernel that ran them all; None when no other block outputs it."""
        wired = self.sources.get(BlockName(reader), {}).get(name)
        if wired is not None:
            return wired
        producers = [b.name for b in self.blocks.values() if name in b.outputs and b.name != reader]
        return producers[-1] if producers else None

    @functools.cached_property
    def _unwired_readers(self) -> dict[str, list[BlockName]]:
        """Input name -> the blocks reading it with no producer wired, in global order."""
        result: dict[str, list[BlockName]] = {}
        for block in self.blocks.values():
            wired = self.sources.get(block.name, {})
            for name in block.inputs:
                if name not in wired:
                    result.setdefault(name, []).append(block.name)
        return result

    def stored_outputs(self, name: BlockName) -> tuple[str, ...]:
        """Outputs to materialize: those another block reads, plus any `--out` names."""
        block = self.blocks[name]
        read = self.readers[name]
        explicit = block.header.out or ()
        return tuple(o for o in block.outputs if o in read or o in explicit)


def assemble(folder: Path) -> Pipeline:
    """Read, compile, wire and validate every notebook of a pipeline folder. Never raises for
    bad input: everything wrong ends up in `Pipeline.problems`."""
    folder = folder.resolve()
    config, problems = load_pipeline_config(folder)
    problems += param_problems(folder, config)
    includes: list[Include] = []
    if config.include:
        text = (folder / PIPELINE_FILE).read_text(encoding="utf-8-sig")
        includes, found = resolve_includes(folder, config.include, notebook_files(folder), text)
        problems += found
    notebooks, notebook_problems = read_notebooks(folder, includes)
    blocks, block_problems = compile_blocks(notebooks)
    unique, duplicate_problems = index_by_name(blocks)
    wiring = wire_inputs(unique)
    upstream = merge_upstream(unique, wiring)
    graph_problems = [
        *check_explicit_upstream(unique),
        *wiring.problems,
        *cycle_problems(unique, upstream, wiring),
        *unprovided_names(unique, pipeline_scope(folder, config)),
        *map_problems(unique, wiring.sources),
    ]
    if not blocks and not notebook_problems and not block_problems:
        graph_problems.append(_empty_pipeline(folder, notebooks))
    order = topological_order(unique, upstream)
    ordered = {name: unique[name] for name in order}
    ordered.update({name: block for name, block in unique.items() if name not in ordered})
    return Pipeline(
        name=folder.name,
        folder=folder,
        config=config,
        blocks=ordered,
        upstream=upstream,
        sources=wiring.sources,
        order=tuple(order) if len(order) == len(unique) else (),
        problems=(
            *problems,
            *notebook_problems,
            *block_problems,
            *duplicate_problems,
            *graph_problems,
        ),
        notebooks=tuple(notebooks),
        watched=include_paths(folder, config.include),
    )


def pipeline_scope(folder: Path, config: PipelineConfig) -> Scope:
    """Parameter defaults (pipeline and schedule) and the project's connection names."""
    # A bad blockbook.toml is reported by the commands that use it, not per pipeline.
    project, _ = load_project_config(find_root(folder))
    params = set(config.params)
    if config.schedule is not None:
        params |= set(config.schedule.params)
    return Scope(frozenset(params), frozenset(project.connections))


def read_notebooks(
    folder: Path, includes: Sequence[Include] = ()
) -> tuple[list[NotebookFile], list[Problem]]:
    """The pipeline folder's notebooks, then the included ones."""
    notebooks: list[NotebookFile] = []
    problems: list[Problem] = []
    files = [(path, path.relative_to(folder).as_posix()) for path in notebook_files(folder)]
    files += [(include.file, include.relative) for include in includes]
    for path, relative in files:
        notebook, found = read_notebook(path, relative)
        problems += found
        if notebook is not None:
            notebooks.append(notebook)
    return notebooks, problems


def compile_blocks(notebooks: list[NotebookFile]) -> tuple[list[Block], list[Problem]]:
    blocks: list[Block] = []
    problems: list[Problem] = []
    for notebook in notebooks:
        compiled, found = compile_notebook(notebook)
        blocks += compiled
        problems += found
    return blocks, problems


def index_by_name(blocks: list[Block]) -> tuple[dict[BlockName, Block], list[Problem]]:
    """Blocks by name; a second block with a taken name is reported and left out."""
    unique: dict[BlockName, Block] = {}
    problems: list[Problem] = []
    for block in sorted(blocks, key=lambda b: b.sort_key):
        first = unique.get(block.name)
        if first is None:
            unique[block.name] = block
            continue
        problems.append(
            Problem(
                ProblemKind.DUPLICATE_BLOCK,
                f"block name `{block.name}` is already used by {first.describe()}",
                block.location,
                "block names are unique within a pipeline; rename one of them",
            )
        )
    return unique, problems


def param_problems(folder: Path, config: PipelineConfig) -> list[Problem]:
    """`[params]` and `[schedule.params]` a run notebook's parameters cell cannot hold: names
    that are not identifiers, keywords, names the generated cells use; inf and nan."""
    tables = [(["params"], config.params)]
    if config.schedule is not None:
        tables.append((["schedule", "params"], config.schedule.params))
    problems: list[Problem] = []
    for table, params in tables:
        for name, value in params.items():
            problem, hint = name_problem(name), NAME_HINT
            if problem is None:
                problem, hint = value_problem(value), VALUE_HINT
            if problem is None:
                continue
            text = (folder / PIPELINE_FILE).read_text(encoding="utf-8-sig")
            line = line_of_key(text, [*table, name])
            problems.append(
                Problem(
                    ProblemKind.BAD_CONFIG,
                    f"`{'.'.join([*table, name])}`: {problem}",
                    Location(PIPELINE_FILE, line=line),
                    hint,
                )
            )
    return problems


def check_explicit_upstream(blocks: Mapping[BlockName, Block]) -> list[Problem]:
    problems: list[Problem] = []
    for block in blocks.values():
        for name in block.header.upstream:
            if name in blocks:
                continue
            guess = difflib.get_close_matches(name, list(blocks), n=1)
            hint = f"did you mean `{guess[0]}`?" if guess else "check the name, or remove it"
            problems.append(
                Problem(
                    ProblemKind.UNKNOWN_UPSTREAM,
                    f"block `{block.name}` lists unknown upstream block `{name}`",
                    block.location,
                    hint,
                )
            )
    return problems


def cycle_problems(
    blocks: Mapping[BlockName, Block],
    upstream: Mapping[BlockName, tuple[BlockName, ...]],
    wiring: Wiring,
) -> list[Problem]:
    problems: list[Problem] = []
    for cycle in find_cycles(blocks, upstream):
        steps = [f"{blocks[name].name} ({blocks[name].location})" for name in cycle]
        reasons = [
            _edge_reason(blocks, wiring, parent, child)
            for parent, child in itertools.pairwise(cycle)
        ]
        problems.append(
            Problem(
                ProblemKind.CYCLE,
                "dependency cycle: " + " -> ".join(steps) + " (" + "; ".join(reasons) + ")",
                blocks[cycle[0]].location,
                "break the cycle: remove an --upstream, or rename a variable so a block stops "
                "reading another's output",
            )
        )
    return problems


def _edge_reason(
    blocks: Mapping[BlockName, Block], wiring: Wiring, parent: BlockName, child: BlockName
) -> str:
    names = sorted(n for n, source in wiring.sources.get(child, {}).items() if source == parent)
    if names:
        return f"{child} reads {', '.join(f'`{n}`' for n in names)} from {parent}"
    return f"{child} has --upstream {parent}"


def _empty_pipeline(folder: Path, notebooks: list[NotebookFile]) -> Problem:
    message = (
        "no notebooks in the pipeline folder"
        if not notebooks
        else "no block cells in any notebook of the pipeline"
    )
    return Problem(
        ProblemKind.EMPTY_PIPELINE,
        message,
        Location(folder.name),
        "start a code cell with `%%block my_block` to make it a block",
        Severity.WARNING,
    )
