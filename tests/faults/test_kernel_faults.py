"""A kernel that cannot start: the port race between kernels starting at the same moment
(`ZMQError: Address already in use`) is retried, and a kernel that dies on start-up fails its
blocks with the cause from its log instead of a start-up timeout."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from jupyter_client.provisioning.local_provisioner import LocalPortCache

from pipelines.status import BlockStatus, RunStatus
from tests.faults.orphans import assert_none_sleeping, reaping
from tests.helpers.notebooks import nb
from tests.helpers.runs import statuses


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process holds, as in the race where it grabs a kernel's chosen port
    between jupyter_client picking it and the kernel binding it."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


SHELL, IOPUB = 0, 1
"""The order in which jupyter_client picks a kernel's five ports."""


def hand_out_taken_port(
    monkeypatch: pytest.MonkeyPatch, port: int, starts: int | None, role: int = IOPUB
) -> None:
    """The first `starts` kernel starts (every start when None) get `port` as one of their
    ports, as when a kernel loses the race: taken as its shell port, the kernel exits; taken
    as its iopub port, it hangs, alive and silent, which nbclient only notices at its 60 s
    start-up timeout."""
    original = LocalPortCache.find_available_port
    calls = {"n": 0}

    def find_available_port(self: LocalPortCache, ip: str) -> int:
        calls["n"] += 1
        start, picked = divmod(calls["n"] - 1, 5)  # five ports per start
        if picked == role and (starts is None or start < starts):
            return port
        return int(original(self, ip))

    monkeypatch.setattr(LocalPortCache, "find_available_port", find_available_port)


def test_a_kernel_start_that_loses_the_port_race_is_retried(
    pipeline, run, monkeypatch, taken_port
) -> None:
    folder = pipeline({"a.ipynb": nb("%%block a\nx = 1")})
    hand_out_taken_port(monkeypatch, taken_port, starts=1)

    result = run(folder)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert result.blocks["a"].status is BlockStatus.SUCCESS


@pytest.mark.parametrize("role", [SHELL, IOPUB], ids=["exits", "hangs"])
def test_a_kernel_that_cannot_start_fails_its_blocks_with_the_cause(
    pipeline, run, monkeypatch, taken_port, role
) -> None:
    folder = pipeline({"a.ipynb": nb("%%block a\nx = 1", "%%block b\ny = x")})
    hand_out_taken_port(monkeypatch, taken_port, starts=None, role=role)

    result = run(folder)

    assert result.status is RunStatus.FAILED
    for name in ("a", "b"):
        error = result.blocks[name].error or ""
        assert result.blocks[name].status is BlockStatus.FAILED, statuses(result)
        # The cause from the kernel's own log, not nbclient's start-up timeout.
        assert "Address already in use" in error, error
        assert "didn't respond" not in error, error


# ---- a block's child processes die with its kernel -----------------------------------------------


def stubborn_block(name: str, seconds: int, header: str = "") -> str:
    """A block that starts `sleep SECONDS` and then swallows every interrupt."""
    return (
        f"%%block {name} {header}\n"
        "import subprocess, time\n"
        f"child = subprocess.Popen(['sleep', '{seconds}'])\n"
        "while True:\n"
        "    try:\n"
        "        time.sleep(0.1)\n"
        "    except BaseException:\n"
        "        pass\n"
    )


def test_a_timeout_kills_the_processes_the_block_started(pipeline, run) -> None:
    folder = pipeline({"a.ipynb": nb(stubborn_block("stubborn", 313, "--timeout 2"))})

    with reaping(313):
        result = run(folder, grace_seconds=1)
        assert_none_sleeping(313)

    assert result.blocks["stubborn"].status is BlockStatus.FAILED, statuses(result)
    assert "timed out" in (result.blocks["stubborn"].error or "")


def test_a_kernel_that_dies_takes_the_processes_its_block_started_along(pipeline, run) -> None:
    folder = pipeline(
        {
            "a.ipynb": nb(
                "%%block crash\nimport os, subprocess\n"
                "child = subprocess.Popen(['sleep', '314'])\nos._exit(1)"
            )
        }
    )

    with reaping(314):
        result = run(folder)
        assert_none_sleeping(314)

    assert result.blocks["crash"].status is BlockStatus.FAILED, statuses(result)
    assert "kernel died" in (result.blocks["crash"].error or "")
