"""Runs over REST, each test in a project of its own: starting one that really runs to success
(and the events it causes), cancelling a running one, paging, events of runs that other
processes make, a store that is down, and request bodies the API refuses."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import pipelines.store.queue as queue
from pipelines.api import Project
from pipelines.rundir.state import BlockState
from pipelines.server.events import BLOCK_EVENT, RUN_EVENT
from pipelines.status import BlockStatus, RunStatus, Trigger
from pipelines.store.run_store import DATABASE_URL_ENV, RunStore
from tests.server.conftest import (
    USER_HEADER,
    Api,
    full_kernel_pool,
    run_reaching,
    until,
    write_pipeline,
)

LOAD = "%%block load\nrows = [1, 2, 3]"
DOUBLE = "%%block double\ndoubled = [2 * r for r in rows]\nprint(label, sum(doubled))"
# Prints the secret it was given, then runs until it is cancelled.
SLOW = (
    "%%block slow\nimport time\nprint('token is', api_token, flush=True)\n"
    "for _ in range(3000):\n    time.sleep(0.1)"
)

# Runs in runner processes (the server keeps no warm kernels), or in the server's process on
# its warm kernels.
WARM_OR_NOT = pytest.mark.parametrize("warm_kernels", [0, 2], ids=["runner-process", "warm"])

needs_cancel = pytest.mark.skipif(
    not hasattr(queue, "request_cancel"), reason="Project.cancel needs store.queue.request_cancel"
)


def statuses_seen(
    events: list[tuple[str, dict[str, Any]]], schema_id: str, **match: str
) -> list[str]:
    return [
        data["status"]
        for seen_id, data in events
        if seen_id == schema_id and all(data.get(k) == v for k, v in match.items())
    ]


@WARM_OR_NOT
async def test_a_run_started_over_rest_reaches_success_and_tells_as_it_goes(
    api: Api, root: Path, events: list[tuple[str, dict[str, Any]]], started: Any, warm_kernels: int
) -> None:
    write_pipeline(
        root, "chain", {"a.ipynb": [LOAD], "b.ipynb": [DOUBLE]}, '[params]\nlabel = "sum"\n'
    )
    if warm_kernels:
        full_kernel_pool(started)

    started = await api.post(
        "pipelines/{name}/runs", {"params": {"label": "total"}, "only": []}, name="chain"
    )
    run_id = started.body["run_id"]
    record = await run_reaching(api, run_id, {"success", "failed", "crashed", "cancelled"})

    assert started.code == 201
    assert record["status"] == "success", record["error"]
    assert record["params"]["label"] == "total"
    assert record["trigger"] == "manual"
    await until(
        lambda: statuses_seen(events, RUN_EVENT, run_id=run_id)[-1:] == ["success"],
        "the run's success event",
        timeout=10,
    )
    assert statuses_seen(events, BLOCK_EVENT, run_id=run_id, block="double")[-1] == "success"
    with Project(root) as project:
        runner = project.run(run_id).runner
    # Warm: the server's own process ran it; else a runner process of its own.
    assert runner is not None
    assert (runner.pid == os.getpid()) == bool(warm_kernels)


@needs_cancel
@WARM_OR_NOT
async def test_cancel_stops_a_running_run_whose_notebooks_wait_for_it_to_end(
    api: Api, root: Path, started: Any, warm_kernels: int
) -> None:
    write_pipeline(root, "slow", {"a.ipynb": [SLOW]})
    if warm_kernels:
        full_kernel_pool(started)
    token = "tok-SERVER-0042-xyzzy"
    started = await api.post("pipelines/{name}/runs", {"params": {"api_token": token}}, name="slow")
    run_id = started.body["run_id"]

    async def slow_running() -> bool:
        run = (await api.get("runs/{run_id}", run_id=run_id)).body
        return any(b["name"] == "slow" and b["status"] == "running" for b in run["blocks"])

    await until(slow_running, "block `slow` to run")
    while_running = await api.get("runs/{run_id}/blocks/{block}/log", run_id=run_id, block="slow")
    cancelled = await api.post("runs/{run_id}/cancel", run_id=run_id)
    ended = await run_reaching(api, run_id, {"cancelled", "failed", "success", "crashed"})
    log = await api.get("runs/{run_id}/blocks/{block}/log", run_id=run_id, block="slow")

    assert (while_running.code, while_running.body["kind"]) == (409, "conflict")
    assert cancelled.code == 200
    assert ended["status"] == "cancelled"
    assert "token is ********" in log.body
    assert token not in log.body


@WARM_OR_NOT
async def test_a_second_run_reuses_unchanged_blocks_unless_forced(
    api: Api, root: Path, started: Any, warm_kernels: int
) -> None:
    write_pipeline(
        root, "chain", {"a.ipynb": [LOAD], "b.ipynb": [DOUBLE]}, '[params]\nlabel = "x"\n'
    )
    if warm_kernels:
        full_kernel_pool(started)
    ended = {"success", "failed", "crashed", "cancelled"}

    async def statuses_of(body: dict[str, Any]) -> dict[str, str]:
        reply = await api.post("pipelines/{name}/runs", body, name="chain")
        record = await run_reaching(api, reply.body["run_id"], ended)
        assert record["status"] == "success", record["error"]
        return {block["name"]: block["status"] for block in record["blocks"]}

    first = await statuses_of({})
    if warm_kernels:
        full_kernel_pool(started)
    again = await statuses_of({})
    if warm_kernels:
        full_kernel_pool(started)
    forced = await statuses_of({"force": True})
    if warm_kernels:
        full_kernel_pool(started)
    one_forced = await statuses_of({"force": ["double"]})

    assert first == {"load": "success", "double": "success"}
    assert again == {"load": "cached", "double": "cached"}
    assert forced == first
    assert one_forced == {"load": "cached", "double": "success"}


async def test_a_run_started_over_rest_is_audited_as_the_servers_user(api: Api, root: Path) -> None:
    write_pipeline(root, "chain", {"a.ipynb": [LOAD]})

    reply = await api.call(
        "POST", "pipelines/{name}/runs", body="{}", headers={USER_HEADER: "alice"}, name="chain"
    )
    await run_reaching(api, reply.body["run_id"], {"success", "failed", "crashed", "cancelled"})
    with Project(root) as project:
        audit = project.run(reply.body["run_id"]).audit

    assert audit is not None
    assert (audit.started_by.user, audit.started_by.trigger) == ("alice", Trigger.MANUAL)
    assert audit.started_by.host == socket.gethostname()


async def test_runs_page_newest_first_with_before(api: Api, root: Path) -> None:
    write_pipeline(root, "chain", {"a.ipynb": [LOAD]})
    write_pipeline(root, "other", {"a.ipynb": [LOAD]})
    with Project(root) as project:
        queued = [project.trigger("chain") for _ in range(5)]
        project.trigger("other")

    pages, before = [], None
    while True:
        query = {"pipeline": "chain", "limit": "2", **({"before": before} if before else {})}
        page = (await api.get("runs", query)).body
        pages.append([run["run_id"] for run in page["runs"]])
        before = page["next_before"]
        if before is None:
            break

    assert pages == [queued[4:2:-1], queued[2:0:-1], queued[:1]]


async def test_runs_filter_by_status(api: Api, root: Path) -> None:
    write_pipeline(root, "chain", {"a.ipynb": [LOAD]})
    with Project(root) as project:
        run_id = project.trigger("chain")

    queued = await api.get("runs", {"status": "queued"})
    succeeded = await api.get("runs", {"status": "success"})

    assert [run["run_id"] for run in queued.body["runs"]] == [run_id]
    assert succeeded.body == {"runs": [], "next_before": None}


async def test_runs_of_other_processes_show_up_as_events(
    api: Api, root: Path, events: list[tuple[str, dict[str, Any]]]
) -> None:
    """The CLI or a scheduler writes the store; the server learns it from the store alone."""
    await api.get("pipelines")  # the server is up, its watcher polling
    with RunStore.open(root) as store:
        store.create_run(
            "20261201T000000Z-0ther1",
            "elsewhere",
            str(root),
            Trigger.SCHEDULE,
            {},
            "",
            [("load", "a.ipynb")],
        )
        await until(lambda: statuses_seen(events, RUN_EVENT) == ["queued"], "queued")
        store.start_run("20261201T000000Z-0ther1", datetime.now(UTC))
        store.record_block(
            "20261201T000000Z-0ther1", BlockState("load", BlockStatus.RUNNING, "a.ipynb")
        )
        await until(lambda: "running" in statuses_seen(events, BLOCK_EVENT), "block")
        store.finish_run("20261201T000000Z-0ther1", RunStatus.SUCCESS, datetime.now(UTC))

        await until(lambda: "success" in statuses_seen(events, RUN_EVENT), "success")

    assert statuses_seen(events, RUN_EVENT) == ["queued", "running", "success"]
    assert [data for _, data in events if data["status"] == "success"] == [
        {
            "run_id": "20261201T000000Z-0ther1",
            "pipeline": "elsewhere",
            "status": "success",
            "previous": "running",
        }
    ]


@pytest.mark.parametrize(
    ("body", "word"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not an object"),
        ({"params": [1]}, "params"),
        ({"params": {"day": [2024, 1, 31]}}, "day"),
        ({"params": {"bad name": 1}}, "bad name"),
        ({"only": "load"}, "only"),
        ({"resume": 42}, "resume"),
        ({"force": "yes"}, "force"),
        ({"force": [1]}, "force"),
        ({"force": ["missing"]}, "missing"),
        ({"prams": {}}, "prams"),
        ({"only": ["missing"]}, "missing"),
    ],
)
async def test_bad_run_requests_are_400(api: Api, root: Path, body: Any, word: str) -> None:
    write_pipeline(root, "chain", {"a.ipynb": [LOAD]})

    reply = await api.post("pipelines/{name}/runs", body, name="chain")

    assert (reply.code, reply.body["kind"]) == (400, "invalid")
    assert word in reply.body["message"]


async def test_resuming_an_unknown_run_is_404(api: Api, root: Path) -> None:
    write_pipeline(root, "chain", {"a.ipynb": [LOAD]})

    reply = await api.post("pipelines/{name}/runs", {"resume": "nope"}, name="chain")

    assert (reply.code, reply.body["kind"]) == (404, "not_found")


async def test_a_name_several_pipelines_share_is_400_and_their_paths_tell_them_apart(
    api: Api, root: Path, http_server_client: Any, jp_auth_header: dict[str, str], jp_base_url: str
) -> None:
    write_pipeline(root / "team-a", "etl", {"a.ipynb": [LOAD]})
    write_pipeline(root / "team-b", "etl", {"a.ipynb": [DOUBLE]})

    ambiguous = await api.get("pipelines/{name}", name="etl")
    paths = sorted(p["path"] for p in (await api.get("pipelines")).body["pipelines"])
    # One path segment: the slash is escaped (jp_fetch would keep it).
    by_path = await http_server_client.fetch(
        f"{jp_base_url}blockbook/api/pipelines/team-b%2Fetl", headers=jp_auth_header
    )

    assert (ambiguous.code, ambiguous.body["kind"]) == (400, "ambiguous")
    assert paths == ["team-a/etl", "team-b/etl"]
    assert json.loads(by_path.body)["order"] == ["double"]


@pytest.fixture
def store_down(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The project's store URL names a local port nothing listens on (before the server
    starts: its `Project` opens the store once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(DATABASE_URL_ENV, f"postgresql+psycopg://postgres@127.0.0.1:{port}/test")


async def test_a_store_that_is_down_is_503(store_down: None, api: Api) -> None:
    reply = await api.get("runs")

    assert (reply.code, reply.body["kind"]) == (503, "unavailable")
    assert "cannot use the run store" in reply.body["message"]
    assert DATABASE_URL_ENV in reply.body["hint"]
