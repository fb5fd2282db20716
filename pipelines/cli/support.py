"""Helpers shared by the command modules: turning Blockbook errors into exits, signals."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import click

from pipelines.api import Project
from pipelines.assembly.pipeline import Pipeline
from pipelines.assembly.project import PipelineRef
from pipelines.errors import BlockbookError, ErrorKind

EXIT_INVALID = 1


@contextlib.contextmanager
def stop_on_signals(first: Callable[[], None], message: str) -> Iterator[None]:
    """The first Ctrl-C or SIGTERM calls `first` (a clean stop) after printing `message`; a
    second one raises KeyboardInterrupt to stop at once."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    requests = 0

    def handle(signum: int, frame: object) -> None:
        nonlocal requests
        requests += 1
        if requests > 1:
            raise KeyboardInterrupt
        click.echo(message, err=True)
        first()

    for sig in previous:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


USER_ERROR_KINDS = frozenset(
    {ErrorKind.INVALID, ErrorKind.NOT_FOUND, ErrorKind.AMBIGUOUS, ErrorKind.CONFLICT}
)
"""Errors that answer what the user typed (a bad option, an unknown name, a run id taken)."""


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
    """Blockbook errors of what the user typed become click usage errors (exit 2); the others
    (the run store down, an internal error) print `error: ...` and exit 1, since retyping the
    command the same way is the fix, not changing it."""
    try:
        yield
    except BlockbookError as exc:
        if exc.kind not in USER_ERROR_KINDS:
            fail(exc)
        raise click.UsageError(str(exc)) from None


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Errors of the run store (down, misconfigured) print `error: ...` and exit 1."""
    try:
        yield
    except BlockbookError as exc:
        fail(exc)


def fail(exc: BlockbookError) -> NoReturn:
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_INVALID)


def resolve(project: Project, argument: str) -> PipelineRef:
    with usage_errors():
        return project.resolve(argument)


def assemble_argument(project: Project, argument: str) -> Pipeline:
    with usage_errors():
        return project.assemble(argument)


def relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)
