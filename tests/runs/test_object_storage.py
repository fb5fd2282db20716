"""Run folders in object storage (`[artifacts] url = "s3://..."`): S3 is moto's server, a real
S3 HTTP endpoint on 127.0.0.1; the cluster is a real `dask scheduler` and two `dask worker`
processes, each started in an empty folder of its own with no S3 settings in its environment
(what they need comes with the task); the run store is PostgreSQL. Nothing of a run is written
to the local run folder."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

distributed = pytest.importorskip("distributed")
s3fs = pytest.importorskip("s3fs")

from pipelines.api import Project  # noqa: E402
from pipelines.assembly.pipeline import assemble  # noqa: E402
from pipelines.errors import InvalidInputError  # noqa: E402
from pipelines.rundir.artifacts import ArtifactStore, UnstorableOutput  # noqa: E402
from pipelines.rundir.location import RemoteFolder, Storage, run_folder_at  # noqa: E402
from pipelines.runs.executors.choice import EXECUTOR_ENV, parse_executor  # noqa: E402
from pipelines.runs.runner import RunResult  # noqa: E402
from pipelines.runs.storage import project_storage  # noqa: E402
from pipelines.status import BlockStatus, RunStatus  # noqa: E402
from pipelines.store.run_store import RunStore  # noqa: E402
from tests.helpers.dask_processes import WorkerSpec, dask_processes  # noqa: E402
from tests.helpers.notebooks import make_pipeline, nb  # noqa: E402
from tests.helpers.runs import run_options, statuses, wait_for  # noqa: E402

BIN = Path(sys.executable).parent
EXAMPLE = Path(__file__).resolve().parents[2] / "notebooks" / "taxi"
KEY, SECRET = "blockbook-test-key", "blockbook-test-secret"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on a free port of 127.0.0.1."""
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    server = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(endpoint), 60, "moto's S3 server to answer")
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def s3_options(endpoint: str) -> dict[str, Any]:
    return {"key": KEY, "secret": SECRET, "endpoint_url": endpoint}


@pytest.fixture
def bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> str:
    name = "bb-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]
    fs = s3fs.S3FileSystem(**s3_options(s3_endpoint), skip_instance_cache=True)
    if not fs.exists(name):
        fs.mkdir(name)
    return name


