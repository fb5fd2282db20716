"""The throwaway project the browser tests' JupyterLab serves.

blockbook.toml
taxi/        the example pipeline, copied from notebooks/ (load, clean, export)
broken/      two notebooks; `divide_by_zero` (the second block of explode.ipynb) raises
bad/         a header with a misspelt option: `%%block a --upsteam b`
slow/        one block that sleeps, to see a run while it is active
hello/       one block no test runs headlessly: its cell badge can only come from running it
twice/       load -> double in one notebook, run again and again by the comparison journey
shapes/      one frame whose dtype is a parameter: a run with another dtype drifts
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
from nbformat import v4

LOAD_EXT = "%load_ext kernel_magics"

FAILING_BLOCK = "divide_by_zero"
FAILING_HEADER = f"%%block {FAILING_BLOCK} --kind transformer"
FAILING_NOTEBOOK = "explode.ipynb"
BAD_HEADER = "%%block a --upsteam b"
BAD_NOTEBOOK = "headers.ipynb"
BADGE_NOTEBOOK = "hello/hello.ipynb"
BADGE_BLOCK = "greeting"
TWICE_NOTEBOOK = "twice/steps.ipynb"
DOUBLE_CODE = "doubled = [n * 2 for n in numbers]"
SLOW_SECONDS = 300
"""How long the slow pipeline's block sleeps (the test cancels the run once it saw it)."""


def write_notebook(path: Path, cells: list[str | tuple[str, str]]) -> Path:
    """A notebook with a Python 3 kernelspec (JupyterLab then asks for no kernel); a cell is
    code, or ("markdown", text)."""
    notebook = v4.new_notebook()
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    notebook.metadata["language_info"] = {"name": "python"}
    for position, cell in enumerate(cells, start=1):
        cell_id = f"{path.stem}-{position}"
        if isinstance(cell, tuple):
            notebook.cells.append(v4.new_markdown_cell(cell[1], id=cell_id))
        else:
            notebook.cells.append(v4.new_code_cell(cell, id=cell_id))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def write_project(root: Path, examples: Path) -> Path:
    root.mkdir(parents=True)
    (root / "blockbook.toml").write_text("# the browser tests' throwaway project\n")
    shutil.copytree(
        examples,
        root,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("*.sqlite", ".ipynb_checkpoints", "__pycache__"),
    )

    broken = root / "broken"
    write_notebook(
        broken / "prepare.ipynb",
        [LOAD_EXT, "%%block numbers --kind loader\nnumbers = [1, 2, 3]"],
    )
    write_notebook(
        broken / FAILING_NOTEBOOK,
        [
            LOAD_EXT,
            ("markdown", "# Explode\n\nSums the numbers, then divides by `divisor`: 0 fails."),
            "# scratch, not a block\nprint('hello')",
            "%%block total --kind transformer\ntotal = sum(numbers)",
            f"{FAILING_HEADER}\nratio = total / divisor",
        ],
    )
    (broken / "pipeline.toml").write_text(
        'description = "fails on purpose"\n\n[params]\ndivisor = 0\n'
    )

    write_notebook(
        root / "bad" / BAD_NOTEBOOK,
        [LOAD_EXT, "%%block b\nb_value = 1", f"{BAD_HEADER}\na_value = 2"],
    )

    write_notebook(
        root / "slow" / "nap.ipynb",
        [LOAD_EXT, "%%block nap\nimport time\n\ntime.sleep(seconds)\nrested = True"],
    )
    (root / "slow" / "pipeline.toml").write_text(f"[params]\nseconds = {SLOW_SECONDS}\n")
    write_notebook(
        root / BADGE_NOTEBOOK,
        [
            LOAD_EXT,
            ("markdown", "# Hello\n\nRun the cells one by one: the block gets a badge."),
            f"%%block {BADGE_BLOCK} --kind loader\nimport pandas as pd\n\n"
            'greetings = pd.DataFrame({"word": ["hello", "hi", "hey"], "length": [5, 2, 3]})\n\n\n'
            "@test\ndef not_empty(greetings):\n    assert len(greetings) == 3",
        ],
    )
    write_notebook(
        root / TWICE_NOTEBOOK,
        [
            LOAD_EXT,
            "%%block load --kind loader\nnumbers = [1, 2, 3]",
            f"%%block double --kind transformer\n{DOUBLE_CODE}\nprint(doubled)",
        ],
    )
    write_notebook(
        root / "shapes" / "frame.ipynb",
        [
            LOAD_EXT,
            "%%block frame --kind loader --out frame\nimport pandas as pd\n\n"
            'frame = pd.DataFrame({"x": [1, 2, 3]}).astype(kind)',
        ],
    )
    (root / "shapes" / "pipeline.toml").write_text('[params]\nkind = "int64"\n')
    return root
