"""The Jupyter server a kernel belongs to, when that server serves the kernel's project:
`%pipeline run` hands the run to it, so the run executes on the server's warm kernels
(`pipelines.runs.pool`) instead of in a runner process started from the kernel.

A kernel knows its server by its parent: jupyter_client gives kernels `JPY_PARENT_PID`, and a
running server describes itself (url, token, root folder) in `jpserver-PID.json` in Jupyter's
runtime folder. Only the standard library talks to it: a kernel must not pay for more.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)

PARENT_PID_ENV = "JPY_PARENT_PID"
REQUEST_TIMEOUT_SECONDS = 30.0


class ServerRefused(Exception):
    """The server answered the run request with an error of Blockbook's: its message and hint."""

    def __init__(self, message: str, hint: str | None) -> None:
        super().__init__(message + (f" ({hint})" if hint else ""))
        self.message = message
        self.hint = hint


@dataclass(frozen=True, slots=True)
class ServerLink:
    url: str
    token: str

    def start_run(self, pipeline_path: str, params: Mapping[str, Any]) -> str:
        """Start a run of the pipeline at `pipeline_path` (relative to the server's root) and
        return its id. Raises ServerRefused for an error of Blockbook's, OSError when the
        server cannot be reached."""
        name = quote(pipeline_path, safe="")
        address = f"{self.url.rstrip('/')}/blockbook/api/pipelines/{name}/runs"
        request = urllib.request.Request(
            address,
            method="POST",
            data=json.dumps({"params": dict(params)}).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as reply:
                return str(json.loads(reply.read())["run_id"])
        except urllib.error.HTTPError as exc:
            body = _json_or_none(exc.read())
            if isinstance(body, dict) and "message" in body:
                raise ServerRefused(str(body["message"]), body.get("hint")) from None
            raise


def server_of(root: Path) -> ServerLink | None:
    """The server that started this kernel, if it serves `root` and can be called with a token;
    None otherwise (a kernel of `blockbook run`, of another tool, or of a server elsewhere)."""
    parent = os.environ.get(PARENT_PID_ENV)
    if not parent or not parent.isdigit():
        return None
    from jupyter_core.paths import jupyter_runtime_dir

    info_file = Path(jupyter_runtime_dir()) / f"jpserver-{parent}.json"
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # not started by a server, or the server is gone
    served = info.get("root_dir")
    if not served or not info.get("token") or not info.get("url"):
        return None
    if Path(served).resolve() != root.resolve():
        return None
    return ServerLink(str(info["url"]), str(info["token"]))


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
