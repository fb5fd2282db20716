"""Fan-out children, runner side: one run notebook per item of a mapped block.

The kernel running a mapped block (`%%block per_day --map days`) waits for its upstream, counts
the items of `days` and says how many in the block's state (`map_items`). Only then can the
children exist: the runner writes one run notebook per item, each holding the block's cell
alone with the item's index in its run context, and executes them like any other notebook of
the run (the executor, the concurrency limit, timeouts and cancel apply to them alike). The
kernel of the mapped block meanwhile waits for every child to end, then collects their outputs
into lists (`kernel_magics.fanout`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pipelines.assembly.pipeline import Pipeline
from pipelines.params import ParamValue
from pipelines.rundir.fanout import MAP_CONTEXT_KEY, child_name
from pipelines.rundir.layout import executed_notebook, input_notebook, run_notebook_path
from pipelines.rundir.location import run_folder_at
from pipelines.rundir.plan import RunPlan
from pipelines.rundir.state import BlockState
from pipelines.runs.build import build_notebook, write_notebook

log = logging.getLogger(__name__)


class FanOut:
    """Writes the children's run notebooks of a run, once per mapped block."""

    def __init__(self, pipeline: Pipeline, plan: RunPlan, params: Mapping[str, ParamValue]) -> None:
        self.pipeline = pipeline
        self.plan = plan
        self.params = params
        self._expanded: set[str] = set()
        self._mapped = [
            name for name, block in plan.blocks.items() if block.map is not None and block.run
        ]

    def waiting(self) -> list[str]:
        """The mapped blocks of the run whose children are not made yet."""
        return [name for name in self._mapped if name not in self._expanded]

    def children(self, state: BlockState) -> list[tuple[str, str]]:
        """The children (block name, run notebook) a mapped block's state asks for, their
        notebooks written; [] when it asks for none, or they were made already."""
        parent = state.block
        block = self.plan.blocks.get(parent)
        if block is None or block.map is None or state.map_items is None:
            return []
        if parent in self._expanded:
            return []
        self._expanded.add(parent)
        run_dir = run_folder_at(self.plan.run_dir)
        made = []
        for index in range(state.map_items):
            child = child_name(parent, index)
            path = run_notebook_path(block.source_notebook, child)
            notebook = build_notebook(
                self.pipeline,
                self.plan,
                path,
                [parent],
                self.params,
                context={MAP_CONTEXT_KEY: {"block": parent, "index": index}},
            )
            for cell in notebook.cells:
                if cell.get("metadata", {}).get("blockbook", {}).get("block") == parent:
                    # The executed notebook's cell is the child's: tagged with its status.
                    cell.metadata["blockbook"]["block"] = child
                    cell.metadata["tags"] = [f"block-{child}"]
            notebook.metadata["blockbook"]["blocks"] = [child]
            write_notebook(notebook, input_notebook(run_dir, path))
            executed_notebook(run_dir, path).parent.mkdir(parents=True, exist_ok=True)
            made.append((child, path))
        log.info("run %s: block %s fans out to %d children", self.plan.run_id, parent, len(made))
        return made
