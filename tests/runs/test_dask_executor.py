"""Runs on Dask distributed: a real LocalCluster (worker processes, `kernels` resource) shared by
the module, and one test with `dask scheduler` and `dask worker` processes, one of which is
killed mid-block. The run folder is on this machine's disk, which the workers share."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

import pipelines  # noqa: E402
from pipelines.api import Project  # noqa: E402
from pipelines.assembly.pipeline import assemble  # noqa: E402
from pipelines.errors import InvalidInputError  # noqa: E402
from pipelines.runs.executors import ExecutorUnavailable  # noqa: E402
from pipelines.runs.executors.choice import (  # noqa: E402
    EXECUTOR_ENV,
    ExecutorChoice,
    check_store_is_shared,
    chosen_executor,
    parse_executor,
)
from pipelines.runs.executors.dask_executor import worker_problems  # noqa: E402
from pipelines.runs.runner import Runner, RunResult  # noqa: E402
from pipelines.status import BlockStatus, RunStatus  # noqa: E402
from pipelines.store.run_store import RunStore  # noqa: E402
from tests.helpers.dask_processes import WorkerSpec, dask_processes  # noqa: E402
from tests.helpers.notebooks import make_pipeline, nb  # noqa: E402
from tests.helpers.runs import (  # noqa: E402
    BLOCKBOOK,
    assert_no_kernels,
    cli_env,
    load_output,
    run_options,
    statuses,
    wait_for,
)

DASK = Path(sys.executable).parent / "dask"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=2,
        processes=True,
        resources={"kernels": 2},
        dashboard_address=":0",
    ) as local:
        with distributed.Client(local) as client:
            # Workers import papermill and the magics on first use: once, not in a timed test.
            client.wait_for_workers(2, timeout=60)
        yield local


@pytest.fixture
def on_dask(cluster: Any) -> ExecutorChoice:
    return parse_executor(cluster.scheduler_address.replace("tcp://", "dask://"), "test")


@pytest.fixture(autouse=True)
def no_executor_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EXECUTOR_ENV, raising=False)


def execute(
    project: Path,
    store: RunStore,
    folder: Path,
    choice: ExecutorChoice,
    on_runner: Callable[[Runner], None] | None = None,
    **options: Any,
) -> RunResult:
    """One run through `Project.execute`, the path `blockbook run` takes."""
    return Project(project, store=store).execute(
        assemble(folder), run_options(**options), on_runner=on_runner, executor=choice
    )


def worker_pids(address: str) -> set[int]:
    with distributed.Client(address, set_as_default=False) as client:
        return set(client.run(os.getpid).values())


def where_ran(marker: Path) -> str:
    """Block code that writes its kernel's parent process (the worker) into `marker`."""
    return f"import os, pathlib\npathlib.Path({str(marker)!r}).write_text(str(os.getppid()))\n"


# ---- the behaviour matrix on a LocalCluster ----------------------------------------------------


def test_a_frame_crosses_notebooks_running_on_the_workers(
    project: Path, any_store: RunStore, on_dask: ExecutorChoice, cluster: Any, tmp_path: Path
) -> None:
    folder = make_pipeline(
        project,
        {
            "a.ipynb": nb(
                "%%block load\nimport pandas as pd\n"
                + where_ran(tmp_path / "load.pid")
                + "frame = pd.DataFrame({'x': [1, 2, 3]})"
            ),
            "b.ipynb": nb(
                "%%block total\n"
                + where_ran(tmp_path / "total.pid")
                + "s = int(frame.x.sum())\nassert s == 6"
            ),
        },
    )
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        with distributed.get_task_stream(client) as tasks:
            result = execute(project, any_store, folder, on_dask)
        workers = set(client.run(os.getpid).values())

    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert {int((tmp_path / f"{b}.pid").read_text()) for b in ("load", "total")} <= workers
    ours = sorted(str(t["key"]) for t in tasks.data if str(t["key"]).startswith("blockbook-"))
    assert len(ours) == 2, ours
    for key, notebook in zip(ours, ("a.ipynb", "b.ipynb"), strict=True):
        assert key.startswith(f"blockbook-{result.run_id}-")
        assert key.endswith(f"{notebook}-1")
    assert any_store.get_run(result.run_id).status is RunStatus.SUCCESS  # type: ignore[union-attr]
    assert_no_kernels(folder, within=15)


