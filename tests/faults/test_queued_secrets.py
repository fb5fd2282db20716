"""Secret parameters of queued runs (issue 10, items 15 and 16): real `blockbook trigger`,
`scheduler --once` and `backfill` processes, on SQLite and PostgreSQL.

A secret given to a queued run must reach the run's kernel intact, must never be stored in
clear (SQLite file bytes, PostgreSQL rows), and must never be on a runner's command line.
"""

from __future__ import annotations

import secrets
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from pipelines.assembly.config import load_pipeline_config
from pipelines.scheduling.fire_times import schedule_of
from pipelines.scheduling.queueing import FireTime
from pipelines.scheduling.scheduler import Scheduler
from pipelines.status import Trigger
from pipelines.store.run_store import DATABASE_URL_ENV, RunStore
from pipelines.store.sealed import SecretKeyError, key_file, open_sealed, seal
from tests.faults.runner_support import wait_for
from tests.helpers.notebooks import make_pipeline, nb
from tests.helpers.postgres import pg_scalar, postgres_schema, schema_url
from tests.helpers.runs import BLOCKBOOK, blockbook, cli_env

KEY_ENV = "BLOCKBOOK_SECRET_KEY"

# Writes the value of parameter `name` to `out`, then waits (a generous deadline, never a
# pace) until the test has looked at every process of the run and releases it.
GOT = (
    "%%block got\nimport pathlib, time\n"
    "pathlib.Path(out).write_text(str({name}))\n"
    "_release = pathlib.Path(out + '.release')\n"
    "_deadline = time.monotonic() + 180\n"
    "while not _release.exists() and time.monotonic() < _deadline:\n"
    "    time.sleep(0.1)\n"
)


@dataclass(frozen=True)
class Place:
    """A project and the store its commands use; `stored_text` is everything the store holds."""

    root: Path
    env: dict[str, str]
    stored_text: Callable[[], str]
    kind: str

    def blockbook(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BLOCKBOOK), "--project", str(self.root), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(BLOCKBOOK), "--project", str(self.root), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )

    def store(self) -> RunStore:
        url = self.env.get(DATABASE_URL_ENV)
        return RunStore(url) if url else RunStore.open(self.root)


@pytest.fixture(params=["sqlite", "postgresql"])
def place(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Place]:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.delenv(KEY_ENV, raising=False)
    root = tmp_path / "project"
    root.mkdir()
    (root / "blockbook.toml").write_text("", encoding="utf-8")
    env = {k: v for k, v in cli_env().items() if k != KEY_ENV}
    if request.param == "sqlite":
        # The whole state folder: the database (and its WAL), run notebooks, logs, key file.
        yield Place(root, env, lambda: _all_bytes(root / ".blockbook"), "sqlite")
        return
    with postgres_schema() as schema:
        url = schema_url(schema)
        env[DATABASE_URL_ENV] = url
        query = (
            "SELECT coalesce(string_agg(row_to_json(r)::text, ' '), '') FROM (SELECT * FROM runs) r"
        )
        yield Place(root, env, lambda: str(pg_scalar(url, query)), "postgresql")


def _all_bytes(folder: Path) -> str:
    if not folder.exists():
        return ""
    return " ".join(
        p.read_bytes().decode("latin-1") for p in sorted(folder.rglob("*")) if p.is_file()
    )


def _command_lines(process: subprocess.Popen[str]) -> list[str]:
    """The command lines of `process` and every process it started (runner, kernels)."""
    parent = psutil.Process(process.pid)
    lines = []
    for child in [parent, *parent.children(recursive=True)]:
        try:
            lines.append(" ".join(child.cmdline()))
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return lines


def _run_and_watch(
    place: Place, out: Path, secret: str, *command: str
) -> tuple[subprocess.CompletedProcess[str], list[str], str]:
    """Start `command`, wait until the run's block has written what it received, take the
    command lines of every process it started, release the block and wait for the end."""
    process = place.start(*command)
    try:
        wait_for(out.exists, "the block to receive its parameter", process)
        lines = _command_lines(process)
        assert any(" run " in line and "--run-id" in line for line in lines), lines
        stored_while_running = place.stored_text()
    finally:
        out.with_name(out.name + ".release").touch()
    stdout, stderr = process.communicate(timeout=180)
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return done, [line for line in lines if secret in line], stored_while_running


