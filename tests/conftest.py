"""Shared fixtures: real notebooks written with nbformat, in throwaway pipeline folders."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbformat import v4

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Markdown:
    """A markdown cell in a `make_pipeline` spec (plain strings are code cells)."""

    source: str


Cell = str | Markdown
NotebookSpec = Mapping[str, Sequence[Cell]]


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


MakePipeline = Callable[..., Path]


@pytest.fixture
def pipeline_dir(tmp_path: Path) -> MakePipeline:
    """`pipeline_dir({"a.ipynb": [...]}, pipeline_toml=None)`: a pipeline folder under tmp_path."""

    def make(
        notebooks: NotebookSpec, pipeline_toml: str | None = None, *, name: str = "pipe"
    ) -> Path:
        return make_pipeline(tmp_path, notebooks, pipeline_toml, name=name)

    return make
