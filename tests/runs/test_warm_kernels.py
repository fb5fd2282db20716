"""Warm kernels (`pipelines.runs.pool`): a run takes started kernels with pandas imported, each
set up to look like a kernel started for its notebook, and discards them when it ends.

Real kernels throughout; one pool per module (starting kernels is what costs), refilled between
tests. Each test that runs a pipeline first checks the pool is full, so the run is warm.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from pipelines.api import Project
from pipelines.assembly.pipeline import assemble
from pipelines.runs.kernels import KernelLog, kernel_environment
from pipelines.runs.pool import KernelPool, PoolOptions
from pipelines.runs.runner import Runner
from pipelines.runs.warm import SHUTDOWN_REQUESTER
from pipelines.status import BlockStatus, RunStatus
from pipelines.store.run_store import RunStore
from pipelines.store.sealed import KEY_ENV
from tests.helpers.notebooks import nb
from tests.helpers.runs import RunHelper, run_options, statuses, wait_for

POOL_SIZE = 2
DEADLINE = 180.0

# What a block sees of its kernel, written to the test's probe folder (the run must leave the
# pipeline's folder as it was).
PROBE = """\
%%block probe_{name}
import json, os, sys
probe = {{
    "pandas_preloaded": "pandas" in sys.modules,
    "cwd": os.getcwd(),
    "path": sys.path,
    "token": os.environ.get("PROBE_TOKEN"),
    "key": os.environ.get("{key}"),
    "pid": os.getpid(),
    "history": get_ipython().history_manager.enabled,
}}
open(os.path.join({out!r}, "probe_{name}.json"), "w").write(json.dumps(probe))
"""


@pytest.fixture(scope="module")
def pool() -> Iterator[KernelPool]:
    # The key that opens sealed secrets is in the environment, as it can be in a server's:
    # warm kernels must not inherit it.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, "the-sealing-key")
        pool = KernelPool(PoolOptions(size=POOL_SIZE), env=kernel_environment())
    yield pool
    pool.close()


@pytest.fixture
def full_pool(pool: KernelPool) -> KernelPool:
    assert pool.wait_until_full(DEADLINE), "the pool did not fill up"
    return pool


@pytest.fixture
def warm_run(project: Path, store: RunStore, full_pool: KernelPool) -> RunHelper:
    helper = RunHelper(project, store)
    helper.runner = Runner(project, store, on_block=helper.events.append, kernels=full_pool)
    return helper


@pytest.fixture
def probes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("probes")


def probe(name: str, out: Path) -> str:
    return PROBE.format(name=name, key=KEY_ENV, out=str(out))


def _probe(out: Path, name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((out / f"probe_{name}.json").read_text())
    return result


def _ready_pids(pool: KernelPool) -> set[int]:
    return set(pool.ready_pids("python3"))


def test_a_warm_kernel_looks_to_its_block_like_one_started_for_its_notebook(
    pipeline: Any,
    probes: Path,
    run: RunHelper,
    warm_run: RunHelper,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two pipelines alike but for their folders: a second run of one could reuse the first.
    cold_folder = pipeline({"a.ipynb": nb(probe("a", probes))}, name="cold")
    warm_folder = pipeline({"a.ipynb": nb(probe("a", probes))}, name="warm")
    # Set after the pool started its kernels: what the run's environment has must reach the
    # kernel all the same.
    monkeypatch.setenv("PROBE_TOKEN", "set-for-this-run")

    cold = run(cold_folder)
    assert cold.status is RunStatus.SUCCESS, statuses(cold)
    cold_probe = _probe(probes, "a")
    warm = warm_run(warm_folder)
    assert warm.status is RunStatus.SUCCESS, statuses(warm)
    warm_probe = _probe(probes, "a")

    assert warm_probe["pandas_preloaded"]
    assert not cold_probe["pandas_preloaded"]
    assert cold_probe["cwd"] == str(cold_folder)
    assert warm_probe["cwd"] == str(warm_folder)
    assert warm_probe["path"] == [
        str(warm_folder) if entry == str(cold_folder) else entry for entry in cold_probe["path"]
    ]
    assert warm_probe["token"] == cold_probe["token"] == "set-for-this-run"
    assert warm_probe["key"] is None
    assert warm_probe["history"] is cold_probe["history"] is False


def test_a_frame_crosses_notebooks_on_warm_kernels_and_the_kernels_are_discarded_after(
    pipeline: Any, probes: Path, warm_run: RunHelper, full_pool: KernelPool
) -> None:
    folder = pipeline(
        {
            "a.ipynb": nb(
                "%%block make\nimport pandas as pd\nframe = pd.DataFrame({'x': range(1000)})",
                probe("a", probes),
            ),
            "b.ipynb": nb(
                "%%block total --upstream make\ntotal = int(frame['x'].sum())",
                probe("b", probes),
            ),
        },
    )
    ready_before = _ready_pids(full_pool)

    result = warm_run(folder, concurrency=2)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    used = {_probe(probes, "a")["pid"], _probe(probes, "b")["pid"]}
    assert used == ready_before, "the run did not execute on the pool's kernels"
    assert not any(psutil.pid_exists(pid) and _is_kernel(pid) for pid in used)
    assert full_pool.wait_until_full(DEADLINE)
    assert not _ready_pids(full_pool) & used, "a used kernel went back to the pool"


def test_a_warm_kernel_that_died_while_it_waited_is_replaced_by_a_cold_start(
    pipeline: Any, probes: Path, warm_run: RunHelper, full_pool: KernelPool
) -> None:
    folder = pipeline({"a.ipynb": nb(probe("a", probes))})
    for pid in _ready_pids(full_pool):
        os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: not any(_is_kernel(pid) for pid in _ready_pids(full_pool)),
        30,
        "the killed kernels to be gone",
    )

    result = warm_run(folder)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert not _probe(probes, "a")["pandas_preloaded"], "the dead kernel was not replaced"


def test_the_kernel_log_of_a_warm_kernel_is_the_runs_and_masks_its_secrets(
    pipeline: Any, warm_run: RunHelper
) -> None:
    folder = pipeline(
        {
            "a.ipynb": nb(
                "%%block shout\nimport subprocess\n"
                "subprocess.run(['sh', '-c', f'echo the token is {api_token} >&2'], check=True)",
            )
        },
        '[params]\napi_token = "Hunter2Warm"\n',
    )

    result = warm_run(folder)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    [log] = (result.run_dir / "logs").glob("*.kernel.log")
    text = log.read_text(encoding="utf-8")
    assert "the token is" in text, text
    assert "Hunter2Warm" not in text


def test_a_warm_run_started_by_a_project_is_cancelled_at_once(
    project: Path, pipeline: Any, full_pool: KernelPool
) -> None:
    folder = pipeline(
        {"a.ipynb": nb("%%block slow\nimport time\nfor _ in range(600):\n    time.sleep(0.5)")}
    )
    with Project(project, kernels=full_pool) as warm_project:
        run_id = warm_project.start(folder)
        wait_for(
            lambda: (
                warm_project.run(run_id).status is RunStatus.RUNNING
                and _block_status(warm_project, run_id, "slow") is BlockStatus.RUNNING
            ),
            DEADLINE,
            "the block to run",
        )
        warm_project.cancel(run_id, by="test")
        wait_for(lambda: warm_project.run(run_id).status.is_terminal, DEADLINE, "the run to end")
        record = warm_project.run(run_id)
    assert record.status is RunStatus.CANCELLED, record
    assert record.runner is not None
    assert record.runner.pid == os.getpid()


def test_stopping_the_process_cancels_its_warm_runs_and_says_why(
    project: Path, pipeline: Any, full_pool: KernelPool
) -> None:
    folder = pipeline(
        {"a.ipynb": nb("%%block slow\nimport time\nfor _ in range(600):\n    time.sleep(0.5)")}
    )
    warm_project = Project(project, kernels=full_pool)
    run_id = warm_project.start(folder)
    wait_for(
        lambda: _block_status(warm_project, run_id, "slow") is BlockStatus.RUNNING,
        DEADLINE,
        "the block to run",
    )

    warm_project.close()  # what the server extension does when the server stops

    with Project(project) as reader:
        record = reader.run(run_id)
    assert record.status is RunStatus.CANCELLED, record
    assert record.cancel_requested_by == SHUTDOWN_REQUESTER


def test_closing_the_pool_stops_its_kernels(tmp_path: Path) -> None:
    pool = KernelPool(PoolOptions(size=1))
    assert pool.wait_until_full(DEADLINE)
    pids = _ready_pids(pool)
    folder = pool.folder

    pool.close()

    wait_for(lambda: not any(_is_kernel(pid) for pid in pids), 30, "the kernels to stop")
    assert not folder.exists()
    assert pool.take("python3") is None


def test_the_example_pipeline_runs_on_warm_kernels(warm_run: RunHelper) -> None:
    # The README's pipeline, copied: the hand-offs of a real pipeline on warm kernels.
    source = Path(__file__).parents[2] / "notebooks" / "taxi"
    folder = warm_run.project / "taxi"
    shutil.copytree(source, folder)
    result = warm_run.runner.run(assemble(folder), run_options())
    assert result.status is RunStatus.SUCCESS, statuses(result)


def _block_status(project: Project, run_id: str, block: str) -> BlockStatus | None:
    for entry in project.run(run_id).blocks:
        if entry.block == block:
            return entry.status
    return None


def _is_kernel(pid: int) -> bool:
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and "ipykernel" in " ".join(
            process.cmdline()
        )
    except psutil.NoSuchProcess:
        return False


def test_closing_a_kernel_log_twice_leaves_other_files_alone(tmp_path: Path) -> None:
    # A warm kernel's log is closed by its run and by the kernel's discard.
    output = KernelLog(tmp_path / "kernel.log", str)
    output.close()
    # The log's descriptors are free now: new files take their numbers.
    others = [os.open(tmp_path / f"other{i}", os.O_CREAT | os.O_WRONLY) for i in range(3)]
    try:
        output.close()
        for descriptor in others:
            os.fstat(descriptor)  # EBADF if the second close cut it
    finally:
        for descriptor in others:
            os.close(descriptor)
