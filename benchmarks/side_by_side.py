"""Blockbook against the tools people would otherwise use, side by side, as whole processes.

The workload (issue 12): a 10-block pipeline over 3 notebooks passing a 1,000-row DataFrame
down a chain, so the frame crosses notebooks twice. The same work is written for every tool:

- Blockbook cold: `blockbook run PIPELINE` in a fresh process.
- Blockbook warm: a run triggered over REST (`benchmarks/warm_trigger.py`, a whole process)
  while a Jupyter server with Blockbook's extension and its warm kernels is up; also the same
  10 steps in one notebook, whose difference gives the cost of each extra notebook.
- Ploomber: a `pipeline.yaml` of 10 notebook tasks passing Parquet files, `ploomber build`.
- papermill, one notebook per step: 10 `papermill` commands in a row, passing Parquet files.
- plain Python: the 10 steps in one `python` process (the floor).
- Mage: a 10-block `mage run` pipeline, when MAGE_PYTHON names a Python that has mage_ai.

Tools run in turns (A B C A B C ...) after one untimed warm-up round; the table has each tool's
median wall time and peak memory (the largest sum of RSS over its process tree, sampled every
50 ms), and, last, the ratios the issue's targets name.

    python benchmarks/side_by_side.py [--repeat 5] [--warmup 1] [--keep DIR]

Ploomber comes from `pip install -e '.[bench]'`, or from another environment named by
PLOOMBER_PYTHON (its notebook tasks run in that environment's kernel); a tool whose package
is missing is skipped with a line saying so.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import psutil
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
ROWS = 1_000
PIPELINE = "side_by_side"
ONE_NOTEBOOK_PIPELINE = "side_by_side_one_notebook"
WARM_KERNELS = 3
SERVER_START_SECONDS = 120.0
NOTEBOOKS = {"extract": 4, "transform": 3, "report": 3}
"""Notebook name -> how many of the 10 chained steps it holds, in order."""
STEPS = sum(NOTEBOOKS.values())
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}
SAMPLE_SECONDS = 0.05


# -- The work: 10 steps, each a line of pandas from the previous frame to the next -------------


def step_code(index: int, source: str, target: str) -> str:
    """Step `index` as code that binds `target`, reading `source` (none for step 0)."""
    if index == 0:
        return (
            "import pandas as pd\n"
            f"{target} = pd.DataFrame({{'id': range({ROWS}), "
            f"'value': [i * 0.5 for i in range({ROWS})], "
            f"'group': [i % 7 for i in range({ROWS})]}})"
        )
    if index == STEPS - 1:
        return f"{target} = {source}.groupby('group', as_index=False)['value'].sum()"
    return f"{target} = {source}.assign(value={source}.value * 1.01 + {index})"


def step_notebook_of(index: int) -> str:
    first = 0
    for name, count in NOTEBOOKS.items():
        if index < first + count:
            return name
        first += count
    raise IndexError(index)


# -- Writing the workload for each tool --------------------------------------------------------


def write_blockbook(work: Path) -> Path:
    """A project holding the pipeline of 3 notebooks, and the same steps in one notebook (for
    the warm path's cost per notebook); returns the 3-notebook pipeline's folder."""
    project = work / "blockbook"
    project.mkdir(parents=True)
    (project / "blockbook.toml").write_text("")
    write_blockbook_pipeline(project / ONE_NOTEBOOK_PIPELINE, lambda index: "steps")
    return write_blockbook_pipeline(project / PIPELINE, step_notebook_of)


def write_blockbook_pipeline(folder: Path, notebook_of: Callable[[int], str]) -> Path:
    folder.mkdir(parents=True)
    cells: dict[str, list[nbformat.NotebookNode]] = {}
    for index in range(STEPS):
        body = step_code(index, f"frame{index - 1}", f"frame{index}")
        notebook = cells.setdefault(notebook_of(index), [new_code_cell("%load_ext kernel_magics")])
        notebook.append(new_code_cell(f"%%block step{index}\n{body}"))
    for name, notebook_cells in cells.items():
        notebook = new_notebook(cells=notebook_cells, metadata={"kernelspec": KERNEL})
        nbformat.write(notebook, folder / f"{name}.ipynb")
    return folder


def file_step_code(index: int, source: str | None, target: str) -> str:
    """Step `index` for tools that hand off files: read Parquet, compute, write Parquet."""
    read = "" if source is None else f"import pandas as pd\nframe = pd.read_parquet({source})\n"
    return f"{read}{step_code(index, 'frame', 'frame')}\nframe.to_parquet({target})\n"


def write_ploomber(work: Path) -> Path:
    folder = work / "ploomber"
    folder.mkdir(parents=True)
    tasks = []
    for index in range(STEPS):
        upstream = "None" if index == 0 else f"['step{index - 1}']"
        source = None if index == 0 else f"upstream['step{index - 1}']['data']"
        code = file_step_code(index, source, "product['data']")
        (folder / f"step{index}.py").write_text(
            f"# %% tags=['parameters']\nupstream = {upstream}\nproduct = None\n\n# %%\n{code}"
        )
        tasks.append(
            f"  - source: step{index}.py\n    name: step{index}\n    product:\n"
            f"      nb: out/step{index}.ipynb\n      data: out/step{index}.parquet\n"
        )
    (folder / "pipeline.yaml").write_text("tasks:\n" + "".join(tasks))
    return folder


def write_papermill(work: Path) -> Path:
    """10 notebooks with a parameters cell, and a shell script running them one by one."""
    folder = work / "papermill"
    (folder / "out").mkdir(parents=True)
    lines = ["set -e"]
    for index in range(STEPS):
        parameters = new_code_cell(
            "source = None\ntarget = None", metadata={"tags": ["parameters"]}
        )
        code = file_step_code(index, None if index == 0 else "source", "target")
        notebook = new_notebook(
            cells=[parameters, new_code_cell(code)], metadata={"kernelspec": KERNEL}
        )
        nbformat.write(notebook, folder / f"step{index}.ipynb")
        lines.append(
            f"papermill step{index}.ipynb out/step{index}.ipynb -p target out/step{index}.parquet"
            + ("" if index == 0 else f" -p source out/step{index - 1}.parquet")
        )
    (folder / "run_steps.sh").write_text("\n".join(lines) + "\n")
    return folder


def write_plain_python(work: Path) -> Path:
    script = work / "plain.py"
    steps = [step_code(i, f"frame{i - 1}", f"frame{i}") for i in range(STEPS)]
    script.write_text("\n".join(steps) + f"\nprint(len(frame{STEPS - 1}))\n")
    return script


MAGE_LOADER = """\
if 'data_loader' not in globals():
    from mage_ai.data_preparation.decorators import data_loader


@data_loader
def step0(*args, **kwargs):
{body}
    return frame
"""
MAGE_TRANSFORMER = """\
if 'transformer' not in globals():
    from mage_ai.data_preparation.decorators import transformer


@transformer
def step{index}(frame, *args, **kwargs):
{body}
    return frame
"""


def write_mage_pipeline(project: Path) -> None:
    """The 10 steps as a Mage pipeline (a data loader, 9 transformers) in a `mage init` project."""
    blocks = []
    for index in range(STEPS):
        body = "\n".join("    " + line for line in step_code(index, "frame", "frame").splitlines())
        kind, template = (
            ("data_loader", MAGE_LOADER) if index == 0 else ("transformer", MAGE_TRANSFORMER)
        )
        (project / f"{kind}s").mkdir(exist_ok=True)
        (project / f"{kind}s" / f"step{index}.py").write_text(
            template.format(index=index, body=body)
        )
        upstream = [] if index == 0 else [f"step{index - 1}"]
        downstream = [] if index == STEPS - 1 else [f"step{index + 1}"]
        blocks.append(
            f"- name: step{index}\n  uuid: step{index}\n  type: {kind}\n  language: python\n"
            f"  upstream_blocks: {upstream}\n  downstream_blocks: {downstream}\n"
        )
    folder = project / "pipelines" / PIPELINE
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").write_text("")
    (folder / "metadata.yaml").write_text(
        f"name: {PIPELINE}\nuuid: {PIPELINE}\ntype: python\nblocks:\n" + "".join(blocks)
    )


def build_workload(work: Path) -> dict[str, Path]:
    """Write the same 10 steps for every tool under `work`; returns where each one is."""
    return {
        "blockbook": write_blockbook(work),
        "ploomber": write_ploomber(work),
        "papermill": write_papermill(work),
        "plain": write_plain_python(work),
        "mage": work / "mage_project",  # written by `mage()`: it needs `mage init` first
    }


# -- How each tool is run: a command, or the reason it is skipped --------------------------------


@dataclass
class Command:
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    start: Callable[[], None] = lambda: None
    """Starts what the tool needs running beside its runs (a warm server), before round one."""
    stop: Callable[[], None] = lambda: None
    """Ends it, after the last round."""
    beside: Callable[[], int | None] = lambda: None
    """The process running beside the command whose tree's memory counts too (the warm server
    and its kernels)."""


@dataclass
class Skip:
    reason: str


def beside_python(python: str, program: str) -> str:
    return str(Path(python).parent / program)


def python_has(python: str, module: str) -> bool:
    if python == sys.executable:
        return importlib.util.find_spec(module) is not None
    probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


def with_path_of(python: str) -> dict[str, str]:
    """The environment with `python`'s bin folder first on PATH (its kernels, its commands)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def blockbook_cold(places: dict[str, Path]) -> Command | Skip:
    folder = places["blockbook"]
    blockbook = beside_python(sys.executable, "blockbook")
    # --force: every round runs every block (a second run would reuse unchanged blocks), as
    # Ploomber's `build --force` does.
    argv = [blockbook, "run", folder.name, "--force"]
    return Command(argv, folder.parent, with_path_of(sys.executable))


