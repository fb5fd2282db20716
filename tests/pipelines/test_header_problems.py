"""A header with several mistakes reports every one of them (issue 11, item 3)."""

from __future__ import annotations

import pickle

import pytest

from pipelines.assembly.header import HeaderErrors, HeaderIssue, parse_header
from pipelines.assembly.pipeline import assemble
from pipelines.errors import HeaderError, Location, ProblemKind
from tests.helpers.notebooks import MakePipeline, nb

KIND = "`exportr` is not one of loader, transformer, exporter, sensor, condition, custom; "
KIND += "did you mean `exporter`?"
RETRIES = "unknown option `--retires`; did you mean `--retries`?"


def test_every_problem_is_in_the_error() -> None:
    with pytest.raises(HeaderError) as caught:
        parse_header("%%block x --kind exportr --retires 2")
    assert isinstance(caught.value, HeaderErrors)
    assert [issue.message for issue in caught.value.issues] == [KIND, RETRIES]
    assert caught.value.message == f"2 problems in the header: (1) {KIND}; (2) {RETRIES}"
    assert "usage: %%block NAME" in caught.value.hint
    assert "known options: --upstream" in caught.value.hint


def test_bad_values_names_and_sensor_options_are_all_reported() -> None:
    with pytest.raises(HeaderErrors) as caught:
        parse_header(
            "%%block Bad --upstream 1st --retries -1 --timeout 0 --out 2x --poke-interval 1"
        )
    messages = [issue.message for issue in caught.value.issues]
    prefixes = [
        "invalid block name `Bad`",
        "invalid --upstream `1st`",
        "--retries needs a whole number >= 0, got `-1`",
        "--timeout needs a number of seconds > 0, got `0`",
        "--out names Python variables; `2x` is not an identifier",
        "--poke-interval only applies to sensors, and this block's kind is `custom`",
    ]
    assert len(messages) == len(prefixes)
    assert all(m.startswith(p) for m, p in zip(messages, prefixes, strict=True)), messages


def test_a_single_problem_reads_as_before() -> None:
    with pytest.raises(HeaderErrors) as caught:
        parse_header("%%block a --upsteam b")
    assert caught.value.message == "unknown option `--upsteam`; did you mean `--upstream`?"
    assert len(caught.value.issues) == 1


def test_the_issues_survive_pickling() -> None:
    with pytest.raises(HeaderErrors) as caught:
        parse_header("%%block x --kind exportr --retires 2")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert copy.issues == caught.value.issues
    assert copy.message == caught.value.message
    assert isinstance(copy.issues[0], HeaderIssue)


def test_assembly_reports_each_problem_with_its_location(pipeline_dir: MakePipeline) -> None:
    folder = pipeline_dir({"a.ipynb": nb("%%block x --kind exportr --retires 2\ny = 1")})
    problems = [p for p in assemble(folder).problems if p.kind is ProblemKind.BAD_HEADER]
    assert [(p.message, p.location) for p in problems] == [
        (KIND, Location("a.ipynb", 2, "a-2")),
        (RETRIES, Location("a.ipynb", 2, "a-2")),
    ]
    assert problems[1].hint.startswith("known options: ")
