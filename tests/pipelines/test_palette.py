"""The status palette: every status has one colour, drawn alike in the terminal, diagrams and
notebook views."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipelines.forms import palette
from pipelines.rundir.state import TestOutcome as Outcome  # not `Test*` at module level
from pipelines.status import BlockStatus, RunStatus

EVERY_STATUS = [*RunStatus, *BlockStatus, *Outcome]


@pytest.mark.parametrize("status", EVERY_STATUS, ids=str)
def test_every_status_has_a_colour(status: str) -> None:
    assert palette.has_colour(status)


def test_terminal_styles() -> None:
    assert {status: palette.rich_style(status) for status in [*BlockStatus, *RunStatus]} == {
        "pending": "dim",
        "running": "cyan",
        "retrying": "yellow",
        "success": "green",
        "failed": "bold red",
        "upstream_failed": "red",
        "skipped": "dim",
        "cancelled": "magenta",
        "cached": "dark_cyan",
        "queued": "dim",
        "crashed": "bold red",
    }


def test_mermaid_class_defs() -> None:
    assert palette.mermaid_class_def(BlockStatus.SUCCESS) == (
        "classDef success fill:#dafbe1,stroke:#1a7f37"
    )
    assert palette.mermaid_class_def(BlockStatus.SKIPPED) == (
        "classDef skipped fill:#f6f8fa,stroke:#6e7781,stroke-dasharray:4"
    )
    assert palette.mermaid_class_def(BlockStatus.UPSTREAM_FAILED).endswith(
        "stroke:#cf222e,stroke-dasharray:4"
    )


def test_html_colours_and_the_fallback() -> None:
    assert palette.html_colour(BlockStatus.SUCCESS) == "#1a7f37"
    assert palette.html_colour(Outcome.PASSED) == "#1a7f37"
    assert palette.html_colour(BlockStatus.FAILED) == palette.html_colour(RunStatus.CRASHED)
    assert palette.html_colour(Outcome.WARNED) == palette.html_colour(BlockStatus.RETRYING)
    assert palette.html_colour("warned") == "#bf8700", "a block with warned tests"
    assert not palette.has_colour("no_such_status")
    assert palette.html_colour("no_such_status") == palette.html_colour(BlockStatus.PENDING)


def test_kernels_can_import_it_cheaply() -> None:
    """`kernel_magics.views` imports the palette in every kernel: no rich, pydantic, store."""
    code = (
        "import sys, pipelines.forms.palette\n"
        "heavy = [m for m in ('rich', 'pydantic', 'sqlalchemy', 'pipelines.store') "
        "if m in sys.modules]\n"
        "print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
