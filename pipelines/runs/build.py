"""Building a run: its plan from an assembled pipeline, and its run notebooks.

Run notebooks hold a provenance note, a parameters cell, a setup cell and the source
notebook's block cells in global order with headers and cell ids intact, so an executed
notebook reads like its source.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from pipelines.assembly.header import BlockName
from pipelines.assembly.notebooks import read_notebook
from pipelines.assembly.pipeline import Pipeline
from pipelines.params import ParamValue, is_secret_param, json_params, masked, python_literal
from pipelines.rundir.layout import KERNEL_NAME, run_notebook_path
from pipelines.rundir.location import RunFolder
from pipelines.rundir.plan import (
    RUN_CONTEXT_NAME,
    BlockPlan,
    RunPlan,
)
from pipelines.rundir.state import write_bytes_atomic
from pipelines.runs.selection import RunError

# The setup cell of every run notebook. A kernel from another environment may lack Blockbook:
# say so, instead of a bare ModuleNotFoundError.
SETUP_SOURCE = """\
try:
    import kernel_magics
except ModuleNotFoundError as _blockbook_missing:
    raise ModuleNotFoundError(
        "kernel {kernel!r} cannot import kernel_magics: its environment lacks blockbook; "
        "install blockbook there (that environment's `pip install -e PATH_TO_BLOCKBOOK`), "
        "or run the pipeline with another kernel (`kernel =` in pipeline.toml)"
    ) from _blockbook_missing