def test_isolate_submits_one_task_per_block(
    project: Path, store: RunStore, on_dask: ExecutorChoice, cluster: Any
) -> None:
    folder = make_pipeline(
        project,
        {
            "a.ipynb": nb("%%block first\nx = 1", "%%block second\ny = x + 1"),
            "b.ipynb": nb("%%block third\nz = y + 1\nassert z == 3"),
        },
    )
    with (
        distributed.Client(cluster.scheduler_address, set_as_default=False) as client,
        distributed.get_task_stream(client) as tasks,
    ):
        result = execute(project, store, folder, on_dask, isolate=True)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    prefix = f"blockbook-{result.run_id}-"
    ours = [str(t["key"]) for t in tasks.data if str(t["key"]).startswith(prefix)]
    assert len(ours) == 3, ours


def test_a_failed_block_fails_its_downstream_in_another_notebook(
    project: Path, store: RunStore, on_dask: ExecutorChoice
) -> None:
    folder = make_pipeline(
        project,
        {
            "a.ipynb": nb("%%block broken\nvalue = 1 / 0"),
            "b.ipynb": nb("%%block after\ntwice = value * 2"),
        },
    )
    result = execute(project, store, folder, on_dask)

    assert result.status is RunStatus.FAILED
    assert result.blocks["broken"].status is BlockStatus.FAILED, statuses(result)
    assert "ZeroDivisionError" in (result.blocks["broken"].error or "")
    assert result.blocks["after"].status is BlockStatus.UPSTREAM_FAILED, statuses(result)


def test_a_block_is_retried_on_the_worker(
    project: Path, store: RunStore, on_dask: ExecutorChoice, tmp_path: Path
) -> None:
    tried = tmp_path / "tried"
    folder = make_pipeline(
        project,
        {
            "a.ipynb": nb(
                "%%block flaky --retries 1\nimport pathlib\n"
                f"first = not pathlib.Path({str(tried)!r}).exists()\n"
                f"pathlib.Path({str(tried)!r}).touch()\n"
                "assert not first, 'first attempt fails'\nok = True"
            )
        },
    )
    result = execute(project, store, folder, on_dask)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert len(result.blocks["flaky"].attempts) == 2


def sleeper(project: Path, marker: Path, *, ignore_interrupts: bool = False) -> Path:
    stubborn = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    return make_pipeline(
        project,
        {
            "a.ipynb": nb(
                "%%block sleeper\nimport pathlib, time\n"
                + (stubborn if ignore_interrupts else "")
                + f"pathlib.Path({str(marker)!r}).touch()\n"
                "for _ in range(600):\n    time.sleep(0.1)\nrested = True"
            ),
            "b.ipynb": nb("%%block waiter\nwoken = rested"),
        },
        name="sleepy",
    )


def run_in_thread(
    project: Path, store: RunStore, folder: Path, choice: ExecutorChoice, **options: Any
) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def target() -> None:
        outcome["result"] = execute(
            project,
            store,
            folder,
            choice,
            lambda runner: outcome.setdefault("runner", runner),
            **options,
        )

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("ignore_interrupts", [False, True], ids=["interrupted", "killed"])
def test_cancel_reaches_the_kernel_on_its_worker(
    project: Path,
    store: RunStore,
    on_dask: ExecutorChoice,
    tmp_path: Path,
    ignore_interrupts: bool,
) -> None:
    marker = tmp_path / "started"
    folder = sleeper(project, marker, ignore_interrupts=ignore_interrupts)
    thread, outcome = run_in_thread(project, store, folder, on_dask, grace_seconds=1.0)
    wait_for(marker.exists, 60, "the sleeping block to start on a worker")
    outcome["runner"].cancel()
    thread.join(timeout=60)

    assert not thread.is_alive(), "the run did not end after cancel()"
    result: RunResult = outcome["result"]
    assert result.status is RunStatus.CANCELLED
    assert result.blocks["sleeper"].status is BlockStatus.CANCELLED, statuses(result)
    assert result.blocks["waiter"].status is BlockStatus.CANCELLED, statuses(result)
    assert_no_kernels(folder, within=15)


