"""A run's audit trail: who started it (user, host, trigger), with which code (each notebook's
and each block's code hash) and which Blockbook, kept in `runs.audit`.

Who started a run is known where it is queued (`Project.start`, a trigger); which code ran is
known where it runs: a runner that adopts a queued run keeps the first and records the second
(`adopted`), since notebooks may be edited between the two.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pipelines import __version__
from pipelines.assembly.code_hash import block_code_hash, notebook_code_hash
from pipelines.status import Trigger

if TYPE_CHECKING:
    from pipelines.assembly.pipeline import Pipeline


@dataclass(frozen=True, slots=True)
class StartedBy:
    user: str
    host: str
    trigger: Trigger

    @classmethod
    def here(cls, trigger: Trigger) -> StartedBy:
        """The user and host of this process."""
        return cls(current_user(), socket.gethostname(), Trigger(trigger))

    def __str__(self) -> str:
        return f"{self.user}@{self.host} ({self.trigger})"


@dataclass(frozen=True, slots=True)
class RunAudit:
    started_by: StartedBy
    blockbook_version: str
    notebooks: Mapping[str, str] = field(default_factory=dict)
    """Notebook path (relative to the pipeline folder) -> sha256 of its code cells, normalised
    (`assembly.code_hash.notebook_code_hash`)."""
    blocks: Mapping[str, str] = field(default_factory=dict)
    """Block -> sha256 of its cell, header included (`assembly.code_hash.block_code_hash`)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "started_by": {
                "user": self.started_by.user,
                "host": self.started_by.host,
                "trigger": str(self.started_by.trigger),
            },
            "blockbook_version": self.blockbook_version,
            "notebooks": dict(self.notebooks),
            "blocks": dict(self.blocks),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunAudit:
        who = data["started_by"]
        return cls(
            started_by=StartedBy(str(who["user"]), str(who["host"]), Trigger(who["trigger"])),
            blockbook_version=str(data["blockbook_version"]),
            notebooks={str(k): str(v) for k, v in data.get("notebooks", {}).items()},
            blocks={str(k): str(v) for k, v in data.get("blocks", {}).items()},
        )


def run_audit(pipeline: Pipeline, started_by: StartedBy) -> RunAudit:
    """The audit of a run of `pipeline` as assembled now, started by `started_by`."""
    return RunAudit(
        started_by=started_by,
        blockbook_version=__version__,
        notebooks={
            notebook.path: notebook_code_hash(cell.source for cell in notebook.code_cells)
            for notebook in sorted(pipeline.notebooks, key=lambda n: n.path)
        },
        blocks={name: block_code_hash(block.source) for name, block in pipeline.blocks.items()},
    )


def adopted(queued: RunAudit | None, running: RunAudit) -> RunAudit:
    """The audit of a queued run once a runner adopts it: who started it as queued, the code
    and Blockbook that run it."""
    if queued is None:
        return running
    return replace(running, started_by=queued.started_by)


def current_user() -> str:
    """The login name of this process, or its uid where the system has no name for it (a
    container started with an arbitrary uid)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # KeyError before Python 3.13, OSError since
        return f"uid {os.getuid()}"
