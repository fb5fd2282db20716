"""Property tests: `assemble` never raises, and random DAGs come out correctly ordered.

Hypothesis runs many examples per test while pytest's `tmp_path` is one folder per test, so every
example makes its own temporary folder.
"""

from __future__ import annotations

import json
import keyword
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nbformat import v4

from pipelines.assembly.header import BlockHeader, BlockKind, format_header, parse_header
from pipelines.assembly.header import TestPolicy as Policy  # not `Test*`: pytest would collect it
from pipelines.assembly.pipeline import Pipeline, assemble
from pipelines.assembly.project import list_pipelines
from pipelines.errors import Problem
from tests.helpers.notebooks import make_pipeline, write_notebook

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="blockbook-prop-") as folder:
        yield Path(folder)


def check_pipeline(pipeline: Pipeline) -> None:
    assert isinstance(pipeline, Pipeline)
    assert all(isinstance(problem, Problem) for problem in pipeline.problems)
    assert all(
        isinstance(problem.message, str) and problem.message for problem in pipeline.problems
    )
    # Rendering the problems must not fail either: validate prints every one.
    for problem in pipeline.problems:
        problem.format()
        json.dumps(problem.to_json())
    if pipeline.order:
        assert set(pipeline.order) == set(pipeline.blocks)


# ---- (a) arbitrary cell text -----------------------------------------------------------------

NAMES = ["a", "b", "c", "load", "clean", "x", "_p", "A", "class", "1x", "my-block", "é"]
OPTION_TOKENS = [
    "--upstream",
    "--kind",
    "--retries",
    "--retry-delay",
    "--timeout",
    "--out",
    "--tests",
    "--skip",
    "--upsteam",
    "-retries",
    "--",
    "-",
    "=",
    "--kind=loader",
    "--timeout=-1",
    "loader",
    "transformer",
    "warn",
    "fail",
    "nan",
    "inf",
    "-1",
    "0",
    "1.5",
    "'",
    '"',
    "#",
]
SNIPPETS = [
    "x = 1",
    "y = x",
    "x = y",
    "a = b + c",
    "load = clean",
    "def f(:",
    "def f():\n    return q",
    "%time z = w",
    "x = !ls",
    "!pip install thing",
    "%matplotlib inline",
    "lambda: q",
    "[a for a in b]",
    "(n := m)",
    "del x",
    "del nothing",
    "global g",
    "from m import *",
    "@test\ndef t(x):\n    assert x",
    "class K:\n    v = u",
    "match x:\n    case [a, *r]:\n        pass",
    "x +=",
    "(((",
    ")))",
    "\x00",
    "\t",
    "    indented = 1",
    "if x:\n",
    "try:\n    pass",
    "import os",
    "_private = secret",
    "print(len(data))",
    "x = " + " + ".join(["t"] * 600),
    "y = " + "(" * 250 + ")" * 250,
    "%%block nested",
    "%%time",
    "?",
    "??x",
    "!",
]

header_line = st.builds(
    lambda name, tokens: " ".join(["%%block", name, *tokens]),
    st.sampled_from(NAMES) | st.text(max_size=6),
    st.lists(st.sampled_from(OPTION_TOKENS + NAMES) | st.text(max_size=5), max_size=6),
)
python_ish = st.lists(st.sampled_from(SNIPPETS) | st.text(max_size=12), max_size=5).map("\n".join)
cell_text = st.one_of(
    st.builds(lambda header, body: f"{header}\n{body}", header_line, python_ish),
    st.builds(lambda name, body: f"%%block {name}\n{body}", st.sampled_from(NAMES), python_ish),
    python_ish,
    st.text(max_size=40),
    st.text(max_size=20).map(lambda text: "%%block" + text),
)
notebook_specs = st.dictionaries(
    st.sampled_from(["a.ipynb", "b.ipynb", "c.ipynb", "z z.ipynb"]),
    st.lists(cell_text, max_size=5),
    max_size=3,
)


# IPython warns about cells with exotic line separators (\x1c-\x1e, \x85, \u2028); harmless here.
@pytest.mark.filterwarnings("ignore:`make_tokens_by_line` received a list of lines:UserWarning")
@SETTINGS
@given(notebooks=notebook_specs, toml=st.none() | st.text(max_size=30))
def test_assemble_never_raises_for_any_cell_text(
    notebooks: Mapping[str, Sequence[str]], toml: str | None
) -> None:
    with scratch() as base:
        folder = make_pipeline(base, notebooks, toml)
        check_pipeline(assemble(folder))


# ---- (b) arbitrary JSON as a notebook --------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
cell_like = st.dictionaries(
    st.sampled_from(["cell_type", "id", "source", "metadata", "outputs"]),
    json_values
    | st.sampled_from(["code", "markdown", "raw", "c1", "%%block a\nx = 1", "%%block b\ny = x"])
    | st.lists(st.sampled_from(["%%block a\n", "x = 1", 3, None]), max_size=3),
)
notebook_like = st.fixed_dictionaries(
    {
        "nbformat": st.sampled_from([4, 3, 5, "4", None, 4.0]),
        "nbformat_minor": st.sampled_from([5, 4, 0, "5", None, -1]),
        "cells": st.lists(cell_like, max_size=4) | json_values,
    },
    optional={"metadata": json_values},
)


