"""Assembling real notebooks into one graph: edges, order, and every problem validation reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from pipelines.assembly.pipeline import Pipeline, assemble
from pipelines.errors import Location, Problem, ProblemKind, Severity
from tests.helpers.notebooks import MakePipeline, Markdown, NotebookSpec

# ---- valid graphs ----------------------------------------------------------------------------

VALID = [
    pytest.param(
        {"a.ipynb": ["%%block load\nraw = 1", "%%block clean\ndf = raw", "%%block report\nr = df"]},
        {"load": (), "clean": ("load",), "report": ("clean",)},
        {"load": {}, "clean": {"raw": "load"}, "report": {"df": "clean"}},
        ("load", "clean", "report"),
        id="chain",
    ),
    pytest.param(
        {
            "a.ipynb": [
                "%%block top\nseed = 1",
                "%%block left\nl = seed * 2",
                "%%block right\nr = seed * 3",
                "%%block bottom\ntotal = l + r",
            ]
        },
        {"top": (), "left": ("top",), "right": ("top",), "bottom": ("left", "right")},
        {
            "top": {},
            "left": {"seed": "top"},
            "right": {"seed": "top"},
            "bottom": {"l": "left", "r": "right"},
        },
        ("top", "left", "right", "bottom"),
        id="diamond",
    ),
    pytest.param(
        {
            "1_load.ipynb": ["%%block load\ntrips = read()"],
            "2_clean.ipynb": ["%%block clean\ngreen = trips"],
            "3_export.ipynb": ["%%block export\nrows = len(green) + len(trips)"],
        },
        {"load": (), "clean": ("load",), "export": ("clean", "load")},
        {"load": {}, "clean": {"trips": "load"}, "export": {"green": "clean", "trips": "load"}},
        ("load", "clean", "export"),
        id="cross-notebook",
    ),
    pytest.param(
        {
            # The reader sits in the notebook that sorts first: order follows edges, not paths.
            "a_report.ipynb": ["%%block report\nsummary = describe(df)"],
            "z_load.ipynb": ["%%block load\ndf = 1"],
        },
        {"report": ("load",), "load": ()},
        {"report": {"df": "load"}, "load": {}},
        ("load", "report"),
        id="cross-notebook-edge-against-path-order",
    ),
    pytest.param(
        {
            "a.ipynb": [
                "%%block first\ndf = 1",
                "%%block second\ndf = 2",
                "%%block reader\nn = df",
            ]
        },
        {"first": (), "second": (), "reader": ("second",)},
        {"first": {}, "second": {}, "reader": {"df": "second"}},
        ("first", "second", "reader"),
        id="shadowing-nearest-earlier-wins",
    ),
    pytest.param(
        {
            "a.ipynb": [
                "%%block first\ndf = 1",
                "%%block update\ndf = df + 1",
                "%%block reader\nn = df",
            ]
        },
        {"first": (), "update": ("first",), "reader": ("update",)},
        {"first": {}, "update": {"df": "first"}, "reader": {"df": "update"}},
        ("first", "update", "reader"),
        id="in-place-update-chain",
    ),
    pytest.param(
        {
            "a.ipynb": ["%%block local\ndf = 1", "%%block reader\nn = df"],
            "b.ipynb": ["%%block remote\ndf = 2"],
        },
        {"local": (), "reader": ("local",), "remote": ()},
        {"local": {}, "reader": {"df": "local"}, "remote": {}},
        ("local", "reader", "remote"),
        id="same-notebook-beats-other-notebook",
    ),
    pytest.param(
        {
            "a.ipynb": ["%%block first\ndf = 1", "%%block second\ndf = 2"],
            "b.ipynb": ["%%block reader\nn = df"],
        },
        {"first": (), "second": (), "reader": ("second",)},
        {"first": {}, "second": {}, "reader": {"df": "second"}},
        ("first", "second", "reader"),
        id="last-producer-of-other-notebook",
    ),
    pytest.param(
        {
            "a.ipynb": [
                "%%block first\ndf = 1",
                "%%block second\ndf = 2",
                "%%block reader --upstream first\nn = df",
            ]
        },
        {"first": (), "second": (), "reader": ("first",)},
        {"first": {}, "second": {}, "reader": {"df": "first"}},
        ("first", "second", "reader"),
        id="explicit-upstream-overrides-nearest",
    ),
    pytest.param(
        {
            "a.ipynb": ["%%block local\ndf = 1", "%%block reader --upstream remote\nn = df"],
            "b.ipynb": ["%%block remote\ndf = 2"],
        },
        {"local": (), "reader": ("remote",), "remote": ()},
        {"local": {}, "reader": {"df": "remote"}, "remote": {}},
        ("local", "remote", "reader"),
        id="explicit-upstream-in-other-notebook",
    ),
    pytest.param(
        {
            "a.ipynb": ["%%block setup\nconfigure()"],
            "b.ipynb": ["%%block work --upstream setup\nresult = compute()"],
        },
        {"setup": (), "work": ("setup",)},
        {"setup": {}, "work": {}},
        ("setup", "work"),
        id="explicit-only-edge",
    ),
    pytest.param(
        {
            "a.ipynb": ["%%block reader --upstream later\nn = df", "%%block later\ndf = 1"],
        },
        {"reader": ("later",), "later": ()},
        {"reader": {"df": "later"}, "later": {}},
        ("later", "reader"),
        id="explicit-upstream-later-in-notebook",
    ),
    pytest.param(
        {
            "b.ipynb": ["%%block b2\nx = 1", "%%block b4\ny = 1"],
            "a.ipynb": ["%%block a1\nz = 1", "notes", "%%block a3\nw = 1"],
            "c.ipynb": ["%%block c1\nv = 1"],
        },
        {"a1": (), "a3": (), "b2": (), "b4": (), "c1": ()},
        {"a1": {}, "a3": {}, "b2": {}, "b4": {}, "c1": {}},
        ("a1", "a3", "b2", "b4", "c1"),
        id="independent-blocks-by-path-then-cell",
    ),
    pytest.param(
        {
            "a.ipynb": ["%%block zeta\nx = 1", "%%block alpha\ny = 1"],
        },
        {"zeta": (), "alpha": ()},
        {"zeta": {}, "alpha": {}},
        ("zeta", "alpha"),
        id="tie-break-by-cell-not-name",
    ),
    pytest.param(
        {
            "a.ipynb": ["%%block a_top\nx = 1", "%%block a_low\ny = late"],
            "b.ipynb": ["%%block b_top\nlate = x"],
        },
        {"a_top": (), "a_low": ("b_top",), "b_top": ("a_top",)},
        {"a_top": {}, "a_low": {"late": "b_top"}, "b_top": {"x": "a_top"}},
        ("a_top", "b_top", "a_low"),
        id="notebooks-interleave",
    ),
    pytest.param(
        {
            "a.ipynb": [
                "%load_ext kernel_magics",
                Markdown("# Notes\n%%block not_a_block"),
                "x = scratch",
                "%%block only\nresult = param",
            ]
        },
        {"only": ()},
        {"only": {}},
        ("only",),
        id="markdown-and-plain-cells-ignored",
    ),
    pytest.param(
        {
            "a.ipynb": ["%%block make --out df\ndf = 1\nextra = 2"],
            "b.ipynb": ["%%block use\nn = df + extra"],
        },
        {"make": (), "use": ("make",)},
        {"make": {}, "use": {"df": "make"}},
        ("make", "use"),
        id="out-overrides-outputs",
    ),
    pytest.param(
        {"a.ipynb": ["%%block solo\nx = x + 1"]},
        {"solo": ()},
        {"solo": {}},
        ("solo",),
        id="self-read-is-free",
    ),
]


@pytest.mark.parametrize(("notebooks", "upstream", "sources", "order"), VALID)
def test_valid_graph(
    pipeline_dir: MakePipeline,
    notebooks: NotebookSpec,
    upstream: Mapping[str, tuple[str, ...]],
    sources: Mapping[str, Mapping[str, str]],
    order: tuple[str, ...],
) -> None:
    pipeline = assemble(pipeline_dir(notebooks))
    # Free names these cases read on purpose now warn (issue 11); nothing else may.
    assert [p for p in pipeline.problems if p.kind is not ProblemKind.UNPROVIDED_NAME] == []
    assert pipeline.ok
    assert dict(pipeline.upstream) == upstream
    assert {name: dict(wired) for name, wired in pipeline.sources.items()} == sources
    assert pipeline.order == order
    assert tuple(pipeline.blocks) == order, "blocks are listed in global order"


def test_block_records_location_and_analysis(pipeline_dir: MakePipeline) -> None:
    pipeline = assemble(
        pipeline_dir(
            {
                "nb.ipynb": [
                    "notes",
                    "%%block clean --kind transformer\ndf = raw\n@test\ndef t(df):\n    pass",
                ]
            },
            name="demo",
        )
    )
    assert pipeline.name == "demo"
    assert pipeline.folder.name == "demo"
    block = pipeline.blocks["clean"]
    assert (block.notebook, block.cell, block.cell_id) == ("nb.ipynb", 2, "nb-2")
    assert block.location == Location("nb.ipynb", 2, "nb-2")
    assert block.outputs == ("df",)
    assert block.inputs == ("raw",)
    assert block.analysis.tests == ("t",)
    assert block.body.startswith("df = raw")
    assert block.source.startswith("%%block clean --kind transformer\n")


def test_indented_block_cell_is_a_block(pipeline_dir: MakePipeline) -> None:
    pipeline = assemble(pipeline_dir({"a.ipynb": ["\n  %%block a\n  x = 1", "%%block b\ny = x"]}))
    assert pipeline.problems == ()
    assert pipeline.blocks["a"].outputs == ("x",)
    assert pipeline.upstream["b"] == ("a",)


def test_notebooks_in_subfolders_are_not_part_of_the_pipeline(
    pipeline_dir: MakePipeline,
) -> None:
    folder = pipeline_dir(
        {"a.ipynb": ["%%block top\nx = 1"], "sub/b.ipynb": ["%%block deep\ny = 1"]}
    )
    assert tuple(assemble(folder).blocks) == ("top",)


# ---- stored outputs --------------------------------------------------------------------------


def test_stored_outputs(pipeline_dir: MakePipeline) -> None:
    pipeline = assemble(
        pipeline_dir(
            {
                "a.ipynb": [
                    "%%block load\ndf = 1\nengine = 2\nfig = 3",
                    "%%block explicit --out summary extra\nsummary = df",
                ],
                "b.ipynb": ["%%block use\nn = len(df)"],
            }
        )
    )
    assert pipeline.ok
    assert pipeline.stored_outputs("load") == ("df",), "unread `engine` and `fig` are not stored"
    assert pipeline.stored_outputs("explicit") == ("summary", "extra"), "--out names are stored"
    assert pipeline.stored_outputs("use") == ()
    assert pipeline.readers["load"] == {"df": ["explicit", "use"]}


# ---- problems --------------------------------------------------------------------------------


def where(problem: Problem) -> str:
    return str(problem.location)


ERRORS = [
    # (notebooks, [(kind, location, fragments of the message), ...] in report order)
    pytest.param(
        {"a.ipynb": ["%%block x\nv = 1", "%%block x\nw = 2"]},
        [(ProblemKind.DUPLICATE_BLOCK, "a.ipynb:cell 2", ["`x`", "a.ipynb:cell 1"])],
        id="duplicate-same-notebook",
    ),
    pytest.param(
        {"a.ipynb": ["%%block x\nv = 1"], "b.ipynb": ["notes", "%%block x\nw = 2"]},
        [(ProblemKind.DUPLICATE_BLOCK, "b.ipynb:cell 2", ["`x`", "a.ipynb:cell 1"])],
        id="duplicate-other-notebook",
    ),
    pytest.param(
        {"a.ipynb": ["%%block load\nv = 1", "%%block clean --upstream laod\nw = v"]},
        [
            (
                ProblemKind.UNKNOWN_UPSTREAM,
                "a.ipynb:cell 2",
                ["block `clean` lists unknown upstream block `laod`"],
            )
        ],
        id="unknown-upstream",
    ),
    pytest.param(
        {
            "a.ipynb": ["%%block p1\nv = 1"],
            "b.ipynb": ["%%block p2\nv = 2"],
            "c.ipynb": ["%%block reader\nn = v"],
        },
        [
            (
                ProblemKind.AMBIGUOUS_PRODUCER,
                "c.ipynb:cell 1",
                ["`reader` reads `v`", "`p1` (a.ipynb:cell 1)", "`p2` (b.ipynb:cell 1)"],
            )
        ],
        id="ambiguous-producers",
    ),
    pytest.param(
        {"a.ipynb": ["%%block x\nv = (\n"]},
        [(ProblemKind.SYNTAX_ERROR, "a.ipynb:cell 1:line 2", ["syntax error in block `x`"])],
        id="syntax-error",
    ),
    pytest.param(
        {"a.ipynb": ["notes", "%%block x --upsteam y\nv = 1"]},
        [(ProblemKind.BAD_HEADER, "a.ipynb:cell 2", ["did you mean `--upstream`?"])],
        id="bad-header",
    ),
    pytest.param(
        {"a.ipynb": ["%%block Bad\nv = 1"]},
        [(ProblemKind.BAD_HEADER, "a.ipynb:cell 1", ["invalid block name `Bad`"])],
        id="bad-name",
    ),
    pytest.param(
        {"a.ipynb": ["%%block x --upstream y\nv = 1", "%%block y --upstream x\nw = 2"]},
        [
            (
                ProblemKind.CYCLE,
                "a.ipynb:cell 1",
                [
                    "x (a.ipynb:cell 1) -> y (a.ipynb:cell 2) -> x (a.ipynb:cell 1)",
                    "y has --upstream x",
                    "x has --upstream y",
                ],
            )
        ],
        id="cycle-in-notebook-via-upstream",
    ),
    pytest.param(
        {"a.ipynb": ["%%block x\nv = w"], "b.ipynb": ["%%block y\nw = v"]},
        [
            (
                ProblemKind.CYCLE,
                "a.ipynb:cell 1",
                [
                    "x (a.ipynb:cell 1) -> y (b.ipynb:cell 1) -> x (a.ipynb:cell 1)",
                    "y reads `v` from x",
                    "x reads `w` from y",
                ],
            )
        ],
        id="cycle-across-notebooks-inferred",
    ),
    pytest.param(
        {
            "a.ipynb": ["%%block x\nv = u"],
            "b.ipynb": ["%%block y\nw = v"],
            "c.ipynb": ["%%block z\nu = w", "%%block after\nr = u"],
        },
        [
            (
                ProblemKind.CYCLE,
                "a.ipynb:cell 1",
                ["x (a.ipynb:cell 1) -> y (b.ipynb:cell 1) -> z (c.ipynb:cell 1) -> x"],
            )
        ],
        id="three-notebook-cycle",
    ),
    pytest.param(
        {
            "a.ipynb": ["%%block a1 --upstream a2\nx = 1", "%%block a2 --upstream a1\ny = 1"],
            "b.ipynb": ["%%block b1 --upstream b2\nx = 1", "%%block b2 --upstream b1\ny = 1"],
        },
        [
            (ProblemKind.CYCLE, "a.ipynb:cell 1", ["a1 (a.ipynb:cell 1) -> a2"]),
            (ProblemKind.CYCLE, "b.ipynb:cell 1", ["b1 (b.ipynb:cell 1) -> b2"]),
        ],
        id="one-error-per-cycle",
    ),
    pytest.param(
        {
            "a.ipynb": [
                "%%block x --upsteam y\nv = 1",
                "%%block y\nv = (",
                "%%block z\nn = 1",
                "%%block z\nm = 1",
                "%%block w --upstream nowhere\nq = 1",
            ],
            "b.ipynb": ["%%block p\nshared = 1"],
            "c.ipynb": ["%%block q\nshared = 2"],
            "d.ipynb": ["%%block r\nprint(shared)"],
        },
        [
            (ProblemKind.BAD_HEADER, "a.ipynb:cell 1", ["--upsteam"]),
            (ProblemKind.SYNTAX_ERROR, "a.ipynb:cell 2:line 2", ["`y`"]),
            (ProblemKind.DUPLICATE_BLOCK, "a.ipynb:cell 4", ["`z`"]),
            (ProblemKind.UNKNOWN_UPSTREAM, "a.ipynb:cell 5", ["`nowhere`"]),
            (ProblemKind.AMBIGUOUS_PRODUCER, "d.ipynb:cell 1", ["`shared`"]),
        ],
        id="every-error-collected",
    ),
]


@pytest.mark.parametrize(("notebooks", "expected"), ERRORS)
def test_errors(
    pipeline_dir: MakePipeline,
    notebooks: NotebookSpec,
    expected: Sequence[tuple[ProblemKind, str, Sequence[str]]],
) -> None:
    pipeline = assemble(pipeline_dir(notebooks))
    assert not pipeline.ok
    assert [(p.kind, where(p)) for p in pipeline.errors] == [(k, loc) for k, loc, _ in expected]
    for problem, (_, _, fragments) in zip(pipeline.errors, expected, strict=True):
        assert problem.severity is Severity.ERROR
        assert problem.hint, f"{problem.kind} has no hint"
        assert problem.location.cell_id is not None
        for fragment in fragments:
            assert fragment in problem.message


def test_unknown_upstream_did_you_mean(pipeline_dir: MakePipeline) -> None:
    pipeline = assemble(
        pipeline_dir({"a.ipynb": ["%%block load\nv = 1", "%%block clean --upstream laod\nw = v"]})
    )
    (problem,) = pipeline.problems
    assert problem.hint == "did you mean `load`?"
    assert pipeline.upstream["clean"] == ("load",), "the inferred edge still stands"


def test_ambiguous_producer_hint_and_resolution(pipeline_dir: MakePipeline) -> None:
    spec = {
        "a.ipynb": ["%%block p1\nv = 1"],
        "b.ipynb": ["%%block p2\nv = 2"],
        "c.ipynb": ["%%block reader\nn = v"],
    }
    ambiguous = assemble(pipeline_dir(spec, name="ambiguous"))
    (problem,) = ambiguous.problems
    assert "--upstream p1" in problem.hint
    assert "rename `v`" in problem.hint
    assert ambiguous.sources["reader"] == {}

    spec["c.ipynb"] = ["%%block reader --upstream p2\nn = v"]
    resolved = assemble(pipeline_dir(spec, name="resolved"))
    assert resolved.problems == ()
    assert resolved.sources["reader"] == {"v": "p2"}
    assert resolved.upstream["reader"] == ("p2",)


def test_cycle_leaves_order_empty(pipeline_dir: MakePipeline) -> None:
    pipeline = assemble(
        pipeline_dir(
            {
                "a.ipynb": ["%%block ok\nbase = 1", "%%block x\nv = w + base"],
                "b.ipynb": ["%%block y\nw = v"],
            }
        )
    )
    assert pipeline.order == ()
    assert set(pipeline.blocks) == {"ok", "x", "y"}
    assert pipeline.upstream == {"ok": (), "x": ("ok", "y"), "y": ("x",)}
    (problem,) = pipeline.errors
    assert problem.kind is ProblemKind.CYCLE
    assert "break the cycle" in problem.hint


def test_syntax_error_block_is_kept_without_analysis(pipeline_dir: MakePipeline) -> None:
    pipeline = assemble(pipeline_dir({"a.ipynb": ["%%block x\nv = 1", "%%block y\nv = (\nw = v"]}))
    assert pipeline.blocks["y"].parsed is False
    assert pipeline.blocks["y"].outputs == ()
    assert pipeline.upstream["y"] == ()


# ---- warnings --------------------------------------------------------------------------------

WARNINGS = [
    pytest.param(
        {"a.ipynb": ["%%block reader\nn = v", "%%block producer\nv = 1"]},
        (ProblemKind.READS_LATER_OUTPUT, "a.ipynb:cell 1", "only `producer` (a.ipynb:cell 2)"),
        id="reads-later-output",
    ),
    pytest.param(
        {"a.ipynb": ["%%block x\nfrom os import *\nv = 1"]},
        (ProblemKind.STAR_IMPORT, "a.ipynb:cell 1", "`from os import *`"),
        id="star-import",
    ),
    pytest.param(
        {"a.ipynb": ["x = 1", Markdown("%%block looks_like_one")]},
        (ProblemKind.EMPTY_PIPELINE, "pipe", "no block cells"),
        id="no-block-cells",
    ),
    pytest.param(
        {},
        (ProblemKind.EMPTY_PIPELINE, "pipe", "no notebooks"),
        id="no-notebooks",
    ),
]


@pytest.mark.parametrize(("notebooks", "expected"), WARNINGS)
def test_warnings_do_not_fail_validation(
    pipeline_dir: MakePipeline, notebooks: NotebookSpec, expected: tuple[ProblemKind, str, str]
) -> None:
    pipeline = assemble(pipeline_dir(notebooks))
    kind, location, fragment = expected
    assert pipeline.ok
    assert pipeline.errors == ()
    (warning,) = pipeline.warnings
    assert (warning.kind, where(warning)) == (kind, location)
    assert warning.severity is Severity.WARNING
    assert fragment in warning.message
    assert warning.hint
    assert pipeline.order == tuple(pipeline.blocks)


def test_reads_later_output_leaves_the_name_free(pipeline_dir: MakePipeline) -> None:
    pipeline = assemble(
        pipeline_dir({"a.ipynb": ["%%block reader\nn = v", "%%block producer\nv = 1"]})
    )
    assert pipeline.sources["reader"] == {}
    assert pipeline.upstream["reader"] == ()
    assert pipeline.order == ("reader", "producer")


def test_problems_format_with_location_and_hint(pipeline_dir: MakePipeline) -> None:
    pipeline = assemble(pipeline_dir({"a.ipynb": ["notes", "%%block x --upsteam y\nv = 1"]}))
    (problem,) = pipeline.problems
    assert problem.format() == (
        "a.ipynb:cell 2: unknown option `--upsteam`; did you mean `--upstream`?\n"
        f"    hint: {problem.hint}"
    )
    assert problem.to_json()["kind"] == "bad_header"
    assert problem.to_json()["cell_id"] == "a-2"


# ---- determinism -----------------------------------------------------------------------------


def test_assembling_twice_gives_the_same_pipeline(pipeline_dir: MakePipeline) -> None:
    folder = pipeline_dir(
        {
            "b.ipynb": ["%%block b1\nx = w", "%%block b2\ny = x"],
            "a.ipynb": ["%%block a1\nw = 1", "%%block a2\nz = y"],
        }
    )
    first, second = assemble(folder), assemble(folder)
    assert summary(first) == summary(second)
    assert first.order == ("a1", "b1", "b2", "a2")


def summary(pipeline: Pipeline) -> object:
    return (
        tuple(pipeline.blocks),
        dict(pipeline.upstream),
        {name: dict(wired) for name, wired in pipeline.sources.items()},
        pipeline.order,
        pipeline.problems,
    )


def test_assemble_accepts_relative_folder(
    pipeline_dir: MakePipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = pipeline_dir({"a.ipynb": ["%%block x\nv = 1"]})
    monkeypatch.chdir(folder.parent)
    pipeline = assemble(Path(folder.name))
    assert pipeline.name == folder.name
    assert pipeline.folder == folder.resolve()


def test_two_explicit_upstreams_producing_the_read_name_are_ambiguous(
    pipeline_dir: MakePipeline,
) -> None:
    pipeline = assemble(
        pipeline_dir(
            {
                "a.ipynb": ["%%block left\nx = 1"],
                "b.ipynb": ["%%block right\nx = 2"],
                "c.ipynb": ["%%block reader --upstream left right\ny = x"],
            }
        )
    )
    [problem] = pipeline.errors
    assert problem.kind is ProblemKind.AMBIGUOUS_PRODUCER
    assert problem.location == Location("c.ipynb", 1, "c-1")
    assert "`left` (a.ipynb:cell 1)" in problem.message
    assert "`right` (b.ipynb:cell 1)" in problem.message
    assert "keep only one of them in --upstream" in problem.hint


def test_explicit_upstream_earlier_in_the_same_notebook_wins_over_another_explicit_one(
    pipeline_dir: MakePipeline,
) -> None:
    pipeline = assemble(
        pipeline_dir(
            {
                "a.ipynb": ["%%block left\nx = 1"],
                "c.ipynb": ["%%block here\nx = 2", "%%block reader --upstream left here\ny = x"],
            }
        )
    )
    assert pipeline.ok
    assert pipeline.sources["reader"] == {"x": "here"}
