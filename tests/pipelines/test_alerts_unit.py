"""Run alerts without kernels: what an alert says, `${VAR}` expansion, which events fire,
retries that give up quietly, and secrets kept out of the logs."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from pipelines.alerts import dispatch as alerts
from pipelines.alerts.dispatch import SlaWatch, notify_finished
from pipelines.alerts.messages import (
    Alert,
    alerts_for,
    build_alert,
    render_text,
    subject,
    webhook_payload,
)
from pipelines.alerts.sending import (
    AlertConfigError,
    AlertError,
    EmailDestination,
    Notifier,
    WebhookDestination,
    describe_webhook,
    env_secrets,
    expand_env,
)
from pipelines.assembly.config import AlertsConfig, EmailConfig, WebhookConfig
from pipelines.errors import BlockbookError
from pipelines.status import BlockStatus, RunStatus, Trigger
from pipelines.store.records import BlockRunRecord, RunRecord
from pipelines.store.run_store import RunId

START = datetime(2026, 11, 25, 6, 0, 0, tzinfo=UTC)
RUN_DIR = "/srv/project/.blockbook/runs/20261125T060000Z-abc123"


def block(
    name: str,
    status: BlockStatus,
    error: str | None = None,
    seconds: float | None = 2.0,
    notebook: str = "notebooks/clean.ipynb",
) -> BlockRunRecord:
    ended = None if seconds is None else START + timedelta(seconds=1 + seconds)
    return BlockRunRecord(
        block=name,
        notebook=notebook,
        status=status,
        attempts=1,
        started_at=START + timedelta(seconds=1),
        ended_at=ended,
        error=error,
        reused_from=None,
        attempt_records=(),
    )


def record(
    status: RunStatus = RunStatus.FAILED,
    blocks: tuple[BlockRunRecord, ...] | None = None,
    *,
    seconds: float | None = 12.34,
    error: str | None = None,
    trigger: Trigger = Trigger.SCHEDULE,
) -> RunRecord:
    if blocks is None:
        blocks = (
            block("load_trips", BlockStatus.SUCCESS, notebook="notebooks/load.ipynb"),
            block(
                "clean_trips",
                BlockStatus.FAILED,
                "ValueError: 3 rows without passengers\nTraceback (most recent call last): ...",
            ),
            block("export_trips", BlockStatus.UPSTREAM_FAILED, "not run: clean_trips failed"),
        )
    return RunRecord(
        run_id=RunId("20261125T060000Z-abc123"),
        pipeline="taxi",
        pipeline_path="/srv/project/taxi",
        status=status,
        trigger=trigger,
        params={},
        run_dir=RUN_DIR,
        created_at=START,
        started_at=START,
        ended_at=None if seconds is None else START + timedelta(seconds=seconds),
        error=error,
        resumed_from=None,
        blocks=blocks,
    )


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# ---- what an alert says -------------------------------------------------------------------------


def test_a_failure_names_the_run_and_each_failed_block_with_its_first_error_line() -> None:
    alert = build_alert("failure", record())
    text = render_text(alert)

    assert text.splitlines() == [
        "Blockbook: pipeline taxi run 20261125T060000Z-abc123 failed (schedule, 12.3 s)",
        "• clean_trips (2.0 s): ValueError: 3 rows without passengers — notebook: "
        f"{RUN_DIR}/notebooks/clean.ipynb",
        "Not run (upstream failed): export_trips",
        f"Run folder: {RUN_DIR}",
    ]
    assert "Traceback" not in text
    assert subject(alert) == "[blockbook] taxi failed: run 20261125T060000Z-abc123"


def test_the_webhook_payload_has_slack_text_and_structured_fields() -> None:
    payload = webhook_payload(build_alert("failure", record()))
    assert json.loads(json.dumps(payload)) == payload  # plain JSON all the way down
    assert payload["text"].startswith("Blockbook: pipeline taxi run")
    fields = payload["blockbook"]
    assert fields["event"] == "failure"
    assert (fields["pipeline"], fields["status"], fields["trigger"]) == (
        "taxi",
        "failed",
        "schedule",
    )
    assert fields["run_id"] == "20261125T060000Z-abc123"
    assert fields["started_at"] == "2026-11-25T06:00:00+00:00"
    assert fields["ended_at"] == "2026-11-25T06:00:12.340000+00:00"
    assert fields["duration_seconds"] == 12.34
    assert fields["run_dir"] == RUN_DIR
    assert fields["failed_blocks"] == [
        {
            "block": "clean_trips",
            "error": "ValueError: 3 rows without passengers",
            "notebook": f"{RUN_DIR}/notebooks/clean.ipynb",
            "duration_seconds": 2.0,
        }
    ]
    assert fields["upstream_failed"] == ["export_trips"]


def test_success_crash_and_sla_messages() -> None:
    success = build_alert(
        "success", record(RunStatus.SUCCESS, (block("a", BlockStatus.SUCCESS),), seconds=75)
    )
    assert render_text(success).splitlines() == [
        "Blockbook: pipeline taxi run 20261125T060000Z-abc123 succeeded (schedule, 1 min 15 s)",
        f"Run folder: {RUN_DIR}",
    ]
    assert subject(success) == "[blockbook] taxi succeeded: run 20261125T060000Z-abc123"

    # A crashed run has no failed block to point at: its own error says what happened.
    crashed = build_alert(
        "failure",
        record(RunStatus.CRASHED, (), error="the runner died (host rebooted)\nmore", seconds=4000),
    )
    assert render_text(crashed).splitlines()[0].endswith("crashed (schedule, 1 h 6 min)")
    assert "Error: the runner died (host rebooted)" in render_text(crashed)

    sla = build_alert(
        "sla",
        record(RunStatus.RUNNING, (), seconds=None, trigger=Trigger.MANUAL),
        sla=60,
        at=START + timedelta(seconds=61.25),
    )
    assert sla.ended_at is None
    assert render_text(sla).splitlines()[0] == (
        "Blockbook: pipeline taxi run 20261125T060000Z-abc123 is still running after 1 min 1 s "
        "(manual, SLA 1 min 0 s)"
    )
    assert subject(sla) == (
        "[blockbook] taxi still running after its 1 min 0 s SLA: run 20261125T060000Z-abc123"
    )
    assert webhook_payload(sla)["blockbook"]["sla_seconds"] == 60


def test_a_very_long_error_line_is_cut() -> None:
    long = "RuntimeError: " + "x" * 1000
    alert = build_alert("failure", record(blocks=(block("b", BlockStatus.FAILED, long),)))
    assert len(alert.failed[0].error) == 300
    assert alert.failed[0].error.endswith("…")


# ---- which events fire --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "on", "expected"),
    [
        (RunStatus.FAILED, ("failure",), ["failure"]),
        (RunStatus.CRASHED, ("failure",), ["failure"]),
        (RunStatus.SUCCESS, ("failure",), []),
        (RunStatus.SUCCESS, ("success",), ["success"]),
        (RunStatus.FAILED, ("success",), []),
        (RunStatus.SUCCESS, ("failure", "success"), ["success"]),
        (RunStatus.CANCELLED, ("failure", "success", "sla"), []),
        (RunStatus.RUNNING, ("failure", "success", "sla"), []),
        (RunStatus.FAILED, ("sla",), []),
    ],
)
def test_event_selection(status: RunStatus, on: Any, expected: list[str]) -> None:
    config = AlertsConfig(on=on, webhook=WebhookConfig(url="https://hooks.example.invalid/x"))
    assert [alert.event for alert in alerts_for(config, record(status))] == expected


def test_no_alerts_section_means_no_alerts() -> None:
    assert alerts_for(None, record()) == []


# ---- ${ENV_VAR} ---------------------------------------------------------------------------------


def test_expand_env_fills_references_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "s3cr3t-value")
    assert expand_env("https://h/${HOOK_TOKEN}?t=${HOOK_TOKEN}") == (
        "https://h/s3cr3t-value?t=s3cr3t-value"
    )
    assert expand_env("no references, $HOME stays") == "no references, $HOME stays"
    assert expand_env("${A}-${B}", {"A": "1", "B": ""}) == "1-"
    # In a URL's `user:password@` part, values are percent-encoded; elsewhere they go in as is.
    environ = {"USER": "bot", "PASS": "p@ss/w:rd", "PATH_PART": "a/b"}
    template = "https://${USER}:${PASS}@h.example/${PATH_PART}"
    assert expand_env(template, environ, url=True) == "https://bot:p%40ss%2Fw%3Ard@h.example/a/b"
    assert expand_env(template, environ) == "https://bot:p@ss/w:rd@h.example/a/b"


def test_a_missing_variable_is_named_and_no_value_is_shown() -> None:
    with pytest.raises(AlertConfigError) as raised:
        expand_env("https://${HOST}/${HOOK_TOKEN}", {"HOST": "h.example"}, what="`url`")
    error = raised.value
    assert isinstance(error, BlockbookError)
    assert error.message == "`url` needs the environment variable `HOOK_TOKEN`, which is not set"
    assert "export HOOK_TOKEN=..." in error.hint
    assert "h.example" not in str(error)

    with pytest.raises(AlertConfigError, match="variables `A` and `B`"):
        expand_env("${A}${B}${A}", {})
    with pytest.raises(AlertConfigError, match=r"`\$\{1X\}` is not a variable reference"):
        expand_env("${1X}", {"1X": "x"})


def test_env_secrets_are_the_expanded_values() -> None:
    environ = {"LONG": "long-secret", "SHORT": "ab", "OTHER": "unused"}
    assert env_secrets(["${SHORT}/${LONG}", None, "${MISSING}"], environ) == ["long-secret"]


def test_webhook_urls_are_logged_without_their_secrets() -> None:
    assert describe_webhook("https://hooks.example.com/services/${SLACK_PATH}") == (
        "https://hooks.example.com/services/${SLACK_PATH}"
    )
    # Written out in full, the path is the secret (Slack's /services/T0/B1/XXXX).
    assert describe_webhook("https://hooks.slack.com/services/T0/B1/XXXX") == (
        "https://hooks.slack.com/********"
    )
    assert (
        describe_webhook("https://bot:hunter22@h.example/${P}") == "https://bot:***@h.example/${P}"
    )
    assert describe_webhook("https://h.example") == "https://h.example"
    assert describe_webhook("not a url") == "********"


# ---- sending: retries, never raising, nothing secret in the logs -------------------------------


class AlwaysFails:
    description = "a destination that is always down"

    def __init__(self) -> None:
        self.calls = 0

    def send(self, alert: Alert) -> None:
        self.calls += 1
        raise ConnectionRefusedError(111, "Connection refused")


class FailsOnce:
    description = "a flaky destination"

    def __init__(self) -> None:
        self.received: list[Alert] = []
        self.calls = 0

    def send(self, alert: Alert) -> None:
        self.calls += 1
        if self.calls == 1:
            raise TimeoutError("timed out")
        self.received.append(alert)


def test_retry_then_give_up_without_raising(caplog) -> None:
    caplog.set_level(logging.INFO, logger="pipelines.alerts")
    down, flaky = AlwaysFails(), FailsOnce()
    slept: list[float] = []
    notifier = Notifier([down, flaky], attempts=3, backoff=0.5, sleep=slept.append)
    alert = build_alert("failure", record())

    assert notifier.send(alert) == 1

    assert down.calls == 3
    assert (flaky.calls, flaky.received) == (2, [alert])
    assert slept == [0.5, 1.0, 0.5]  # doubling for the dead one, then the flaky one's single wait
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    run = "run 20261125T060000Z-abc123: failure alert via"
    assert messages == [
        (
            "WARNING",
            f"{run} a destination that is always down failed (attempt 1 of 3): "
            "ConnectionRefusedError: [Errno 111] Connection refused; retrying in 0.5 s",
        ),
        (
            "WARNING",
            f"{run} a destination that is always down failed (attempt 2 of 3): "
            "ConnectionRefusedError: [Errno 111] Connection refused; retrying in 1 s",
        ),
        (
            "ERROR",
            f"{run} a destination that is always down failed 3 times; giving up: "
            "ConnectionRefusedError: [Errno 111] Connection refused",
        ),
        (
            "WARNING",
            f"{run} a flaky destination failed (attempt 1 of 3): TimeoutError: timed out; "
            "retrying in 0.5 s",
        ),
        ("INFO", f"{run} a flaky destination sent"),
    ]


def test_a_setting_that_cannot_work_is_not_retried(caplog) -> None:
    destination = WebhookDestination("https://h.example/${UNSET_TOKEN}", environ={})
    slept: list[float] = []
    assert Notifier([destination], sleep=slept.append).send(build_alert("failure", record())) == 0
    assert slept == []
    assert "needs the environment variable `UNSET_TOKEN`" in caplog.text
    assert "webhook https://h.example/${UNSET_TOKEN} not sent" in caplog.text


def test_no_destination_warns(caplog) -> None:
    assert Notifier([]).send(build_alert("failure", record())) == 0
    assert "names no webhook or email" in caplog.text


def test_the_webhook_secrets_never_reach_the_logs(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    environ = {"HOOK_USER": "hook-user-x", "HOOK_PASS": "pass-9f8e7d", "HOOK_TOKEN": "tok-a1b2c3"}
    port = closed_port()
    url = f"http://${{HOOK_USER}}:${{HOOK_PASS}}@127.0.0.1:{port}/hook/${{HOOK_TOKEN}}"
    # http.client puts an unparsable port in its error message: it must come out masked.
    bad_port = {**environ, "HOOK_PORT": "port-5e6f7a"}
    destinations = [
        WebhookDestination(url, environ=environ, timeout=2),
        WebhookDestination("http://127.0.0.1:${HOOK_PORT}/x", environ=bad_port, timeout=2),
        WebhookDestination("ftp://${HOOK_TOKEN}@h/x", environ=environ),
    ]
    notifier = Notifier(destinations, attempts=2, sleep=lambda _: None)

    assert notifier.send(build_alert("failure", record())) == 0

    assert f"webhook http://${{HOOK_USER}}:***@127.0.0.1:{port}/hook/${{HOOK_TOKEN}}" in caplog.text
    assert "Connection refused" in caplog.text
    assert "nonnumeric port: '********'" in caplog.text
    assert "must start with http:// or https://" in caplog.text
    for value in [*environ.values(), "port-5e6f7a"]:
        assert value not in caplog.text


def test_the_email_password_never_reaches_the_logs(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    config = EmailConfig.model_validate(
        {
            "host": "127.0.0.1",
            "port": closed_port(),
            "from": "blockbook@example.com",
            "to": ["data-team@example.com"],
            "username": "${SMTP_USER}",
            "password": "${SMTP_PASSWORD}",
        }
    )
    environ = {"SMTP_USER": "user-0a1b2c", "SMTP_PASSWORD": "pw-3d4e5f"}
    destination = EmailDestination(config, environ=environ, timeout=2)
    with pytest.raises(AlertError, match="Connection refused"):
        destination.send(build_alert("failure", record()))
    Notifier([destination], attempts=2, sleep=lambda _: None).send(build_alert("failure", record()))

    assert "email to data-team@example.com (SMTP 127.0.0.1:" in caplog.text
    assert "as ${SMTP_USER}" in caplog.text
    assert "user-0a1b2c" not in caplog.text
    assert "pw-3d4e5f" not in caplog.text


# ---- the runner's side ---------------------------------------------------------------------------


class Recorder(Notifier):
    def __init__(self) -> None:
        super().__init__([])
        self.sent: list[Alert] = []

    def send(self, alert: Alert) -> int:
        self.sent.append(alert)
        return 1


class FakeStore:
    def __init__(self, result: RunRecord | Exception | None) -> None:
        self.result = result

    def get_run(self, run_id: str) -> RunRecord | None:
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


@pytest.fixture
def recorder(monkeypatch) -> Recorder:
    sent = Recorder()
    monkeypatch.setattr(alerts, "notifier_for", lambda config: sent)
    return sent


def test_notify_finished_sends_what_alerts_for_decides_and_never_raises(recorder, caplog) -> None:
    config = AlertsConfig(on=("failure",))
    notify_finished(config, FakeStore(record()), "r")
    notify_finished(config, FakeStore(record(RunStatus.SUCCESS)), "r")
    notify_finished(None, FakeStore(RuntimeError("unused")), "r")
    assert [alert.event for alert in recorder.sent] == ["failure"]

    notify_finished(config, FakeStore(RuntimeError("database is gone")), "r")
    assert "run r: its alerts could not be sent" in caplog.text


def test_the_sla_watch_sends_once_after_the_deadline(recorder) -> None:
    now = [100.0]
    running = record(RunStatus.RUNNING, (), seconds=None)
    store = FakeStore(running)
    watch = SlaWatch(AlertsConfig(sla=30), store, "r", clock=lambda: now[0])

    now[0] = 129.9
    watch.check()
    assert watch.thread is None
    now[0] = 130.0
    watch.check()
    assert watch.thread is not None
    watch.thread.join(5)
    first = watch.thread
    now[0] = 500.0
    watch.check()
    assert watch.thread is first

    assert [(a.event, a.sla, a.status) for a in recorder.sent] == [("sla", 30, RunStatus.RUNNING)]


def test_no_sla_alert_without_an_sla_or_for_a_run_already_over(recorder) -> None:
    late = [1e9]
    for config in (None, AlertsConfig(on=("sla",))):
        watch = SlaWatch(config, FakeStore(record()), "r", clock=lambda: late[0])
        late[0] += 1e9
        watch.check()
        assert watch.thread is None

    finished = SlaWatch(AlertsConfig(sla=1), FakeStore(record()), "r", clock=lambda: late[0])
    late[0] += 10
    finished.check()
    assert finished.thread is not None
    finished.thread.join(5)
    assert recorder.sent == []


def test_destinations_come_from_the_config() -> None:
    config = AlertsConfig.model_validate(
        {
            "webhook": {"url": "https://h.example/${T}"},
            "email": {"host": "smtp.example.com", "from": "a@example.com", "to": ["b@example.com"]},
        }
    )
    notifier = Notifier.from_config(config, backoff=0.0)
    assert [d.description for d in notifier.destinations] == [
        "webhook https://h.example/${T}",
        "email to b@example.com (SMTP smtp.example.com:25)",
    ]
    assert (notifier.attempts, notifier.backoff) == (3, 0.0)


class _Refuses(BaseHTTPRequestHandler):
    """Answers every POST like Slack does a revoked webhook, and notes what it got."""

    seen: ClassVar[list[tuple[str, dict[str, str]]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.seen.append((self.path, dict(self.headers)))
        self.send_response(403)
        self.send_header("Content-Length", "13")
        self.end_headers()
        self.wfile.write(b"invalid_token")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_an_http_error_says_what_the_server_said_and_basic_auth_comes_from_the_url() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refuses)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        environ = {"HOOK_PASS": "p@ss/w0rd-secret"}
        destination = WebhookDestination(
            f"http://bot:${{HOOK_PASS}}@127.0.0.1:{port}/hook", environ=environ
        )
        with pytest.raises(AlertError) as raised:
            destination.send(build_alert("failure", record()))
    finally:
        server.shutdown()
        server.server_close()
    assert str(raised.value) == "HTTP 403 Forbidden: invalid_token"
    ((path, headers),) = _Refuses.seen
    assert path == "/hook"
    assert headers["Content-Type"] == "application/json"
    credentials = base64.b64decode(headers["Authorization"].removeprefix("Basic ")).decode()
    assert credentials == "bot:p@ss/w0rd-secret"