@SETTINGS
@given(value=json_values | notebook_like)
def test_assemble_never_raises_for_any_json(value: object) -> None:
    with scratch() as base:
        folder = base / "pipe"
        folder.mkdir()
        (folder / "random.ipynb").write_text(json.dumps(value), encoding="utf-8")
        write_notebook(folder / "valid.ipynb", ["%%block sentinel_block\nanswer = 42"])
        pipeline = assemble(folder)
        check_pipeline(pipeline)
        assert "sentinel_block" in pipeline.blocks
        list_pipelines(base)


# ---- (c) arbitrary bytes as a notebook -------------------------------------------------------


def _valid_notebook_bytes() -> bytes:
    notebook = v4.new_notebook()
    notebook.cells = [
        v4.new_code_cell("%%block first\nx = 1", id="c1"),
        v4.new_code_cell("%%block second --upstream first\ny = x", id="c2"),
    ]
    return nbformat.writes(notebook).encode()


VALID_BYTES = _valid_notebook_bytes()

notebook_bytes = st.one_of(
    st.binary(max_size=200),
    st.integers(0, len(VALID_BYTES)).map(lambda cut: VALID_BYTES[:cut]),
    st.builds(
        lambda position, junk: VALID_BYTES[:position] + junk + VALID_BYTES[position:],
        st.integers(0, len(VALID_BYTES)),
        st.binary(min_size=1, max_size=8),
    ),
)


@SETTINGS
@given(content=notebook_bytes)
def test_assemble_never_raises_for_any_bytes(content: bytes) -> None:
    with scratch() as base:
        folder = base / "pipe"
        folder.mkdir()
        (folder / "random.ipynb").write_bytes(content)
        pipeline = assemble(folder)
        check_pipeline(pipeline)
        list_pipelines(base)


# ---- (d) random DAGs -------------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """Blocks `b0..bn` spread over notebooks; each reads outputs of earlier blocks (inferred
    edges) or names an earlier block with --upstream (explicit edges), never a later one."""
    count = draw(st.integers(1, 12))
    notebook_names = draw(
        st.lists(
            st.sampled_from(["a.ipynb", "b.ipynb", "c.ipynb", "d.ipynb"]),
            min_size=count,
            max_size=count,
        )
    )
    notebooks: dict[str, list[str]] = {}
    expected: dict[str, set[str]] = {}
    for index, notebook in enumerate(notebook_names):
        earlier = list(range(index))
        reads = draw(st.sets(st.sampled_from(earlier), max_size=3)) if earlier else set()
        explicit = draw(st.sets(st.sampled_from(earlier), max_size=2)) if earlier else set()
        header = f"%%block b{index}"
        if explicit:
            header += " --upstream " + " ".join(f"b{j}" for j in sorted(explicit))
        body = f"v{index} = " + " + ".join(["0", *(f"v{j}" for j in sorted(reads))])
        cells = notebooks.setdefault(notebook, [])
        if draw(st.booleans()):
            cells.append("scratch = 1")  # a plain cell between blocks shifts positions
        cells.append(f"{header}\n{body}")
        expected[f"b{index}"] = {f"b{j}" for j in reads | explicit}
    return notebooks, expected


@SETTINGS
@given(dag=dags())
def test_random_dags_order_topologically_and_deterministically(
    dag: tuple[dict[str, list[str]], dict[str, set[str]]],
) -> None:
    notebooks, expected = dag
    with scratch() as base:
        folder = make_pipeline(base, notebooks)
        pipeline = assemble(folder)
        again = assemble(folder)

    assert pipeline.problems == ()
    assert {name: set(up) for name, up in pipeline.upstream.items()} == expected
    assert sorted(pipeline.order) == sorted(expected)

    position = {name: index for index, name in enumerate(pipeline.order)}
    for child, parents in expected.items():
        for parent in parents:
            assert position[parent] < position[child], f"{parent} must run before {child}"

    # Ties go to the first block in (notebook path, cell position) among those ready.
    placed: set[str] = set()
    for name in pipeline.order:
        ready = [
            b
            for b in pipeline.blocks.values()
            if b.name not in placed and set(pipeline.upstream[b.name]) <= placed
        ]
        assert name == min(ready, key=lambda b: b.sort_key).name
        placed.add(name)

    assert again.order == pipeline.order
    assert dict(again.upstream) == dict(pipeline.upstream)
    assert {k: dict(v) for k, v in again.sources.items()} == {
        k: dict(v) for k, v in pipeline.sources.items()
    }
    assert again.problems == pipeline.problems
    assert list(again.blocks) == list(pipeline.blocks)


# ---- header round trip -----------------------------------------------------------------------

block_names = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True).filter(
    lambda name: not keyword.iskeyword(name)
)
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
    lambda name: not keyword.iskeyword(name)
)
seconds = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)


@st.composite
def headers(draw: st.DrawFn) -> BlockHeader:
    name = draw(block_names)
    return BlockHeader(
        name=name,
        upstream=tuple(draw(st.lists(block_names.filter(lambda u: u != name), max_size=3))),
        kind=draw(st.sampled_from(BlockKind)),
        retries=draw(st.integers(0, 10**6)),
        retry_delay=draw(seconds),
        timeout=draw(st.none() | seconds.filter(lambda s: s > 0)),
        out=draw(st.none() | st.lists(identifiers, min_size=1, max_size=3).map(tuple)),
        tests=draw(st.sampled_from(Policy)),
        skip=draw(st.booleans()),
    )


@settings(max_examples=100, deadline=None)
@given(header=headers())
def test_header_round_trip(header: BlockHeader) -> None:
    assert parse_header(format_header(header)) == header
