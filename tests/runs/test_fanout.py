"""Dynamic fan-out (`%%block per_day --map days`): one child block per item, each its own
kernel, status, attempts, artifacts and run-store row; the mapped block ends when they all
did, and the blocks below read its outputs as lists in item order.

Real kernels through papermill. The list comes from another notebook than the mapped block's
and the blocks below sit in a third notebook and in the mapped block's own: the count and the
order are checked where Mage users saw them go wrong, and so are retries of a child.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from pipelines.api import Project
from pipelines.assembly.pipeline import assemble
from pipelines.errors import ProblemKind
from pipelines.forms.json_forms import pipeline_json
from pipelines.rundir.state import BlockState
from pipelines.runs.runner import Runner
from pipelines.status import BlockStatus, RunStatus
from pipelines.store.run_store import RunStore
from tests.helpers.notebooks import execute_in_kernel, nb
from tests.helpers.runs import (
    assert_no_kernels,
    blockbook,
    blockbook_json,
    files_containing,
    load_output,
    run_options,
    statuses,
)

DAYS = ["mon", "tue", "wed", "thu", "fri"]

# Item 2 fails its first attempt only: the marker lives in the run folder (never the pipeline's).
FLAKY_ITEM = """%%block per_day --map days --retries 1 --retry-delay 0
import pathlib
_marker = pathlib.Path(__blockbook_run__['run_dir']) / f'tried-{item_index}'
if item_index == 2 and not _marker.exists():
    _marker.touch()
    raise RuntimeError('flaky item')
