"""pipeline.toml and blockbook.toml: valid files, and every problem reported with its line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pipelines.assembly.config import PipelineConfig, load_pipeline_config, load_project_config
from pipelines.assembly.pipeline import assemble
from pipelines.errors import ProblemKind
from tests.helpers.notebooks import MakePipeline


def load(tmp_path: Path, text: str | bytes) -> tuple[PipelineConfig, list[str]]:
    file = tmp_path / "pipeline.toml"
    if isinstance(text, bytes):
        file.write_bytes(text)
    else:
        file.write_text(text, encoding="utf-8")
    config, problems = load_pipeline_config(tmp_path)
    for problem in problems:
        assert problem.kind is ProblemKind.BAD_CONFIG
        assert problem.is_error
        assert problem.location.notebook == "pipeline.toml"
        assert problem.hint
    return config, [f"{problem.location}: {problem.message}" for problem in problems]


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    assert load_pipeline_config(tmp_path) == (PipelineConfig(), [])


def test_valid_config(tmp_path: Path) -> None:
    config, problems = load(
        tmp_path,
        'description = "taxi ETL"\n'
        "concurrency = 2\n"
        "\n"
        "[params]\n"
        'database_url = "sqlite:///taxi.sqlite"\n'
        "limit = 100\n"
        "ratio = 0.5\n"
        "dry_run = false\n"
        "day = 2024-01-31\n"
        "at = 2024-01-31T06:00:00\n",
    )
    assert problems == []
    assert config == PipelineConfig(
        description="taxi ETL",
        concurrency=2,
        params={
            "database_url": "sqlite:///taxi.sqlite",
            "limit": 100,
            "ratio": 0.5,
            "dry_run": False,
            "day": dt.date(2024, 1, 31),
            "at": dt.datetime(2024, 1, 31, 6, 0),
        },
    )
    assert type(config.params["limit"]) is int
    assert type(config.params["dry_run"]) is bool


def test_inline_params_table(tmp_path: Path) -> None:
    config, problems = load(tmp_path, 'params = {a = 1, b = "x"}\n')
    assert problems == []
    assert config.params == {"a": 1, "b": "x"}


BAD = [
    pytest.param(
        'description = "d"\n\nschedul = "daily"\n',
        ["pipeline.toml:line 3: unknown key `schedul`"],
        id="unknown-key",
    ),
    pytest.param(
        "x = 1\ny = 2\n",
        ["pipeline.toml:line 1: unknown key `x`", "pipeline.toml:line 2: unknown key `y`"],
        id="every-unknown-key",
    ),
    pytest.param(
        '"retries" = 3\n', ["pipeline.toml:line 1: unknown key `retries`"], id="quoted-key"
    ),
    pytest.param(
        'description = "d"\n[paramz]\na = 1\n',
        ["pipeline.toml:line 2: unknown key `paramz`"],
        id="unknown-table",
    ),
    pytest.param(
        "description = 'd'\nalert.email = 'x@y'\n",
        ["pipeline.toml:line 2: unknown key `alert`"],
        id="unknown-dotted-key",
    ),
    pytest.param(
        'concurrency = "two"\n',
        ["pipeline.toml:line 1: `concurrency`: Input should be a valid integer"],
        id="wrong-type",
    ),
    pytest.param(
        'description = "d"\nconcurrency = 0\n',
        ["pipeline.toml:line 2: `concurrency`: Input should be greater than or equal to 1"],
        id="out-of-range",
    ),
    pytest.param(
        "description = 5\n",
        ["pipeline.toml:line 1: `description`: Input should be a valid string"],
        id="description-not-string",
    ),
    pytest.param(
        'description = "d"\nconcurrency = \n',
        ["pipeline.toml:line 2: not valid TOML: Invalid value"],
        id="toml-missing-value",
    ),
    pytest.param(
        'description = "unterminated\n',
        ["pipeline.toml:line 1: not valid TOML"],
        id="toml-unterminated-string",
    ),
    pytest.param(
        "concurrency = 1\nconcurrency = 2\n",
        ["pipeline.toml:line 2: not valid TOML: Cannot overwrite a value"],
        id="toml-duplicate-key",
    ),
    pytest.param(
        "[params\na = 1\n",
        ["pipeline.toml:line 1: not valid TOML"],
        id="toml-unclosed-table",
    ),
    pytest.param(
        b'description = "caf\xe9"\n',
        ["pipeline.toml: cannot read the file"],
        id="not-utf8",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_config(tmp_path: Path, text: str | bytes, expected: list[str]) -> None:
    config, problems = load(tmp_path, text)
    assert config == PipelineConfig(), "a bad file falls back to the defaults"
    assert len(problems) == len(expected)
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[params]\nids = [1, 2]\n", id="array"),
        pytest.param("[params.nested]\na = 1\n", id="table"),
        pytest.param("[params]\nat = 10:00:00\n", id="time-of-day"),
    ],
)
def test_param_of_unsupported_type(tmp_path: Path, text: str) -> None:
    _, problems = load(tmp_path, text)
    assert problems
    assert all("`params." in problem for problem in problems)


def test_project_config(tmp_path: Path) -> None:
    (tmp_path / "blockbook.toml").write_text(
        '[store]\nurl = "sqlite:///state.db"\n\n[connections.warehouse]\nurl = "postgresql://db"\n',
        encoding="utf-8",
    )
    config, problems = load_project_config(tmp_path)
    assert problems == []
    assert config.store.url == "sqlite:///state.db"
    assert config.connections["warehouse"].url == "postgresql://db"


def test_project_config_unknown_nested_keys(tmp_path: Path) -> None:
    (tmp_path / "blockbook.toml").write_text(
        '[store]\nurl = "sqlite://"\nuri = 1\n\n[connections.db]\nurl = "x"\nuser = "me"\n',
        encoding="utf-8",
    )
    _, problems = load_project_config(tmp_path)
    assert [(str(p.location), p.message) for p in problems] == [
        ("blockbook.toml:line 3", "unknown key `store.uri`"),
        ("blockbook.toml:line 7", "unknown key `connections.db.user`"),
    ]


def test_bad_config_is_a_pipeline_problem(pipeline_dir: MakePipeline) -> None:
    folder = pipeline_dir(
        {"a.ipynb": ["%%block a\nx = 1"]}, pipeline_toml='description = "d"\nschedual = "x"\n'
    )
    pipeline = assemble(folder)
    (problem,) = pipeline.problems
    assert problem.kind is ProblemKind.BAD_CONFIG
    assert str(problem.location) == "pipeline.toml:line 2"
    assert not pipeline.ok
    assert pipeline.order == ("a",), "the notebooks still assemble"


def test_config_reaches_the_pipeline(pipeline_dir: MakePipeline) -> None:
    folder = pipeline_dir({"a.ipynb": ["%%block a\nx = 1"]}, pipeline_toml="[params]\nn = 3\n")
    assert assemble(folder).config.params == {"n": 3}


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    config, problems = load(tmp_path, "\ufeff[params]\nday = 2024-01-31\n".encode())
    assert problems == []
    assert str(config.params["day"]) == "2024-01-31"


def test_param_of_unsupported_type_is_one_problem_with_its_line(tmp_path: Path) -> None:
    _, problems = load(tmp_path, "[params]\nok = 1\nids = [1, 2]\n")
    assert problems == [
        "pipeline.toml:line 3: `params.ids`: parameters are strings, numbers, booleans, dates "
        "or datetimes"
    ]
