"""The runner under faults: a database outage mid-run, a runner paused until its run is marked
crashed, an error between recording a run and starting it, kill -9 mid-write and mid-run.

Real `blockbook run` processes and kernels; the faults are real signals and a real outage (a TCP
proxy between the runner and PostgreSQL that drops its connections)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from pipelines.assembly.pipeline import assemble
from pipelines.rundir.layout import executed_notebook
from pipelines.rundir.layout import run_dir as run_folder
from pipelines.rundir.state import now
from pipelines.status import BlockStatus, RunStatus
from pipelines.store.queue import mark_crashed, orphans, queued_runs
from pipelines.store.run_store import RunId, RunStore
from tests.faults.runner_support import (
    DatabaseProxy,
    block_file_status,
    gated_block,
    kill_runner_and_kernels,
    newest_run_with,
    stop,
    stored_status,
    wait_for,
)
from tests.helpers.notebooks import nb
from tests.helpers.postgres import POSTGRES_URL, postgres_schema, schema_url
from tests.helpers.runs import (
    assert_no_kernels,
    block_cell,
    blockbook,
    cell_text,
    run_options,
    start_blockbook,
)

OUTAGE_SECONDS = 8.0
"""How long the database stays away: the 7-8 s outage of the issue (the fault, not a wait)."""


# ---- a database outage mid-run (PostgreSQL) ----------------------------------------------------


@pytest.fixture
def proxied_store(project: Path) -> Iterator[tuple[RunStore, DatabaseProxy]]:
    """A PostgreSQL store the runner reaches through a proxy (set in blockbook.toml), and the
    same store opened directly, for the test to read while the runner's way is cut."""
    url = make_url(POSTGRES_URL)
    proxy = DatabaseProxy(url.host or "127.0.0.1", url.port or 5432)
    try:
        with postgres_schema() as schema:
            direct = schema_url(schema)
            through_proxy = direct.replace(f":{url.port or 5432}/", f":{proxy.port}/", 1)
            (project / "blockbook.toml").write_text(
                f'[store]\nurl = "{through_proxy}"\n', encoding="utf-8"
            )
            with RunStore(direct) as store:
                yield store, proxy
    finally:
        proxy.close()


def test_a_database_outage_mid_run_is_ridden_out_and_the_run_ends_truthfully(
    project: Path, pipeline: Callable[..., Path], proxied_store: tuple[RunStore, DatabaseProxy]
) -> None:
    store, proxy = proxied_store
    gate = project / "go"
    pipeline({"a.ipynb": nb(gated_block("slow", gate, "ready = 1"), "%%block after\nx = ready")})
    process = start_blockbook(project, "run", "pipe")
    try:
        try:
            run_id = wait_for(
                lambda: newest_run_with(store, "slow", BlockStatus.RUNNING), "slow ran", process
            )
            proxy.cut()
            # The runner must meet the outage (a heartbeat, a block record) for this to test it.
            wait_for(lambda: proxy.refused >= 2, "the runner reached for the store", process)
            gate.touch()  # the blocks finish, and the notebook ends, while the store is down
            folder = run_folder(project, run_id)
            wait_for(
                lambda: block_file_status(folder, "after") is BlockStatus.SUCCESS,
                "after ran",
                process,
            )
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=OUTAGE_SECONDS)  # the outage goes on; the runner waits
        finally:
            proxy.restore()
        stdout, stderr = process.communicate(timeout=120)
    finally:
        stop(process)

    assert "Usage:" not in stderr, stderr
    record = store.get_run(run_id)
    assert record is not None
    assert (process.returncode, record.status) == (0, RunStatus.SUCCESS), (stdout, stderr)
    assert {b.block: b.status for b in record.blocks} == {
        "slow": BlockStatus.SUCCESS,
        "after": BlockStatus.SUCCESS,
    }


# ---- a runner paused until its run is marked crashed ----------------------------------------

