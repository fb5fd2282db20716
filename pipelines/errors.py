"""Diagnostics and the package's root exception.

Validation collects `Problem`s instead of raising, so one pass reports everything wrong with a
pipeline. Exceptions are for conditions a caller cannot continue past (no such pipeline folder).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


class ProblemKind(enum.StrEnum):
    """What went wrong; stable strings for JSON output and tests."""

    BAD_HEADER = "bad_header"
    BAD_NOTEBOOK = "bad_notebook"
    BAD_CONFIG = "bad_config"
    SYNTAX_ERROR = "syntax_error"
    DUPLICATE_BLOCK = "duplicate_block"
    UNKNOWN_UPSTREAM = "unknown_upstream"
    AMBIGUOUS_PRODUCER = "ambiguous_producer"
    CYCLE = "cycle"
    STAR_IMPORT = "star_import"
    READS_LATER_OUTPUT = "reads_later_output"
    EMPTY_PIPELINE = "empty_pipeline"
    UNPROVIDED_NAME = "unprovided_name"


@dataclass(frozen=True, slots=True)
class Location:
    """Where a problem is: a notebook (relative to the pipeline folder) and optionally a cell.

    `cell` is the 1-based position of the cell in the notebook, the number people count to;
    `cell_id` is nbformat's stable id.
    """

    notebook: str
    cell: int | None = None
    cell_id: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        text = self.notebook
        if self.cell is not None:
            text += f":cell {self.cell}"
        if self.line is not None:
            text += f":line {self.line}"
        return text


@dataclass(frozen=True, slots=True)
class Problem:
    kind: ProblemKind
    message: str
    location: Location
    hint: str = ""
    severity: Severity = Severity.ERROR

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def format(self) -> str:
        text = f"{self.location}: {self.message}"
        if self.severity is Severity.WARNING:
            text = f"{self.location}: warning: {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text

    def to_json(self) -> dict[str, object]:
        return {
            "kind": str(self.kind),
            "severity": str(self.severity),
            "message": self.message,
            "hint": self.hint,
            "notebook": self.location.notebook,
            "cell": self.location.cell,
            "cell_id": self.location.cell_id,
            "line": self.location.line,
        }


class ErrorKind(enum.StrEnum):
    """What kind of condition an error reports; each maps to one HTTP status in the server."""

    NOT_FOUND = "not_found"
    AMBIGUOUS = "ambiguous"
    CONFLICT = "conflict"
    INVALID = "invalid"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class BlockbookError(Exception):
    """Root of every exception Blockbook raises on purpose.

    Carries a `hint` that says how to fix the condition; the message and hint survive pickling
    because both travel through `args`. `kind` says which of the kinds below it is.
    """

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message, hint)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message

    def to_json(self) -> dict[str, str]:
        return {"message": self.message, "hint": self.hint, "kind": str(self.kind)}


class NotFoundError(BlockbookError):
    """No such pipeline, run, block or output."""

    kind = ErrorKind.NOT_FOUND


class AmbiguousError(BlockbookError):
    """A name or run-id prefix that matches more than one thing."""

    kind = ErrorKind.AMBIGUOUS


class ConflictError(BlockbookError):
    """The request contradicts the current state: cancelling a finished run, a run id taken."""

    kind = ErrorKind.CONFLICT


class InvalidInputError(BlockbookError):
    """Bad input from the caller: a bad header, parameter, option or an invalid pipeline."""

    kind = ErrorKind.INVALID


class UnavailableError(BlockbookError):
    """Something Blockbook needs is not reachable right now: the run store's database."""

    kind = ErrorKind.UNAVAILABLE


class HeaderError(InvalidInputError):
    """A `%%block` header that cannot be parsed."""


class ProjectError(BlockbookError):
    """A pipeline or project that cannot be found or read at all."""


class PipelineNotFound(ProjectError, NotFoundError):
    """No pipeline folder or pipeline of that name under the project root."""


class AmbiguousPipeline(ProjectError, AmbiguousError):
    """Several pipelines share the name asked for."""
