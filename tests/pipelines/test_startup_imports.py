"""What Blockbook's own processes import, and what the Jupyter server keeps.

Each check runs in a fresh interpreter: what one test imports must not hide what another's
process would import. Timings are for benchmarks/startup.py, never asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks" / "taxi"

# `python -P -m pipelines ...`, the way a launcher starts a runner, reporting at exit what the
# process had imported and which formats its jsonschema checks.
_AS_A_RUNNER = """
import atexit, json, runpy, sys

def report():
    import jsonschema
    sys.stderr.write(json.dumps({
        "lark": "lark" in sys.modules,
        "rfc3987_syntax": repr(sys.modules.get("rfc3987_syntax", "absent")),
        "iri checked": "iri" in jsonschema.FormatChecker.checkers,
        "nbformat": "nbformat" in sys.modules,
    }) + "\\n")

atexit.register(report)
sys.argv = ["pipelines", *sys.argv[1:]]
runpy.run_module("pipelines", run_name="__main__", alter_sys=True)
"""


def _report(stderr: str) -> dict[str, object]:
    report: dict[str, object] = json.loads(stderr.strip().splitlines()[-1])
    return report


def test_a_blockbook_process_validates_notebooks_without_compiling_the_iri_grammars() -> None:
    result = subprocess.run(
        [sys.executable, "-P", "-c", _AS_A_RUNNER, "validate", str(NOTEBOOKS)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout
    assert _report(result.stderr) == {
        "lark": False,
        "rfc3987_syntax": "None",
        "iri checked": False,
        "nbformat": True,
    }


def test_the_jupyter_server_extension_keeps_jsonschemas_iri_checks() -> None:
    # What jupyter_server imports to load the extension, then what jupyter_events validates with.
    code = (
        "import sys\n"
        "from pipelines.server import _jupyter_server_extension_points\n"
        "_jupyter_server_extension_points()\n"
        "import jsonschema\n"
        "print('iri' in jsonschema.FormatChecker.checkers, 'pipelines.cli' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["True", "False"]


def test_a_runner_imports_no_mail_or_http_client_until_an_alert_is_sent() -> None:
    code = (
        "import sys\n"
        "import pipelines.runs.runner\n"
        "print(sorted(m for m in ('smtplib', 'pipelines.alerts.sending') if m in sys.modules))\n"
        "from pipelines.alerts import dispatch\n"
        "from pipelines.assembly.config import AlertsConfig\n"
        "dispatch.notifier_for(AlertsConfig())\n"
        "print('smtplib' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split("\n")[:2] == ["[]", "True"]
