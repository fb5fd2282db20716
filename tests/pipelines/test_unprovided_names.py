"""Assembly warns about names a block reads that nothing provides (issue 11, item 3)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pipelines.assembly.pipeline import assemble
from pipelines.cli.main import main
from pipelines.errors import Location, ProblemKind, Severity
from tests.helpers.notebooks import MakePipeline, make_pipeline, nb


def unprovided(folder: Path) -> list[tuple[str, Location, str]]:
    return [
        (p.message, p.location, p.hint)
        for p in assemble(folder).problems
        if p.kind is ProblemKind.UNPROVIDED_NAME
    ]


def test_a_typo_warns_with_location_and_did_you_mean(pipeline_dir: MakePipeline) -> None:
    folder = pipeline_dir(
        {
            "a.ipynb": nb(
                "%%block load\ngreen_taxi_raw = [1, 2]",
                "%%block clean\ncleaned = list(green_taxi_rw)",
            )
        }
    )
    pipeline = assemble(folder)
    (problem,) = [p for p in pipeline.problems if p.kind is ProblemKind.UNPROVIDED_NAME]
    assert problem.severity is Severity.WARNING
    assert problem.location == Location("a.ipynb", 3, "a-3")
    assert "`clean` reads `green_taxi_rw`" in problem.message
    assert problem.hint == "did you mean `green_taxi_raw`?"
    assert pipeline.ok


def test_params_connections_and_runtime_names_are_provided(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "blockbook.toml").write_text('[connections.warehouse]\nurl = "sqlite://"\n')
    folder = make_pipeline(
        root,
        {
            "a.ipynb": nb(
                "%%block imports\nimport json",
                "%%block use\nrows = json.dumps([table, limit, warehouse, interval_start,"
                " interval_end, datetime.date.today()])",
            )
        },
        '[params]\ntable = "trips"\n[schedule]\nevery = "1h"\n[schedule.params]\nlimit = 3\n',
    )
    assert unprovided(folder) == []


def test_a_template_name_left_unfilled_warns_without_a_guess(pipeline_dir: MakePipeline) -> None:
    folder = pipeline_dir({"a.ipynb": nb("%%block export\nrows = read(table)")})
    messages = [message for message, _, _ in unprovided(folder)]
    assert messages == [
        "block `export` reads `read`, which no block, parameter or connection provides",
        "block `export` reads `table`, which no block, parameter or connection provides",
    ]
    hint = unprovided(folder)[1][2]
    assert "[params] in pipeline.toml" in hint


def test_names_another_block_produces_later_are_left_to_the_wiring(
    pipeline_dir: MakePipeline,
) -> None:
    folder = pipeline_dir({"a.ipynb": nb("%%block b\ny = x", "%%block a\nx = 1")})
    assert unprovided(folder) == []


def test_validate_warns_and_strict_fails(pipeline_dir: MakePipeline) -> None:
    folder = pipeline_dir({"a.ipynb": nb("%%block load\nraw = 1", "%%block clean\nout = rw + 1")})
    runner = CliRunner()
    relaxed = runner.invoke(main, ["validate", str(folder)])
    assert relaxed.exit_code == 0
    assert "a.ipynb:cell 3: warning: block `clean` reads `rw`" in relaxed.output
    assert "did you mean `raw`?" in relaxed.output
    strict = runner.invoke(main, ["validate", "--strict", str(folder)])
    assert strict.exit_code == 1
    assert "pipe: 1 problem(s) (--strict)" in strict.output
