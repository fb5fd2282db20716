"""What handing a big DataFrame from one block to another costs, against raw pyarrow.

A producer process builds a frame of --rows x --columns float64 (10M x 12, about 1 GB, by
default) and stores it; a consumer process loads it back. Blockbook's hand-off is
`ArtifactStore.save` in the producer and `ArtifactStore.load` in the consumer; the baseline is
a raw pyarrow write (`pq.write_table`) and read (`pq.read_table(...).to_pandas()`) of the same
frame. Both run in turns, --repeat times, each step in a fresh process; the table has the
medians, the ratio, and the producer's peak memory while storing (Linux VmHWM, reset once the
frame is built) against the frame's size.

    python benchmarks/handoff.py [--rows 10000000] [--columns 12] [--repeat 3]

Targets (issue 12): hand-off <= 1.2x the raw pyarrow write + read; producer peak memory <= the
frame's size + 10 %.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BLOCK, NAME = "producer", "frame"
MB = 2**20


# -- One step, in its own process (`--step NAME`): prints a JSON line of figures ----------------


def status_bytes(field: str) -> int:
    """VmRSS or VmHWM (peak RSS) of this process, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def reset_peak() -> None:
    """Make VmHWM start again from the current RSS (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def make_frame(rows: int, columns: int) -> Any:
    import numpy as np
    import pandas as pd

    # Built as pandas keeps it (one 2-D block, a row per column), so nothing is copied.
    values = np.random.default_rng(0).random((columns, rows))
    return pd.DataFrame(values.T, columns=[f"c{i}" for i in range(columns)], copy=False)


def produce(tool: str, folder: Path, rows: int, columns: int) -> dict[str, float]:
    import pyarrow as pa
    import pyarrow.parquet as pq  # both import it before the clock starts

    from pipelines.rundir.artifacts import ArtifactStore

    frame = make_frame(rows, columns)
    gc.collect()
    reset_peak()
    holding = status_bytes("VmRSS")
    started = time.perf_counter()
    if tool == "blockbook":
        ArtifactStore(folder).save(BLOCK, NAME, frame, readers=["consumer"])
    else:
        pq.write_table(pa.Table.from_pandas(frame), folder / f"{NAME}.parquet")
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "frame_bytes": int(frame.memory_usage(index=True).sum()),
        "rss_holding_frame": holding,
        "peak": status_bytes("VmHWM"),
    }


def consume(tool: str, folder: Path) -> dict[str, float]:
    import pandas  # noqa: F401  (both import it before the clock starts)
    import pyarrow.parquet as pq

    from pipelines.rundir.artifacts import ArtifactStore

    gc.collect()
    started = time.perf_counter()
    if tool == "blockbook":
        frame = ArtifactStore(folder).load(BLOCK, NAME)
    else:
        frame = pq.read_table(folder / f"{NAME}.parquet").to_pandas()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": len(frame), "peak": status_bytes("VmHWM")}


def run_step(options: argparse.Namespace) -> None:
    tool, role = options.step.split("-")
    folder = Path(options.folder)
    figures = (
        produce(tool, folder, options.rows, options.columns)
        if role == "produce"
        else consume(tool, folder)
    )
    print(json.dumps(figures))


# -- The recipe: producer then consumer, Blockbook and pyarrow in turns --------------------------


def step(name: str, folder: Path, options: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--step", name, "--folder", str(folder)]
    command += ["--rows", str(options.rows), "--columns", str(options.columns)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def hand_off(tool: str, scratch: Path, options: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        produced = step(f"{tool}-produce", Path(folder), options)
        consumed = step(f"{tool}-consume", Path(folder), options)
    assert consumed["rows"] == options.rows, consumed
    return {
        "write": produced["seconds"],
        "read": consumed["seconds"],
        "total": produced["seconds"] + consumed["seconds"],
        "frame_bytes": produced["frame_bytes"],
        "rss_holding_frame": produced["rss_holding_frame"],
        "producer_peak": produced["peak"],
        "consumer_peak": consumed["peak"],
    }


def median(rounds: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def report(results: dict[str, list[dict[str, Any]]], options: argparse.Namespace) -> None:
    from side_by_side import code_under_test

    frame_bytes = results["blockbook"][0]["frame_bytes"]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"handoff.py, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"Blockbook: {code_under_test()}; load average {load}")
    print(
        f"hand-off of a {options.rows:,} x {options.columns} float64 frame "
        f"({frame_bytes / MB:,.0f} MB in memory), median of {options.repeat} rounds in turns, "
        "each step in a fresh process"
    )
    print(
        f"{'':<22}{'write s':>9}{'read s':>9}{'total s':>9}"
        f"{'holding MB':>12}{'prod. peak MB':>15}{'cons. peak MB':>15}"
    )
    labels = {"blockbook": "Blockbook ArtifactStore", "pyarrow": "raw pyarrow"}
    for tool, rounds in results.items():
        print(
            f"{labels[tool]:<22}{median(rounds, 'write'):>9.2f}{median(rounds, 'read'):>9.2f}"
            f"{median(rounds, 'total'):>9.2f}{median(rounds, 'rss_holding_frame') / MB:>12,.0f}"
            f"{median(rounds, 'producer_peak') / MB:>15,.0f}"
            f"{median(rounds, 'consumer_peak') / MB:>15,.0f}"
        )
    ratio = median(results["blockbook"], "total") / median(results["pyarrow"], "total")
    print("issue 12 targets")
    print(f"  hand-off / raw pyarrow write + read                {ratio:.2f}x (target <= 1.2x)")
    for tool, rounds in results.items():
        peak, holding = median(rounds, "producer_peak"), median(rounds, "rss_holding_frame")
        print(
            f"  {labels[tool] + ' producer: peak / holding':<50} "
            f"{peak / holding:.2f}x ({holding / MB:,.0f} -> {peak / MB:,.0f} MB; extra "
            f"{(peak - holding) / frame_bytes:.0%} of the frame)"
        )
    print(
        "  (target: producer peak <= the frame's size + 10 %, i.e. storing adds at most 10 % "
        "of the frame to what holding it takes)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--columns", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3, help="rounds (median)")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.step:
        run_step(options)
        return
    results: dict[str, list[dict[str, Any]]] = {"blockbook": [], "pyarrow": []}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(options.repeat):
            for tool, rounds in results.items():
                rounds.append(hand_off(tool, Path(scratch), options))
    report(results, options)


if __name__ == "__main__":
    main()
