"""`include` in pipeline.toml: another folder's notebook assembled into the pipeline, errors
located where they are, bad entries reported at their pipeline.toml line, the cache watching
the included file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.assembly.cache import AssemblyCache
from pipelines.assembly.changes import PipelineChanges
from pipelines.assembly.pipeline import assemble
from pipelines.errors import ProblemKind
from pipelines.rundir.layout import run_notebook_path
from tests.helpers.notebooks import make_pipeline, write_notebook
from tests.helpers.runs import blockbook

CLEAN = "%%block clean\ncleaned = [r for r in raw if r > 0]"
LOAD = "%%block load\nraw = [3, -1, 4]"
REPORT = "%%block report\ntotal = sum(cleaned)"


def shared_clean(root: Path, *cells: str) -> Path:
    return write_notebook(root / "common" / "clean.ipynb", list(cells or (CLEAN,)))


def including(root: Path, toml: str, notebooks: dict[str, list[str]] | None = None) -> Path:
    return make_pipeline(
        root, notebooks or {"load.ipynb": [LOAD], "report.ipynb": [REPORT]}, toml, name="taxi"
    )


def test_included_blocks_join_the_graph_under_their_own_path(tmp_path: Path) -> None:
    shared_clean(tmp_path)
    folder = including(tmp_path, 'include = ["../common/clean.ipynb"]\n')

    pipeline = assemble(folder)

    assert pipeline.ok, [p.format() for p in pipeline.problems]
    assert pipeline.blocks["clean"].notebook == "../common/clean.ipynb"
    assert pipeline.sources["clean"] == {"raw": "load"}
    assert pipeline.sources["report"] == {"cleaned": "clean"}
    assert pipeline.order.index("load") < pipeline.order.index("clean")
    assert pipeline.order.index("clean") < pipeline.order.index("report")
    # Run notebooks stay inside the run folder, named flat.
    assert run_notebook_path("../common/clean.ipynb", None) == "notebooks/common--clean.ipynb"


def test_an_error_in_an_included_notebook_names_its_path_and_cell(tmp_path: Path) -> None:
    shared_clean(tmp_path, "x = 1", "%%block clean --retries many\ncleaned = raw")
    folder = including(tmp_path, 'include = ["../common/clean.ipynb"]\n')

    errors = assemble(folder).errors

    assert [(e.location.notebook, e.location.cell) for e in errors] == [
        ("../common/clean.ipynb", 2)
    ]
    assert errors[0].format().startswith("../common/clean.ipynb:cell 2")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("../common/missing.ipynb", "does not exist"),
        ("../common/notes.txt", "is not a notebook"),
        ("../common", "is not a notebook"),
        ("load.ipynb", "is one of the pipeline's own notebooks already"),
        ("../taxi/report.ipynb", "is one of the pipeline's own notebooks already"),
        ("/etc/clean.ipynb", "is not relative to the pipeline folder"),
        ("", "is empty"),
    ],
)
def test_a_bad_entry_is_an_error_at_its_pipeline_toml_line(
    tmp_path: Path, entry: str, message: str
) -> None:
    shared_clean(tmp_path)
    (tmp_path / "common" / "notes.txt").write_text("not a notebook", encoding="utf-8")
    toml = (
        f'description = "x"\ninclude = [\n  "../common/clean.ipynb",\n  {json.dumps(entry)},\n]\n'
    )
    folder = including(tmp_path, toml)

    errors = assemble(folder).errors

    assert len(errors) == 1, [e.format() for e in errors]
    assert errors[0].kind is ProblemKind.BAD_CONFIG
    assert errors[0].location.notebook == "pipeline.toml"
    assert errors[0].location.line == 4
    assert message in errors[0].message
    assert errors[0].hint


def test_a_notebook_listed_twice_or_clashing_by_run_name_is_an_error(tmp_path: Path) -> None:
    shared_clean(tmp_path)
    twice = including(tmp_path, 'include = ["../common/clean.ipynb", "../common/./clean.ipynb"]\n')
    assert "is listed twice" in assemble(twice).errors[0].message

    # Run notebooks are named flat: `../common/clean.ipynb` runs as `common--clean.ipynb`.
    clash = including(
        tmp_path,
        'include = ["../common/clean.ipynb"]\n',
        {"load.ipynb": [LOAD], "common--clean.ipynb": ["%%block other\ny = 2"]},
    )
    errors = assemble(clash).errors
    assert len(errors) == 1, [e.format() for e in errors]
    assert "clashes with `common--clean.ipynb`" in errors[0].message, errors[0].format()
    assert errors[0].location.line == 1


def test_a_non_string_entry_is_an_error_of_the_config(tmp_path: Path) -> None:
    folder = including(tmp_path, "include = [3]\n")
    errors = assemble(folder).errors
    assert errors[0].kind is ProblemKind.BAD_CONFIG
    assert errors[0].location.line == 1
    assert "include" in errors[0].message


def test_the_cache_notices_an_edited_included_notebook(tmp_path: Path) -> None:
    shared_clean(tmp_path)
    folder = including(tmp_path, 'include = ["../common/clean.ipynb"]\n')
    cache = AssemblyCache()
    first = cache.get(folder)
    assert cache.get(folder) is first

    shared_clean(tmp_path, CLEAN + "\nkept = len(cleaned)")
    second = cache.get(folder)

    assert second is not first
    assert second.blocks["clean"].outputs == ("cleaned", "kept")
    assert cache.get(folder) is second


def test_the_cache_notices_an_included_notebook_that_appears(tmp_path: Path) -> None:
    folder = including(tmp_path, 'include = ["../common/clean.ipynb"]\n')
    cache = AssemblyCache()
    assert "does not exist" in cache.get(folder).errors[0].message

    shared_clean(tmp_path)

    assert cache.get(folder).ok


def test_graph_and_validate_show_included_blocks(tmp_path: Path) -> None:
    (tmp_path / "blockbook.toml").touch()
    shared_clean(tmp_path)
    folder = including(tmp_path, 'include = ["../common/clean.ipynb"]\n')

    validated = blockbook(tmp_path, "validate", str(folder))
    graph = blockbook(tmp_path, "graph", str(folder), "--format", "json")

    assert validated.returncode == 0, validated.stderr
    assert "3 blocks" in validated.stdout
    assert graph.returncode == 0, graph.stderr
    blocks = {b["name"]: b for b in json.loads(graph.stdout)["blocks"]}
    assert blocks["clean"]["notebook"] == "../common/clean.ipynb"
    assert blocks["clean"]["cell"] == 1


def test_an_edited_shared_notebook_changes_the_pipelines_that_include_it(tmp_path: Path) -> None:
    shared_clean(tmp_path)
    taxi = including(tmp_path, 'include = ["../common/clean.ipynb"]\n')
    other = make_pipeline(tmp_path, {"a.ipynb": [LOAD]}, name="other")
    common = tmp_path / "common"  # has blocks: listed as a pipeline too, unless excluded
    changes = PipelineChanges(tmp_path, lambda: [taxi, other, common])
    assert changes.look() == []

    shared_clean(tmp_path, CLEAN + "\nkept = len(cleaned)")

    assert changes.look() == sorted([common, taxi])
    assert changes.look() == []
