"""Executed notebooks as the REST API hands them out: a block cell's log as text, and a whole
notebook as a read-only Jupyter contents model for the frontend's `BlockbookRuns` drive.

Executed notebooks live under the project's hidden `.blockbook/`, which Jupyter's contents
manager refuses; docs/server.md says why they are served like this instead of copied.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat

from pipelines.errors import ConflictError, UnavailableError
from pipelines.params import MASK
from pipelines.status import RunStatus

DRIVE = "BlockbookRuns"
"""The frontend's read-only drive of executed notebooks: `BlockbookRuns:RUN_ID/NAME.ipynb`."""
DEBUG_FOLDER = "blockbook-debug"
"""Where debug notebooks go under the server root (visible, unlike `.blockbook/`)."""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def drive_path(run_id: str, notebook: Path) -> str:
    """The contents path of an executed notebook in the `BlockbookRuns` drive."""
    return f"{DRIVE}:{run_id}/{notebook.name}"


def check_masked(run_id: str, status: RunStatus, params: Mapping[str, Any]) -> None:
    """Refuse a running run's notebooks while they may still hold a secret in clear.

    The runner masks secrets in executed notebooks when the run ends; before that, a cell's
    output shows what the code printed. The stored parameters are masked copies, so a masked
    value among them says the run has secrets to hide. A run without any is served live.
    """
    if status.is_terminal or not any(MASK in str(value) for value in params.values()):
        return
    raise ConflictError(
        f"run `{run_id}` is {status} and has secret parameters: its notebooks are shown once it "
        "ended, when the runner has masked the secrets in them",
        hint=f"ask again when GET runs/{run_id} says it ended",
    )


def cell_log(path: Path, cell_index: int) -> str:
    """What a cell printed (stdout and stderr, in order) and its traceback, as plain text."""
    cell = _read(path).cells[cell_index]
    parts: list[str] = []
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            parts.append(_text(output.get("text", "")))
        elif kind == "error":
            lines = output.get("traceback") or [f"{output.get('ename')}: {output.get('evalue')}"]
            parts.append("\n".join(lines) + "\n")
    return _ANSI.sub("", "".join(parts))


def contents_model(path: Path, local_path: str) -> dict[str, Any]:
    """The notebook as Jupyter's contents API gives one (GET /api/contents), not writable: an
    executed notebook is the record of a run."""
    notebook = _read(path)
    stat = path.stat()
    return {
        "name": path.name,
        "path": local_path,
        "type": "notebook",
        "format": "json",
        "mimetype": None,
        "writable": False,
        "created": _iso(stat.st_ctime),
        "last_modified": _iso(stat.st_mtime),
        "size": stat.st_size,
        "content": notebook,
        "hash": None,
        "hash_algorithm": None,
    }


def _read(path: Path) -> Any:
    try:
        return nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    except (OSError, ValueError) as exc:  # nbformat's NotJSONError is a ValueError
        # A running run's notebook is saved while cells run; a read can fall between writes.
        raise UnavailableError(
            f"cannot read the executed notebook {path.name}: {exc}", hint="try again in a moment"
        ) from None


def _text(value: str | list[str]) -> str:
    return value if isinstance(value, str) else "".join(value)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()
