"""The `blockbook` command line: list, validate, graph, and the shipped taxi example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pipelines.cli.main import main
from tests.helpers.notebooks import Markdown, make_pipeline
from tests.helpers.paths import REPO_ROOT

TAXI = REPO_ROOT / "notebooks" / "taxi"


READ_WARNING = (
    "load.ipynb:cell 3: warning: block `load` reads `read`, which no block, parameter or "
    "connection provides\n"
    "    hint: produce it in another block, give it a default under [params] in pipeline.toml, "
    "or pass it with `-p NAME=VALUE`\n"
)
"""`good` reads `read`, which nothing provides: a warning since issue 11."""


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "blockbook.toml").write_text("")
    make_pipeline(
        root,
        {
            "load.ipynb": [
                "%load_ext kernel_magics",
                Markdown("# Load"),
                "%%block load --kind loader\nraw = read(path)",
            ],
            "clean.ipynb": ["%%block clean --kind transformer\ndf = raw.dropna()"],
        },
        pipeline_toml='[params]\npath = "data.csv"\n',
        name="good",
    )
    make_pipeline(
        root,
        {
            "load.ipynb": [
                "%load_ext kernel_magics",
                Markdown("# Load"),
                "%%block load --upsteam x\nv = 1",
                "%%block clean --upstream laod\nw = v",
            ],
            "report.ipynb": ["%%block report\nprint(q)", "%%block later\nq = 1"],
        },
        name="broken",
    )
    make_pipeline(
        root,
        {"a.ipynb": ["%%block early\nn = later_value", "%%block late\nlater_value = 1"]},
        name="warned",
    )
    return root


# ---- list ------------------------------------------------------------------------------------


def test_list(project: Path) -> None:
    result = run("--project", str(project), "list")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "broken  broken  (2 notebooks)",
        "good    good  (2 notebooks)",
        "warned  warned  (1 notebook)",
    ]


def test_list_empty_project(tmp_path: Path) -> None:
    result = run("--project", str(tmp_path), "list")
    assert result.exit_code == 0
    assert result.stdout.startswith(f"no pipelines under {tmp_path}")


def test_project_defaults_to_the_root_above_cwd(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project / "good")
    result = run("validate", "warned")
    assert result.exit_code == 0, result.output
    assert "warned: valid" in result.stdout


# ---- validate --------------------------------------------------------------------------------


def test_validate_valid(project: Path) -> None:
    result = run("--project", str(project), "validate", "good")
    assert result.exit_code == 0, result.output
    assert result.stdout == READ_WARNING + "good: valid, 2 blocks in 2 notebooks\n"
    assert result.stderr == ""


def test_validate_by_path(project: Path) -> None:
    result = run("--project", str(project), "validate", str(project / "good"))
    assert result.exit_code == 0, result.output
    assert result.stdout == READ_WARNING + "good: valid, 2 blocks in 2 notebooks\n"


def test_validate_errors(project: Path) -> None:
    result = run("--project", str(project), "validate", "broken")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "load.ipynb:cell 3: unknown option `--upsteam`; did you mean `--upstream`?",
        "    hint: known options: --upstream, --kind, --retries, --retry-delay, --timeout, --out, "
        "--tests, --skip, --trigger-rule, --poke-interval, --sensor-timeout, --cache, --schema, "
        "--schema-file, --map",
        "load.ipynb:cell 4: block `clean` lists unknown upstream block `laod`",
        "    hint: check the name, or remove it",
        "broken: 2 error(s)",
    ]
    # Warnings are not errors: they go to stdout, and alone they don't fail validation.
    assert result.stdout.splitlines() == [
        "report.ipynb:cell 1: warning: block `report` reads `q`, which only `later` "
        "(report.ipynb:cell 2) produces, later in the same notebook; it is treated as a parameter",
        "    hint: move `report` below `later`, or add `--upstream later`",
        # `load`'s header is broken, so nothing provides `v` (issue 11).
        "load.ipynb:cell 4: warning: block `clean` reads `v`, which no block, parameter or "
        "connection provides",
        "    hint: produce it in another block, give it a default under [params] in "
        "pipeline.toml, or pass it with `-p NAME=VALUE`",
    ]


def test_validate_warnings_only_passes(project: Path) -> None:
    result = run("--project", str(project), "validate", "warned")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("a.ipynb:cell 1: warning: block `early` reads `later_value`")
    assert lines[1].startswith("    hint: ")
    assert lines[-1] == "warned: valid, 2 blocks in 1 notebook"


def test_validate_syntax_error_has_line(tmp_path: Path) -> None:
    folder = make_pipeline(tmp_path, {"a.ipynb": ["%%block x\nv = 1\nw = (\n"]})
    result = run("--project", str(tmp_path), "validate", str(folder))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].startswith(
        "a.ipynb:cell 1:line 3: syntax error in block `x`:"
    )


@pytest.mark.parametrize("command", ["validate", "graph"])
def test_unknown_pipeline_is_a_usage_error(project: Path, command: str) -> None:
    result = run("--project", str(project), command, "godo")
    assert result.exit_code == 2
    assert "no pipeline folder or pipeline named `godo`" in result.stderr
    assert "did you mean `good`?" in result.stderr
    assert "pipelines here: broken, good, warned" in result.stderr


# ---- graph -----------------------------------------------------------------------------------


def test_graph_json(project: Path) -> None:
    result = run("--project", str(project), "graph", "good", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["pipeline"] == "good"
    assert data["order"] == ["load", "clean"]
    assert [p["kind"] for p in data["problems"]] == ["unprovided_name"]  # `read`, issue 11
    load, clean = data["blocks"]
    assert load == {
        "name": "load",
        "notebook": "load.ipynb",
        "cell": 3,
        "cell_id": "load-3",
        "kind": "loader",
        "upstream": [],
        "outputs": ["raw"],
        "inputs": ["read", "path"],
        "sources": {},
        "stored_outputs": ["raw"],
        "tests": [],
        "map": None,
    }
    assert clean == {
        "name": "clean",
        "notebook": "clean.ipynb",
        "cell": 1,
        "cell_id": "clean-1",
        "kind": "transformer",
        "upstream": ["load"],
        "outputs": ["df"],
        "inputs": ["raw"],
        "sources": {"raw": "load"},
        "stored_outputs": [],
        "tests": [],
        "map": None,
    }


def test_graph_json_includes_warnings(project: Path) -> None:
    result = run("--project", str(project), "graph", "warned", "--format", "json")
    assert result.exit_code == 0
    (problem,) = json.loads(result.stdout)["problems"]
    assert problem["kind"] == "reads_later_output"
    assert problem["severity"] == "warning"
    assert (problem["notebook"], problem["cell"], problem["cell_id"]) == ("a.ipynb", 1, "a-1")
    assert "warning: block `early`" in result.stderr, "warnings are also shown on stderr"


def test_graph_text(project: Path) -> None:
    result = run("--project", str(project), "graph", "good")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "pipeline good: 2 blocks in 2 notebooks",
        "  1. load  [loader]  load.ipynb:cell 3",
        "       outputs: raw",
        "       parameters/free: read, path",
        "  2. clean  [transformer]  clean.ipynb:cell 1",
        "       after: load",
        "       outputs: df",
        "       reads: raw <- load",
    ]


def test_graph_mermaid(project: Path) -> None:
    result = run("--project", str(project), "graph", "good", "--format", "mermaid")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "flowchart TD",
        '  subgraph notebook_0["clean.ipynb"]',
        '    b_clean["clean"]',
        "  end",
        '  subgraph notebook_1["load.ipynb"]',
        '    b_load["load"]',
        "  end",
        '  b_load -- "raw" --> b_clean',
    ]


def test_graph_dot(project: Path) -> None:
    result = run("--project", str(project), "graph", "good", "--format", "dot")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        'digraph "good" {',
        "  rankdir=TB;",
        "  node [shape=box];",
        '  subgraph cluster_0 { label="clean.ipynb";',
        '    "clean";',
        "  }",
        '  subgraph cluster_1 { label="load.ipynb";',
        '    "load";',
        "  }",
        '  "load" -> "clean" [label="raw"];',
        "}",
    ]


def test_graph_explicit_edge_has_no_label(tmp_path: Path) -> None:
    folder = make_pipeline(
        tmp_path,
        {"a.ipynb": ["%%block setup\nconfigure()", "%%block work --upstream setup\nx = 1"]},
    )
    mermaid = run("graph", str(folder), "--format", "mermaid")
    assert "  b_setup --> b_work" in mermaid.stdout.splitlines()
    dot = run("graph", str(folder), "--format", "dot")
    assert '  "setup" -> "work";' in dot.stdout.splitlines()


def test_graph_names_that_are_mermaid_keywords_or_need_quoting(tmp_path: Path) -> None:
    folder = make_pipeline(
        tmp_path,
        {'say "hi".ipynb': ["%%block end\nx = 1", "%%block graph\ny = x"]},
    )
    mermaid = run("graph", str(folder), "--format", "mermaid").stdout.splitlines()
    assert '  subgraph notebook_0["say #quot;hi#quot;.ipynb"]' in mermaid
    assert '  b_end -- "x" --> b_graph' in mermaid
    dot = run("graph", str(folder), "--format", "dot").stdout.splitlines()
    assert '  subgraph cluster_0 { label="say \\"hi\\".ipynb";' in dot


def test_graph_with_errors_fails(project: Path) -> None:
    result = run("--project", str(project), "graph", "broken", "--format", "json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "load.ipynb:cell 3: unknown option `--upsteam`" in result.stderr
    assert result.stderr.rstrip().endswith("broken: fix the errors above to see the graph")


def test_graph_unknown_format(project: Path) -> None:
    result = run("--project", str(project), "graph", "good", "--format", "svg")
    assert result.exit_code == 2
    assert "'svg' is not one of" in result.stderr


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert "0.1.0" in result.stdout


# ---- the shipped example ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "argument", [pytest.param(str(TAXI), id="by-path"), pytest.param("taxi", id="by-name")]
)
def test_taxi_example_validates(argument: str) -> None:
    result = run("--project", str(REPO_ROOT), "validate", argument)
    assert result.exit_code == 0, result.output
    assert result.stdout == "taxi: valid, 3 blocks in 3 notebooks\n"


def test_taxi_example_graph() -> None:
    result = run("--project", str(REPO_ROOT), "graph", str(TAXI), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["pipeline"] == "taxi"
    assert data["order"] == ["load_trips", "clean_trips", "export_trips"]
    assert data["problems"] == []
    blocks = {block["name"]: block for block in data["blocks"]}
    assert list(blocks) == data["order"]

    load = blocks["load_trips"]
    assert (load["notebook"], load["kind"]) == ("load.ipynb", "loader")
    assert load["upstream"] == []
    assert load["outputs"] == ["trips"]
    assert load["inputs"] == []
    assert load["stored_outputs"] == ["trips"]

    clean = blocks["clean_trips"]
    assert (clean["notebook"], clean["kind"]) == ("clean.ipynb", "transformer")
    assert clean["upstream"] == ["load_trips"]
    assert clean["outputs"] == ["green_trips"]
    assert clean["inputs"] == ["trips"]
    assert clean["sources"] == {"trips": "load_trips"}
    assert clean["stored_outputs"] == ["green_trips"]
    assert clean["tests"] == [
        "vendor_ids_are_known",
        "passengers_are_positive",
        "distances_are_positive",
    ]

    export = blocks["export_trips"]
    assert (export["notebook"], export["kind"]) == ("export.ipynb", "exporter")
    assert export["upstream"] == ["clean_trips"]
    assert export["outputs"] == ["exported_rows"]
    assert sorted(export["inputs"]) == ["database_url", "green_trips"]
    assert export["sources"] == {"green_trips": "clean_trips"}
    assert "database_url" not in export["sources"], "a free input: the pipeline parameter"
    assert export["tests"] == ["every_row_is_exported"]
