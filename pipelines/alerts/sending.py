"""Delivering alerts: the webhook and email destinations and the `Notifier` that retries them.

Sending never fails a run: each destination is tried a few times, what goes wrong is logged,
nothing is raised. `${ENV_VAR}` references in the settings are expanded here, only at send time;
their values (and passwords) are secrets that never reach the run store, notebooks or logs.
What an alert says, and when one is due, is `pipelines.alerts.messages`.
"""

from __future__ import annotations

import base64
import json
import logging
import smtplib
import ssl
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urlsplit, urlunsplit

from pipelines import envrefs
from pipelines.alerts.messages import Alert, render_text, subject, webhook_payload
from pipelines.assembly.config import AlertsConfig, EmailConfig
from pipelines.assembly.connections import describe_url
from pipelines.errors import BlockbookError
from pipelines.params import MASK, MIN_SECRET_LENGTH, mask_text, mask_url

# Not `__name__`: all of alerts logs (and is configured) as one logger, `pipelines.alerts.messages`.
logger = logging.getLogger("pipelines.alerts")

TIMEOUT_SECONDS = 10.0
ATTEMPTS = 3
BACKOFF_SECONDS = 1.0
"""Wait before the second attempt; doubled before each later one."""


class AlertError(BlockbookError):
    """An alert that could not be delivered; the message holds no secret."""


class AlertConfigError(AlertError):
    """An alert setting that cannot work as written (an unset variable): retrying won't help."""


# ---- ${ENV_VAR} ---------------------------------------------------------------------------------


def expand_env(
    text: str,
    environ: Mapping[str, str] | None = None,
    *,
    what: str = "an alert setting",
    url: bool = False,
) -> str:
    """`text` with each `${VAR}` replaced (see `pipelines.envrefs.expand`); an unset variable
    raises AlertConfigError naming it, never any value."""
    return envrefs.expand(
        text,
        what=what,
        error=AlertConfigError,
        where="in the environment of `blockbook run` or the scheduler",
        environ=environ,
        url=url,
    )


def env_secrets(texts: Sequence[str | None], environ: Mapping[str, str] | None = None) -> list[str]:
    """The values `${VAR}` references in `texts` expand to: strings to mask, longest first."""
    return envrefs.expanded_values(texts, environ)


# ---- destinations -------------------------------------------------------------------------------


class Destination(Protocol):
    description: str
    """Where alerts go, fit to log: no secret in it."""

    def send(self, alert: Alert) -> None:
        """Deliver once; raise on failure (AlertConfigError when retrying cannot help)."""


