"""Names of fan-out children (`%%block per_day --map days`): one child block per item.

A child is named after its parent and the item's position, `per_day[3]`, everywhere a block
name goes: its state file, its artifacts folder, its run notebook and its row in the run store.
Brackets cannot appear in a block name (`[a-z_][a-z0-9_]*`), so a child's name never collides
with a block's, and its parent and index are read back from the name alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

ITEM_NAME = "item"
"""What a child's body reads its item as."""
ITEM_INDEX_NAME = "item_index"
"""What a child's body reads its item's position (from 0) as."""
ITEM_NAMES = (ITEM_NAME, ITEM_INDEX_NAME)

MAX_ITEMS = 1000
"""A fan-out's items at most: each child is a kernel of its own, so more would start thousands
of processes; a longer list is better processed by one block or in batches."""

MAP_CONTEXT_KEY = "map"
"""The key of a child run notebook's run context (`__blockbook_run__`) that says which block it
runs and which item: `{"block": "per_day", "index": 3}`."""

_CHILD = re.compile(r"(?P<parent>[a-z_][a-z0-9_]*)\[(?P<index>\d+)\]\Z")


def child_name(parent: str, index: int) -> str:
    return f"{parent}[{index}]"


def parent_of(name: str) -> tuple[str, int] | None:
    """(parent, item index) of a child's name; None for any other name."""
    match = _CHILD.match(name)
    return None if match is None else (match["parent"], int(match["index"]))


def block_of_child(name: str) -> str:
    """The block whose header and plan a name runs by: the parent for a child, else itself."""
    found = parent_of(name)
    return name if found is None else found[0]


def children_under_parents(names: Iterable[str]) -> list[str]:
    """`names` in their order, each parent's children moved right after it, by index (the
    run store adds children in the order they first report, which is not the items')."""
    listed = list(names)
    children: dict[str, list[tuple[int, str]]] = {}
    for name in listed:
        found = parent_of(name)
        if found is not None:
            children.setdefault(found[0], []).append((found[1], name))
    ordered: list[str] = []
    for name in listed:
        found = parent_of(name)
        if found is not None and found[0] in listed:
            continue  # placed under its parent
        ordered.append(name)
        ordered += [child for _, child in sorted(children.get(name, []))]
    return ordered


def count_children(names: Iterable[str]) -> dict[str, int]:
    """Parent -> how many children of it `names` holds."""
    counts: dict[str, int] = {}
    for name in names:
        found = parent_of(name)
        if found is not None:
            counts[found[0]] = counts.get(found[0], 0) + 1
    return counts
