"""Run alerts with real kernels: a webhook server and an SMTP server on 127.0.0.1 receive what
a run sends; `${ENV_VAR}` secrets reach them and nowhere else; a dead destination never
changes how a run ends; an overlong run sends one SLA alert while it is still going."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from pipelines.alerts import dispatch as alerts
from pipelines.alerts.sending import Notifier
from pipelines.assembly.config import AlertsConfig
from pipelines.status import BlockStatus, RunStatus, Trigger
from tests.helpers.notebooks import nb
from tests.helpers.runs import files_containing, statuses

FAILING = nb(
    "%%block load_trips\nrows = [1, 2, 0]",
    "%%block clean_trips\nif 0 in rows:\n"
    "    raise ValueError('1 ride without passengers\\nsecond line of the error')\nclean = rows",
    "%%block export_trips\nexported = len(clean)",
)
SUCCEEDING = nb("%%block load_trips\nrows = [1, 2, 3]")


# ---- servers ---------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


@dataclass
class WebhookServer:
    url: str
    received: list[Received] = field(default_factory=list)

    def wait_for(self, count: int, within: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + within
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.received)


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    """An HTTP server on a random port of 127.0.0.1 that keeps every JSON POST it gets."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    hook = WebhookServer(f"http://127.0.0.1:{server.server_address[1]}")
    server.hook = hook  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.hook.received.append(  # type: ignore[attr-defined]
            Received(self.path, dict(self.headers), json.loads(body), time.time())
        )
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output quiet
        pass


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: Message
    login: tuple[str, str] | None


class _Mailbox:
    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.logins: dict[int, tuple[str, str]] = {}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        login = self.logins.get(id(session))
        message = message_from_bytes(envelope.original_content)
        self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message, login))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            self.logins[id(session)] = (data.login.decode(), data.password.decode())
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


class _BoundController(Controller):
    """aiosmtpd on a socket bound beforehand: a random free port without a race."""

    def __init__(self, handler: Any, sock: socket.socket, **kwargs: Any) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=sock.getsockname()[1], **kwargs)
        self._sock = sock

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock)


