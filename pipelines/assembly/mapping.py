"""Mapped blocks (`%%block per_day --map days`) in the graph: what they read, and whether the
name they map over comes from upstream.

A mapped block reads its `--map` name even when its body only reads `item` (that is what the
children are made of), and never reads `item` or `item_index` from another block: every child
gets them bound (`pipelines.rundir.fanout`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pipelines.assembly.header import BlockHeader, BlockName
from pipelines.errors import Problem, ProblemKind
from pipelines.rundir.fanout import ITEM_NAMES

if TYPE_CHECKING:  # blocks.py imports `block_inputs` from here
    from pipelines.assembly.blocks import Block


def block_inputs(header: BlockHeader, inputs: tuple[str, ...]) -> tuple[str, ...]:
    """The names a block reads from elsewhere: its body's free names, and for a mapped block
    its `--map` name instead of `item` and `item_index`."""
    if header.map is None:
        return inputs
    kept = tuple(name for name in inputs if name not in ITEM_NAMES and name != header.map)
    return (header.map, *kept)


def map_problems(
    blocks: Mapping[BlockName, Block], sources: Mapping[BlockName, Mapping[str, BlockName]]
) -> list[Problem]:
    """A mapped block whose `--map` name no upstream block outputs: found before anything runs,
    where a run would fail the block with a NameError."""
    problems: list[Problem] = []
    for block in sorted(blocks.values(), key=lambda b: b.sort_key):
        name = block.header.map
        if name is None or name in sources.get(block.name, {}):
            continue
        outputs = sorted(
            {
                output
                for other in blocks.values()
                if other.name != block.name
                for output in other.outputs
            }
        )
        guess = difflib.get_close_matches(name, outputs, n=1)
        hint = (
            f"did you mean `--map {guess[0]}`?"
            if guess
            else "name an output of an upstream block, a list, tuple or DataFrame: an earlier "
            f"block binds `{name} = [...]`"
        )
        problems.append(
            Problem(
                ProblemKind.BAD_HEADER,
                f"block `{block.name}` maps over `{name}` (--map), which no other block outputs",
                block.location,
                hint,
            )
        )
    return problems
