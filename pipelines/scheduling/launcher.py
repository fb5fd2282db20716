"""Starting runs in runner processes: what the scheduler hands queued runs to."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipelines.assembly.project import STATE_DIR
from pipelines.params import MASK
from pipelines.store.records import RunRecord

LAUNCH_DIR = "launch"


class SubprocessLauncher:
    """Runs each run in its own `python -m pipelines run` process, which dies with the
    scheduler (so a killed scheduler leaves runs for the next one to mark crashed, instead of
    runners nobody watches)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def start(self, run: RunRecord) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "pipelines", "--project", str(self.root), "run"]
        command += [run.pipeline_path, "--run-id", run.run_id]
        for name, value in run.params.items():
            if value != MASK:  # secrets are not kept with a queued run
                command += ["-p", f"{name}={_param_text(value)}"]
        log_path = self.root / STATE_DIR / LAUNCH_DIR / f"{run.run_id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as stream:
            return subprocess.Popen(
                command,
                stdout=stream,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                env={**os.environ, "NO_COLOR": "1"},
                preexec_fn=_die_with_parent,
            )


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _die_with_parent() -> None:
    """Linux: the runner gets SIGKILL when the scheduler process dies, however it dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: runners outlive a killed scheduler and finish on their own
