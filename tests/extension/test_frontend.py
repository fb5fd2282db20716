"""The JupyterLab extension as installed: its TypeScript unit tests (node's test runner, real
ELK), the status vocabulary it is built with, and both halves enabled by the install alone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.status import BLOCK_TERMINAL, RUN_TERMINAL, BlockStatus, RunStatus, Trigger

EXTENSION = Path(__file__).resolve().parents[2] / "extension"
BIN = Path(sys.executable).parent


def venv_env() -> dict[str, str]:
    """This interpreter's scripts first on PATH, as in an activated venv: package.json scripts
    call jlpm and python3 by name."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def jupyter(*args: str) -> str:
    done = subprocess.run(
        [str(BIN / "jupyter"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env=venv_env(),
    )
    # Both listings print to stderr; colour codes are dropped for matching.
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)


def test_typescript_unit_tests_pass() -> None:
    jlpm = shutil.which("jlpm", path=str(BIN)) or shutil.which("jlpm")
    assert jlpm, "jlpm comes with jupyterlab (jupyter_builder); reinstall with pip install -e ."
    assert (EXTENSION / "node_modules").is_dir(), "pip install -e . installs the node packages"
    done = subprocess.run(
        [jlpm, "test"],
        cwd=EXTENSION,
        capture_output=True,
        text=True,
        timeout=600,
        env=venv_env(),
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert re.search(r"^# fail 0$", output, re.MULTILINE), output
    assert int(re.search(r"^# pass (\d+)$", output, re.MULTILINE)[1]) >= 8, output


def generated_union(text: str, name: str) -> list[str]:
    match = re.search(rf"export type {name} = (.*);", text)
    assert match, f"{name} missing from the generated file"
    return re.findall(r"'([a-z_]+)'", match[1])


def generated_list(text: str, name: str) -> list[str]:
    match = re.search(rf"export const {name}: .* = \[(.*)\];", text)
    assert match, f"{name} missing from the generated file"
    return re.findall(r"'([a-z_]+)'", match[1])


def test_status_types_are_generated_from_the_python_enum(tmp_path: Path) -> None:
    target = tmp_path / "statuses.ts"
    subprocess.run(
        [sys.executable, str(EXTENSION / "scripts" / "statuses.py"), str(target)], check=True
    )
    text = target.read_text()
    assert generated_union(text, "RunStatus") == [s.value for s in RunStatus]
    assert generated_union(text, "BlockStatus") == [s.value for s in BlockStatus]
    assert generated_union(text, "Trigger") == [t.value for t in Trigger]
    assert set(generated_list(text, "RUN_TERMINAL")) == {s.value for s in RUN_TERMINAL}
    assert set(generated_list(text, "BLOCK_TERMINAL")) == {s.value for s in BLOCK_TERMINAL}


@pytest.mark.parametrize(
    ("listing", "name"),
    [
        (("labextension", "list"), "@blockbook/jupyterlab"),
        (("server", "extension", "list"), "pipelines.server"),
    ],
)
def test_install_enables_both_halves(listing: tuple[str, ...], name: str) -> None:
    text = jupyter(*listing)
    line = next((line for line in text.splitlines() if name in line and "enabled" in line), None)
    assert line is not None, text
    if listing[0] == "labextension":
        assert "OK" in line, text
