"""What a block costs in a headless run: chains of N trivial blocks passing a small DataFrame.

For N in --sizes, builds a chain in 1 notebook and spread over 5 notebooks, runs it with the
default mode (one kernel per notebook) and with --isolate (one kernel per block), and prints
the median wall time of --repeat runs, side by side, plus the cost of each additional block
(slope between the smallest and largest N). Where Ploomber is installed (`pip install -e
'.[bench]'`), also times the equivalent pipeline of notebook tasks with Ploomber.

    python benchmarks/run_chain.py [--sizes 10 50] [--repeat 3] [--isolate-repeat 1]

Target (DESIGN.md): <= 25 ms per additional block in the default mode.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from pipelines.assembly.pipeline import assemble
from pipelines.runs.runner import Runner, RunOptions
from pipelines.status import RunStatus
from pipelines.store.run_store import RunStore

FRAME_ROWS = 100


def block_source(index: int) -> str:
    if index == 0:
        body = f"import pandas as pd\ndf0 = pd.DataFrame({{'x': range({FRAME_ROWS})}})"
    else:
        body = f"df{index} = df{index - 1}.assign(x=df{index - 1}.x + 1)"
    return f"%%block b{index:03d}\n{body}"


def write_chain(folder: Path, blocks: int, notebooks: int) -> None:
    folder.mkdir(parents=True)
    per_notebook = -(-blocks // notebooks)
    for n in range(notebooks):
        indices = range(n * per_notebook, min(blocks, (n + 1) * per_notebook))
        cells = [new_code_cell("%load_ext kernel_magics")]
        cells += [new_code_cell(block_source(i)) for i in indices]
        nbformat.write(new_notebook(cells=cells), folder / f"part_{n}.ipynb")


def time_blockbook(folder: Path, root: Path, isolate: bool, repeat: int) -> float:
    timings = []
    store = RunStore(f"sqlite:///{root / 'bench.db'}")
    try:
        for _ in range(repeat):
            started = time.perf_counter()
            result = Runner(root, store).run(assemble(folder), RunOptions(isolate=isolate))
            timings.append(time.perf_counter() - started)
            assert result.status is RunStatus.SUCCESS, result
    finally:
        store.close()
    return statistics.median(timings)


def write_ploomber_chain(folder: Path, blocks: int) -> None:
    """The same chain as Ploomber notebook tasks, each passing a Parquet file on."""
    folder.mkdir(parents=True)
    tasks = []
    for index in range(blocks):
        read = (
            f"import pandas as pd\ndf = pd.DataFrame({{'x': range({FRAME_ROWS})}})"
            if index == 0
            else f"import pandas as pd\ndf = pd.read_parquet(upstream['t{index - 1:03d}']['data'])"
        )
        upstream = "None" if index == 0 else f"['t{index - 1:03d}']"
        source = (
            f"# %% tags=['parameters']\nupstream = {upstream}\nproduct = None\n\n"
            f"# %%\n{read}\ndf.assign(x=df.x + 1).to_parquet(product['data'])\n"
        )
        (folder / f"t{index:03d}.py").write_text(source)
        tasks.append(
            f"  - source: t{index:03d}.py\n    name: t{index:03d}\n    product:\n"
            f"      nb: out/t{index:03d}.ipynb\n      data: out/t{index:03d}.parquet\n"
        )
    (folder / "pipeline.yaml").write_text("tasks:\n" + "".join(tasks))


def time_ploomber(folder: Path, repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(
            [str(Path(sys.executable).parent / "ploomber"), "build", "--force"],
            cwd=folder,
            check=True,
            capture_output=True,
        )
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--isolate-repeat", type=int, default=1)
    options = parser.parse_args()
    sizes = sorted(options.sizes)
    results: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "blockbook.toml").write_text("")
        for size in sizes:
            for notebooks in (1, 5):
                folder = root / f"chain_{size}_{notebooks}"
                write_chain(folder, size, notebooks)
                results[(f"{notebooks} nb", size)] = time_blockbook(
                    folder, root, False, options.repeat
                )
                results[(f"{notebooks} nb --isolate", size)] = time_blockbook(
                    folder, root, True, options.isolate_repeat
                )
        has_ploomber = importlib.util.find_spec("ploomber") is not None
        if has_ploomber:
            for size in sizes[:1]:
                folder = root / f"ploomber_{size}"
                write_ploomber_chain(folder, size)
                results[("ploomber tasks", size)] = time_ploomber(folder, options.isolate_repeat)

    modes = sorted({mode for mode, _ in results}, key=lambda m: (m.startswith("ploomber"), m))
    header = f"{'mode':<18}" + "".join(f"{f'N={n} s':>10}" for n in sizes)
    header += f"{'ms/extra block':>16}{'vs default':>12}"
    print(header)
    low, high = sizes[0], sizes[-1]
    default_slope = None
    for mode in modes:
        row = f"{mode:<18}" + "".join(
            f"{results[(mode, n)]:>10.2f}" if (mode, n) in results else f"{'-':>10}" for n in sizes
        )
        if (mode, low) in results and (mode, high) in results and high > low:
            slope = (results[(mode, high)] - results[(mode, low)]) / (high - low) * 1000
            if mode == "1 nb":
                default_slope = slope
            ratio = f"{slope / default_slope:>11.1f}x" if default_slope else f"{'':>12}"
            row += f"{slope:>16.1f}{ratio}"
        elif (mode, low) in results:
            per_task = results[(mode, low)] / low * 1000
            row += f"{per_task:>13.1f}/tk"
        print(row)
    print(
        f"(median of {options.repeat} runs, --isolate of {options.isolate_repeat}; "
        "target: <= 25 ms per additional block in the default mode)"
    )
    if not has_ploomber:
        print("ploomber not installed: `pip install -e '.[bench]'` adds its column")


if __name__ == "__main__":
    main()
