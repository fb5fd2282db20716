"""`blockbook logs` and the tests in `blockbook show`: what blocks printed, how their attempts
failed and what their `@test`s said, from a real run of the installed command."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.notebooks import nb
from tests.helpers.runs import blockbook, blockbook_json

SECRET = "s3cr3t-token-value"


@pytest.fixture
def logged_run(project: Path, pipeline) -> tuple[Path, str]:
    """A failed run: `talks` prints (stdout, stderr, a secret) and has tests, `breaks` raises."""
    pipeline(
        {
            "a.ipynb": nb(
                "%%block talks --tests warn\n"
                "import sys\n"
                "print('hello from talks')\n"
                "print('careful on stderr', file=sys.stderr)\n"
                "print('token', api_token)\n"
                "rows = 3\n\n"
                "@test\n"
                "def has_rows(rows):\n"
                "    assert rows > 0\n\n"
                "@test\n"
                "def has_many_rows(rows):\n"
                "    assert rows > 10, f'only {rows} rows'\n",
                "%%block breaks\n"
                "def inner():\n"
                "    raise ValueError('the [connections.warehouse] table is gone')\n"
                "inner()",
            )
        },
        f'[params]\napi_token = "{SECRET}"\n',
        name="noisy",
    )
    ran = blockbook(project, "run", "noisy")
    assert ran.returncode == 1, ran.stdout + ran.stderr
    [listed] = blockbook_json(project, "runs")
    return project, listed["run_id"]


def test_logs_show_output_and_tracebacks_with_secrets_masked(logged_run: tuple[Path, str]) -> None:
    project, run_id = logged_run
    every = blockbook(project, "logs", run_id)
    assert every.returncode == 0, every.stderr
    out = every.stdout
    assert "== talks (success) ==" in out
    assert "hello from talks" in out
    assert "careful on stderr" in out
    assert "== breaks (failed) ==" in out
    assert "-- attempt 1: failed" in out
    assert "Traceback" in out or "inner()" in out
    assert "ValueError: the [connections.warehouse] table is gone" in out
    assert SECRET not in out
    assert "\x1b[" not in out

    one = blockbook(project, "logs", run_id[:-2], "breaks")
    assert one.returncode == 0, one.stderr
    assert "== breaks (failed) ==" in one.stdout
    assert "talks" not in one.stdout

    # One run serves these too: each test starts real kernels.
    for args, message, hint in [
        (["20990101T000000Z-000000"], "no run `20990101T000000Z-000000`", "`blockbook runs`"),
        ([run_id, "nosuch"], "has no block `nosuch`", "its blocks: talks, breaks"),
    ]:
        unknown = blockbook(project, "logs", *args)
        assert unknown.returncode == 1, unknown.stdout + unknown.stderr
        assert message in unknown.stderr
        assert f"hint: {hint}" in unknown.stderr


def test_show_lists_test_outcomes(logged_run: tuple[Path, str]) -> None:
    project, run_id = logged_run
    shown = blockbook(project, "show", run_id)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "tests of talks:" in lines
    assert "  passed  has_rows" in lines
    warned = [line for line in lines if "has_many_rows" in line]
    assert len(warned) == 1, shown.stdout
    assert warned[0].split()[0] == "warned"
    assert "only 3 rows" in warned[0]