HEARTBEAT_TIMEOUT = timedelta(seconds=5)
"""The scheduler's `--heartbeat-timeout` in the issue's report."""


def mark_crashed_once_silent(store: RunStore, run_id: str) -> None:
    """What a scheduler does to a paused runner's run: once its heartbeat is older than the
    timeout, mark it crashed (as `Scheduler` does with `orphans` and `mark_crashed`)."""
    wait_for(
        lambda: run_id in {r.run_id for r in orphans(store, now(), HEARTBEAT_TIMEOUT)},
        "the paused runner's heartbeat grew old",
    )
    assert mark_crashed(store, run_id, "the runner stopped beating (test)")


def test_a_runner_that_finds_its_run_crashed_stops_at_once_and_says_so(
    project: Path, pipeline: Callable[..., Path], store: RunStore
) -> None:
    gate = project / "go"
    exports = project / "exports.txt"
    export = f"%%block export\nwith open({str(exports)!r}, 'a') as f:\n    f.write(f'{{ready}}\\n')"
    pipeline({"a.ipynb": nb(gated_block("slow", gate, "ready = 1"), export)})
    process = start_blockbook(project, "run", "pipe")
    try:
        run_id = wait_for(
            lambda: newest_run_with(store, "slow", BlockStatus.RUNNING), "slow ran", process
        )
        os.kill(process.pid, signal.SIGSTOP)  # Ctrl-Z, a VM pause
        mark_crashed_once_silent(store, run_id)
        gate.touch()
        # The kernel is not paused: its running block ends while the runner sleeps.
        folder = run_folder(project, run_id)
        wait_for(lambda: block_file_status(folder, "slow") is BlockStatus.SUCCESS, "slow ended")
        os.kill(process.pid, signal.SIGCONT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        stop(process)

    assert not exports.exists(), "the runner went on to run `export` in a crashed run"
    assert process.returncode not in (0, 2), (process.returncode, stdout, stderr)
    assert "crashed" in stdout + stderr
    assert stored_status(store, run_id) is RunStatus.CRASHED
    assert_no_kernels(project, within=60)

    resumed = blockbook(project, "run", "pipe", "--resume", run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert exports.read_text(encoding="utf-8") == "1\n", "export ran more than once"


def test_a_block_that_ended_while_its_runner_was_paused_is_not_run_again_by_the_resume(
    project: Path, pipeline: Callable[..., Path], store: RunStore
) -> None:
    gate = project / "go"
    exports = project / "exports.txt"
    export = gated_block(
        "export", gate, f"with open({str(exports)!r}, 'a') as f:\n    f.write('exported\\n')"
    )
    pipeline({"a.ipynb": nb(export, "%%block later\ndone = 1")})
    process = start_blockbook(project, "run", "pipe")
    try:
        run_id = wait_for(
            lambda: newest_run_with(store, "export", BlockStatus.RUNNING), "export ran", process
        )
        os.kill(process.pid, signal.SIGSTOP)
        mark_crashed_once_silent(store, run_id)
        gate.touch()
        folder = run_folder(project, run_id)
        wait_for(lambda: block_file_status(folder, "export") is BlockStatus.SUCCESS, "exported")
        os.kill(process.pid, signal.SIGCONT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        stop(process)
    assert process.returncode not in (0, 2), (process.returncode, stdout, stderr)
    assert_no_kernels(project, within=60)

    resumed = blockbook(project, "run", "pipe", "--resume", run_id)

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert exports.read_text(encoding="utf-8") == "exported\n", "export ran twice"


# ---- an error between recording a run and starting it --------------------------------------


def test_an_error_after_the_run_is_recorded_fails_it_with_the_reason(
    project: Path, pipeline: Callable[..., Path], store: RunStore
) -> None:
    from pipelines.runs.runner import Runner

    folder = pipeline({"a.ipynb": nb("%%block a\nx = 1")})
    run_id = RunId("blocked-by-a-file")
    # A file where the run's folder must go: writing the run plan fails after create_run.
    run_folder(project, run_id).parent.mkdir(parents=True, exist_ok=True)
    run_folder(project, run_id).write_text("in the way", encoding="utf-8")

    with pytest.raises(FileExistsError):
        Runner(project, store).run(assemble(folder), run_options(run_id=run_id))

    record = store.get_run(run_id)
    assert record is not None
    assert record.status is RunStatus.FAILED, record.status
    assert record.error is not None
    assert str(run_folder(project, run_id)) in record.error
    assert run_id not in {r.run_id for r in queued_runs(store)}


# ---- kill -9 during a large artifact write ----------------------------------------------------

BIG = (
    "%%block big\nfirst = b'1' * 250_000_000\nsecond = b'2' * 250_000_000\n"
    "third = b'3' * 250_000_000"
)
USES_BIG = "%%block uses\nsizes = len(first) + len(second) + len(third)"


def temporary_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.tmp")) if folder.is_dir() else []


def test_temporary_files_of_a_write_cut_by_kill_9_are_removed_by_the_resume(
    project: Path, pipeline: Callable[..., Path], store: RunStore
) -> None:
    pipeline({"a.ipynb": nb(BIG, USES_BIG)})
    process = start_blockbook(project, "run", "pipe")
    try:
        (leftover,) = wait_for(
            lambda: list(project.glob(".blockbook/runs/*/artifacts/big/*.tmp")),
            "an output write began",
            process,
            interval=0.002,
        )
        kill_runner_and_kernels(process, project)
    finally:
        stop(process)
    run_id = leftover.parent.parent.parent.name
    # What a scheduler does once it finds the runner dead.
    mark_crashed(store, run_id, "the runner died (test)")

    resumed = blockbook(project, "run", "pipe", "--resume", run_id)

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert temporary_files(run_folder(project, run_id)) == []


def test_a_run_leaves_no_temporary_files_when_its_kernel_dies_mid_write(
    project: Path, pipeline: Callable[..., Path], store: RunStore
) -> None:
    # The kernel dies as a write begins (the OOM killer): what write_bytes_atomic leaves.
    leaves_tmp = (
        "%%block dies\nimport glob, os, signal, tempfile\n"
        f"runs = sorted(glob.glob(os.path.join({str(project)!r}, '.blockbook', 'runs', '*')))\n"
        "folder = os.path.join(runs[-1], 'artifacts', 'dies')\n"
        "os.makedirs(folder, exist_ok=True)\n"
        "tempfile.mkstemp(dir=folder, prefix='.value.pickle.', suffix='.tmp')\n"
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    pipeline({"a.ipynb": nb(leaves_tmp, "%%block later\ny = 1")})

    result = blockbook(project, "run", "pipe")

    assert result.returncode == 1, result.stdout + result.stderr
    (record,) = store.list_runs(limit=1)
    assert record.status is RunStatus.FAILED
    assert temporary_files(Path(record.run_dir)) == []


# ---- kill -9 of the runner mid-run ------------------------------------------------------------


def test_a_killed_runner_leaves_the_outputs_of_finished_blocks_in_the_executed_notebook(
    project: Path, pipeline: Callable[..., Path], store: RunStore
) -> None:
    gate = project / "never"
    pipeline(
        {
            "a.ipynb": nb(
                "%%block first\nprint('first says hello')\nx = 1",
                gated_block("waits", gate, "y = x"),
            )
        }
    )
    process = start_blockbook(project, "run", "pipe")
    try:
        run_id = wait_for(
            lambda: newest_run_with(store, "waits", BlockStatus.RUNNING), "waits ran", process
        )
        kill_runner_and_kernels(process, project)
    finally:
        stop(process)

    record = store.get_run(run_id)
    assert record is not None
    executed = executed_notebook(Path(record.run_dir), record.known_block("first").notebook)
    assert "first says hello" in cell_text(block_cell(executed, "first"))
