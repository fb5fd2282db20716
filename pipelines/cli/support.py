"""Helpers shared by the command modules: the run store, and PIPELINE arguments."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from pipelines.assembly.pipeline import Pipeline, assemble
from pipelines.assembly.project import PipelineRef, resolve_pipeline
from pipelines.errors import BlockbookError
from pipelines.store.run_store import RunStore

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


@contextlib.contextmanager
def open_store(root: Path) -> Iterator[RunStore]:
    try:
        store = RunStore.open(root)
    except BlockbookError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INVALID)
    try:
        yield store
    finally:
        store.close()


def assemble_argument(root: Path, argument: str) -> Pipeline:
    ref = resolve(root, argument)
    return assemble(ref.folder)


def resolve(root: Path, argument: str) -> PipelineRef:
    try:
        return resolve_pipeline(argument, root)
    except BlockbookError as exc:
        raise click.UsageError(str(exc)) from None


def relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)