# ---- item 15: a secret given to `blockbook trigger` ------------------------------------------


def test_a_triggered_url_with_a_password_reaches_the_run_intact_and_is_never_stored(
    place: Place, tmp_path: Path
) -> None:
    password = f"Hunter2{secrets.token_hex(4)}"
    url = f"postgresql://u:{password}@h/db"
    out = tmp_path / "received.txt"
    toml = f'[params]\nurl = ""\nout = "{out}"\n'
    make_pipeline(place.root, {"a.ipynb": nb(GOT.format(name="url"))}, toml, name="pipe")

    queued = place.blockbook("trigger", "pipe", "-p", f"url={url}")
    assert queued.returncode == 0, queued.stderr
    assert password not in place.stored_text(), "the queued run holds the password in clear"

    done, leaking, stored = _run_and_watch(place, out, password, "scheduler", "--once")

    assert done.returncode == 0, done.stderr
    assert out.read_text() == url, "the run did not receive the URL it was given"
    assert leaking == [], "a process of the run has the password on its command line"
    assert password not in stored
    assert password not in place.stored_text()
    with place.store() as store:
        [record] = store.list_runs("pipe")
    assert record.status.value == "success", record.error
    assert record.params["url"] == "postgresql://u:********@h/db"
    key = place.root / ".blockbook" / "secret.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600, "the key file others can read"


def test_a_secret_named_parameter_of_a_triggered_run_reaches_it_and_is_never_stored(
    place: Place, tmp_path: Path
) -> None:
    token = f"tok-{secrets.token_hex(8)}"
    out = tmp_path / "received.txt"
    toml = f'[params]\napi_token = ""\nout = "{out}"\n'
    make_pipeline(place.root, {"a.ipynb": nb(GOT.format(name="api_token"))}, toml, name="pipe")

    queued = place.blockbook("trigger", "pipe", "-p", f"api_token={token}")
    assert queued.returncode == 0, queued.stderr
    done, leaking, stored = _run_and_watch(place, out, token, "scheduler", "--once")

    assert done.returncode == 0, done.stderr
    assert out.read_text() == token
    assert leaking == []
    assert token not in stored + place.stored_text()


# ---- item 16: [schedule.params] secrets ------------------------------------------------------


SCHEDULED = """\
[params]
db_password = ""
out = "{out}"

[schedule]
cron = "0 6 * * *"
timezone = "UTC"

[schedule.params]
db_password = "{password}"
"""


