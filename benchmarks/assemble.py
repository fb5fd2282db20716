"""How long assembling a pipeline takes as it grows.

Generates pipelines of N notebooks x 10 blocks (each block reads an earlier block of its own
notebook and one of the previous notebook, so edges are both local and cross-notebook), then
times `assemble` cold-from-disk several times and prints the median, the cost per block, and the
ratio to the smallest size so linear growth shows as ratio ~ size ratio.

    python benchmarks/assemble.py [--repeat 5] [--sizes 10 100 1000]

Target (DESIGN.md): 1,000 blocks (100 notebooks) in <= 0.5 s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from pipelines.assembly.pipeline import assemble

BLOCKS_PER_NOTEBOOK = 10


def block_source(notebook: int, block: int) -> str:
    name = f"b{notebook:04d}_{block:02d}"
    reads = []
    if block:
        reads.append(f"v{notebook:04d}_{block - 1:02d}")
    if notebook and block == 0:
        reads.append(f"v{notebook - 1:04d}_{BLOCKS_PER_NOTEBOOK - 1:02d}")
    expression = " + ".join(reads) or "1"
    return (
        f"%%block {name} --kind transformer\n"
        "import math\n"
        f"_scale = math.sqrt(2)\n"
        f"v{notebook:04d}_{block:02d} = {expression} * _scale\n"
        f"rows = [x * {block} for x in range(10) if x % 2]\n"
        "\n"
        "@test\n"
        f"def positive(v{notebook:04d}_{block:02d}):\n"
        f"    assert v{notebook:04d}_{block:02d} > 0\n"
    )


def generate(folder: Path, notebooks: int) -> None:
    folder.mkdir(parents=True)
    for index in range(notebooks):
        cells = [new_code_cell("%load_ext kernel_magics")]
        cells += [new_code_cell(block_source(index, b)) for b in range(BLOCKS_PER_NOTEBOOK)]
        nbformat.write(new_notebook(cells=cells), folder / f"nb_{index:04d}.ipynb")


def measure(folder: Path, repeat: int) -> tuple[float, int]:
    timings = []
    blocks = 0
    for _ in range(repeat):
        started = time.perf_counter()
        pipeline = assemble(folder)
        timings.append(time.perf_counter() - started)
        blocks = len(pipeline.blocks)
        if not pipeline.ok or len(pipeline.order) != blocks:
            raise SystemExit(f"generated pipeline is not valid: {pipeline.errors[:3]}")
    return statistics.median(timings), blocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    options = parser.parse_args()
    assemble(Path(__file__).parent)  # import-time costs (IPython transformer etc.) paid once
    print(f"{'notebooks':>9} {'blocks':>7} {'median s':>9} {'us/block':>9} {'x smallest':>10}")
    baseline: float | None = None
    with tempfile.TemporaryDirectory() as scratch:
        for size in options.sizes:
            folder = Path(scratch) / f"p{size}"
            generate(folder, size)
            median, blocks = measure(folder, options.repeat)
            baseline = baseline or median
            print(
                f"{size:>9} {blocks:>7} {median:>9.3f} {median / blocks * 1e6:>9.0f}"
                f" {median / baseline:>10.1f}"
            )
    print(f"(median of {options.repeat} runs each; target: 1,000 blocks in <= 0.5 s)")


if __name__ == "__main__":
    main()
