"""`blockbook cancel`: stop a run from any terminal, whichever process (a scheduler's runner,
another shell, the server) is running it."""

from __future__ import annotations

import getpass
import socket
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from pipelines.api import Project
from pipelines.cli.support import store_errors
from pipelines.status import RunStatus

if TYPE_CHECKING:
    from pipelines.store.records import RunRecord


@click.command()
@click.argument("run_id")
@click.pass_obj
def cancel(project: Project, run_id: str) -> None:
    """Cancel run RUN_ID (a unique prefix will do): a queued run ends at once, a running one
    stops within a few seconds. Exit 1 when the run is unknown or has already ended."""
    at = datetime.now(UTC)
    with store_errors():
        record = project.cancel(run_id, requester(), at)
    click.echo(outcome(record, at))


def requester() -> str:
    """Who is asking, for the run's record: `user@host`, or `cli` where there is no user name
    (a container whose uid has no passwd entry)."""
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (OSError, KeyError):
        return "cli"


def outcome(record: RunRecord, asked_at: datetime) -> str:
    """What the request asked at `asked_at` did to the run, as `request_cancel` returned it."""
    if record.status is RunStatus.CANCELLED:
        return f"run {record.run_id} was queued: cancelled"
    stops = "it stops within a few seconds"
    if record.cancel_requested_at != asked_at and record.cancel_requested_at is not None:
        when = record.cancel_requested_at.isoformat(timespec="seconds")
        return (
            f"cancel of run {record.run_id} was already requested by "
            f"{record.cancel_requested_by} at {when}; {stops}"
        )
    return f"cancel requested for run {record.run_id} ({record.status}); {stops}"
