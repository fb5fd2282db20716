"""How long Blockbook's processes take to start, against a bare interpreter.

Three parts, each a whole process or more:

1. Light commands: `python -c pass`, then `blockbook --version`, `list`, `validate PIPELINE` and
   `graph PIPELINE` N times each through `python -m pipelines`; each one's median wall time and
   its ratio to the bare interpreter.
2. `blockbook run PIPELINE` (a copy of the shipped `notebooks/taxi` in a fresh project, one
   untimed run first so the store exists): the median wall time of whole runs; how long the
   runner takes to start its first kernel (wall time since the process was spawned, and the
   runner's own CPU time, which other load on the machine changes less); how long it takes to
   exit once it printed its summary. Then, from one run under `-X importtime`, the modules
   imported before that first kernel starts: their count, their summed import time and the ten
   that cost most (cumulative, top-level imports).
3. A kernel's `%load_ext kernel_magics` (in a fresh interpreter with IPython already imported,
   as in a kernel that has just started).

    python benchmarks/startup.py [--repeat 9] [--run-repeat 5] [--pipeline notebooks/taxi]
        [--version before=/tmp/before --version after=/tmp/after]

`--version`s compare commits in turns: `git archive COMMIT pipelines kernel_magics | tar -x -C
/tmp/before` exports one (the light commands and the kernel figure use the installed one).

Note the load (`uptime`) beside the figures: on 2 busy cores they grow several times.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "blockbook-startup:"

# Runs `python -P -m pipelines run PIPELINE`, as a launcher does, and says when the runner first
# starts a kernel: wall clock (to compare with the spawn time) and the runner's own CPU time.
_RUNNER = f"""
import json, os, sys, time

def _first_kernel(event, args):
    if event == "subprocess.Popen" and "ipykernel" in " ".join(map(str, args[1])):
        if not _first_kernel.seen:
            _first_kernel.seen = True
            figures = {{"wall": time.time(), "cpu": time.process_time()}}
            sys.stderr.write("{MARK}" + json.dumps(figures) + "\\n")
            sys.stderr.flush()

_first_kernel.seen = False
sys.addaudithook(_first_kernel)
sys.argv = ["pipelines", *sys.argv[1:]]
import runpy
runpy.run_module("pipelines", run_name="__main__", alter_sys=True)
"""

_LOAD_EXT = """
import time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
started = time.perf_counter()
shell.run_line_magic("load_ext", "kernel_magics")
print(time.perf_counter() - started)
"""

_IMPORT_LINE = re.compile(r"import time:\s+(-?\d+) \|\s+(\d+) \| ( *)(\S+)")


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


def light_commands(pipeline: str, repeat: int) -> None:
    figures = {
        name: median_seconds(command, repeat) for name, command in commands(pipeline).items()
    }
    baseline = figures["python -c pass"]
    width = max(len(name) for name in figures)
    print(f"{'command':<{width}}  {'median s':>8}  {'x python':>8}   ({repeat} runs each)")
    for name, seconds in figures.items():
        print(f"{name:<{width}}  {seconds:>8.3f}  {seconds / baseline:>8.1f}")


# ---- blockbook run ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunTiming:
    wall: float
    """The whole process, spawn to exit."""
    first_kernel_wall: float
    """Spawn to the first kernel's start."""
    first_kernel_cpu: float
    """The runner's CPU time when it starts its first kernel."""
    exit_after_output: float
    """The run's last line of output (its summary) to the process's exit."""


def project_copy(pipeline: Path, into: Path) -> Path:
    """A project of its own holding a copy of the pipeline: its runs and store stay out of the
    checkout, and every version of Blockbook measured starts from the same store."""
    (into / "blockbook.toml").write_text("")
    folder = into / pipeline.name
    shutil.copytree(pipeline, folder, ignore=shutil.ignore_patterns("*.sqlite", ".ipynb_*"))
    return folder


def runner_command(project: Path, folder: Path, *, importtime: bool = False) -> list[str]:
    flags = ["-X", "importtime"] if importtime else []
    run = ["--project", str(project), "run", str(folder)]
    return [sys.executable, *flags, "-P", "-c", _RUNNER, *run]


