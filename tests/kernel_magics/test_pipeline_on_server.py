"""`%pipeline run` in a kernel of a Jupyter server that serves the project: the server runs it,
on its warm kernels, instead of a runner process the kernel would start.

A real `jupyter server` process with Blockbook's extension, a kernel it started (as JupyterLab
asks for one), and the magic executed in that kernel.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient

from kernel_magics.server_link import ServerLink, server_of
from pipelines.api import Project
from pipelines.status import RunStatus
from pipelines.store.run_store import DATABASE_URL_ENV
from tests.helpers.notebooks import make_pipeline, nb
from tests.helpers.runs import assert_no_kernels, blockbook_json, wait_for

DEADLINE = 180.0


@dataclass
class Server:
    url: str
    token: str
    process: subprocess.Popen[bytes]
    runtime: Path

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read())


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    root = tmp_path / "project"
    root.mkdir()
    (root / "blockbook.toml").touch()
    make_pipeline(
        root,
        {
            "a.ipynb": nb("%%block load\nimport pandas as pd\nframe = pd.DataFrame({'x': [1, 2]})"),
            "b.ipynb": nb("%%block total --upstream load\ntotal = int(frame.x.sum())"),
        },
        '[params]\nlabel = "sum"\n',
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = secrets.token_hex(16)
    runtime = tmp_path / "runtime"
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_server",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--BlockbookExtension.warm_kernels=2",
        ],
        cwd=root,
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    started = Server(f"http://127.0.0.1:{port}", token, process, runtime)
    try:
        wait_for(lambda: _answers(started), DEADLINE, "the Jupyter server to answer")
        yield started
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _answers(server: Server) -> bool:
    assert server.process.poll() is None, "the Jupyter server exited"
    try:
        server.call("GET", "/blockbook/api/pipelines")
    except OSError:
        return False
    return True


def test_pipeline_run_in_a_servers_kernel_runs_in_the_server(server: Server) -> None:
    kernel = server.call("POST", "/api/kernels", {"name": "python3", "path": "pipe"})
    client = BlockingKernelClient()
    client.load_connection_file(server.runtime / f"kernel-{kernel['id']}.json")
    client.start_channels()
    try:
        client.wait_for_ready(timeout=DEADLINE)
        said: list[str] = []

        def keep(message: dict[str, Any]) -> None:
            if message["msg_type"] == "stream":
                said.append(message["content"]["text"])
            elif message["msg_type"] == "error":
                said.append("\n".join(message["content"]["traceback"]))

        code = "%load_ext kernel_magics\n%pipeline run -p label=total\n%pipeline wait"
        reply = client.execute_interactive(code, timeout=DEADLINE, output_hook=keep)
    finally:
        client.stop_channels()

    assert reply["content"]["status"] == "ok", "".join(said)
    with Project(server.runtime.parent / "project") as project:
        [run] = project.runs("pipe", limit=5)
    assert run.status is RunStatus.SUCCESS, run.error
    assert run.params["label"] == "total"
    assert run.runner is not None
    assert run.runner.pid == server.process.pid, "a runner process ran it, not the server"


def test_a_server_of_another_folder_or_without_a_token_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("JPY_PARENT_PID", "4242")
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    info = {"url": "http://127.0.0.1:1/", "token": "t0k", "root_dir": str(project)}

    def served(**changes: str) -> ServerLink | None:
        (runtime / "jpserver-4242.json").write_text(json.dumps({**info, **changes}))
        return server_of(project)

    assert served() == ServerLink("http://127.0.0.1:1/", "t0k")
    assert served(root_dir=str(elsewhere)) is None
    assert served(token="") is None
    monkeypatch.setenv("JPY_PARENT_PID", "4243")  # a kernel of a process that is no server
    assert server_of(project) is None


def test_a_warm_run_of_a_server_killed_by_sigkill_shows_crashed_and_leaves_no_kernel(
    server: Server,
) -> None:
    root = server.runtime.parent / "project"
    slow = make_pipeline(
        root,
        {"a.ipynb": nb("%%block slow\nimport time\nfor _ in range(600):\n    time.sleep(0.5)")},
        name="slow",
    )
    run_id = server.call("POST", "/blockbook/api/pipelines/slow/runs", {})["run_id"]

    def slow_running() -> bool:
        blocks = server.call("GET", f"/blockbook/api/runs/{run_id}")["blocks"]
        return any(b["name"] == "slow" and b["status"] == "running" for b in blocks)

    wait_for(slow_running, DEADLINE, "block `slow` to run on a warm kernel")
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(30)

    # No scheduler runs: `blockbook runs` finds the runner (the server) gone on this host.
    [listed] = [r for r in blockbook_json(root, "runs") if r["run_id"] == run_id]
    assert listed["status"] == "crashed", listed
    # The warm kernels see their parent die and exit (ipykernel watches JPY_PARENT_PID).
    assert_no_kernels(slow, within=30)
