"""The status palette: one colour per run, block and test status, drawn the way each surface
needs it (rich styles in the terminal, Mermaid classDefs in diagrams, HTML colours in notebook
views), so a failed block looks failed everywhere.

Kernels import this module (through `kernel_magics.views`): foundation imports only.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.rundir.state import TestOutcome
from pipelines.status import BlockStatus, RunStatus


@dataclass(frozen=True, slots=True)
class Colour:
    """One hue in the forms the surfaces draw it."""

    html: str
    """Strong: badges and text."""
    fill: str
    """Light: the background of a diagram node (the strong colour draws its border)."""
    rich: str
    """The terminal's nearest colour (a rich style)."""


GREEN = Colour("#1a7f37", "#dafbe1", "green")
RED = Colour("#cf222e", "#ffebe9", "red")
BLUE = Colour("#1f6feb", "#ddf4ff", "cyan")
YELLOW = Colour("#bf8700", "#fff8c5", "yellow")
GREY = Colour("#6e7781", "#f6f8fa", "dim")
PURPLE = Colour("#8250df", "#fbefff", "magenta")
TEAL = Colour("#0f766e", "#d5f5f0", "dark_cyan")


@dataclass(frozen=True, slots=True)
class Swatch:
    colour: Colour
    bold: bool = False
    """Failures that need someone: bold in the terminal."""
    dashed: bool = False
    """Blocks that never ran (skipped, upstream failed): a dashed diagram border."""


# Keyed by the status text: a run and a block that both failed (or a failed test) look alike.
_SWATCHES: dict[str, Swatch] = {
    RunStatus.QUEUED: Swatch(GREY),
    BlockStatus.PENDING: Swatch(GREY),
    BlockStatus.RUNNING: Swatch(BLUE),
    BlockStatus.RETRYING: Swatch(YELLOW),
    BlockStatus.SUCCESS: Swatch(GREEN),
    BlockStatus.CACHED: Swatch(TEAL),  # as good as a success, but nothing ran
    BlockStatus.FAILED: Swatch(RED, bold=True),
    RunStatus.CRASHED: Swatch(RED, bold=True),
    BlockStatus.UPSTREAM_FAILED: Swatch(RED, dashed=True),
    BlockStatus.SKIPPED: Swatch(GREY, dashed=True),
    BlockStatus.CANCELLED: Swatch(PURPLE),
    TestOutcome.PASSED: Swatch(GREEN),
    TestOutcome.WARNED: Swatch(YELLOW),  # also a block that succeeded with warned tests
}
_UNKNOWN = Swatch(GREY)


def has_colour(status: str) -> bool:
    return status in _SWATCHES


def swatch(status: str) -> Swatch:
    """The status's swatch; grey for a status the palette doesn't know."""
    return _SWATCHES.get(status, _UNKNOWN)


def rich_style(status: str) -> str:
    """`bold red`, `dim`, ...: for `[style]text[/]` markup."""
    found = swatch(status)
    return f"bold {found.colour.rich}" if found.bold else found.colour.rich


def mermaid_class_def(status: str) -> str:
    """`classDef success fill:#dafbe1,stroke:#1a7f37`: the class Mermaid nodes of that status
    get (the status must be a Mermaid identifier, as every status name is)."""
    found = swatch(status)
    dash = ",stroke-dasharray:4" if found.dashed else ""
    return f"classDef {status} fill:{found.colour.fill},stroke:{found.colour.html}{dash}"


def html_colour(status: str) -> str:
    return swatch(status).colour.html