label = f'{item_index}:{item}'"""


def fan_out_pipeline(pipeline, mapped_cell: str, days: object = DAYS) -> Path:
    return pipeline(
        {
            "load.ipynb": nb(f"%%block make_days\ndays = {days!r}"),
            "map.ipynb": nb(mapped_cell, "%%block same_notebook\nseen_here = list(label)"),
            "report.ipynb": nb("%%block report --out summary\nsummary = list(label)"),
        }
    )


def child_states(result, parent: str = "per_day") -> dict[str, BlockState]:
    return {name: state for name, state in result.blocks.items() if name.startswith(f"{parent}[")}


def test_five_items_one_retried_downstream_gets_the_values_in_order(
    project, pipeline, run, store
) -> None:
    folder = fan_out_pipeline(pipeline, FLAKY_ITEM)

    result = run(folder, concurrency=2)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    children = child_states(result)
    assert sorted(children) == [f"per_day[{i}]" for i in range(5)]
    assert {name: len(state.attempts) for name, state in children.items()} == {
        "per_day[0]": 1,
        "per_day[1]": 1,
        "per_day[2]": 2,
        "per_day[3]": 1,
        "per_day[4]": 1,
    }
    assert [a.status for a in children["per_day[2]"].attempts] == [
        BlockStatus.FAILED,
        BlockStatus.SUCCESS,
    ]
    assert all(state.status is BlockStatus.SUCCESS for state in children.values())
    parent = result.blocks["per_day"]
    assert parent.status is BlockStatus.SUCCESS
    assert parent.map_items == 5
    expected = [f"{i}:{day}" for i, day in enumerate(DAYS)]
    assert load_output(result, "per_day", "label") == expected
    assert load_output(result, "report", "summary") == expected  # another notebook
    assert result.blocks["same_notebook"].status is BlockStatus.SUCCESS
    # Each child stored its own value, under its own name.
    assert load_output(result, "per_day[3]", "label") == "3:thu"

    record = store.get_run(result.run_id)
    rows = {block.block: block for block in record.blocks}
    assert rows["per_day"].status is BlockStatus.SUCCESS
    assert {name: rows[name].attempts for name in children} == {
        name: len(state.attempts) for name, state in children.items()
    }
    assert all(rows[name].status is BlockStatus.SUCCESS for name in children)
    # Each child ran in a notebook of its own, its cell tagged with its status.
    executed = json.loads((result.run_dir / rows["per_day[2]"].notebook).read_text())
    cells = [c for c in executed["cells"] if c["metadata"].get("blockbook", {}).get("block")]
    assert [c["metadata"]["blockbook"]["block"] for c in cells] == ["per_day[2]"]
    assert cells[0]["metadata"]["blockbook"]["status"] == "success"

    as_json = {b["name"]: b for b in blockbook_json(project, "show", result.run_id)["blocks"]}
    assert (as_json["per_day[2]"]["child_of"], as_json["per_day[2]"]["item_index"]) == (
        "per_day",
        2,
    )
    assert (as_json["per_day"]["child_of"], as_json["per_day"]["item_index"]) == (None, None)

    shown = blockbook(project, "show", result.run_id)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("per_day "))
    assert "5 items" in lines[first]
    for offset, index in enumerate(range(5), start=1):
        assert lines[first + offset].split()[:3] == [
            f"per_day[{index}]",
            "success",
            "2" if index == 2 else "1",
        ], shown.stdout


def test_an_item_that_always_fails_fails_the_block_and_its_downstream(
    project, pipeline, run
) -> None:
    folder = fan_out_pipeline(
        pipeline,
        "%%block per_day --map days --retries 1 --retry-delay 0\n"
        "if item == 'thu':\n    raise ValueError(f'no data for {item}')\nlabel = item.upper()",
    )

    # One notebook at a time: the mapped block waiting for its children holds no slot.
    result = run(folder, concurrency=1)

    assert result.status is RunStatus.FAILED
    children = child_states(result)
    assert len(children) == 5
    failed = children["per_day[3]"]
    assert failed.status is BlockStatus.FAILED
    assert len(failed.attempts) == 2, "the failing child was not retried"
    assert "no data for thu" in (failed.error or "")
    others = {n: s.status for n, s in children.items() if n != "per_day[3]"}
    assert set(others.values()) == {BlockStatus.SUCCESS}, statuses(result)
    parent = result.blocks["per_day"]
    assert parent.status is BlockStatus.FAILED
    assert "1 of 5 items did not succeed: per_day[3] failed" in (parent.error or "")
    assert f"fix: `blockbook debug {result.run_id} 'per_day[3]'`" in (parent.error or "")
    assert result.blocks["report"].status is BlockStatus.UPSTREAM_FAILED
    assert result.blocks["same_notebook"].status is BlockStatus.UPSTREAM_FAILED

    # `blockbook debug RUN per_day[3]` re-creates that child, its item bound, failing alike.
    answer = blockbook(project, "debug", result.run_id, "per_day[3]")
    assert answer.returncode == 0, answer.stderr
    debug = nbformat.read(answer.stdout.strip(), as_version=4)
    NotebookClient(debug, timeout=60, kernel_name="python3", allow_errors=True).execute()
    setup, code = debug.cells[1], debug.cells[2]
    assert "item_index = 3" in setup.source
    assert [o for o in setup.outputs if o.output_type == "error"] == []
    [raised] = [o for o in code.outputs if o.output_type == "error"]
    assert f"{raised['ename']}: {raised['evalue']}" == "ValueError: no data for thu"


def test_an_empty_list_makes_no_children_and_an_empty_list_below(pipeline, run) -> None:
    folder = fan_out_pipeline(pipeline, FLAKY_ITEM, days=[])

    result = run(folder, concurrency=1)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert child_states(result) == {}
    assert result.blocks["per_day"].map_items == 0
    assert load_output(result, "report", "summary") == []
    assert not list((result.run_dir / "notebooks").glob("*per_day*"))


def test_a_frame_from_the_same_notebook_maps_over_its_rows(pipeline, run) -> None:
    folder = pipeline(
        {
            "map.ipynb": nb(
                "%%block make_days\nimport pandas as pd\n"
                "days = pd.DataFrame({'day': ['mon', 'tue', 'wed'], 'trips': [3, 1, 2]})",
                "%%block per_day --map days\ntrips = int(item['trips']) * 10",
            ),
            "report.ipynb": nb("%%block report --out total\ntotal = list(trips)"),
        }
    )

    result = run(folder)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert load_output(result, "report", "total") == [30, 10, 20]


def test_fan_out_recorded_in_postgresql(project, pipeline, pg_url) -> None:
    folder = fan_out_pipeline(pipeline, FLAKY_ITEM)
    with RunStore(pg_url) as store:
        result = Runner(project, store).run(assemble(folder), run_options(concurrency=3))
        record = store.get_run(result.run_id)
    assert_no_kernels(project)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    rows = {block.block: block for block in record.blocks}
    children = sorted(name for name in rows if name.startswith("per_day["))
    assert children == [f"per_day[{i}]" for i in range(5)]
    assert [rows[name].attempts for name in children] == [1, 1, 2, 1, 1]
    assert all(rows[name].status is BlockStatus.SUCCESS for name in children)
    assert rows["per_day"].status is BlockStatus.SUCCESS
    assert load_output(result, "report", "summary") == [f"{i}:{d}" for i, d in enumerate(DAYS)]


def test_cancel_during_fan_out_cancels_the_children(project, pipeline, store, tmp_path) -> None:
    started = tmp_path / "started"
    folder = fan_out_pipeline(
        pipeline,
        "%%block per_day --map days\nimport pathlib, time\n"
        f"pathlib.Path({str(started)!r}, str(item_index)).touch()\n"
        "time.sleep(120)\nlabel = item",
    )
    started.mkdir()
    runner = Runner(project, store)
    outcome: dict[str, object] = {}
    thread = threading.Thread(
        target=lambda: outcome.setdefault(
            "result", runner.run(assemble(folder), run_options(concurrency=2))
        ),
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + 120
    while len(list(started.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(list(started.iterdir())) == 2, "two children should be running (concurrency 2)"

    runner.cancel()
    thread.join(timeout=120)

    assert not thread.is_alive(), "Runner.run did not return after cancel()"
    result = outcome["result"]
    assert result.status is RunStatus.CANCELLED
    children = child_states(result)
    assert len(children) == 5, "the children not started yet are cancelled too"
    assert {state.status for state in children.values()} == {BlockStatus.CANCELLED}
    assert result.blocks["per_day"].status is BlockStatus.CANCELLED
    assert result.blocks["report"].status is BlockStatus.CANCELLED
    record = store.get_run(result.run_id)
    assert {b.block: b.status for b in record.blocks}["per_day[4]"] is BlockStatus.CANCELLED
    assert_no_kernels(project)


def test_a_value_that_is_not_a_list_fails_the_block_with_what_to_do(pipeline, run) -> None:
    folder = fan_out_pipeline(pipeline, FLAKY_ITEM, days="mon,tue")

    result = run(folder)

    assert result.status is RunStatus.FAILED
    error = result.blocks["per_day"].error or ""
    assert "maps over `days` (--map), which is a str, not a list, tuple or DataFrame" in error
    assert "fix: make the upstream block bind `days` to a list" in error
    assert child_states(result) == {}
    assert result.blocks["report"].status is BlockStatus.UPSTREAM_FAILED


def test_map_over_a_name_no_upstream_outputs_is_an_assembly_error(pipeline) -> None:
    folder = pipeline(
        {
            "load.ipynb": nb("%%block make_days\ndays = [1, 2]"),
            "map.ipynb": nb("%%block per_day --map dayz\nlabel = item"),
        }
    )

    problems = [p for p in assemble(folder).errors if p.kind is ProblemKind.BAD_HEADER]

    assert len(problems) == 1
    assert problems[0].message == (
        "block `per_day` maps over `dayz` (--map), which no other block outputs"
    )
    assert problems[0].hint == "did you mean `--map days`?"
    assert problems[0].location.notebook == "map.ipynb"


def test_a_mapped_block_depends_on_its_list_and_reads_no_item_from_elsewhere(pipeline) -> None:
    folder = pipeline(
        {
            "load.ipynb": nb("%%block make_days\ndays = [1, 2]\nitem = 'not this one'"),
            "map.ipynb": nb("%%block per_day --map days\nlabel = item * 2"),
        }
    )

    assembled = assemble(folder)

    assert assembled.ok, [p.format() for p in assembled.problems]
    assert dict(assembled.sources["per_day"]) == {"days": "make_days"}
    assert assembled.upstream["per_day"] == ("make_days",)


def test_mapped_blocks_are_never_cached(project, pipeline, run) -> None:
    folder = fan_out_pipeline(pipeline, FLAKY_ITEM, days=["a", "b"])
    first = run(folder)
    second = run(folder)

    assert first.status is RunStatus.SUCCESS, statuses(first)
    assert second.status is RunStatus.SUCCESS, statuses(second)
    assert second.blocks["make_days"].status is BlockStatus.CACHED
    assert second.blocks["per_day"].status is BlockStatus.SUCCESS
    assert sorted(child_states(second)) == ["per_day[0]", "per_day[1]"]


def test_by_hand_the_items_run_in_a_loop_with_the_same_lists(pipeline) -> None:
    cell = "%%block per_day --map days\nlabel = f'{item_index}:{item}'"
    folder = pipeline({"map.ipynb": nb(cell)})

    notebook = execute_in_kernel(
        folder,
        [
            "%load_ext kernel_magics",
            f"days = {DAYS!r}",
            cell,
            "print(label)",
        ],
    )

    errors = [o for c in notebook.cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    printed = notebook.cells[-1].outputs[0]["text"]
    assert printed.strip() == str([f"{i}:{day}" for i, day in enumerate(DAYS)])


def test_graph_json_names_the_mapped_list_and_the_run_count(project, pipeline, run, store) -> None:
    folder = fan_out_pipeline(pipeline, FLAKY_ITEM, days=["a", "b", "c"])
    run(folder)

    shown = blockbook_json(project, "graph", str(folder))
    blocks = {block["name"]: block for block in shown["blocks"]}
    assert blocks["per_day"]["map"] == "days"
    assert blocks["make_days"]["map"] is None
    assert not any("[" in name for name in blocks), "children are not blocks of the graph"
    text = blockbook(project, "graph", str(folder)).stdout
    assert "maps over: days (one run per item)" in text
    # The pipeline as JupyterLab gets it: the graph, and the count of the newest run.
    detail = Project(project, store=store).pipeline(folder)
    shown_graph = pipeline_json(detail.pipeline, detail.last_run, with_graph=True)
    assert shown_graph["map_counts"] == {"per_day": 3}


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("%%block per_day --map 2days", "--map names an upstream output"),
        ("%%block per_day --kind sensor --map days", "a sensor cannot be mapped"),
    ],
)
def test_bad_map_headers(header: str, message: str) -> None:
    from pipelines.assembly.header import parse_header
    from pipelines.errors import HeaderError

    with pytest.raises(HeaderError, match=message):
        parse_header(header)


def test_all_done_over_a_failed_producer_says_the_list_was_not_provided(pipeline, run) -> None:
    folder = pipeline(
        {
            "load.ipynb": nb("%%block make_days\nraise OSError('source down')\ndays = []"),
            "map.ipynb": nb("%%block per_day --map days --trigger-rule all_done\nlabel = item"),
        }
    )

    result = run(folder)

    assert result.status is RunStatus.FAILED
    error = result.blocks["per_day"].error or ""
    assert "maps over `days` (--map), which no upstream block provided" in error, error
    assert child_states(result) == {}


def test_children_get_the_real_secret_and_keep_it_out_of_their_files(pipeline, run) -> None:
    token = "tok-3f9a1c77e2b84d05"
    folder = pipeline(
        {
            "load.ipynb": nb("%%block make_days\ndays = ['mon', 'tue']"),
            "map.ipynb": nb(
                # The cell never spells the token: its source is in the run notebooks.
                "%%block per_day --map days\nassert api_token.startswith('tok-3f9a')\n"
                "print('token', api_token)\nif item == 'tue':\n"
                "    raise PermissionError(f'login with {api_token} refused')"
            ),
            "report.ipynb": nb("%%block report --trigger-rule all_done\nseen = 1"),
        },
        pipeline_toml=f'[params]\napi_token = "{token}"\nlimit = 3\n',
    )

    result = run(folder)

    children = child_states(result)
    assert children["per_day[0]"].status is BlockStatus.SUCCESS, statuses(result)
    assert children["per_day[1]"].status is BlockStatus.FAILED
    assert "login with ******** refused" in (children["per_day[1]"].error or "")
    # The non-secret parameter reaches the child's notebook as the run's other notebooks get it.
    child = (result.run_dir / children["per_day[0]"].notebook).read_text()
    assert "limit = 3" in child
    assert files_containing(result.run_dir, [token]) == []
