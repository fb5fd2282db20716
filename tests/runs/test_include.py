"""A pipeline that includes a notebook of another folder, run with real kernels: data flows both
ways between it and the pipeline's own notebooks, its kernel starts in its own folder, and the
run leaves it byte for byte as it was."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipelines.rundir.layout import executed_notebook, kernel_log
from pipelines.status import BlockStatus, RunStatus
from tests.helpers.notebooks import nb, write_notebook
from tests.helpers.runs import (
    RunHelper,
    block_cell,
    cell_text,
    load_output,
    source_hashes,
    statuses,
)

LOAD = "%%block load\nraw = [3, -1, 4, -1, 5]"
CLEAN = "%%block clean\nimport os\ncleaned = [r for r in raw if r > 0]\nclean_cwd = os.getcwd()"
REPORT = "%%block report --out total\ntotal = sum(cleaned)\nwhere = clean_cwd"
BROKEN = "%%block broken\nraise ValueError('bad row in the shared notebook')"


def test_an_included_notebook_runs_in_its_own_folder_and_is_left_untouched(
    project: Path, pipeline: Callable[..., Path], run: RunHelper
) -> None:
    common = project / "common"
    write_notebook(common / "clean.ipynb", nb(CLEAN))
    folder = pipeline(
        {"load.ipynb": nb(LOAD), "report.ipynb": nb(REPORT)},
        'include = ["../common/clean.ipynb"]\n',
        name="taxi",
    )
    before = source_hashes(common)

    result = run(folder)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert source_hashes(common) == before, "the run modified the included notebook"
    assert load_output(result, "clean", "cleaned") == [3, 4, 5]
    assert load_output(result, "report", "total") == 12, "the pipeline's own block read it"
    executed = executed_notebook(result.run_dir, "notebooks/common--clean.ipynb")
    assert executed.is_file()
    assert result.run_dir in executed.parents
    cell = block_cell(executed, "clean")
    assert cell.metadata["blockbook"]["source"] == "../common/clean.ipynb"
    assert cell.metadata["blockbook"]["cell"] == 2
    # Its kernel started in the included notebook's own folder, as JupyterLab would start it.
    assert load_output(result, "clean", "clean_cwd") == str(common.resolve())
    assert kernel_log(result.run_dir, "notebooks/common--clean.ipynb").exists()


def test_a_failing_block_of_an_included_notebook_names_its_notebook(
    project: Path, pipeline: Callable[..., Path], run: RunHelper
) -> None:
    common = project / "common"
    write_notebook(common / "checks.ipynb", nb(BROKEN))
    folder = pipeline({"load.ipynb": nb(LOAD)}, 'include = ["../common/checks.ipynb"]\n')
    before = source_hashes(common)

    result = run(folder)

    assert result.status is RunStatus.FAILED
    assert result.blocks["broken"].status is BlockStatus.FAILED
    assert "bad row in the shared notebook" in (result.blocks["broken"].error or "")
    assert result.blocks["load"].status is BlockStatus.SUCCESS
    assert source_hashes(common) == before
    cell = block_cell(executed_notebook(result.run_dir, "notebooks/common--checks.ipynb"), "broken")
    assert cell.metadata["blockbook"]["source"] == "../common/checks.ipynb"
    assert "ValueError" in cell_text(cell)
