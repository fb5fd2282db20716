"""Incremental runs: how long `blockbook run` takes when nothing changed, against a full run.

A copy of the shipped example (`notebooks/taxi`) in a fresh project; one untimed run first so
the store exists. Then, in turns, `blockbook run PIPELINE --force` (every block runs: what a
first run costs) and `blockbook run PIPELINE` (nothing changed: `load` and `clean` are cached,
the exporter runs, as exporters always do). Whole processes, wall time; medians and the ratio.

    python benchmarks/incremental.py [--repeat 5] [--pipeline notebooks/taxi]

Note the load (`uptime`) beside the figures: on 2 busy cores they grow several times.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def project_copy(pipeline: Path, into: Path) -> Path:
    (into / "blockbook.toml").write_text("")
    folder = into / pipeline.name
    shutil.copytree(pipeline, folder, ignore=shutil.ignore_patterns("*.sqlite", ".ipynb_*"))
    return folder


def timed_run(project: Path, folder: Path, *extra: str) -> tuple[float, dict[str, str]]:
    """Seconds for one whole `blockbook run`, and each block's status in that run."""
    command = [sys.executable, "-m", "pipelines", "--project", str(project), "run", str(folder)]
    environment = {**os.environ, "NO_COLOR": "1"}
    environment.pop("BLOCKBOOK_DATABASE_URL", None)  # the embedded SQLite store, as in README
    started = time.perf_counter()
    subprocess.run([*command, *extra], check=True, capture_output=True, env=environment)
    seconds = time.perf_counter() - started
    record = _blockbook_json(project, environment, "runs", "--limit", "1")
    newest = record[0]["run_id"] if isinstance(record, list) else record["runs"][0]["run_id"]
    shown = _blockbook_json(project, environment, "show", newest)
    return seconds, {block["name"]: block["status"] for block in shown["blocks"]}


def _blockbook_json(project: Path, environment: dict[str, str], *command: str) -> Any:
    line = [sys.executable, "-m", "pipelines", "--project", str(project), *command]
    answer = subprocess.run(
        [*line, "--format", "json"], check=True, capture_output=True, env=environment, text=True
    )
    return json.loads(answer.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pipeline", type=Path, default=ROOT / "notebooks" / "taxi")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="blockbook-incremental-") as place:
        project = Path(place)
        folder = project_copy(args.pipeline.resolve(), project)
        timed_run(project, folder)  # the store, the kernelspec lookup, the page cache
        full: list[float] = []
        unchanged: list[float] = []
        statuses: dict[str, str] = {}
        for _ in range(args.repeat):
            full.append(timed_run(project, folder, "--force")[0])
            seconds, statuses = timed_run(project, folder)
            unchanged.append(seconds)
    first, second = statistics.median(full), statistics.median(unchanged)
    print(f"pipeline: {args.pipeline}  rounds: {args.repeat}  load: {os.getloadavg()[0]:.2f}")
    print(f"{'run':<44}{'median s':>10}{'min s':>8}{'max s':>8}")
    print(f"{'every block runs (--force)':<44}{first:>10.2f}{min(full):>8.2f}{max(full):>8.2f}")
    print(
        f"{'nothing changed (cached)':<44}{second:>10.2f}"
        f"{min(unchanged):>8.2f}{max(unchanged):>8.2f}"
    )
    print(f"second / first: {second / first:.2f}")
    print("statuses of the unchanged run: " + ", ".join(f"{k}={v}" for k, v in statuses.items()))


if __name__ == "__main__":
    main()