@pytest.fixture
def smtp() -> Iterator[tuple[int, _Mailbox]]:
    mailbox = _Mailbox()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    controller = _BoundController(
        mailbox,
        sock,
        authenticator=mailbox.authenticate,
        auth_require_tls=False,  # no certificate here; smtplib logs in over plain SMTP
        loop=asyncio.new_event_loop(),
    )
    controller.start()
    try:
        yield sock.getsockname()[1], mailbox
    finally:
        controller.stop()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Real destinations from the config, with short waits between attempts."""

    def notifier_for(config: AlertsConfig) -> Notifier:
        return Notifier.from_config(config, backoff=0.05, timeout=5)

    monkeypatch.setattr(alerts, "notifier_for", notifier_for)
    caplog.set_level(logging.DEBUG)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# ---- webhook -----------------------------------------------------------------------------------


def test_a_failed_run_posts_one_webhook_with_what_failed_and_where(
    pipeline, run, store, webhook
) -> None:
    folder = pipeline(
        {"trips.ipynb": FAILING},
        f'[alerts]\non = ["failure"]\nwebhook.url = "{webhook.url}/hooks/blockbook"\n',
        name="taxi",
    )
    result = run(folder, trigger=Trigger.API)
    assert result.status is RunStatus.FAILED, statuses(result)

    # Sent before `run` returned: nothing to wait for.
    (post,) = webhook.received
    assert post.path == "/hooks/blockbook"
    assert post.headers["Content-Type"] == "application/json"
    executed = result.run_dir / "notebooks" / "trips.ipynb"
    assert executed.is_file()
    text = post.body["text"]
    lines = text.splitlines()
    assert lines[0].startswith(f"Blockbook: pipeline taxi run {result.run_id} failed (api, ")
    assert lines[0].endswith(" s)")
    assert lines[1].startswith("• clean_trips (")
    assert lines[1].endswith(f" s): ValueError: 1 ride without passengers — notebook: {executed}")
    assert "second line of the error" not in text
    assert lines[2] == "Not run (upstream failed): export_trips"
    assert lines[3] == f"Run folder: {result.run_dir}"

    fields = post.body["blockbook"]
    record = store.get_run(result.run_id)
    assert fields["event"] == "failure"
    assert (fields["pipeline"], fields["run_id"], fields["status"]) == (
        "taxi",
        result.run_id,
        "failed",
    )
    assert fields["trigger"] == "api"
    assert fields["started_at"] == record.started_at.isoformat()
    assert fields["ended_at"] == record.ended_at.isoformat()
    assert fields["duration_seconds"] > 0
    (failed,) = fields["failed_blocks"]
    assert failed["block"] == "clean_trips"
    assert failed["error"] == "ValueError: 1 ride without passengers"
    assert failed["notebook"] == str(executed)
    assert failed["duration_seconds"] >= 0
    assert fields["upstream_failed"] == ["export_trips"]


def test_success_alerts_only_when_asked_for(pipeline, run, webhook) -> None:
    wanted = pipeline(
        {"a.ipynb": SUCCEEDING},
        f'[alerts]\non = ["success"]\nwebhook.url = "{webhook.url}/ok"\n',
        name="wanted",
    )
    result = run(wanted)
    assert result.status is RunStatus.SUCCESS
    (post,) = webhook.received
    assert post.body["blockbook"]["event"] == "success"
    assert post.body["text"].startswith(f"Blockbook: pipeline wanted run {result.run_id} succeeded")

    unwanted = pipeline(
        {"a.ipynb": SUCCEEDING},
        f'[alerts]\non = ["failure"]\nwebhook.url = "{webhook.url}/no"\n',
        name="unwanted",
    )
    assert run(unwanted).status is RunStatus.SUCCESS
    assert [post.path for post in webhook.received] == ["/ok"]


def test_the_webhook_token_comes_from_the_environment_and_stays_out_of_everything(
    project, pipeline, run, store, webhook, monkeypatch, caplog
) -> None:
    token = f"tok-{secrets.token_hex(12)}"
    monkeypatch.setenv("ALERT_TOKEN", token)
    folder = pipeline(
        {"a.ipynb": SUCCEEDING},
        "[alerts]\n"
        'on = ["success", "failure"]\n'
        f'webhook.url = "{webhook.url}/hooks/${{ALERT_TOKEN}}?token=${{ALERT_TOKEN}}"\n',
    )
    result = run(folder)
    assert result.status is RunStatus.SUCCESS

    (post,) = webhook.received
    assert post.path == f"/hooks/{token}?token={token}"
    record = store.get_run(result.run_id)
    assert token not in repr(record)
    assert all(token not in repr(r) for r in store.list_runs())
    # The store's database files, the run folder (plan, notebooks, state files, logs), all of it.
    assert files_containing(project, [token]) == []
    assert (result.run_dir / "notebooks" / "a.ipynb").is_file()
    assert token not in caplog.text
    assert "success alert via webhook http://127.0.0.1:" in caplog.text
    # The template is what gets logged (secret-named query values masked even so).
    assert "/hooks/${ALERT_TOKEN}?token=*** sent" in caplog.text


def test_an_unreachable_webhook_is_retried_and_never_changes_the_outcome(
    pipeline, run, caplog
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    toml = f'[alerts]\non = ["success", "failure"]\nwebhook.url = "{url}"\n'
    good = run(pipeline({"a.ipynb": SUCCEEDING}, toml, name="good"))
    bad = run(pipeline({"a.ipynb": FAILING}, toml, name="bad"))

    assert good.status is RunStatus.SUCCESS
    assert bad.status is RunStatus.FAILED, statuses(bad)
    assert bad.blocks["clean_trips"].status is BlockStatus.FAILED
    for result, event in ((good, "success"), (bad, "failure")):
        messages = [
            record.getMessage()
            for record in caplog.records
            if record.name == "pipelines.alerts" and result.run_id in record.getMessage()
        ]
        assert len(messages) == 3, messages
        assert "(attempt 1 of 3): ConnectionRefusedError" in messages[0]
        assert "(attempt 2 of 3)" in messages[1]
        # A webhook URL written out in full is itself a secret: only its host is logged.
        assert messages[2].startswith(
            f"run {result.run_id}: {event} alert via webhook {url.removesuffix('/hook')}/********"
        )
        assert "failed 3 times; giving up" in messages[2]


# ---- email -------------------------------------------------------------------------------------


def test_a_failed_run_sends_an_email(pipeline, run, smtp, monkeypatch, caplog) -> None:
    port, mailbox = smtp
    password = f"pw-{secrets.token_hex(8)}"
    monkeypatch.setenv("SMTP_PASSWORD", password)
    folder = pipeline(
        {"trips.ipynb": FAILING},
        "[alerts.email]\n"
        f'host = "127.0.0.1"\nport = {port}\n'
        'from = "blockbook@example.com"\n'
        'to = ["data-team@example.com", "oncall@example.com"]\n'
        'username = "alerts-bot"\npassword = "${SMTP_PASSWORD}"\n',
        name="taxi",
    )
    result = run(folder)
    assert result.status is RunStatus.FAILED

    (mail,) = mailbox.mails
    assert mail.login == ("alerts-bot", password)
    assert mail.mail_from == "blockbook@example.com"
    assert mail.rcpt_tos == ["data-team@example.com", "oncall@example.com"]
    message = mail.message
    assert message["Subject"] == f"[blockbook] taxi failed: run {result.run_id}"
    assert message["From"] == "blockbook@example.com"
    assert message["To"] == "data-team@example.com, oncall@example.com"
    assert message.get_content_type() == "text/plain"
    body = message.get_payload(decode=True).decode(message.get_content_charset())
    executed = result.run_dir / "notebooks" / "trips.ipynb"
    assert body.startswith(f"Blockbook: pipeline taxi run {result.run_id} failed (manual, ")
    assert f"ValueError: 1 ride without passengers — notebook: {executed}" in body
    assert f"Run folder: {result.run_dir}" in body
    assert "email to data-team@example.com, oncall@example.com (SMTP 127.0.0.1:" in caplog.text
    assert password not in caplog.text


# ---- SLA ---------------------------------------------------------------------------------------


def test_a_run_past_its_sla_sends_one_alert_while_it_runs(pipeline, run, store, webhook) -> None:
    folder = pipeline(
        {"a.ipynb": nb("%%block slow\nimport time\ntime.sleep(2.5)\ndone = True")},
        # `sla` alone turns the SLA alert on; `on` only lists what a finished run sends.
        f'[alerts]\non = ["failure"]\nsla = 1\nwebhook.url = "{webhook.url}/sla"\n',
    )
    result = run(folder)
    assert result.status is RunStatus.SUCCESS

    (post,) = webhook.wait_for(1)
    fields = post.body["blockbook"]
    assert (fields["event"], fields["status"], fields["sla_seconds"]) == ("sla", "running", 1)
    assert fields["ended_at"] is None
    assert fields["duration_seconds"] >= 1
    assert post.body["text"].startswith(
        f"Blockbook: pipeline pipe run {result.run_id} is still running after "
    )
    assert post.body["text"].splitlines()[0].endswith("(manual, SLA 1.0 s)")
    assert post.at < store.get_run(result.run_id).ended_at.timestamp()
    time.sleep(0.3)
    assert len(webhook.received) == 1


def test_a_run_within_its_sla_sends_nothing(pipeline, run, webhook) -> None:
    folder = pipeline(
        {"a.ipynb": SUCCEEDING},
        f'[alerts]\nsla = 60\nwebhook.url = "{webhook.url}/sla"\n',
    )
    assert run(folder).status is RunStatus.SUCCESS
    time.sleep(0.2)
    assert webhook.received == []


def test_no_alerts_section_sends_nothing(pipeline, run, webhook, caplog) -> None:
    assert run(pipeline({"a.ipynb": FAILING})).status is RunStatus.FAILED
    assert webhook.received == []
    assert not [r for r in caplog.records if r.name == "pipelines.alerts"]
