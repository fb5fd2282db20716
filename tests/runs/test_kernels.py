"""Each notebook runs with its own kernel (its kernelspec, or pipeline.toml's `kernel`), real
kernels through papermill; a kernel that is not installed stops the run before it starts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from pipelines.runs.runner import RunResult
from pipelines.runs.selection import RunError
from pipelines.status import BlockStatus, RunStatus
from pipelines.store.run_store import RunStore
from tests.helpers.notebooks import nb
from tests.helpers.runs import RunHelper, statuses

WHICH = """%%block which
import os
kernel = os.environ.get("BLOCKBOOK_TEST_KERNEL", "python3")
print(f"kernel: {kernel}")
"""

# A kernel whose environment cannot import kernel_magics, as one of another virtualenv.
NO_BLOCKBOOK = (
    "import sys; sys.modules['kernel_magics'] = None; "
    "from ipykernel import kernelapp; kernelapp.launch_new_instance()"
)


@pytest.fixture
def kernels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two more kernelspecs on a JUPYTER_PATH of the test's own, both on this interpreter:
    `blockbook-test` says who it is in its environment, `no-blockbook` lacks Blockbook."""
    share = tmp_path / "jupyter"
    specs = {
        "blockbook-test": [sys.executable, "-m", "ipykernel_launcher"],
        "no-blockbook": [sys.executable, "-c", NO_BLOCKBOOK],
    }
    for name, argv in specs.items():
        folder = share / "kernels" / name
        folder.mkdir(parents=True)
        spec = {
            "argv": [*argv, "-f", "{connection_file}"],
            "display_name": f"Test {name}",
            "language": "python",
            "env": {"BLOCKBOOK_TEST_KERNEL": name},
        }
        (folder / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(share))
    return share


def printed_kernel(result: RunResult, notebook: str) -> str:
    """The kernel the block found itself in, from the executed notebook's output."""
    executed = nbformat.read(result.run_dir / "notebooks" / notebook, as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    [line] = [line for line in text.splitlines() if line.startswith("kernel: ")]
    return line.removeprefix("kernel: ")


def with_kernel(path: Path, name: str) -> None:
    """Name a kernelspec in a notebook's metadata, as JupyterLab does when one picks a kernel."""
    notebook = nbformat.read(path, as_version=4)
    notebook.metadata["kernelspec"] = {"name": name, "display_name": name, "language": "python"}
    nbformat.write(notebook, path)


def test_each_notebook_runs_with_its_own_kernel(
    kernels: Path, pipeline: Callable[..., Path], run: RunHelper
) -> None:
    folder = pipeline({"own.ipynb": nb(WHICH), "plain.ipynb": nb(WHICH.replace("which", "other"))})
    with_kernel(folder / "own.ipynb", "blockbook-test")

    result = run(folder)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert printed_kernel(result, "own.ipynb") == "blockbook-test"
    assert printed_kernel(result, "plain.ipynb") == "python3"  # no kernelspec: python3
    executed = nbformat.read(result.run_dir / "notebooks" / "own.ipynb", as_version=4)
    assert executed.metadata.kernelspec.name == "blockbook-test"
    assert executed.metadata.kernelspec.display_name == "Test blockbook-test"


def test_pipeline_toml_kernel_overrides_every_notebook(
    kernels: Path, pipeline: Callable[..., Path], run: RunHelper
) -> None:
    folder = pipeline({"own.ipynb": nb(WHICH)}, 'kernel = "python3"\n')
    with_kernel(folder / "own.ipynb", "blockbook-test")

    result = run(folder)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert printed_kernel(result, "own.ipynb") == "python3"


def test_a_kernel_that_is_not_installed_stops_the_run_before_it_starts(
    kernels: Path, pipeline: Callable[..., Path], run: RunHelper, store: RunStore
) -> None:
    folder = pipeline({"own.ipynb": nb(WHICH)})
    with_kernel(folder / "own.ipynb", "no-such-kernel")

    with pytest.raises(RunError) as raised:
        run(folder)  # it also checks that no kernel process is left

    assert "`own.ipynb` runs with kernel `no-such-kernel`, which is not installed" in str(
        raised.value.message
    )
    assert "python -m ipykernel install --user --name no-such-kernel" in raised.value.hint
    assert "`kernel = " in raised.value.hint
    assert store.list_runs(pipeline="pipe") == []  # nothing recorded, nothing started


def test_a_kernel_without_blockbook_says_so(
    kernels: Path, pipeline: Callable[..., Path], run: RunHelper
) -> None:
    folder = pipeline({"own.ipynb": nb(WHICH)})
    with_kernel(folder / "own.ipynb", "no-blockbook")

    result = run(folder)

    assert result.blocks["which"].status is BlockStatus.FAILED, statuses(result)
    error = str(result.blocks["which"].error)
    assert "kernel 'no-blockbook' cannot import kernel_magics" in error
    assert "its environment lacks blockbook; install blockbook there" in error


def test_run_kernels_keep_no_history_of_the_blocks_they_ran(
    pipeline: Callable[..., Path], run: RunHelper
) -> None:
    # IPython writes each cell's input to the user's history database unless told not to.
    folder = pipeline(
        {"a.ipynb": nb("%%block probe\nprint('history', get_ipython().history_manager.enabled)")}
    )

    result = run(folder)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    executed = nbformat.read(result.run_dir / "notebooks" / "a.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "history False" in printed, printed
