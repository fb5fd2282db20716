"""What a run leaves behind, made fit to keep: secrets masked in block states and executed
notebooks, and each block cell of an executed notebook tagged with its final status."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import nbformat

from pipelines.params import Secrets
from pipelines.rundir.location import run_folder_at
from pipelines.rundir.plan import RunPlan
from pipelines.rundir.state import BlockState
from pipelines.runs.build import block_of, write_notebook


def finish_executed_notebooks(
    plan: RunPlan, states: Mapping[str, BlockState], secrets: Secrets
) -> None:
    """Mask secrets in the executed notebooks and tag each block cell with its final status."""
    # Fan-out children ran in notebooks the plan does not name: their states do.
    notebooks = {plan.blocks[n].run_notebook for n in plan.order}
    notebooks |= {state.notebook for state in states.values()}
    for relative in sorted(notebooks):
        path = run_folder_at(plan.run_dir) / relative
        if not path.is_file():
            continue
        notebook = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)  # type: ignore[no-untyped-call]
        for cell in notebook.cells:
            block = block_of(cell)
            if block is not None and block in states:
                cell.metadata["blockbook"]["status"] = str(states[block].status)
            if secrets and cell.get("cell_type") == "code":
                _mask_outputs(cell, secrets)
        write_notebook(notebook, path)


def masked_state(state: BlockState, secrets: Secrets) -> BlockState:
    """The block state as the run store may keep it."""
    if not secrets:
        return state
    attempts = tuple(
        replace(
            a,
            error=None if a.error is None else secrets.mask(a.error),
            traceback=None if a.traceback is None else secrets.mask(a.traceback),
            tests=tuple(replace(t, message=secrets.mask(t.message)) for t in a.tests),
        )
        for a in state.attempts
    )
    error = None if state.error is None else secrets.mask(state.error)
    return replace(state, attempts=attempts, error=error)


def _mask_outputs(cell: Any, secrets: Secrets) -> None:
    for output in cell.get("outputs", []):
        if "text" in output:
            output["text"] = secrets.mask(output["text"])
        if "traceback" in output:
            output["traceback"] = [secrets.mask(line) for line in output["traceback"]]
        if "evalue" in output:
            output["evalue"] = secrets.mask(output["evalue"])
        for kind, value in output.get("data", {}).items():
            if isinstance(value, str) and kind.startswith("text/"):
                output["data"][kind] = secrets.mask(value)
