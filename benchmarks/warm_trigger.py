"""Trigger a run through a running Jupyter server's Blockbook REST API and wait for it to end,
as a user's script (or curl) would: the whole process is what `side_by_side.py` times for
"Blockbook warm". Standard library only, so the client costs what a Python start costs.

    python benchmarks/warm_trigger.py BASE_URL TOKEN PIPELINE

Exits 0 when the run succeeded, 1 with the run's record otherwise.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from typing import Any

POLL_SECONDS = 0.01
DEADLINE_SECONDS = 300.0
TERMINAL = {"success", "failed", "cancelled", "crashed"}


def call(base: str, token: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"{base.rstrip('/')}/blockbook/api/{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as reply:
        return json.loads(reply.read())


def main() -> int:
    base, token, pipeline = sys.argv[1:4]
    # force: every trigger runs every block, as `blockbook run --force` does.
    run_id = call(base, token, "POST", f"pipelines/{pipeline}/runs", {"force": True})["run_id"]
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        record = call(base, token, "GET", f"runs/{run_id}")
        if record["status"] in TERMINAL:
            if record["status"] == "success":
                return 0
            sys.stderr.write(json.dumps(record, indent=2) + "\n")
            return 1
        time.sleep(POLL_SECONDS)
    sys.stderr.write(f"run {run_id} did not end in {DEADLINE_SECONDS:g} s\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
