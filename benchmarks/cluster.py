"""The example pipeline on this machine against a two-worker Dask cluster with its run folder in
S3: `blockbook run --force` of a copy of `notebooks/taxi`, whole process wall time, in turns.

- local: the default LocalExecutor, run folder under `.blockbook/`;
- cluster: a `dask scheduler` and two `dask worker --resources kernels=2` (each in an empty
  folder of its own, no S3 settings in their environment) on 127.0.0.1, the run folder in a
  bucket of moto's S3 server (`[artifacts]` in blockbook.toml).

Both projects use their own SQLite store (the cluster is on this machine, so SQLite is allowed;
`--store URL` puts both on another store, e.g. PostgreSQL). One untimed run of each first (the
workers import papermill and pandas on their first task), then `--repeat` timed runs of each,
alternating; prints the medians and their ratio side by side.

    python benchmarks/cluster.py [--repeat 3] [--store postgresql+psycopg://...]

Needs `blockbook[dask,s3]` and moto's server (`pip install 'moto[server]'`, in `[test]`). Note the
load (`uptime`) beside the figures: everything here shares this machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EXAMPLE = ROOT / "notebooks" / "taxi"
KEY, SECRET = "benchmark-key", "benchmark-secret"
DASK_SCHEDULER = [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0"]
DASK_WORKER = [str(BIN / "dask"), "worker", "--nthreads", "2"]


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.2)


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


@contextmanager
def processes(logs: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start processes that are all stopped at the end, their output in `logs`."""
    started: list[subprocess.Popen[bytes]] = []
    with logs.open("w") as log:

        def start(command: list[str], **options: Any) -> subprocess.Popen[bytes]:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, **options)
            started.append(process)
            return process

        try:
            yield start
        finally:
            for process in reversed(started):
                process.terminate()
            for process in started:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()


def s3_server(start: Callable[..., subprocess.Popen[bytes]]) -> str:
    port = free_port()
    start([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)])
    endpoint = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(endpoint), 60, "moto's S3 server")
    import s3fs

    s3fs.S3FileSystem(key=KEY, secret=SECRET, endpoint_url=endpoint).mkdir("benchmark")
    return endpoint


def dask_cluster(start: Callable[..., subprocess.Popen[bytes]], scratch: Path) -> str:
    scheduler_file = scratch / "scheduler.json"
    start([*DASK_SCHEDULER, "--no-dashboard", "--scheduler-file", str(scheduler_file)])
    wait_for(scheduler_file.exists, 60, "the Dask scheduler")
    address = str(json.loads(scheduler_file.read_text())["address"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BLOCKBOOK_"))}
    for n in (1, 2):
        folder = scratch / f"worker-{n}"
        folder.mkdir()
        start(
            [*DASK_WORKER, address, "--resources", "kernels=2", "--no-dashboard"],
            cwd=folder,
            env=env,
        )
    from distributed import Client

    with Client(address, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=120)
    return address


def project(into: Path, settings: str) -> Path:
    into.mkdir()
    (into / "blockbook.toml").write_text(settings, encoding="utf-8")
    folder = into / EXAMPLE.name
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("*.sqlite", ".ipynb_*"))
    return folder


def timed_run(folder: Path, env: dict[str, str]) -> float:
    command = [str(BIN / "blockbook"), "--project", str(folder.parent), "run", str(folder)]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "--force"], cwd=folder.parent, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"blockbook run failed ({done.returncode}):\n{done.stdout[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each")
    parser.add_argument("--store", help="a run store URL both use (default: their own SQLite)")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("BLOCKBOOK_EXECUTOR",)}
    if args.store:
        env["BLOCKBOOK_DATABASE_URL"] = args.store
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bb-cluster-")))
        start = stack.enter_context(processes(scratch / "services.log"))
        endpoint = s3_server(start)
        address = dask_cluster(start, scratch)
        local = project(scratch / "local", "")
        env["BENCHMARK_S3_SECRET"] = SECRET
        remote = project(
            scratch / "cluster",
            f'[executor]\ntype = "dask"\naddress = "{address}"\n\n'
            '[artifacts]\nurl = "s3://benchmark/blockbook"\n\n'
            f'[artifacts.options]\nkey = "{KEY}"\nsecret = "${{BENCHMARK_S3_SECRET}}"\n'
            f'endpoint_url = "{endpoint}"\n',
        )
        for folder in (local, remote):
            timed_run(folder, env)  # untimed: imports and caches warm on both sides
        times: dict[str, list[float]] = {"local": [], "cluster": []}
        for _ in range(args.repeat):
            times["local"].append(timed_run(local, env))
            times["cluster"].append(timed_run(remote, env))
    load = os.getloadavg()[0]
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"blockbook run --force {EXAMPLE.name}, median of {args.repeat} (load {load:.2f})")
    print(f"{'LocalExecutor, local disk':<40}{'2 Dask workers, S3 (moto)':<32}ratio")
    ratio = median["cluster"] / median["local"]
    print(f"{median['local']:<40.2f}{median['cluster']:<32.2f}{ratio:.2f}x")
    for name, values in times.items():
        print(f"  {name}: " + ", ".join(f"{v:.2f}" for v in values))


if __name__ == "__main__":
    main()
