"""Kernel logs hold what a kernel process writes outside the notebook (a subprocess's output,
writes to the real stderr): secrets are masked before they reach the disk, and a run's folder
and logs are readable by their owner only."""

from __future__ import annotations

import stat

from pipelines.params import MASK
from pipelines.status import RunStatus
from tests.helpers.notebooks import nb
from tests.helpers.runs import files_containing, statuses

SECRET = "kernel-log-s3cr3t-9d41"

LEAKY = (
    "%%block leaky\n"
    "import subprocess, sys\n"
    # A subprocess inherits the kernel's own stdout and stderr: the kernel log.
    "subprocess.run(['sh', '-c', f'echo from a subprocess {api_token} >&2'], check=True)\n"
    "subprocess.run(['echo', 'on stdout', api_token], check=True)\n"
    "sys.__stderr__.write(f'straight to the real stderr {api_token}\\n')\n"
    "sys.__stderr__.flush()\n"
    "done = True"
)


def test_kernel_logs_mask_secrets_and_runs_are_private(pipeline, run) -> None:
    folder = pipeline({"a.ipynb": nb(LEAKY)}, f'[params]\napi_token = "{SECRET}"\n')

    result = run(folder)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert files_containing(result.run_dir, [SECRET]) == []
    [log] = (result.run_dir / "logs").glob("*.kernel.log")
    text = log.read_text(encoding="utf-8")
    # The lines are there, masked: the log still tells what happened.
    assert f"from a subprocess {MASK}" in text, text
    assert f"straight to the real stderr {MASK}" in text, text
    # The folder closes everything inside it to others; the log is closed on its own too.
    for path in (result.run_dir, log):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is readable by others: {oct(mode)}"
