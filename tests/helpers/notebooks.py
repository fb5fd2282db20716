"""Real notebooks written with nbformat, and pipeline folders made of them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbformat import v4

LOAD_EXT = "%load_ext kernel_magics"


@dataclass(frozen=True)
class Markdown:
    """A markdown cell in a `make_pipeline` spec (plain strings are code cells)."""

    source: str


Cell = str | Markdown
NotebookSpec = Mapping[str, Sequence[Cell]]
MakePipeline = Callable[..., Path]


def nb(*cells: Cell) -> list[Cell]:
    """A notebook's cells: `%load_ext kernel_magics` first, as every pipeline notebook has."""
    return [LOAD_EXT, *cells]


def write_notebook(path: Path, cells: Sequence[Cell]) -> Path:
    """Write an nbformat 4.5 notebook whose cell ids are `<stem>-<position>` (1-based).

    Characters nbformat doesn't allow in ids (`[a-zA-Z0-9-_]`) become `-`.
    """
    notebook = v4.new_notebook()
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    stem = re.sub(r"[^a-zA-Z0-9_-]", "-", path.stem)
    for position, cell in enumerate(cells, start=1):
        cell_id = f"{stem}-{position}"
        if isinstance(cell, Markdown):
            notebook.cells.append(v4.new_markdown_cell(cell.source, id=cell_id))
        else:
            notebook.cells.append(v4.new_code_cell(cell, id=cell_id))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def make_pipeline(
    base: Path,
    notebooks: NotebookSpec,
    pipeline_toml: str | None = None,
    *,
    name: str = "pipe",
) -> Path:
    """Create `base/name/` with one notebook per entry (and pipeline.toml if given)."""
    folder = base / name
    folder.mkdir(parents=True, exist_ok=True)
    for filename, cells in notebooks.items():
        write_notebook(folder / filename, cells)
    if pipeline_toml is not None:
        (folder / "pipeline.toml").write_text(pipeline_toml, encoding="utf-8")
    return folder


def execute_in_kernel(folder: Path, cells: list[str]) -> Any:
    """Run `cells` in a fresh kernel whose working folder is `folder`, as JupyterLab does."""
    notebook = v4.new_notebook(cells=[v4.new_code_cell(source) for source in cells])
    NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=120,
        allow_errors=True,
        store_widget_state=True,
        resources={"metadata": {"path": str(folder)}},
    ).execute()
    return notebook