class WebhookDestination:
    """A JSON POST of `{"text": ..., "blockbook": {...}}`; `text` is what Slack shows.

    `https://user:${TOKEN}@host/...` sends the credentials as HTTP basic auth.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = TIMEOUT_SECONDS,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        """The template as configured, `${VAR}` references unexpanded."""
        self.timeout = timeout
        self.environ = environ
        self.description = f"webhook {describe_webhook(url)}"

    def send(self, alert: Alert) -> None:
        url = expand_env(self.url, self.environ, what="`alerts.webhook.url`", url=True)
        secrets = env_secrets([self.url], self.environ)
        request = _post_request(url, json.dumps(webhook_payload(alert)).encode("utf-8"))
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except HTTPError as exc:
            detail = f"HTTP {exc.code} {exc.reason}" + _error_body(exc)
            raise AlertError(mask_text(detail, secrets)) from None
        except URLError as exc:  # what went wrong is inside: a refused connection, a timeout
            reason = exc.reason if isinstance(exc.reason, BaseException) else exc
            raise AlertError(_masked_reason(reason, secrets)) from None
        except Exception as exc:  # a bad URL, a dropped connection: all the same here
            raise AlertError(_masked_reason(exc, secrets)) from None


class EmailDestination:
    """A plain-text email through an SMTP server, with optional STARTTLS and login."""

    def __init__(
        self,
        config: EmailConfig,
        *,
        timeout: float = TIMEOUT_SECONDS,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.timeout = timeout
        self.environ = environ
        user = f" as {config.username}" if config.username else ""
        self.description = (
            f"email to {', '.join(config.to)} (SMTP {config.host}:{config.port}{user})"
        )

    def send(self, alert: Alert) -> None:
        config = self.config
        username = self._expand(config.username, "username")
        password = self._expand(config.password, "password")
        secrets = env_secrets([config.username, config.password], self.environ)
        if config.password and len(config.password) >= MIN_SECRET_LENGTH:
            secrets.append(config.password)  # a password written in the file is a secret too
        message = EmailMessage()
        message["Subject"] = subject(alert)
        message["From"] = config.sender
        message["To"] = ", ".join(config.to)
        message["Date"] = formatdate(localtime=True)
        domain = config.sender.rpartition("@")[2] or "blockbook.invalid"
        message["Message-ID"] = make_msgid(domain=domain)  # not getfqdn(): it can stall on DNS
        message.set_content(render_text(alert) + "\n")
        try:
            with smtplib.SMTP(config.host, config.port, timeout=self.timeout) as smtp:
                if config.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if username is not None:
                    smtp.login(username, password or "")
                smtp.send_message(message, from_addr=config.sender, to_addrs=list(config.to))
        except Exception as exc:
            raise AlertError(_masked_reason(exc, secrets)) from None

    def _expand(self, value: str | None, key: str) -> str | None:
        if value is None:
            return None
        return expand_env(value, self.environ, what=f"`alerts.email.{key}`")


def describe_webhook(url: str) -> str:
    """The URL fit to log: with `${VAR}` references unexpanded, else with its path hidden.

    A webhook URL written out in full (Slack's `/services/T0/B1/XXXX`) is itself the secret.
    """
    if envrefs.REFERENCE.search(url):
        return describe_url(url)
    # Masked first: a raw "/" in a password would end urlsplit's netloc before the "@".
    parts = urlsplit(mask_url(url))
    if not parts.scheme or not parts.hostname:
        return MASK
    host = parts.netloc.rpartition("@")[2]
    hidden = f"/{MASK}" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{host}{hidden}"


def _post_request(url: str, body: bytes) -> urllib.request.Request:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise AlertConfigError(
            "`alerts.webhook.url` must start with http:// or https://",
            hint="set it to the URL your chat tool or service gave you for incoming webhooks",
        )
    headers = {"Content-Type": "application/json", "User-Agent": "blockbook-alerts"}
    userinfo, at, host = parts.netloc.rpartition("@")
    if at:
        user, _, password = userinfo.partition(":")
        token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
        url = urlunsplit(parts._replace(netloc=host))
    return urllib.request.Request(url, data=body, headers=headers, method="POST")


# ---- sending ------------------------------------------------------------------------------------


class Notifier:
    """Sends an alert to every destination, each tried `attempts` times; never raises."""

    def __init__(
        self,
        destinations: Sequence[Destination],
        *,
        attempts: int = ATTEMPTS,
        backoff: float = BACKOFF_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.destinations = tuple(destinations)
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.sleep = sleep

    @classmethod
    def from_config(
        cls,
        config: AlertsConfig,
        *,
        environ: Mapping[str, str] | None = None,
        timeout: float = TIMEOUT_SECONDS,
        attempts: int = ATTEMPTS,
        backoff: float = BACKOFF_SECONDS,
    ) -> Notifier:
        destinations: list[Destination] = []
        if config.webhook is not None:
            destinations.append(
                WebhookDestination(config.webhook.url, timeout=timeout, environ=environ)
            )
        if config.email is not None:
            destinations.append(EmailDestination(config.email, timeout=timeout, environ=environ))
        return cls(destinations, attempts=attempts, backoff=backoff)

    def send(self, alert: Alert) -> int:
        """Deliver `alert` everywhere it goes; how many destinations got it."""
        if not self.destinations:
            logger.warning(
                "run %s: a %s alert is due but [alerts] names no webhook or email",
                alert.run_id,
                alert.event,
            )
        return sum(self._deliver(destination, alert) for destination in self.destinations)

    def _deliver(self, destination: Destination, alert: Alert) -> bool:
        what = f"run {alert.run_id}: {alert.event} alert via {destination.description}"
        for attempt in range(1, self.attempts + 1):
            try:
                destination.send(alert)
            except AlertConfigError as exc:
                logger.error("%s not sent: %s", what, _reason(exc))
                return False
            except Exception as exc:
                if attempt == self.attempts:
                    logger.error("%s failed %d times; giving up: %s", what, attempt, _reason(exc))
                    return False
                delay = self.backoff * 2 ** (attempt - 1)
                logger.warning(
                    "%s failed (attempt %d of %d): %s; retrying in %g s",
                    what,
                    attempt,
                    self.attempts,
                    _reason(exc),
                    delay,
                )
                self.sleep(delay)
            else:
                logger.info("%s sent", what)
                return True
        return False


# ---- helpers ------------------------------------------------------------------------------------


def _reason(exc: Exception) -> str:
    if isinstance(exc, AlertError):
        return str(exc)  # already masked, with its hint if it has one
    return _masked_reason(exc, [])


def _masked_reason(exc: BaseException, secrets: Sequence[str]) -> str:
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, AlertError) and type(exc).__name__ not in text:
        text = f"{type(exc).__name__}: {text}"
    return mask_text(text, secrets)


def _error_body(exc: HTTPError) -> str:
    """The start of what the server said (Slack explains itself there: `invalid_token`)."""
    try:
        body = exc.read(200).decode("utf-8", "replace").strip()
    except Exception:
        return ""
    return f": {body}" if body else ""
