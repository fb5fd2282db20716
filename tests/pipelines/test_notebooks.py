"""Malformed notebooks: each yields BAD_NOTEBOOK problems for its own file, never an exception.

The broken files live in tests/fixtures/malformed/ (committed as they are, not generated), next to
one valid notebook, `valid.ipynb`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines.assembly.notebooks import CodeCell, read_notebook
from pipelines.assembly.pipeline import assemble
from pipelines.errors import Location, ProblemKind
from tests.helpers.notebooks import Markdown, write_notebook

MALFORMED = Path(__file__).resolve().parents[1] / "fixtures" / "malformed"

# file -> (locations of its problems, a fragment every message contains)
CASES = [
    pytest.param("bad_json.ipynb", ["bad_json.ipynb:line 3"], "not valid notebook JSON", id="json"),
    pytest.param(
        "truncated.ipynb", ["truncated.ipynb:line 15"], "not valid notebook JSON", id="truncated"
    ),
    pytest.param(
        "nbformat3.ipynb",
        ["nbformat3.ipynb"],
        "unsupported notebook format 3.0; Blockbook reads nbformat 4.5+",
        id="nbformat-3",
    ),
    pytest.param(
        "no_cell_ids.ipynb",
        ["no_cell_ids.ipynb:cell 1", "no_cell_ids.ipynb:cell 2"],
        "cell has no id (notebook format 4.4)",
        id="nbformat-4.4-without-ids",
    ),
    pytest.param(
        "not_a_notebook.ipynb",
        ["not_a_notebook.ipynb"],
        "not a notebook: the JSON has no `nbformat` version",
        id="json-not-a-notebook",
    ),
    pytest.param(
        "json_array.ipynb",
        ["json_array.ipynb"],
        "not a notebook: the JSON is not an object",
        id="json-array",
    ),
    pytest.param(
        "cells_not_list.ipynb",
        ["cells_not_list.ipynb"],
        "`cells` is missing or not a list",
        id="cells-not-a-list",
    ),
    pytest.param("binary.ipynb", ["binary.ipynb"], "cannot read the notebook", id="binary-junk"),
    pytest.param("empty.ipynb", ["empty.ipynb:line 1"], "not valid notebook JSON", id="empty-file"),
]


@pytest.mark.parametrize(("filename", "locations", "fragment"), CASES)
def test_malformed_notebook_yields_bad_notebook(
    tmp_path: Path, filename: str, locations: list[str], fragment: str
) -> None:
    folder = tmp_path / "pipe"
    folder.mkdir()
    shutil.copy(MALFORMED / filename, folder / filename)
    shutil.copy(MALFORMED / "valid.ipynb", folder / "valid.ipynb")

    pipeline = assemble(folder)

    assert [str(problem.location) for problem in pipeline.problems] == locations
    for problem in pipeline.problems:
        assert problem.kind is ProblemKind.BAD_NOTEBOOK
        assert problem.is_error
        assert problem.location.notebook == filename
        assert fragment in problem.message
        assert problem.hint
    assert tuple(pipeline.blocks) == ("good",), "the valid notebook beside it still assembles"
    assert pipeline.order == ("good",)


def test_whole_malformed_folder_reports_every_file() -> None:
    pipeline = assemble(MALFORMED)
    broken = {path.name for path in MALFORMED.glob("*.ipynb")} - {"valid.ipynb"}
    assert {problem.location.notebook for problem in pipeline.problems} == broken
    assert all(problem.kind is ProblemKind.BAD_NOTEBOOK for problem in pipeline.problems)
    assert tuple(pipeline.blocks) == ("good",)


def test_fixture_files_are_what_they_claim() -> None:
    """Guard the fixtures themselves: nobody 'fixes' them by re-saving them in JupyterLab."""
    assert (MALFORMED / "empty.ipynb").read_bytes() == b""
    assert not (MALFORMED / "truncated.ipynb").read_text().rstrip().endswith("}")
    with pytest.raises(UnicodeDecodeError):
        (MALFORMED / "binary.ipynb").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("[" * 100_000, "nested too deeply", id="deeply-nested-json"),
        pytest.param("null", "the JSON is not an object", id="null"),
        pytest.param('{"nbformat": 5, "nbformat_minor": 0, "cells": []}', "5.0", id="nbformat-5"),
        pytest.param('{"nbformat": 4, "nbformat_minor": 5}', "`cells` is missing", id="no-cells"),
        pytest.param(
            '{"nbformat": 4, "nbformat_minor": 5, "cells": [1]}', "no `cell_type`", id="cell-int"
        ),
        pytest.param(
            '{"nbformat": 4, "nbformat_minor": 5,'
            ' "cells": [{"cell_type": "code", "id": "a", "source": 5}]}',
            "`source` is not text",
            id="source-int",
        ),
    ],
)
def test_read_notebook_rejects(tmp_path: Path, text: str, fragment: str) -> None:
    file = tmp_path / "nb.ipynb"
    file.write_text(text, encoding="utf-8")
    notebook, problems = read_notebook(file, "nb.ipynb")
    assert notebook is None
    assert problems
    assert all(problem.kind is ProblemKind.BAD_NOTEBOOK for problem in problems)
    assert any(fragment in problem.message for problem in problems)


def test_read_valid_notebook(tmp_path: Path) -> None:
    file = write_notebook(
        tmp_path / "nb.ipynb", [Markdown("# title"), "%%block a\nx = 1", "plain = 2"]
    )
    notebook, problems = read_notebook(file, "sub/nb.ipynb")
    assert problems == []
    assert notebook is not None
    assert notebook.path == "sub/nb.ipynb"
    assert notebook.code_cells == (
        CodeCell(2, "nb-2", "%%block a\nx = 1"),
        CodeCell(3, "nb-3", "plain = 2"),
    )


def test_source_as_list_of_lines(tmp_path: Path) -> None:
    file = tmp_path / "nb.ipynb"
    file.write_text(
        '{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code",'
        ' "id": "c1", "metadata": {}, "outputs": [], "execution_count": null,'
        ' "source": ["%%block a\\n", "x = 1"]}]}',
        encoding="utf-8",
    )
    notebook, problems = read_notebook(file, "nb.ipynb")
    assert problems == []
    assert notebook is not None
    assert notebook.code_cells == (CodeCell(1, "c1", "%%block a\nx = 1"),)


def test_problem_location_format() -> None:
    assert str(Location("a.ipynb")) == "a.ipynb"
    assert str(Location("a.ipynb", 3, "id")) == "a.ipynb:cell 3"
    assert str(Location("a.ipynb", 3, "id", 2)) == "a.ipynb:cell 3:line 2"
    assert str(Location("a.ipynb", line=7)) == "a.ipynb:line 7"


def test_duplicate_cell_ids_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "dup.ipynb"
    write_notebook(path, ["%%block a\nx = 1", "%%block b\ny = 2"])
    text = path.read_text(encoding="utf-8").replace('"dup-2"', '"dup-1"')
    path.write_text(text, encoding="utf-8")
    notebook, problems = read_notebook(path, "dup.ipynb")
    assert notebook is None
    [problem] = problems
    assert problem.kind is ProblemKind.BAD_NOTEBOOK
    assert problem.location == Location("dup.ipynb", 2)
    assert problem.message == "cell id `dup-1` is also the id of cell 1"