def test_a_block_past_its_timeout_is_stopped_on_its_worker(
    project: Path, store: RunStore, on_dask: ExecutorChoice, tmp_path: Path
) -> None:
    # It ignores the kernel's own timeout (SIGALRM) and the runner's interrupt, so the runner's
    # backstop must kill it from afar: through the control file the task watches.
    folder = make_pipeline(
        project,
        {
            "a.ipynb": nb(
                "%%block stuck --timeout 1\nimport signal, time\n"
                "signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                "for _ in range(600):\n    time.sleep(0.1)\ndone = True"
            )
        },
    )
    result = execute(project, store, folder, on_dask, grace_seconds=1.0)

    assert result.status is RunStatus.FAILED
    error = result.blocks["stuck"].error or ""
    assert "timed out" in error, statuses(result)
    assert "killed" in error, statuses(result)
    assert_no_kernels(folder, within=15)


def test_concurrent_runs_of_one_pipeline_keep_apart(
    project: Path, any_store: RunStore, on_dask: ExecutorChoice
) -> None:
    store = any_store
    folder = make_pipeline(
        project,
        {
            "a.ipynb": nb("%%block seed\nimport time\ntime.sleep(1)\nn = 20"),
            "b.ipynb": nb("%%block doubled\nm = n * 2\nassert m == 40"),
        },
    )
    runs = [run_in_thread(project, store, folder, on_dask) for _ in range(2)]
    for thread, _ in runs:
        thread.join(timeout=120)

    results = [outcome["result"] for _, outcome in runs]
    assert all(r.status is RunStatus.SUCCESS for r in results), [statuses(r) for r in results]
    assert results[0].run_id != results[1].run_id
    assert results[0].run_dir != results[1].run_dir


def test_a_worker_without_the_kernelspec_is_named_before_the_run(
    project: Path,
    store: RunStore,
    on_dask: ExecutorChoice,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Installed here, where the runner looks, but not where the workers (started before) look.
    spec = tmp_path / "jupyter" / "kernels" / "only-here"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "only here",
                "language": "python",
            }
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    folder = make_pipeline(project, {"a.ipynb": nb("%%block one\nx = 1")}, 'kernel = "only-here"\n')

    with pytest.raises(ExecutorUnavailable) as raised:
        execute(project, store, folder, on_dask)

    message = raised.value.message
    with distributed.Client(on_dask.address, set_as_default=False) as client:
        workers = sorted(client.run(os.getpid))
    assert len(workers) == 2
    for worker in workers:
        assert f"worker {worker}: has no kernelspec `only-here`" in message
    assert store.list_runs("pipe") == []


def test_the_pre_flight_names_a_worker_on_another_blockbook_or_without_the_project(
    tmp_path: Path,
) -> None:
    problems = worker_problems(["python3"], str(tmp_path / "elsewhere"), "0.0.0-runner")

    assert problems == [
        f"runs blockbook {pipelines.__version__}, the runner 0.0.0-runner",
        f"cannot see the pipeline folder {tmp_path / 'elsewhere'}: this version needs the "
        "project on a disk the runner and the workers share (same machine, or NFS)",
    ]