%load_ext kernel_magics"""


def build_plan(
    pipeline: Pipeline,
    run_id: str,
    run_dir: RunFolder,
    params: Mapping[str, Any],
    *,
    isolate: bool,
    skipped: frozenset[str] = frozenset(),
) -> RunPlan:
    blocks: dict[str, BlockPlan] = {}
    for name in pipeline.order:
        block = pipeline.blocks[name]
        readers = pipeline.readers[name]
        stored = {
            output: [str(reader) for reader in readers.get(output, ())]
            for output in pipeline.stored_outputs(name)
        }
        blocks[name] = BlockPlan(
            name=name,
            source_notebook=block.notebook,
            run_notebook=run_notebook_path(block.notebook, name if isolate else None),
            upstream=pipeline.upstream.get(name, ()),
            sources=dict(pipeline.sources.get(name, {})),
            stored=stored,
            run=name not in skipped,
            map=block.header.map,
        )
    check_kernels(pipeline, {b.source_notebook for b in blocks.values() if b.run})
    return RunPlan(
        run_id=run_id,
        pipeline=pipeline.name,
        pipeline_folder=str(pipeline.folder),
        run_dir=str(run_dir),
        blocks=blocks,
        order=pipeline.order,
        params=masked(params),
    )


def build_run_notebooks(
    pipeline: Pipeline, plan: RunPlan, params: Mapping[str, ParamValue]
) -> dict[str, Any]:
    """Run notebook path -> notebook, one per source notebook (or per block when isolated)."""
    groups: dict[str, list[str]] = {}
    for name in plan.order:
        groups.setdefault(plan.blocks[name].run_notebook, []).append(name)
    return {
        path: build_notebook(pipeline, plan, path, names, params) for path, names in groups.items()
    }


def build_notebook(
    pipeline: Pipeline,
    plan: RunPlan,
    path: str,
    names: list[str],
    params: Mapping[str, ParamValue],
    context: Mapping[str, Any] | None = None,
) -> Any:
    """The run notebook `path` holding the cells of blocks `names` (of one source notebook);
    `context` adds to the run context its parameters cell binds (a fan-out child's item)."""
    source = plan.blocks[names[0]].source_notebook
    cells = [
        _provenance_cell(plan, source),
        _parameters_cell(plan, path, params, context or {}),
        new_code_cell(
            SETUP_SOURCE.format(kernel=notebook_kernel(pipeline, source)),
            metadata={"tags": ["blockbook-setup"]},
        ),
    ]
    for name in names:
        block = pipeline.blocks[BlockName(name)]
        cell = new_code_cell(
            block.source,
            metadata={
                "tags": [f"block-{name}"],
                "blockbook": {"block": name, "source": source, "cell": block.cell},
            },
        )
        cell["id"] = block.cell_id
        cells.append(cell)
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = kernelspec(notebook_kernel(pipeline, source))
    notebook.metadata["blockbook"] = {
        "run_id": plan.run_id,
        "pipeline": plan.pipeline,
        "source_notebook": source,
        "blocks": names,
        "params": json_params(plan.params),
        "generated_at": datetime.now(UTC).isoformat(),
    }
    return notebook


def notebook_kernel(pipeline: Pipeline, source: str) -> str:
    """The kernelspec a source notebook runs with: pipeline.toml's `kernel`, else the one its
    metadata names (its project's environment), else python3."""
    if pipeline.config.kernel:
        return pipeline.config.kernel
    notebook, _ = read_notebook(pipeline.folder / source, source)
    return (notebook.kernel if notebook is not None else None) or KERNEL_NAME


def check_kernels(pipeline: Pipeline, sources: set[str]) -> None:
    """Every notebook's kernel must be installed: found out before the run starts, not as a
    failure of every block."""
    from jupyter_client.kernelspec import KernelSpecManager  # imported only when a run builds

    installed = KernelSpecManager().find_kernel_specs()
    for source in sorted(sources):
        name = notebook_kernel(pipeline, source)
        if name not in installed:
            raise RunError(
                f"`{source}` runs with kernel `{name}`, which is not installed "
                f"(installed: {', '.join(sorted(installed)) or 'none'})",
                hint=f"install it from the environment it should use (`python -m ipykernel "
                f'install --user --name {name}`), or set `kernel = "NAME"` in pipeline.toml '
                "to run every notebook with an installed kernel",
            )


def kernelspec(name: str) -> dict[str, str]:
    """The notebook metadata of an installed kernel, as JupyterLab writes it."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(name)
    return {"name": name, "display_name": spec.display_name, "language": spec.language}


def run_kernel(path: RunFolder) -> str:
    """The kernel a built run notebook runs with: the one `build_run_notebooks` wrote into it
    (the source notebook may have changed since)."""
    notebook = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
    return str(notebook.metadata.get("kernelspec", {}).get("name") or KERNEL_NAME)


def block_of(cell: Any) -> str | None:
    """The block a cell of a run notebook holds (its `blockbook` metadata); None for the others."""
    block = cell.get("metadata", {}).get("blockbook", {}).get("block")
    return str(block) if block is not None else None


def write_notebook(notebook: Any, path: RunFolder) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, nbformat.writes(notebook).encode())


def _provenance_cell(plan: RunPlan, source: str) -> Any:
    return new_markdown_cell(
        f"**Blockbook run `{plan.run_id}`** of pipeline `{plan.pipeline}`, generated from "
        f"`{source}`. Edit the source notebook, not this copy.",
        metadata={"tags": ["blockbook-provenance"]},
    )


def _parameters_cell(
    plan: RunPlan,
    run_notebook: str,
    params: Mapping[str, ParamValue],
    extra: Mapping[str, Any],
) -> Any:
    lines = ["import datetime", ""]
    shown = masked(params)
    for name, value in params.items():
        if is_secret_param(name, value):
            lines.append(f"{name} = {shown[name]!r}  # secret: the kernel receives the real value")
        else:
            lines.append(f"{name} = {python_literal(value)}")
    context = {
        "run_id": plan.run_id,
        "run_dir": plan.run_dir,
        "notebook": run_notebook,
        **extra,
    }
    lines.append(f"{RUN_CONTEXT_NAME} = {context!r}")
    return new_code_cell("\n".join(lines), metadata={"tags": ["parameters"]})