@pytest.fixture
def s3_project(
    tmp_path: Path, s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A project whose blockbook.toml puts run folders into the bucket, the secrets of its
    options as `${ENV}` references (set in this process, the runner's, only)."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.delenv(EXECUTOR_ENV, raising=False)
    monkeypatch.setenv("TEST_S3_KEY", KEY)
    monkeypatch.setenv("TEST_S3_SECRET", SECRET)
    (project / "blockbook.toml").write_text(
        "[artifacts]\n"
        f'url = "s3://{bucket}/blockbook"\n'
        "[artifacts.options]\n"
        'key = "${TEST_S3_KEY}"\n'
        'secret = "${TEST_S3_SECRET}"\n'
        f'endpoint_url = "{s3_endpoint}"\n',
        encoding="utf-8",
    )
    return project


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[RunStore]:
    with RunStore(pg_url) as opened:
        yield opened


def worker_env() -> dict[str, str]:
    """This environment without anything that says where S3 is or how to sign in."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "TEST_S3_", "BLOCKBOOK_"))
    }


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, list[Path]]]:
    """`dask scheduler` and two `dask worker --resources kernels=2` (no nannies: a killed
    worker stays dead), each worker in an empty folder of its own."""
    folders = [tmp_path / f"worker-{n}" for n in (1, 2)]
    for folder in folders:
        folder.mkdir()
    workers = [WorkerSpec(cwd=folder, env=worker_env()) for folder in folders]
    with dask_processes(tmp_path, workers) as (address, _):
        yield address, folders


def run_on(project: Path, store: RunStore, folder: Path, address: str, **options: Any) -> RunResult:
    return Project(project, store=store).execute(
        assemble(folder), run_options(**options), executor=parse_executor(address, "test")
    )


def local_files(project: Path) -> list[str]:
    return sorted(
        str(path.relative_to(project))
        for path in (project / ".blockbook").rglob("*")
        if path.is_file() and path.suffix in (".parquet", ".pickle", ".json", ".ipynb", ".log")
    )


def remote_files(folder: RemoteFolder) -> set[str]:
    prefix = folder.path + "/"
    return {str(found)[len(prefix) :] for found in folder.fs.find(folder.path)}


def test_the_example_pipeline_runs_on_two_workers_without_a_shared_disk(
    s3_project: Path, pg_store: RunStore, cluster: tuple[str, list[Path]]
) -> None:
    address, worker_folders = cluster
    folder = s3_project / "taxi"
    shutil.copytree(EXAMPLE, folder)
    before = {p: p.read_bytes() for p in folder.rglob("*.ipynb")}

    result = run_on(s3_project, pg_store, folder, address, force=True)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert {s.status for s in result.blocks.values()} == {BlockStatus.SUCCESS}, statuses(result)
    run_dir = result.run_dir
    assert isinstance(run_dir, RemoteFolder)
    assert run_dir.url.startswith(f"s3://{s3_project_bucket(s3_project)}/blockbook/runs/")
    record = pg_store.get_run(result.run_id)
    assert record is not None
    assert record.run_dir == run_dir.url
    # Nothing of the run on this machine: no run folder, no outputs, no notebooks, no states.
    assert local_files(s3_project) == []
    assert not (s3_project / ".blockbook" / "runs" / result.run_id).exists()
    # Nor in the workers' folders (their kernels ran in scratch folders, removed since).
    for worker in worker_folders:
        assert not [p for p in worker.rglob("*") if p.suffix in (".ipynb", ".parquet", ".gz")]
    # In the bucket: outputs with their manifests (size and sha256 true to the data), the
    # plan, the input and executed notebooks, block states, kernel logs, the workspace copy.
    stored = remote_files(run_dir)
    for expected in (
        "plan.json",
        "artifacts/load_trips/trips.parquet",
        "artifacts/load_trips/trips.json",
        "blocks/export_trips.json",
        "input/load.ipynb",
        "notebooks/load.ipynb",
        "notebooks/export.ipynb",
        "logs/load.kernel.log",
        "workspace/data/green_tripdata_2019-01_sample.csv.gz",
    ):
        assert expected in stored, sorted(stored)
    manifest = json.loads((run_dir / "artifacts/load_trips/trips.json").read_text())
    data = (run_dir / "artifacts/load_trips/trips.parquet").read_bytes()
    assert manifest["bytes"] == len(data)
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
    frame = ArtifactStore(run_dir).load("load_trips", "trips")
    assert len(frame) == manifest["rows"] > 0
    # The executed notebooks came back and were finished (each block cell tagged).
    executed = nbformat.reads((run_dir / "notebooks/clean.ipynb").read_text(), as_version=4)
    tags = [c.metadata.get("blockbook", {}).get("status") for c in executed.cells]
    assert "success" in tags
    assert {p: p.read_bytes() for p in folder.rglob("*.ipynb")} == before


def s3_project_bucket(project: Path) -> str:
    text = (project / "blockbook.toml").read_text()
    return text.split("s3://", 1)[1].split("/", 1)[0]


def test_a_worker_killed_mid_block_leaves_the_run_a_success(
    s3_project: Path, pg_store: RunStore, cluster: tuple[str, list[Path]], tmp_path: Path
) -> None:
    address, _ = cluster
    first, second = tmp_path / "first.pid", tmp_path / "second.pid"
    folder = make_pipeline(
        s3_project,
        {
            "a.ipynb": nb(
                "%%block prepare\nimport pandas as pd\nframe = pd.DataFrame({'n': range(100)})",
                # The test's marker files say which worker runs the block (test instruments
                # only: the run itself shares nothing on disk).
                "%%block long\nimport os, pathlib, time\n"
                f"first, second = pathlib.Path({str(first)!r}), pathlib.Path({str(second)!r})\n"
                "if first.exists():\n"
                "    second.write_text(str(os.getppid()))\n"
                "else:\n"
                "    first.write_text(str(os.getppid()))\n"
                "    for _ in range(600):\n        time.sleep(0.1)\n"
                "total = int(frame['n'].sum())",
            ),
            "b.ipynb": nb("%%block after\nchecked = total * 2"),
        },
    )
    outcome: dict[str, Any] = {}

    def target() -> None:
        outcome["result"] = run_on(s3_project, pg_store, folder, address)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    wait_for(lambda: first.exists() and first.read_text(), 120, "the long block to start")
    doomed = int(first.read_text())
    with distributed.Client(address, set_as_default=False) as client:
        assert doomed in set(client.run(os.getpid).values())
    os.kill(doomed, signal.SIGKILL)
    thread.join(timeout=240)

    assert not thread.is_alive(), "the run did not end after its worker died"
    result: RunResult = outcome["result"]
    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert int(second.read_text()) != doomed
    store = ArtifactStore(result.run_dir)
    assert store.load("long", "total") == 4950
    assert store.load("prepare", "frame")["n"].sum() == 4950
    assert local_files(s3_project) == []


# ---- the storage layer, without a cluster ------------------------------------------------------


def test_an_output_that_cannot_be_stored_leaves_no_object_behind(
    s3_endpoint: str, bucket: str
) -> None:
    storage = Storage(f"s3://{bucket}/atomic", s3_options(s3_endpoint))
    folder = run_folder_at(f"s3://{bucket}/atomic/runs/r1", storage)
    assert isinstance(folder, RemoteFolder)
    store = ArtifactStore(folder)

    class Unpicklable:
        def __reduce__(self) -> Any:
            raise TypeError("cannot pickle this")

    store.save("b", "kept", {"a": 1})
    with pytest.raises(UnstorableOutput):
        store.save("b", "bad", Unpicklable(), ["reader"])
    assert store.names("b") == ["kept"]
    assert remote_files(folder) == {"artifacts/b/kept.pickle", "artifacts/b/kept.json"}


def test_a_file_url_keeps_run_folders_on_disk(tmp_path: Path) -> None:
    (tmp_path / "blockbook.toml").write_text(
        f'[artifacts]\nurl = "file://{tmp_path / "shared"}"\n', encoding="utf-8"
    )
    storage = project_storage(tmp_path)
    assert storage is not None
    assert storage.run_folder("r1") == tmp_path / "shared" / "runs" / "r1"


def test_an_unset_variable_in_the_options_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    (tmp_path / "blockbook.toml").write_text(
        '[artifacts]\nurl = "s3://b/p"\n[artifacts.options]\nsecret = "${NOT_SET_ANYWHERE}"\n',
        encoding="utf-8",
    )
    with pytest.raises(InvalidInputError) as raised:
        project_storage(tmp_path)
    assert "`NOT_SET_ANYWHERE`" in raised.value.message
    assert "[artifacts.options] `secret`" in raised.value.message


def test_a_bad_storage_url_is_a_located_error(tmp_path: Path) -> None:
    (tmp_path / "blockbook.toml").write_text('[artifacts]\nurl = "my-bucket"\n', encoding="utf-8")
    with pytest.raises(InvalidInputError) as raised:
        project_storage(tmp_path)
    assert "blockbook.toml:line 2" in raised.value.message
    assert "is not a storage URL" in raised.value.message


def test_a_local_run_keeps_its_run_folder_in_the_bucket_too(
    s3_project: Path, pg_store: RunStore
) -> None:
    folder = make_pipeline(
        s3_project,
        {
            "a.ipynb": nb("%%block load\nimport pandas as pd\nframe = pd.DataFrame({'n': [1, 2]})"),
            "b.ipynb": nb("%%block total\nsize = int(frame['n'].sum())"),
        },
    )
    result = Project(s3_project, store=pg_store).execute(
        assemble(folder), run_options(), executor=parse_executor("local", "test")
    )

    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert isinstance(result.run_dir, RemoteFolder)
    assert list(ArtifactStore(result.run_dir).load("load", "frame")["n"]) == [1, 2]
    assert result.blocks["total"].status is BlockStatus.SUCCESS
    assert {"notebooks/b.ipynb", "logs/b.kernel.log", "blocks/total.json"} <= remote_files(
        result.run_dir
    )
    assert local_files(s3_project) == []


def test_the_pre_flight_names_a_worker_that_cannot_reach_the_bucket(
    s3_endpoint: str, bucket: str
) -> None:
    from pipelines.runs.executors.dask_executor import worker_problems

    here = Storage(f"s3://{bucket}/p", s3_options(s3_endpoint))
    assert worker_problems(["python3"], "/nowhere", pipelines_version(), here) == []
    missing = Storage("s3://no-such-bucket-here/p", s3_options(s3_endpoint))
    assert worker_problems(["python3"], "/nowhere", pipelines_version(), missing) == [
        "cannot find the bucket of s3://no-such-bucket-here/p (does it exist?)"
    ]
    closed = Storage(f"s3://{bucket}/p", s3_options(f"http://127.0.0.1:{free_port()}"))
    [problem] = worker_problems(["python3"], "/nowhere", pipelines_version(), closed)
    assert problem.startswith(f"cannot reach s3://{bucket}/p (")


def pipelines_version() -> str:
    import pipelines

    return pipelines.__version__


def test_a_cached_block_s_outputs_are_copied_inside_the_bucket(
    s3_project: Path, pg_store: RunStore
) -> None:
    folder = make_pipeline(
        s3_project,
        {
            "a.ipynb": nb("%%block load\nimport pandas as pd\nframe = pd.DataFrame({'n': [1, 2]})"),
            "b.ipynb": nb("%%block total\nsize = int(frame['n'].sum())"),
        },
    )
    project = Project(s3_project, store=pg_store)
    local = parse_executor("local", "test")
    first = project.execute(assemble(folder), run_options(), executor=local)
    second = project.execute(assemble(folder), run_options(), executor=local)

    assert first.status is second.status is RunStatus.SUCCESS, statuses(second)
    assert second.blocks["load"].status is BlockStatus.CACHED, statuses(second)
    assert isinstance(second.run_dir, RemoteFolder)
    assert second.run_dir != first.run_dir
    copied = ArtifactStore(second.run_dir)
    original = ArtifactStore(first.run_dir)
    assert copied.manifest("load", "frame") == original.manifest("load", "frame")
    assert list(copied.load("load", "frame")["n"]) == [1, 2]


def test_an_alert_names_a_failed_block_s_notebook_by_its_url() -> None:
    from dataclasses import replace

    from pipelines.alerts.messages import build_alert, render_text
    from tests.pipelines.test_alerts_unit import record

    url = "s3://team-bucket/blockbook/runs/20261125T060000Z-abc123"
    text = render_text(build_alert("failure", replace(record(), run_dir=url)))

    assert f"notebook: {url}/notebooks/clean.ipynb" in text


def test_a_stop_request_that_cannot_be_read_for_a_while_still_reaches_the_kernel(
    tmp_path: Path,
) -> None:
    from pipelines.runs.executors.dask_executor import StopRequests, _StopWatch
    from pipelines.runs.executors.notebook import KernelProcess

    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        kernel = KernelProcess(sleeper.pid, os.getpgid(sleeper.pid))
        control = tmp_path / "control.json"
        control.mkdir()  # reading it fails, as a store that does not answer would
        with _StopWatch(control, kernel):
            time.sleep(0.5)  # several failed looks
            control.rmdir()
            StopRequests(kill=True).write(control)
            wait_for(lambda: sleeper.poll() is not None, 60, "the kill to reach the process")
        assert sleeper.returncode == -signal.SIGKILL
    finally:
        sleeper.kill()
        sleeper.wait()


def test_without_options_the_standard_aws_variables_reach_the_store(
    s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    folder = run_folder_at(f"s3://{bucket}/from-env/runs/r1")
    assert isinstance(folder, RemoteFolder)
    assert folder.storage.options == {}
    ArtifactStore(folder).save("b", "value", [1, 2, 3])

    assert ArtifactStore(folder).load("b", "value") == [1, 2, 3]


def test_cancel_reaches_a_kernel_on_a_worker_through_the_bucket(
    s3_project: Path, pg_store: RunStore, cluster: tuple[str, list[Path]], tmp_path: Path
) -> None:
    """The kernel ignores interrupts: only the kill, asked in its control object in the bucket
    and carried out by its task on the worker, stops it."""
    import psutil

    address, _ = cluster
    marker = tmp_path / "kernel.pid"
    folder = make_pipeline(
        s3_project,
        {
            "a.ipynb": nb(
                "%%block sleeper\nimport os, pathlib, signal, time\n"
                "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                f"pathlib.Path({str(marker)!r}).write_text(str(os.getpid()))\n"
                "for _ in range(900):\n    time.sleep(0.1)\nrested = True"
            ),
            "b.ipynb": nb("%%block waiter\nwoken = rested"),
        },
    )
    runners: list[Any] = []
    outcome: dict[str, Any] = {}

    def target() -> None:
        outcome["result"] = Project(s3_project, store=pg_store).execute(
            assemble(folder),
            run_options(grace_seconds=1.0),
            on_runner=runners.append,
            executor=parse_executor(address, "test"),
        )

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    wait_for(lambda: marker.exists() and marker.read_text(), 120, "the block to start")
    kernel = int(marker.read_text())
    runners[0].cancel()
    thread.join(timeout=120)

    assert not thread.is_alive(), "the run did not end after cancel()"
    result: RunResult = outcome["result"]
    assert result.status is RunStatus.CANCELLED, statuses(result)
    assert result.blocks["sleeper"].status is BlockStatus.CANCELLED, statuses(result)
    assert result.blocks["waiter"].status is BlockStatus.CANCELLED, statuses(result)
    wait_for(lambda: not psutil.pid_exists(kernel), 30, "the kernel on the worker to be killed")
    assert "control/a.ipynb.json" in {
        name.replace("notebooks__", "") for name in remote_files(result.run_dir)
    }
