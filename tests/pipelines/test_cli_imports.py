"""The `blockbook` command imports only what a command needs: no rich, papermill, alembic or
pandas before it knows which command runs (timings are for benchmarks/startup.py)."""

from __future__ import annotations

import subprocess
import sys


def test_the_command_line_starts_without_rich_papermill_or_alembic() -> None:
    code = (
        "import sys, pipelines.cli.main\n"
        "print([m for m in ('rich', 'papermill', 'alembic', 'pandas') if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