def blockbook_warm(places: dict[str, Path]) -> Command | Skip:
    return _warm_trigger(places, PIPELINE)


def blockbook_warm_one_notebook(places: dict[str, Path]) -> Command | Skip:
    return _warm_trigger(places, ONE_NOTEBOOK_PIPELINE)


def _warm_trigger(places: dict[str, Path], pipeline: str) -> Command:
    """The command that triggers a run of `pipeline` through the warm server: started before
    the first round (`Command.start`), ended after the last (`Command.stop`)."""
    server = _warm_server(places["blockbook"].parent)
    script = Path(__file__).with_name("warm_trigger.py")
    argv = [sys.executable, "-S", str(script), server.url, server.token, pipeline]
    return Command(
        argv,
        places["blockbook"].parent,
        start=server.start,
        stop=server.stop,
        beside=server.pid,
    )


@dataclass
class WarmServer:
    """A Jupyter server with Blockbook's extension and its warm kernels, over `project`."""

    project: Path
    port: int
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        if self.process is not None:
            return
        log_path = self.project.parent / "warm-server.log"
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jupyter_server",
                    "--no-browser",
                    "--allow-root",
                    "--ip=127.0.0.1",
                    f"--port={self.port}",
                    f"--IdentityProvider.token={self.token}",
                    f"--ServerApp.root_dir={self.project}",
                    f"--BlockbookExtension.warm_kernels={WARM_KERNELS}",
                ],
                cwd=self.project,
                env=with_path_of(sys.executable),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + SERVER_START_SECONDS
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log_path.read_text(errors="replace")[-3000:]
                raise SystemExit(f"the warm server did not start ({log_path}):\n{tail}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def _answers(self) -> bool:
        request = urllib.request.Request(
            f"{self.url}/blockbook/api/pipelines", headers={"Authorization": f"token {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5):
                return True
        except OSError:
            return False


_servers: dict[Path, WarmServer] = {}


def _warm_server(project: Path) -> WarmServer:
    """The one warm server of `project` (both warm rows use it), not started yet."""
    if project not in _servers:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        _servers[project] = WarmServer(project, port)
    return _servers[project]


def ploomber(places: dict[str, Path]) -> Command | Skip:
    python = os.environ.get("PLOOMBER_PYTHON", sys.executable)
    if not python_has(python, "ploomber"):
        return Skip(
            f"skipped: ploomber is not installed for {python} "
            "(pip install -e '.[bench]', or PLOOMBER_PYTHON=/path/to/python)"
        )
    argv = [beside_python(python, "ploomber"), "build", "--force"]
    env = with_path_of(python)
    # No telemetry and no version check: no network calls inside the timed runs.
    env |= {"PLOOMBER_STATS_ENABLED": "false", "PLOOMBER_VERSION_CHECK_DISABLED": "1"}
    return Command(argv, places["ploomber"], env)


def papermill_per_step(places: dict[str, Path]) -> Command | Skip:
    return Command(["bash", "run_steps.sh"], places["papermill"], with_path_of(sys.executable))


def plain_python(places: dict[str, Path]) -> Command | Skip:
    script = places["plain"]
    return Command([sys.executable, script.name], script.parent)


def mage(places: dict[str, Path]) -> Command | Skip:
    python = os.environ.get("MAGE_PYTHON")
    if not python:
        return Skip("skipped: MAGE_PYTHON is not set (a Python with mage-ai installed)")
    if not python_has(python, "mage_ai"):
        return Skip(f"skipped: mage_ai is not installed for MAGE_PYTHON={python}")
    project, mage_command = places["mage"], beside_python(python, "mage")
    if not project.exists():
        subprocess.run([mage_command, "init", str(project)], check=True, capture_output=True)
        write_mage_pipeline(project)
    argv = [mage_command, "run", str(project), PIPELINE]
    return Command(argv, project.parent, with_path_of(python))


TOOLS: dict[str, Callable[[dict[str, Path]], Command | Skip]] = {
    "Blockbook cold (blockbook run)": blockbook_cold,
    "Blockbook warm (REST, server up)": blockbook_warm,
    "Ploomber notebook tasks": ploomber,
    "papermill, one notebook per step": papermill_per_step,
    "plain Python, one process": plain_python,
    "Mage (mage run)": mage,
    "Blockbook warm, the 10 steps in 1 notebook": blockbook_warm_one_notebook,
}
COLD, WARM, PLOOMBER, PAPERMILL, PLAIN = list(TOOLS)[:5]
WARM_ONE_NOTEBOOK = list(TOOLS)[-1]
EXTRA_NOTEBOOK_TARGET_SECONDS = 0.150
TARGETS = [
    # (numerator, denominator, the target for numerator / denominator)
    (COLD, PLOOMBER, 1 / 8),
    (COLD, PAPERMILL, 1 / 6),
    (WARM, PLAIN, 1.5),
]


# -- Measuring one run: wall time, and peak RSS of the whole process tree ----------------------


@dataclass
class Measurement:
    seconds: float
    peak_bytes: int


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # it ended between listing and reading
            total += member.memory_info().rss
    return total


def measure(command: Command, log: Path) -> Measurement:
    peak = 0
    with log.open("wb") as output:
        started = time.perf_counter()
        process = psutil.Popen(
            command.argv, cwd=command.cwd, env=command.env, stdout=output, stderr=output
        )
        beside_pid = command.beside()
        beside = psutil.Process(beside_pid) if beside_pid is not None else None
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                try:
                    rss = tree_rss(process) + (tree_rss(beside) if beside is not None else 0)
                    peak = max(peak, rss)
                except psutil.Error:
                    return
                done.wait(SAMPLE_SECONDS)

        sampler = threading.Thread(target=sample)
        sampler.start()
        code = process.wait()
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{' '.join(command.argv)} exited {code} (log {log}):\n{tail}")
    return Measurement(seconds, peak)


# -- The recipe ---------------------------------------------------------------------------------


def prepare_tools(places: dict[str, Path]) -> dict[str, Command | Skip]:
    return {name: prepare(places) for name, prepare in TOOLS.items()}


def run_in_turns(
    commands: dict[str, Command], repeat: int, warmup: int, logs: Path
) -> dict[str, list[Measurement]]:
    """Every tool once per round, in the same order, so a slow moment hits all of them."""
    results: dict[str, list[Measurement]] = {name: [] for name in commands}
    for command in commands.values():
        command.start()
    for round_index in range(-warmup, repeat):
        for number, (name, command) in enumerate(commands.items()):
            taken = measure(command, logs / f"{number}-{round_index}.log")
            if round_index >= 0:
                results[name].append(taken)
        label = "warm-up" if round_index < 0 else f"round {round_index + 1}/{repeat}"
        print(f"  {label} done", file=sys.stderr, flush=True)
    return results


def median_seconds(results: dict[str, list[Measurement]], name: str) -> float | None:
    taken = results.get(name)
    return statistics.median(m.seconds for m in taken) if taken else None


def code_under_test() -> str:
    """Where `pipelines` is imported from, and which commit that is: a checkout's HEAD (with
    "+ changes" when it has uncommitted ones), or the COMMIT file of an exported tree (`git
    archive COMMIT pipelines kernel_magics`, run with PYTHONPATH pointing to it)."""
    import pipelines

    source = Path(pipelines.__file__).resolve().parent.parent
    marker = source / "COMMIT"
    if marker.exists():
        return f"{source} (exported commit {marker.read_text().strip()})"
    git = ["git", "-C", str(source)]
    head = subprocess.run([*git, "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no", "pipelines", "kernel_magics"],
        capture_output=True,
        text=True,
    )
    changes = " + uncommitted changes" if dirty.stdout.strip() else ""
    return f"{source} (HEAD {head.stdout.strip()[:72]}{changes})"


def print_context(repeat: int, warmup: int) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"side_by_side.py, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"Blockbook: {code_under_test()}")
    print(
        f"{platform.platform()}, {os.cpu_count()} cores, load average at start {load}, "
        f"Python {platform.python_version()}"
    )
    print(
        f"workload: {STEPS} blocks over {len(NOTEBOOKS)} notebooks "
        f"({', '.join(f'{n}: {c}' for n, c in NOTEBOOKS.items())}), a {ROWS:,}-row frame "
        "down a chain"
    )
    print(f"{repeat} timed rounds in turns after {warmup} warm-up round(s); whole processes\n")


def print_table(prepared: dict[str, Command | Skip], results: dict[str, list[Measurement]]) -> None:
    cold = median_seconds(results, COLD)
    width = max(len(name) for name in prepared)
    print(
        f"{'tool':<{width}}  {'median s':>8}  {'min s':>6}  {'max s':>6}  {'peak MB':>7}  "
        f"{'cold / it':>9}"
    )
    for name, command in prepared.items():
        if isinstance(command, Skip):
            print(f"{name:<{width}}  {command.reason}")
            continue
        taken = results[name]
        seconds = [m.seconds for m in taken]
        median = statistics.median(seconds)
        peak = statistics.median(m.peak_bytes for m in taken) / 2**20
        ratio = f"{cold / median:>9.2f}" if cold is not None and name != COLD else f"{'-':>9}"
        print(
            f"{name:<{width}}  {median:>8.2f}  {min(seconds):>6.2f}  {max(seconds):>6.2f}  "
            f"{peak:>7.0f}  {ratio}"
        )
    print("(peak MB: median over rounds of the largest sampled RSS sum of the process tree)\n")


def print_ratios(results: dict[str, list[Measurement]]) -> None:
    print("issue 12 targets (ratios of medians)")
    for numerator, denominator, target in TARGETS:
        label = f"{numerator.split(' (')[0]} / {denominator}"
        top, bottom = median_seconds(results, numerator), median_seconds(results, denominator)
        if top is None or bottom is None:
            missing = numerator if top is None else denominator
            print(f"  {label:<52} n/a   (target <= {target:.3g}; no {missing} figure)")
            continue
        ratio = top / bottom
        verdict = "met" if ratio <= target else "not met"
        print(f"  {label:<52} {ratio:.3f} (target <= {target:.3g}: {verdict})")
    three, one = median_seconds(results, WARM), median_seconds(results, WARM_ONE_NOTEBOOK)
    label = "each extra notebook, warm (3 notebooks - 1) / 2"
    if three is None or one is None:
        print(f"  {label:<52} n/a")
        return
    extra = (three - one) / (len(NOTEBOOKS) - 1)
    verdict = "met" if extra <= EXTRA_NOTEBOOK_TARGET_SECONDS else "not met"
    target_ms = EXTRA_NOTEBOOK_TARGET_SECONDS * 1000
    print(f"  {label:<52} {extra * 1000:.0f} ms (target <= {target_ms:.0f} ms: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--keep", type=Path, help="build the workload here and keep it")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = options.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        places = build_workload(work / "workload")
        logs = work / "logs"
        logs.mkdir(exist_ok=True)
        prepared = prepare_tools(places)
        runnable = {n: c for n, c in prepared.items() if isinstance(c, Command)}
        print_context(options.repeat, options.warmup)
        try:
            results = run_in_turns(runnable, options.repeat, options.warmup, logs)
        finally:
            for command in runnable.values():
                command.stop()
        print_table(prepared, results)
        print_ratios(results)


if __name__ == "__main__":
    main()