def test_a_schedule_password_reaches_the_run_and_is_neither_stored_nor_on_a_command_line(
    place: Place, tmp_path: Path
) -> None:
    password = f"S3cret-{secrets.token_hex(6)}"
    out = tmp_path / "received.txt"
    toml = SCHEDULED.format(out=out, password=password)
    make_pipeline(place.root, {"a.ipynb": nb(GOT.format(name="db_password"))}, toml, name="pipe")

    done, leaking, stored = _run_and_watch(
        place, out, password, "backfill", "pipe", "--start", "2024-01-31", "--end", "2024-01-31"
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert out.read_text() == password
    assert leaking == [], "the runner has the schedule's password on its command line"
    assert password not in stored
    assert password not in place.stored_text()


def test_a_fire_time_is_queued_without_its_secrets_in_clear(place: Place, tmp_path: Path) -> None:
    """The queued row itself, before any runner adopts it (and overwrites its params)."""
    password = f"S3cret-{secrets.token_hex(6)}"
    toml = SCHEDULED.format(out=tmp_path / "unused.txt", password=password)
    folder = make_pipeline(place.root, {"a.ipynb": nb(GOT.format(name="db_password"))}, toml)
    config, _ = load_pipeline_config(folder)
    assert config.schedule is not None
    moment = datetime(2024, 1, 31, 6, tzinfo=UTC)
    with place.store() as store:
        daemon = Scheduler(place.root, store)
        run_id = daemon.queue_fire_time(
            FireTime("pipe", folder, schedule_of(config.schedule), moment, moment, Trigger.SCHEDULE)
        )
        assert run_id is not None
        record = store.get_run(run_id)
    assert record is not None
    assert record.params["db_password"] == "********"
    assert password not in place.stored_text()


# ---- the key ---------------------------------------------------------------------------------


def test_a_runner_without_the_key_fails_the_run_saying_how_to_set_it(
    place: Place, tmp_path: Path
) -> None:
    """A scheduler on another host without the key the run was sealed with: the run fails with a
    message naming BLOCKBOOK_SECRET_KEY, instead of running with a mask or a wrong value."""
    from cryptography.fernet import Fernet

    out = tmp_path / "received.txt"
    toml = f'[params]\napi_token = ""\nout = "{out}"\n'
    make_pipeline(place.root, {"a.ipynb": nb(GOT.format(name="api_token"))}, toml, name="pipe")
    sealing = Place(
        place.root,
        {**place.env, KEY_ENV: Fernet.generate_key().decode()},
        place.stored_text,
        place.kind,
    )
    other = Place(
        place.root,
        {**place.env, KEY_ENV: Fernet.generate_key().decode()},
        place.stored_text,
        place.kind,
    )

    queued = sealing.blockbook("trigger", "pipe", "-p", "api_token=tok-abcdef123")
    assert queued.returncode == 0, queued.stderr
    other.blockbook("scheduler", "--once")

    assert not out.exists(), "the run started without its secret"
    with place.store() as store:
        [record] = store.list_runs("pipe")
    assert record.status.value in {"failed", "crashed"}
    assert record.error is not None
    assert KEY_ENV in record.error, record.error
    assert not (place.root / ".blockbook" / "secret.key").exists(), "the key came from the env"


def test_the_key_reaches_neither_the_store_nor_the_kernels(place: Place, tmp_path: Path) -> None:
    """The pipeline's code runs in the kernels: it has no use for the key, and could print it
    into an executed notebook."""
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    keyed = Place(place.root, {**place.env, KEY_ENV: key}, place.stored_text, place.kind)
    out = tmp_path / "received.txt"
    toml = f'[params]\napi_token = ""\nout = "{out}"\n'
    seen = f"__import__('os').environ.get('{KEY_ENV}', 'absent') + ' ' + api_token"
    make_pipeline(place.root, {"a.ipynb": nb(GOT.format(name=seen))}, toml, name="pipe")

    queued = keyed.blockbook("trigger", "pipe", "-p", "api_token=tok-abcdef123")
    assert queued.returncode == 0, queued.stderr
    done, _, stored = _run_and_watch(keyed, out, key, "scheduler", "--once")

    assert done.returncode == 0, done.stderr
    assert out.read_text() == "absent tok-abcdef123"
    assert key not in stored + place.stored_text()


def test_a_key_file_other_users_can_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    sealed = seal(tmp_path, {"db_password": "hunter22", "day": "2024-01-31"})
    key_file(tmp_path).chmod(0o644)

    with pytest.raises(SecretKeyError) as raised:
        open_sealed(tmp_path, "r1", sealed)

    assert raised.value.hint == f"chmod 600 {key_file(tmp_path)}"


def test_a_key_in_the_environment_that_is_no_key_says_how_to_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "hunter2")

    with pytest.raises(SecretKeyError) as raised:
        seal(tmp_path, {"db_password": "hunter22"})

    assert f"${KEY_ENV}" in raised.value.message
    assert "Fernet.generate_key()" in raised.value.hint
    assert not key_file(tmp_path).exists()


def test_a_masked_value_given_back_is_refused_instead_of_reaching_the_run(project: Path) -> None:
    """Parameters copied from a run's record carry masks: the run would get `********`."""
    toml = '[params]\nurl = ""\n'
    make_pipeline(project, {"a.ipynb": nb("%%block one\nx = url")}, toml, name="pipe")

    refused = blockbook(project, "trigger", "pipe", "-p", "url=postgresql://u:********@h/db")

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "holds the mask" in refused.stderr
    assert blockbook(project, "runs", "--format", "json").stdout.strip() == "[]"
