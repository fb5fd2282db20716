"""How the magics feel: `%load_ext kernel_magics` in a fresh kernel, and what `%%block` adds to a
trivial cell in a running one (interactive mode, with the widget view, as in JupyterLab).

    python benchmarks/magics.py [--kernels 5] [--cells 50]

Targets (issue 4): %load_ext <= 300 ms; %%block adds <= 20 ms to a trivial cell.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import nbformat
from jupyter_client.manager import start_new_kernel
from nbformat.v4 import new_code_cell, new_notebook

LOAD_EXT = """
import time as _t
_s = _t.perf_counter()
get_ipython().run_line_magic("load_ext", "kernel_magics")
print(_t.perf_counter() - _s)
"""

CELL_COST = """
import json as _json, statistics as _st, time as _t
_ip = get_ipython()
def _timed(run, n):
    out = []
    for _ in range(n):
        _s = _t.perf_counter()
        run()
        out.append(_t.perf_counter() - _s)
    return _st.median(out)
_plain = _timed(lambda: _ip.run_cell("x = 1", store_history=False), {cells})
_block = _timed(lambda: _ip.run_cell("%%block trivial\\nx = 1", store_history=False), {cells})
print(_json.dumps({{"plain": _plain, "block": _block}}))
"""


def run_in_kernel(folder: Path, code: str) -> str:
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(folder))
    try:
        printed: list[str] = []

        def collect(message: dict) -> None:
            if message["msg_type"] == "stream":
                printed.append(message["content"]["text"])
            elif message["msg_type"] == "error":
                raise RuntimeError("\n".join(message["content"]["traceback"]))

        client.execute_interactive(code, output_hook=collect, timeout=120)
        return "".join(printed)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", type=int, default=5, help="fresh kernels for %%load_ext")
    parser.add_argument("--cells", type=int, default=50, help="cells timed per kind")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "blockbook.toml").write_text("")
        folder = root / "feel"
        folder.mkdir()
        notebook = new_notebook(cells=[new_code_cell("%%block trivial\nx = 1")])
        nbformat.write(notebook, folder / "feel.ipynb")
        loads = [float(run_in_kernel(folder, LOAD_EXT)) for _ in range(options.kernels)]
        costs = json.loads(
            run_in_kernel(
                folder,
                "get_ipython().run_line_magic('load_ext', 'kernel_magics')\n"
                + CELL_COST.format(cells=options.cells),
            )
        )
    load_ms = statistics.median(loads) * 1000
    plain_ms, block_ms = costs["plain"] * 1000, costs["block"] * 1000
    print(f"{'measure':<34}{'median ms':>10}{'target ms':>11}")
    print(f"{'%load_ext kernel_magics (cold)':<34}{load_ms:>10.1f}{300:>11}")
    print(f"{'trivial cell':<34}{plain_ms:>10.1f}{'':>11}")
    print(f"{'same cell as %%block':<34}{block_ms:>10.1f}{'':>11}")
    print(f"{'added by %%block':<34}{block_ms - plain_ms:>10.1f}{20:>11}")
    print(
        f"(%load_ext: median of {options.kernels} fresh kernels; cells: median of {options.cells})"
    )


if __name__ == "__main__":
    main()
