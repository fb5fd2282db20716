"""Starting runs in runner processes: the one way a run gets a process of its own.

The scheduler hands it queued runs; `Project.start` (the CLI, `%pipeline run`, the server) hands
it runs it has just queued. Either way the child is `python -P -m pipelines run ... --run-id ID`,
which adopts the queued run, takes its parameters from it (secrets sealed, `store/sealed.py`) and
records everything else itself. No parameter is ever on a runner's command line: any local user
can read command lines (`ps`).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.choices import RunChoices
from pipelines.rundir.layout import launch_log

if TYPE_CHECKING:
    from pipelines.store.records import RunRecord


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    run_id: str
    pipeline_path: str
    choices: RunChoices = RunChoices()
    detached: bool = False
    """Its own session, outliving the process that started it: a run started from a notebook
    must not stop when the kernel is interrupted or restarted. Otherwise the runner dies with
    its parent (a killed scheduler leaves its runs for the next one to mark crashed, instead of
    runners nobody watches)."""


class SubprocessLauncher:
    def __init__(self, root: Path) -> None:
        self.root = root

    def start(self, run: RunRecord) -> subprocess.Popen[bytes]:
        """Start a queued run as the scheduler does."""
        return self.launch(LaunchRequest(run.run_id, run.pipeline_path))

    def launch(self, request: LaunchRequest) -> subprocess.Popen[bytes]:
        log_path = launch_log(self.root, request.run_id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as stream:
            return subprocess.Popen(
                _command(self.root, request),
                stdout=stream,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                env={**os.environ, "NO_COLOR": "1"},
                start_new_session=request.detached,
                preexec_fn=None if request.detached else _die_with_parent,
            )


def _command(root: Path, request: LaunchRequest) -> list[str]:
    """The runner's command line: parameters are not on it, the runner reads them from the
    queued run. `-P` keeps the working folder (the project) off `sys.path`, so a project's own
    `pipelines/` package cannot stand in for Blockbook's."""
    command = [sys.executable, "-P", "-m", "pipelines", "--project", str(root), "run"]
    command += [request.pipeline_path, "--run-id", request.run_id]
    return command + request.choices.arguments()


def _die_with_parent() -> None:
    """Linux: the runner gets SIGKILL when its parent process dies, however it dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: runners outlive a killed parent and finish on their own
