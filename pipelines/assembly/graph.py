"""Graph algorithms over blocks: the definitions registry, input wiring, cycles, order.

Plain functions over plain mappings so each can be tested alone. Every iteration that could
depend on hash order goes through `Block.sort_key` instead.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pipelines.assembly.blocks import Block
from pipelines.assembly.header import BlockName
from pipelines.errors import Problem, ProblemKind, Severity

Blocks = Mapping[BlockName, Block]
Upstream = Mapping[BlockName, tuple[BlockName, ...]]
_Resolution = tuple[Block | None, Problem | None]


@dataclass(frozen=True, slots=True)
class Wiring:
    """Where each block's inputs come from, and the problems found deciding it."""

    sources: Mapping[BlockName, Mapping[str, BlockName]]
    problems: tuple[Problem, ...]


def definitions(blocks: Iterable[Block]) -> dict[str, list[Block]]:
    """Name -> the blocks that output it, in (notebook, cell) order."""
    registry: dict[str, list[Block]] = defaultdict(list)
    for block in sorted(blocks, key=lambda b: b.sort_key):
        for name in block.outputs:
            registry[name].append(block)
    return registry


def wire_inputs(blocks: Blocks) -> Wiring:
    """Resolve every input per the block semantics.

    An explicit upstream that produces the name wins; else the nearest earlier producer in the
    same notebook; else the unique producer in another notebook (the last one per notebook).
    """
    registry = definitions(blocks.values())
    sources: dict[BlockName, dict[str, BlockName]] = {}
    problems: list[Problem] = []
    for block in sorted(blocks.values(), key=lambda b: b.sort_key):
        wired: dict[str, BlockName] = {}
        for name in block.inputs:
            producers = [p for p in registry.get(name, ()) if p.name != block.name]
            source, problem = _resolve(block, name, producers)
            if source is not None:
                wired[name] = source.name
            if problem is not None:
                problems.append(problem)
        sources[block.name] = wired
    return Wiring(sources, tuple(problems))


def _resolve(
    block: Block, name: str, producers: list[Block]
) -> tuple[Block | None, Problem | None]:
    if not producers:
        return None, None
    explicit = [p for p in producers if p.name in block.header.upstream]
    same_notebook = [p for p in producers if p.notebook == block.notebook]
    earlier_here = [p for p in same_notebook if p.cell < block.cell]
    if explicit:
        explicit_here = [p for p in explicit if p in earlier_here]
        if explicit_here or len(explicit) == 1:
            return (explicit_here[-1] if explicit_here else explicit[0]), None
        places = " and ".join(candidate.describe() for candidate in explicit)
        return None, Problem(
            ProblemKind.AMBIGUOUS_PRODUCER,
            f"block `{block.name}` reads `{name}`, which its upstream blocks {places} both produce",
            block.location,
            f"keep only one of them in --upstream, or rename `{name}` in all but one",
        )
    if earlier_here:
        return earlier_here[-1], None
    last_per_notebook: dict[str, Block] = {}
    for producer in producers:
        if producer.notebook != block.notebook:
            last_per_notebook[producer.notebook] = producer
    candidates = sorted(last_per_notebook.values(), key=lambda b: b.sort_key)
    if len(candidates) == 1:
        return candidates[0], None
    if len(candidates) > 1:
        places = " and ".join(candidate.describe() for candidate in candidates)
        return None, Problem(
            ProblemKind.AMBIGUOUS_PRODUCER,
            f"block `{block.name}` reads `{name}`, which {places} both produce",
            block.location,
            f"add `--upstream {candidates[0].name}` (or another producer) to the header of "
            f"`{block.name}` to pick one, or rename `{name}` in all but one of them",
        )
    later = same_notebook[0]
    return None, Problem(
        ProblemKind.READS_LATER_OUTPUT,
        f"block `{block.name}` reads `{name}`, which only {later.describe()} produces, "
        "later in the same notebook; it is treated as a parameter",
        block.location,
        f"move `{block.name}` below `{later.name}`, or add `--upstream {later.name}`",
        Severity.WARNING,
    )


