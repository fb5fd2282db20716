"""Bad input is refused before anything runs or is overwritten, with an error that says where
it is and how to fix it: a debug `--output` aimed at the run store, a corrupt store file, a
cell id nbformat rejects, parameter names and values the generated cells cannot hold."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from pipelines.params import ParameterError, merge, parse_assignments
from tests.helpers.notebooks import nb
from tests.helpers.runs import blockbook, blockbook_json


def no_traceback(result) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr


# ---- item 17: debug --output, a corrupt store ----------------------------------------------------


def test_debug_never_overwrites_what_blockbook_did_not_write_there(
    project: Path, pipeline, store_url: str | None
) -> None:
    pipeline({"a.ipynb": nb("%%block b\nx = 1")}, pipeline_toml="[params]\nn = 1\n")
    ran = blockbook(project, "run", "pipe")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    run_id = blockbook_json(project, "runs")[0]["run_id"]
    (project / "notes.txt").write_text("mine", encoding="utf-8")
    nbformat.write(nbformat.v4.new_notebook(), project / "other.ipynb")
    (project / ".blockbook" / "stray.txt").write_text("state", encoding="utf-8")
    refused = [
        ".blockbook/blockbook.db",
        ".blockbook/stray.txt",
        ".blockbook/new.ipynb",  # inside .blockbook but not a run's debug folder
        "notes.txt",
        "other.ipynb",  # a notebook, but not one `blockbook debug` wrote
        "pipe/pipeline.toml",
    ]
    before = {
        target: (project / target).read_bytes() if (project / target).exists() else None
        for target in refused
    }
    for target in refused:
        result = blockbook(project, "debug", run_id, "b", "--output", target, cwd=project)
        assert result.returncode == 2, (target, result.stdout, result.stderr)
        assert target.rsplit("/", 1)[-1] in result.stderr
        assert "hint" in result.stderr or "--output" in result.stderr
        no_traceback(result)
    after = {
        target: (project / target).read_bytes() if (project / target).exists() else None
        for target in refused
    }
    assert after == before
    assert blockbook_json(project, "runs")[0]["run_id"] == run_id  # the store still works

    # Its own notebooks it may write and rewrite: the run's debug folder, a new file elsewhere.
    for target in [f".blockbook/runs/{run_id}/debug/b.ipynb", "mine.ipynb", "mine.ipynb"]:
        result = blockbook(project, "debug", run_id, "b", "--output", target, cwd=project)
        assert result.returncode == 0, (target, result.stderr)
        assert (project / target).is_file()


def test_a_corrupt_store_file_is_a_clear_error_naming_it(project: Path, pipeline) -> None:
    pipeline({"a.ipynb": nb("%%block b\nx = 1")})
    ran = blockbook(project, "run", "pipe")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    database = project / ".blockbook" / "blockbook.db"
    for extra in ("-wal", "-shm"):
        Path(f"{database}{extra}").unlink(missing_ok=True)
    nbformat.write(nbformat.v4.new_notebook(), database)  # what `debug --output` used to do
    for command in (["runs"], ["run", "pipe"], ["validate", "pipe"]):
        result = blockbook(project, *command)
        if command == ["validate", "pipe"]:
            assert result.returncode == 0, result.stderr  # validate needs no store
            continue
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert str(database) in result.stderr
        assert "not a database" in result.stderr
        assert "hint" in result.stderr
        no_traceback(result)


# ---- item 18: cell ids --------------------------------------------------------------------------


@pytest.mark.parametrize("cell_id", ["bad id!", "x" * 65, "naïve"])
def test_a_cell_id_nbformat_rejects_fails_validation_not_the_run(
    project: Path, pipeline, cell_id: str
) -> None:
    folder = pipeline({"a.ipynb": nb("%%block b\nx = 1")})
    path = folder / "a.ipynb"
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["cells"][1]["id"] = cell_id
    path.write_text(json.dumps(raw), encoding="utf-8")

    validated = blockbook(project, "validate", "pipe")
    assert validated.returncode != 0, validated.stdout
    shown = validated.stdout + validated.stderr
    assert "a.ipynb:cell 2" in shown
    assert "cell id" in shown
    assert "hint" in shown
    ran = blockbook(project, "run", "pipe")
    assert ran.returncode != 0
    assert "a.ipynb:cell 2" in ran.stdout + ran.stderr
    no_traceback(ran)
    assert blockbook_json(project, "runs") == []


# ---- item 19: parameter names and values --------------------------------------------------------

BAD_PARAMS_TOML = """\
[params]
fine = 1
"a-b" = 1
"class" = 2
datetime = 3
big = inf
nothing = nan

[schedule]
every = "1h"

[schedule.params]
"for" = 1
"""


def test_bad_params_in_pipeline_toml_fail_validation_with_their_lines(
    project: Path, pipeline
) -> None:
    pipeline({"a.ipynb": nb("%%block b\nx = fine")}, pipeline_toml=BAD_PARAMS_TOML)
    validated = blockbook(project, "validate", "pipe")
    assert validated.returncode != 0, validated.stdout
    shown = validated.stdout + validated.stderr
    for line, name in [(3, "a-b"), (4, "class"), (5, "datetime"), (6, "big"), (7, "nothing")]:
        assert f"pipeline.toml:line {line}: `params.{name}`" in shown, shown
    assert "pipeline.toml:line 13: `schedule.params.for`" in shown, shown
    assert "`params.fine`" not in shown
    ran = blockbook(project, "run", "pipe")
    assert ran.returncode != 0
    no_traceback(ran)
    assert blockbook_json(project, "runs") == []


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("class=1", "keyword"),
        ("a-b=1", "identifier"),
        ("datetime=5", "generated"),
        ("x=1e999", "finite"),
        ("x=-1e999", "finite"),
    ],
)
def test_bad_command_line_params_are_refused_before_the_run(
    project: Path, pipeline, option: str, says: str
) -> None:
    pipeline({"a.ipynb": nb("%%block b\nx = 1")}, pipeline_toml="[params]\nday = 2024-01-31\n")
    result = blockbook(project, "run", "pipe", "-p", option)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"-p {option}" in result.stderr
    assert says in result.stderr
    no_traceback(result)
    assert blockbook_json(project, "runs") == []


def test_merge_checks_every_way_in() -> None:
    """REST and schedule parameters reach a run through `merge`, not `-p`."""
    with pytest.raises(ParameterError, match="`class`"):
        merge({}, {"class": 1})
    with pytest.raises(ParameterError, match="finite"):
        merge({"x": 1}, {"x": float("nan")})
    with pytest.raises(ParameterError, match="generated"):
        parse_assignments(["__blockbook_run__=1"])
    assert merge({"day": 1}, {"match": 2, "type": 3}) == {"day": 1, "match": 2, "type": 3}