def test_the_command_line_runs_on_the_cluster_and_refuses_a_bad_executor(
    project: Path, on_dask: ExecutorChoice
) -> None:
    folder = make_pipeline(project, {"a.ipynb": nb("%%block one\nx = 1")})
    dask_url = on_dask.address.replace("tcp://", "dask://")  # type: ignore[union-attr]
    base = [str(BLOCKBOOK), "--project", str(project), "run", str(folder)]
    ran = subprocess.run(
        [*base, "--executor", dask_url], capture_output=True, text=True, env=cli_env(), timeout=120
    )
    bad = subprocess.run(
        [*base, "--executor", "dask://nowhere"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert bad.returncode == 2
    assert "--executor: `dask://nowhere` is not an executor" in bad.stderr


def test_a_notebook_whose_workers_keep_dying_fails_not_as_the_notebooks_fault(
    project: Path, store: RunStore
) -> None:
    # Each attempt kills the worker it runs on (its kernel, orphaned, exits when it notices);
    # the scheduler gives up after one retry.
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as doomed,
    ):
        folder = make_pipeline(
            project,
            {
                "a.ipynb": nb(
                    "%%block fatal\nimport os, signal, time\n"
                    "os.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(60)\nx = 1",
                    "%%block later\ny = x + 1",
                )
            },
        )
        choice = parse_executor(doomed.scheduler_address, "test")
        result = execute(project, store, folder, choice)

    assert result.status is RunStatus.FAILED
    fatal, later = result.blocks["fatal"], result.blocks["later"]
    assert fatal.status is BlockStatus.FAILED, statuses(result)
    assert "the Dask workers running this notebook died" in (fatal.error or "")
    assert "not the notebook's fault" in (fatal.error or "")
    assert fatal.error.endswith("this block was running then"), fatal.error  # type: ignore[union-attr]
    assert (later.error or "").startswith("not run: the Dask workers"), statuses(result)
    assert_no_kernels(folder, within=30)


# ---- choosing the executor ----------------------------------------------------------------------


def test_a_remote_scheduler_with_an_sqlite_store_is_refused(any_store: RunStore) -> None:
    remote = parse_executor("dask://10.1.2.3:8786", "--executor")
    local = parse_executor("dask://127.0.0.1:8786", "--executor")

    if any_store.url.startswith("sqlite"):
        with pytest.raises(InvalidInputError) as raised:
            check_store_is_shared(remote, any_store)
        assert "use PostgreSQL" in raised.value.hint
        assert "BLOCKBOOK_DATABASE_URL" in raised.value.hint
        with pytest.raises(InvalidInputError):
            check_store_is_shared(local, any_store, worker_hosts=("10.1.2.4",))
    else:
        check_store_is_shared(remote, any_store)
    check_store_is_shared(local, any_store, worker_hosts=("127.0.0.1",))


def test_a_queued_run_refused_by_its_executor_ends_failed_with_the_reason(
    project: Path, store: RunStore
) -> None:
    folder = make_pipeline(project, {"a.ipynb": nb("%%block one\nx = 1")})
    queued = Project(project, store=store).trigger(folder)
    remote = parse_executor("dask://10.1.2.3:8786", "--executor")

    with pytest.raises(InvalidInputError):
        execute(project, store, folder, remote, run_id=queued)

    record = store.get_run(queued)
    assert record is not None
    assert record.status is RunStatus.FAILED
    assert (record.error or "").startswith("the run could not start: the Dask cluster")


def test_the_choice_comes_from_the_option_then_the_environment_then_blockbook_toml(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert chosen_executor(project).kind == "local"
    (project / "blockbook.toml").write_text(
        '[executor]\ntype = "dask"\naddress = "tcp://10.0.0.5:8786"\n', encoding="utf-8"
    )
    assert chosen_executor(project).address == "tcp://10.0.0.5:8786"
    monkeypatch.setenv(EXECUTOR_ENV, "dask://10.0.0.6:8786")
    assert chosen_executor(project).address == "tcp://10.0.0.6:8786"
    assert chosen_executor(project, parse_executor("local", "--executor")).kind == "local"


@pytest.mark.parametrize(
    ("toml", "located"),
    [
        ('[executor]\ntype = "dask"\n', 'blockbook.toml:line 1: `executor`: type = "dask" needs'),
        (
            '[executor]\ntype = "dask"\naddress = "10.0.0.5"\n',
            "blockbook.toml:line 3: `executor.address`: `10.0.0.5` is not a Dask scheduler",
        ),
        ('\n[executor]\nkind = "dask"\n', "blockbook.toml:line 3: unknown key `executor.kind`"),
    ],
)
def test_a_bad_executor_table_is_a_located_error(project: Path, toml: str, located: str) -> None:
    (project / "blockbook.toml").write_text(toml, encoding="utf-8")
    with pytest.raises(InvalidInputError) as raised:
        chosen_executor(project)
    assert located in raised.value.message


def test_a_bad_executor_in_the_environment_names_the_variable(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(EXECUTOR_ENV, "spark://h:1")
    with pytest.raises(InvalidInputError) as raised:
        chosen_executor(project)
    assert raised.value.message == f"${EXECUTOR_ENV}: `spark://h:1` is not an executor"


# ---- a worker dies mid-block ---------------------------------------------------------------------


@pytest.fixture
def real_cluster(tmp_path: Path) -> Iterator[str]:
    """`dask scheduler` and two `dask worker`s without nannies: a killed worker stays dead."""
    with dask_processes(tmp_path, [WorkerSpec(), WorkerSpec()]) as (address, _):
        yield address


def test_a_worker_killed_mid_block_is_replaced_by_the_other_and_the_run_succeeds(
    project: Path, store: RunStore, real_cluster: str, tmp_path: Path
) -> None:
    first = tmp_path / "first.pid"
    second = tmp_path / "second.pid"
    exports = tmp_path / "exports.log"
    folder = make_pipeline(
        project,
        {
            "a.ipynb": nb(
                # Done before the worker dies: the notebook's second execution must not export
                # again.
                f"%%block export --kind exporter\nwith open({str(exports)!r}, 'a') as log:\n"
                "    log.write('exported\\n')\nexported = 1",
                "%%block long\nimport os, pathlib, time\n"
                f"first, second = pathlib.Path({str(first)!r}), pathlib.Path({str(second)!r})\n"
                "if first.exists():\n"
                "    second.write_text(str(os.getppid()))\n"
                "else:\n"
                "    first.write_text(str(os.getppid()))\n"
                "    for _ in range(600):\n        time.sleep(0.1)\n"
                "size = 2 + exported",
            ),
            "b.ipynb": nb("%%block after\nbigger = size + 1"),
        },
    )
    choice = parse_executor(real_cluster, "test")
    thread, outcome = run_in_thread(project, store, folder, choice)
    wait_for(lambda: first.exists() and first.read_text(), 90, "the block to start")
    doomed = int(first.read_text())
    assert doomed in worker_pids(real_cluster)
    os.kill(doomed, signal.SIGKILL)
    thread.join(timeout=120)

    assert not thread.is_alive(), "the run did not end after its worker died"
    result: RunResult = outcome["result"]
    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert int(second.read_text()) not in (doomed, os.getpid())
    assert result.blocks["long"].status is BlockStatus.SUCCESS
    assert exports.read_text() == "exported\n", "the export ran again on the second worker"
    # The kernel of the dead worker notices its parent is gone and exits.
    assert_no_kernels(folder, within=30)


def test_a_fan_out_runs_each_child_as_a_task_on_the_workers(
    project: Path, store: RunStore, on_dask: ExecutorChoice, cluster: Any
) -> None:
    folder = make_pipeline(
        project,
        {
            "a.ipynb": nb("%%block make_numbers\nnumbers = [1, 2, 3]"),
            "b.ipynb": nb("%%block square --map numbers\nsquared = item * item"),
            "c.ipynb": nb("%%block report --out total\ntotal = list(squared)"),
        },
    )
    with (
        distributed.Client(cluster.scheduler_address, set_as_default=False) as client,
        distributed.get_task_stream(client) as tasks,
    ):
        result = execute(project, store, folder, on_dask)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert load_output(result, "report", "total") == [1, 4, 9]
    prefix = f"blockbook-{result.run_id}-"
    ours = sorted(str(t["key"]) for t in tasks.data if str(t["key"]).startswith(prefix))
    # Task keys spell `b.square[2].ipynb` as `b.square_2_.ipynb`.
    children = [key for key in ours if ".square_" in key]
    assert len(children) == 3, ours
    assert len(ours) == 6, ours  # three notebooks and three children