def timed_run(project: Path, folder: Path) -> RunTiming:
    with tempfile.TemporaryFile("w+") as stderr:
        spawned = time.time()
        started = time.perf_counter()
        process = subprocess.Popen(
            runner_command(project, folder),
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        assert process.stdout is not None
        last_output = started
        for _ in process.stdout:
            last_output = time.perf_counter()
        returncode = process.wait()
        ended = time.perf_counter()
        stderr.seek(0)
        errors = stderr.read()
    if returncode != 0:
        raise SystemExit(f"blockbook run failed ({returncode}):\n{errors[-2000:]}")
    figures = json.loads(_marked(errors)[0])
    return RunTiming(
        ended - started, figures["wall"] - spawned, figures["cpu"], ended - last_output
    )


def _marked(stderr: str) -> list[str]:
    return [line[len(MARK) :] for line in stderr.splitlines() if line.startswith(MARK)]


@dataclass(frozen=True, slots=True)
class ImportFigures:
    modules: int
    seconds: float
    """Summed self time of every module imported before the first kernel started."""
    costliest: list[tuple[str, float]]
    """Top-level imports (not imported by another module) by cumulative time."""


def imports_before_first_kernel(project: Path, folder: Path) -> ImportFigures:
    command = runner_command(project, folder, importtime=True)
    result = subprocess.run(command, cwd=project, capture_output=True, text=True, check=True)
    before: list[tuple[int, int, int, str]] = []
    for line in result.stderr.splitlines():
        if line.startswith(MARK):
            break
        match = _IMPORT_LINE.match(line)
        if match:
            own, cumulative, indent, name = match.groups()
            before.append((int(own), int(cumulative), len(indent) // 2, name))
    top = sorted((row for row in before if row[2] == 0), key=lambda row: -row[1])
    return ImportFigures(
        modules=len(before),
        seconds=sum(max(own, 0) for own, _, _, _ in before) / 1e6,
        costliest=[(name, cumulative / 1e6) for _, cumulative, _, name in top[:10]],
    )


def blockbook_run(pipeline: Path, repeat: int, versions: dict[str, str | None]) -> None:
    """Time `blockbook run` of each version (name -> folder put first on PYTHONPATH, None for
    the installed one) in turns, each in a project of its own."""
    timings: dict[str, list[RunTiming]] = {name: [] for name in versions}
    imports: dict[str, ImportFigures] = {}
    with tempfile.TemporaryDirectory(prefix="blockbook-startup-") as temporary:
        places: dict[str, tuple[Path, Path]] = {}
        for name in versions:
            project = Path(temporary) / f"project-{len(places)}"
            project.mkdir()
            places[name] = (project, project_copy(pipeline, project))
            with _version(versions[name]):
                timed_run(*places[name])  # creates the store: not what a run usually pays
        for turn in range(repeat):
            order = list(versions) if turn % 2 == 0 else list(reversed(list(versions)))
            for name in order:
                with _version(versions[name]):
                    timings[name].append(timed_run(*places[name]))
        for name in versions:
            with _version(versions[name]):
                imports[name] = imports_before_first_kernel(*places[name])
    for name in versions:
        where = f" ({versions[name]})" if versions[name] else ""
        print(f"\nblockbook run {pipeline.name}, {name}{where}: {repeat} runs, medians")
        _print_run_figures(timings[name], imports[name])


def _print_run_figures(timings: list[RunTiming], imports: ImportFigures) -> None:
    rows = {
        "whole run, wall s": [t.wall for t in timings],
        "to first kernel start, wall s": [t.first_kernel_wall for t in timings],
        "to first kernel start, runner CPU s": [t.first_kernel_cpu for t in timings],
        "summary printed to exit, wall s": [t.exit_after_output for t in timings],
    }
    width = max(len(name) for name in rows)
    for name, values in rows.items():
        spread = " ".join(f"{value:.2f}" for value in values)
        print(f"{name:<{width}}  {statistics.median(values):>6.3f}   ({spread})")
    print(
        f"imported before the first kernel starts (one run, -X importtime): {imports.modules} "
        f"modules, {imports.seconds:.3f} s; costliest top-level imports (cumulative s):"
    )
    for name, seconds in imports.costliest:
        print(f"  {seconds:6.3f}  {name}")


@contextmanager
def _version(folder: str | None) -> Iterator[None]:
    """Blockbook from `folder` (a `git archive` of `pipelines` and `kernel_magics`) in the
    processes started meanwhile, kernels included; the installed one when None."""
    saved = os.environ.get("PYTHONPATH")
    if folder is not None:
        os.environ["PYTHONPATH"] = folder
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def kernel_load_ext(repeat: int) -> None:
    timings = []
    for _ in range(repeat):
        result = subprocess.run(
            [sys.executable, "-c", _LOAD_EXT], cwd=ROOT, capture_output=True, text=True, check=True
        )
        timings.append(float(result.stdout.strip().splitlines()[-1]))
    median = statistics.median(timings)
    print(f"\n%load_ext kernel_magics in a fresh kernel-like shell: {median:.3f} s (median)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="runs of each light command")
    parser.add_argument("--run-repeat", type=int, default=5, help="timed `blockbook run`s")
    parser.add_argument("--pipeline", default="notebooks/taxi")
    parser.add_argument(
        "--version",
        dest="versions",
        action="append",
        default=[],
        metavar="NAME=FOLDER",
        help="time `blockbook run` of the Blockbook exported to FOLDER (git archive COMMIT "
        "pipelines kernel_magics), in turns with the other --version's; repeatable",
    )
    args = parser.parse_args()
    versions: dict[str, str | None] = {"installed": None}
    if args.versions:
        versions = dict(version.split("=", 1) for version in args.versions)
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average at start "
        f"{', '.join(f'{load:.2f}' for load in os.getloadavg())}, {os.cpu_count()} cores"
    )
    where = subprocess.run(
        [sys.executable, "-P", "-c", "import pipelines; print(pipelines.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    print(f"Blockbook: {Path(where.stdout.strip()).parent}")
    light_commands(args.pipeline, args.repeat)
    blockbook_run((ROOT / args.pipeline).resolve(), args.run_repeat, versions)
    kernel_load_ext(args.repeat)
    print(f"load average at end {', '.join(f'{load:.2f}' for load in os.getloadavg())}")


if __name__ == "__main__":
    main()
