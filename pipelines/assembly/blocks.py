"""Compiling notebook cells into frozen `Block`s: header parsed, body analyzed, no kernel."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.assembly.analysis import BlockAnalysis, analyze
from pipelines.assembly.header import (
    BlockHeader,
    BlockName,
    HeaderErrors,
    is_block_cell,
    parse_header,
    split_block_cell,
)
from pipelines.assembly.mapping import block_inputs
from pipelines.assembly.notebooks import CodeCell, NotebookFile
from pipelines.errors import HeaderError, Location, Problem, ProblemKind, Severity


@dataclass(frozen=True, slots=True)
class Block:
    header: BlockHeader
    notebook: str
    cell: int
    cell_id: str
    source: str
    """The whole cell, header line included, exactly as in the notebook."""
    analysis: BlockAnalysis
    parsed: bool = True
    """False when the body has a syntax error: outputs and inputs are then unknown (empty)."""

    @property
    def name(self) -> BlockName:
        return self.header.name

    @property
    def body(self) -> str:
        return split_block_cell(self.source)[1]

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.header.out if self.header.out is not None else self.analysis.outputs

    @property
    def inputs(self) -> tuple[str, ...]:
        return block_inputs(self.header, self.analysis.inputs)

    @property
    def location(self) -> Location:
        return Location(self.notebook, self.cell, self.cell_id)

    @property
    def sort_key(self) -> tuple[str, int]:
        """Deterministic tie-break for ordering: notebook path, then cell position."""
        return (self.notebook, self.cell)

    def describe(self) -> str:
        return f"`{self.name}` ({self.location})"


def compile_notebook(notebook: NotebookFile) -> tuple[list[Block], list[Problem]]:
    blocks: list[Block] = []
    problems: list[Problem] = []
    for cell in notebook.code_cells:
        if not is_block_cell(cell.source):
            continue
        block, cell_problems = compile_cell(notebook.path, cell)
        problems += cell_problems
        if block is not None:
            blocks.append(block)
    return blocks, problems


def compile_cell(notebook: str, cell: CodeCell) -> tuple[Block | None, list[Problem]]:
    location = Location(notebook, cell.index, cell.cell_id)
    header_line, body = split_block_cell(cell.source)
    try:
        header = parse_header(header_line)
    except HeaderErrors as exc:
        # One problem per mistake, so each carries its own did-you-mean.
        return None, [
            Problem(ProblemKind.BAD_HEADER, issue.message, location, issue.hint)
            for issue in exc.issues
        ]
    except HeaderError as exc:
        return None, [Problem(ProblemKind.BAD_HEADER, exc.message, location, exc.hint)]
    try:
        analysis = analyze(body)
    except SyntaxError as exc:
        line = None if exc.lineno is None else exc.lineno + 1  # the header is line 1
        problem = Problem(
            ProblemKind.SYNTAX_ERROR,
            f"syntax error in block `{header.name}`: {exc.msg}",
            Location(notebook, cell.index, cell.cell_id, line),
            "fix the code; run the cell in JupyterLab to see the error in place",
        )
        empty = BlockAnalysis(outputs=(), inputs=())
        return Block(header, notebook, cell.index, cell.cell_id, cell.source, empty, False), [
            problem
        ]
    problems = [
        Problem(
            ProblemKind.STAR_IMPORT,
            f"`from {module} import *` hides which names block `{header.name}` reads",
            location,
            f"import the names you use explicitly, e.g. `from {module} import name`",
            Severity.WARNING,
        )
        for module in analysis.star_imports
    ]
    return Block(header, notebook, cell.index, cell.cell_id, cell.source, analysis), problems
