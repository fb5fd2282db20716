"""Names a block reads that nothing provides: no block outputs them, no parameter default, no
connection, and the runner doesn't inject them. Usually a typo (`green_taxi_rw`) or a
template's unfilled name, so assembly warns with the closest name in scope.

Only a warning: a name may still come from `-p NAME=VALUE` at run time, or from a builtin this
analysis doesn't know yet, and neither should stop a pipeline. `validate --strict` makes it fail.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pipelines.assembly.blocks import Block
from pipelines.assembly.graph import definitions
from pipelines.assembly.header import BlockName
from pipelines.errors import Problem, ProblemKind, Severity
from pipelines.rundir.plan import RUN_CONTEXT_NAME

RUNTIME_NAMES = frozenset(
    {
        # The parameters cell of every run notebook (pipelines/runs/build.py) starts with
        # `import datetime` and ends with the run context.
        "datetime",
        RUN_CONTEXT_NAME,
        # Scheduled runs add the data interval (pipelines/scheduling/fire_times.py).
        "interval_start",
        "interval_end",
    }
)
"""Names a run notebook defines before the first block, whatever the pipeline says."""


@dataclass(frozen=True, slots=True)
class Scope:
    """What a pipeline provides besides block outputs; each name kind shows in the message."""

    params: frozenset[str] = frozenset()
    connections: frozenset[str] = frozenset()


def unprovided_names(blocks: Mapping[BlockName, Block], scope: Scope) -> list[Problem]:
    """One warning per (block, input) that nothing in scope provides, in (notebook, cell) order."""
    registry = definitions(blocks.values())
    imported = _imports_by_notebook(blocks.values())
    known = sorted(set(registry) | scope.params | scope.connections)
    problems: list[Problem] = []
    for block in sorted(blocks.values(), key=lambda b: b.sort_key):
        for name in block.inputs:
            if any(p.name != block.name for p in registry.get(name, ())):
                continue  # wired, ambiguous or later: graph.py says which
            if name in scope.params or name in scope.connections or name in RUNTIME_NAMES:
                continue
            if name in imported.get(block.notebook, ()):
                continue  # another block of the notebook imports it into the shared kernel
            problems.append(_problem(block, name, known))
    return problems


def _imports_by_notebook(blocks: Iterable[Block]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for block in blocks:
        found.setdefault(block.notebook, set()).update(block.analysis.imports)
    return found


def _problem(block: Block, name: str, known: list[str]) -> Problem:
    candidates = [k for k in known if k not in block.outputs]
    guess = difflib.get_close_matches(name, candidates, n=1)
    if guess:
        hint = f"did you mean `{guess[0]}`?"
    else:
        hint = (
            "produce it in another block, give it a default under [params] in pipeline.toml, "
            "or pass it with `-p NAME=VALUE`"
        )
    return Problem(
        ProblemKind.UNPROVIDED_NAME,
        f"block `{block.name}` reads `{name}`, which no block, parameter or connection provides",
        block.location,
        hint,
        Severity.WARNING,
    )