def merge_upstream(blocks: Blocks, wiring: Wiring) -> dict[BlockName, tuple[BlockName, ...]]:
    """Explicit `--upstream` plus inferred edges, each block's list sorted by name."""
    upstream: dict[BlockName, tuple[BlockName, ...]] = {}
    for name, block in blocks.items():
        explicit = {u for u in block.header.upstream if u in blocks}
        inferred = set(wiring.sources.get(name, {}).values())
        upstream[name] = tuple(sorted(explicit | inferred))
    return upstream


def find_cycles(blocks: Blocks, upstream: Upstream) -> list[list[BlockName]]:
    """One cycle path per strongly connected component that has one, deterministically.

    Each path starts at the component's first block in (notebook, cell) order and ends back at
    it; e.g. [a, b, a] means a feeds b and b feeds a.
    """
    downstream = _downstream(blocks, upstream)
    cycles: list[list[BlockName]] = []
    for component in _strongly_connected(blocks, downstream):
        if len(component) == 1 and component[0] not in downstream[component[0]]:
            continue
        members = set(component)
        start = min(component, key=lambda n: blocks[n].sort_key)
        cycles.append(_shortest_cycle(start, members, downstream))
    cycles.sort(key=lambda cycle: blocks[cycle[0]].sort_key)
    return cycles


def topological_order(blocks: Blocks, upstream: Upstream) -> list[BlockName]:
    """Kahn's algorithm; among ready blocks the first in (notebook, cell) order goes first.

    Blocks on or below a cycle are left out; callers check `find_cycles` first.
    """
    downstream = _downstream(blocks, upstream)
    waiting = {name: len(set(upstream.get(name, ()))) for name in blocks}
    ready = [(blocks[name].sort_key, name) for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[BlockName] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for child in downstream[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (blocks[child].sort_key, child))
    return order


def _downstream(blocks: Blocks, upstream: Upstream) -> dict[BlockName, list[BlockName]]:
    children: dict[BlockName, list[BlockName]] = {name: [] for name in blocks}
    for name in blocks:
        for parent in dict.fromkeys(upstream.get(name, ())):
            children[parent].append(name)
    for names in children.values():
        names.sort(key=lambda n: blocks[n].sort_key)
    return children


def _strongly_connected(
    blocks: Blocks, downstream: Mapping[BlockName, list[BlockName]]
) -> list[list[BlockName]]:
    """Tarjan's algorithm, iterative so a 10,000-block chain doesn't hit the recursion limit."""
    index: dict[BlockName, int] = {}
    lowlink: dict[BlockName, int] = {}
    on_stack: set[BlockName] = set()
    stack: list[BlockName] = []
    components: list[list[BlockName]] = []
    counter = 0
    for root in sorted(blocks, key=lambda n: blocks[n].sort_key):
        if root in index:
            continue
        work: list[tuple[BlockName, int]] = [(root, 0)]
        while work:
            node, child_position = work.pop()
            if child_position == 0:
                index[node] = lowlink[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = downstream[node]
            if child_position < len(children):
                child = children[child_position]
                work.append((node, child_position + 1))
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    lowlink[node] = min(lowlink[node], index[child])
                continue
            if lowlink[node] == index[node]:
                component: list[BlockName] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                lowlink[parent] = min(lowlink[parent], lowlink[node])
    return components


def _shortest_cycle(
    start: BlockName, members: set[BlockName], downstream: Mapping[BlockName, list[BlockName]]
) -> list[BlockName]:
    previous: dict[BlockName, BlockName] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        next_frontier: list[BlockName] = []
        for node in frontier:
            for child in downstream[node]:
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in seen:
                    seen.add(child)
                    previous[child] = node
                    next_frontier.append(child)
        frontier = next_frontier
    raise AssertionError("a strongly connected component always has a cycle through its root")
