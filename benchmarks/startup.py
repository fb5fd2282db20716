"""How long the `blockbook` command takes to start, against a bare interpreter.

Runs `python -c pass`, then `blockbook --version`, `list`, `validate PIPELINE` and
`graph PIPELINE` (on the shipped `notebooks/taxi`) N times each through `python -m pipelines`,
and prints each one's median wall time and its ratio to the bare interpreter in one table.

    python benchmarks/startup.py [--repeat 9] [--pipeline notebooks/taxi]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def commands(pipeline: str) -> dict[str, list[str]]:
    blockbook = [sys.executable, "-m", "pipelines", "--project", str(ROOT)]
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "blockbook --version": [*blockbook, "--version"],
        "blockbook list": [*blockbook, "list"],
        f"blockbook validate {pipeline}": [*blockbook, "validate", pipeline],
        f"blockbook graph {pipeline}": [*blockbook, "graph", pipeline],
    }


def median_seconds(command: list[str], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="runs of each command (median)")
    parser.add_argument("--pipeline", default="notebooks/taxi")
    args = parser.parse_args()
    figures = {
        name: median_seconds(command, args.repeat)
        for name, command in commands(args.pipeline).items()
    }
    baseline = figures["python -c pass"]
    width = max(len(name) for name in figures)
    print(f"{'command':<{width}}  {'median s':>8}  {'x python':>8}   ({args.repeat} runs each)")
    for name, seconds in figures.items():
        print(f"{name:<{width}}  {seconds:>8.3f}  {seconds / baseline:>8.1f}")


if __name__ == "__main__":
    main()
