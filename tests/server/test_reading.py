"""The read routes over one shared project whose pipeline ran once (really: runner process and
kernels), and one of whose blocks then ran by hand in a kernel, before the tests of this module:
listings, graph, problems, latest block statuses, a run and its blocks' logs, executed and debug
notebooks, templates, schedules, and the errors of each."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest

import pipelines.store.queue as queue
from pipelines.api import Project
from pipelines.assembly.templates import TEMPLATES, find_template
from pipelines.rundir.layout import dev_dir
from pipelines.rundir.state import BlockState, write_state
from pipelines.status import BlockStatus
from pipelines.store.run_store import DATABASE_URL_ENV
from tests.helpers.notebooks import LOAD_EXT, execute_in_kernel
from tests.server.conftest import Api, wait_for_end, write_pipeline

LOAD = (
    "%%block load\nimport sys\nrows = [1, 2, 3]\n"
    "print('loaded', len(rows))\nprint('a warning', file=sys.stderr)"
)
DOUBLE = "%%block double\ndoubled = [2 * r for r in rows]\nprint(label, sum(doubled))"
BROKEN = "%%block broken\nraise ValueError('no such file: trips.csv')"
SCHEDULED = '[params]\nlabel = "sum"\n\n[schedule]\ncron = "0 6 * * *"\n'
# TOML types (a date, a number) and values to hide: a secret name, a URL with a password.
PARAMS = (
    '[params]\nday = 2024-01-31\nlimit = 10\ndb_password = "hunter22"\n'
    'warehouse = "postgresql://me:pw123@db/x"\n'
)


@dataclass(frozen=True)
class Shared:
    root: Path
    run_id: str


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """A project with pipeline `chain` (load -> double, and broken) run once to its end
    (failed: `broken` raises), then `load` run by hand in a kernel; and pipeline `invalid`,
    which cannot run."""
    root = tmp_path_factory.mktemp("shared")
    (root / "blockbook.toml").touch()
    write_pipeline(root, "chain", {"a.ipynb": [LOAD, DOUBLE], "b.ipynb": [BROKEN]}, SCHEDULED)
    write_pipeline(root, "invalid", {"a.ipynb": ["%%block a --upstream nowhere\nx = 1"]}, PARAMS)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(DATABASE_URL_ENV, raising=False)
        with Project(root) as project:
            run_id = project.start("chain", {"label": "total"})
        wait_for_end(root, run_id)
        by_hand = execute_in_kernel(root / "chain", [LOAD_EXT, LOAD])
        assert "block load: success" in str(by_hand.cells[1].outputs), by_hand.cells[1].outputs
        # `double` failed by hand long before the run, as the magic records it in the dev area.
        long_ago = datetime(2020, 1, 1, tzinfo=UTC)
        write_state(
            dev_dir(root, "chain"),
            BlockState(
                "double",
                BlockStatus.FAILED,
                "",
                error="NameError: name 'rows' is not defined",
                started_at=long_ago,
                ended_at=long_ago,
            ),
        )
        yield Shared(root, run_id)


@pytest.fixture
def jp_root_dir(shared: Shared, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    return shared.root


# ---- pipelines ---------------------------------------------------------------------------


async def test_pipelines_lists_each_with_its_newest_run(api: Api, shared: Shared) -> None:
    reply = await api.get("pipelines")

    listed = {p["pipeline"]: p for p in reply.body["pipelines"]}
    assert set(listed) == {"chain", "invalid"}
    assert listed["chain"]["last_run"]["run_id"] == shared.run_id
    assert listed["chain"]["path"] == "chain"
    assert listed["chain"]["schedule"]["cron"] == "0 6 * * *"
    assert listed["invalid"]["ok"] is False
    assert listed["invalid"]["last_run"] is None


async def test_summaries_hold_the_params_defaults_secrets_masked(api: Api) -> None:
    listed = {p["pipeline"]: p for p in (await api.get("pipelines")).body["pipelines"]}
    detail = await api.get("pipelines/{name}", name="invalid")

    assert listed["chain"]["params"] == {"label": "sum"}
    assert listed["invalid"]["params"] == {
        "day": "2024-01-31",
        "limit": 10,
        "db_password": "********",
        "warehouse": "postgresql://me:********@db/x",
    }
    assert detail.body["params"] == listed["invalid"]["params"]


async def test_pipeline_is_the_graph_with_each_blocks_last_status_and_duration(
    api: Api, shared: Shared
) -> None:
    reply = await api.get("pipelines/{name}", name="chain")

    assert reply.code == 200
    assert reply.body["order"] == ["load", "double", "broken"]
    assert {b["name"]: b["upstream"] for b in reply.body["blocks"]}["double"] == ["load"]
    last = reply.body["last_blocks"]
    assert {name: b["status"] for name, b in last.items()} == {
        "load": "success",
        "double": "success",
        "broken": "failed",
    }
    assert all(b["duration"] >= 0 for b in last.values())


async def test_latest_is_each_blocks_newest_status_from_a_run_or_by_hand(
    api: Api, shared: Shared
) -> None:
    reply = await api.get("pipelines/{name}/latest", name="chain")
    run = (await api.get("runs/{run_id}", run_id=shared.run_id)).body

    assert reply.code == 200
    assert reply.body["pipeline"] == "chain"
    blocks = reply.body["blocks"]
    assert {name: (b["status"], b["source"], b["run_id"]) for name, b in blocks.items()} == {
        "load": ("success", "interactive", None),  # by hand after the run
        "double": ("success", "run", shared.run_id),  # by hand long before it
        "broken": ("failed", "run", shared.run_id),
    }
    assert list(blocks) == ["load", "double", "broken"]
    ran = {block["name"]: block for block in run["blocks"]}
    assert blocks["load"]["started_at"] > ran["load"]["ended_at"]
    assert blocks["double"] == {
        "status": "success",
        "duration": ran["double"]["duration"],
        "started_at": ran["double"]["started_at"],
        "ended_at": ran["double"]["ended_at"],
        "error": None,
        "source": "run",
        "run_id": shared.run_id,
    }
    assert "no such file: trips.csv" in blocks["broken"]["error"]
    assert blocks["load"]["duration"] >= 0


async def test_latest_leaves_out_blocks_never_executed(api: Api) -> None:
    reply = await api.get("pipelines/{name}/latest", name="invalid")

    assert reply.body == {"pipeline": "invalid", "blocks": {}, "stale": []}


async def test_latest_of_an_unknown_pipeline_is_404(api: Api) -> None:
    reply = await api.get("pipelines/{name}/latest", name="chian")

    assert (reply.code, reply.body["kind"]) == (404, "not_found")


async def test_problems_of_an_invalid_pipeline(api: Api) -> None:
    reply = await api.get("pipelines/{name}/problems", name="invalid")

    assert reply.body["ok"] is False
    assert [p["kind"] for p in reply.body["problems"]] == ["unknown_upstream"]


async def test_a_valid_pipeline_has_no_error(api: Api) -> None:
    reply = await api.get("pipelines/{name}/problems", name="chain")

    assert reply.body["ok"] is True
    assert [p for p in reply.body["problems"] if p["severity"] == "error"] == []


async def test_an_unknown_pipeline_is_404_with_a_guess(api: Api) -> None:
    reply = await api.get("pipelines/{name}", name="chian")

    assert reply.code == 404
    assert reply.body["kind"] == "not_found"
    assert "chain" in reply.body["hint"]


async def test_a_folder_path_is_no_pipeline_name(
    http_server_client, jp_auth_header, jp_base_url, shared: Shared
) -> None:
    # Percent-encoded slashes reach the handler decoded: `..` and paths must not resolve.
    for name in ("..", "%2E%2E%2Fshared", str(shared.root / "chain").replace("/", "%2F")):
        response = await http_server_client.fetch(
            f"{jp_base_url}blockbook/api/pipelines/{name}",
            headers=jp_auth_header,
            raise_error=False,
        )
        assert response.code == 404, (name, response.body)


async def test_starting_an_invalid_pipeline_is_400(api: Api) -> None:
    reply = await api.post("pipelines/{name}/runs", {}, name="invalid")

    assert reply.code == 400
    assert reply.body["kind"] == "invalid"
    assert "not valid" in reply.body["message"]


# ---- runs --------------------------------------------------------------------------------


async def test_run_has_its_blocks(api: Api, shared: Shared) -> None:
    reply = await api.get("runs/{run_id}", run_id=shared.run_id)

    assert reply.body["status"] == "failed"
    assert reply.body["params"]["label"] == "total"
    assert [b["name"] for b in reply.body["blocks"]] == ["load", "double", "broken"]


async def test_a_run_id_prefix_will_do(api: Api, shared: Shared) -> None:
    reply = await api.get("runs/{run_id}", run_id=shared.run_id[:-2])

    assert reply.body["run_id"] == shared.run_id


async def test_an_unknown_run_is_404(api: Api) -> None:
    reply = await api.get("runs/{run_id}", run_id="19990101T000000Z-000000")

    assert (reply.code, reply.body["kind"]) == (404, "not_found")


@pytest.mark.skipif(
    not hasattr(queue, "request_cancel"), reason="Project.cancel needs store.queue.request_cancel"
)
async def test_cancelling_a_finished_run_is_409(api: Api, shared: Shared) -> None:
    reply = await api.post("runs/{run_id}/cancel", run_id=shared.run_id)

    assert (reply.code, reply.body["kind"]) == (409, "conflict")


@pytest.mark.parametrize(
    ("query", "word"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"status": "finished"}, "status"),
        ({"before": "no-such-run"}, "before"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_query_values_are_400(api: Api, query: dict[str, str], word: str) -> None:
    reply = await api.get("runs", query)

    assert (reply.code, reply.body["kind"]) == (400, "invalid")
    assert word in reply.body["message"]


async def test_jupyterlabs_cache_buster_is_no_unknown_parameter(api: Api, shared: Shared) -> None:
    """ServerConnection appends `&<milliseconds>` to GETs; a misspelt name is still refused."""
    reply = await api.get("runs", {"limit": "1", "1796480435716": ""})

    assert reply.code == 200
    assert len(reply.body["runs"]) == 1
    assert (await api.get("runs", {"1796480435716": "x"})).code == 400


# ---- blocks of a run ---------------------------------------------------------------------


async def test_block_log_is_what_the_cell_printed(api: Api, shared: Shared) -> None:
    reply = await api.get("runs/{run_id}/blocks/{block}/log", run_id=shared.run_id, block="load")

    assert reply.code == 200
    assert "loaded 3" in reply.body
    assert "a warning" in reply.body


async def test_block_log_has_the_traceback_without_colour_codes(api: Api, shared: Shared) -> None:
    reply = await api.get("runs/{run_id}/blocks/{block}/log", run_id=shared.run_id, block="broken")

    assert "ValueError: no such file: trips.csv" in reply.body
    assert "\x1b[" not in reply.body


async def test_log_of_an_unknown_block_is_404(api: Api, shared: Shared) -> None:
    reply = await api.get("runs/{run_id}/blocks/{block}/log", run_id=shared.run_id, block="nope")

    assert reply.code == 404
    assert "load, double, broken" in reply.body["hint"]


async def test_block_notebook_names_the_drive_path_and_cell(api: Api, shared: Shared) -> None:
    located = await api.get(
        "runs/{run_id}/blocks/{block}/notebook", run_id=shared.run_id, block="double"
    )
    drive, local = located.body["path"].split(":", 1)
    run_id, name = local.split("/")

    contents = await api.get("runs/{run_id}/notebooks/{notebook}", run_id=run_id, notebook=name)

    assert (drive, run_id) == ("BlockbookRuns", shared.run_id)
    assert contents.body["writable"] is False
    assert contents.body["path"] == local
    notebook = nbformat.from_dict(contents.body["content"])
    cell = notebook.cells[located.body["cell_index"]]
    assert cell.source.startswith("%%block double")
    assert "total 12" in "".join(output.get("text", "") for output in cell.outputs)


async def test_only_the_runs_own_notebooks_are_served(api: Api, shared: Shared) -> None:
    for name in ("plan.json", "..", "blockbook.db", "a.ipynb.bak"):
        reply = await api.get(
            "runs/{run_id}/notebooks/{notebook}", run_id=shared.run_id, notebook=name
        )
        assert reply.code == 404, name


async def test_debug_notebook_is_written_once_at_a_visible_path(api: Api, shared: Shared) -> None:
    first = await api.post(
        "runs/{run_id}/blocks/{block}/debug", run_id=shared.run_id, block="double"
    )
    path = shared.root / first.body["path"]
    path.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")  # as if edited and saved
    edited = path.stat().st_mtime_ns

    again = await api.post(
        "runs/{run_id}/blocks/{block}/debug", run_id=shared.run_id, block="double"
    )

    assert (first.code, again.code) == (201, 200)
    assert not first.body["path"].startswith(".")
    assert again.body == {**first.body, "created": False}
    assert path.stat().st_mtime_ns == edited
    sources = [cell.source for cell in nbformat.read(path, as_version=4).cells]
    assert any("doubled = [2 * r for r in rows]" in source for source in sources)


async def test_the_debug_folder_is_no_pipeline(api: Api, shared: Shared) -> None:
    await api.post("runs/{run_id}/blocks/{block}/debug", run_id=shared.run_id, block="load")

    reply = await api.get("pipelines")

    assert {p["pipeline"] for p in reply.body["pipelines"]} == {"chain", "invalid"}


# ---- templates ---------------------------------------------------------------------------


async def test_templates_are_those_of_block_new_with_the_cells_they_insert(api: Api) -> None:
    reply = await api.get("templates")

    listed = {template["key"]: template for template in reply.body["templates"]}
    assert list(listed) == [template.key for template in TEMPLATES]
    csv = listed["loader csv"]
    assert (csv["kind"], csv["source"], csv["default_name"], csv["parameters"]) == (
        "loader",
        "csv",
        "load_csv",
        ["csv_path"],
    )
    assert csv["text"] == find_template(["loader", "csv"])[0].render()
    assert csv["text"].startswith("%%block load_csv --kind loader\n")
    assert "@test" in csv["text"]


# ---- schedules ---------------------------------------------------------------------------


async def test_schedules_give_the_next_fire_time(api: Api) -> None:
    reply = await api.get("schedules")

    (schedule,) = reply.body["schedules"]
    assert (schedule["pipeline"], schedule["path"]) == ("chain", "chain")
    assert schedule["next_fire"].endswith("06:00:00+00:00")
