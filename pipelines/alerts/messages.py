"""Run alerts: a message when a run fails, succeeds or outlasts its SLA, by webhook or email.

`[alerts]` in pipeline.toml says which events fire (`on`) and where they go (`webhook`,
`email`). This module says what an alert holds and when one is due; `pipelines.alerts.sending`
delivers it (destinations, retries, `${ENV_VAR}` expansion at send time).

`pipelines.alerts.dispatch` decides when alerts go out: once a run has its final status, and
when a running run passes its SLA.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipelines.assembly.config import AlertEvent, AlertsConfig
from pipelines.rundir.location import run_folder_at
from pipelines.rundir.state import seconds_between
from pipelines.status import BlockStatus, RunStatus
from pipelines.store.records import RunRecord

logger = logging.getLogger("pipelines.alerts")  # one logger for all of alerts

_EVENTS: dict[RunStatus, AlertEvent] = {
    RunStatus.FAILED: "failure",
    RunStatus.CRASHED: "failure",
    RunStatus.SUCCESS: "success",
}
# A cancelled run sends nothing: someone (or a shutting-down scheduler) asked for it.
_VERBS = {RunStatus.SUCCESS: "succeeded", RunStatus.FAILED: "failed", RunStatus.CRASHED: "crashed"}
_ERROR_LENGTH = 300


# ---- what an alert says -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FailedBlock:
    name: str
    error: str
    """The first line of the block's error."""
    notebook: str
    """The executed run notebook that shows the failing cell."""
    duration: float | None


@dataclass(frozen=True, slots=True)
class Alert:
    event: AlertEvent
    pipeline: str
    run_id: str
    trigger: str
    status: RunStatus
    started_at: datetime | None
    ended_at: datetime | None
    duration: float | None
    """Seconds from start to end, or to when the alert was made for a run still going."""
    run_dir: str
    failed: tuple[FailedBlock, ...] = ()
    upstream_failed: tuple[str, ...] = ()
    error: str | None = None
    """First line of the run's own error, shown when no block failed (a crashed run)."""
    sla: float | None = None
    drift: tuple[tuple[str, dict[str, Any]], ...] = ()
    """(block, `Drift.to_json`) for each schema drift of the run's blocks (`--schema`)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "pipeline": self.pipeline,
            "run_id": self.run_id,
            "trigger": self.trigger,
            "status": str(self.status),
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "duration_seconds": _rounded(self.duration),
            "sla_seconds": self.sla,
            "run_dir": self.run_dir,
            "failed_blocks": [
                {
                    "block": block.name,
                    "error": block.error,
                    "notebook": block.notebook,
                    "duration_seconds": _rounded(block.duration),
                }
                for block in self.failed
            ],
            "upstream_failed": list(self.upstream_failed),
            "error": self.error,
            "schema_drift": [{"block": block, **drift} for block, drift in self.drift],
        }


def build_alert(
    event: AlertEvent, record: RunRecord, *, sla: float | None = None, at: datetime | None = None
) -> Alert:
    """The alert for `record`; `at` is "now" for a run that has not ended (default: now)."""
    run_dir = run_folder_at(record.run_dir)  # a URL stays one: `s3://b/...`, not `s3:/b/...`
    failed = tuple(
        FailedBlock(
            block.block,
            _first_line(block.error) or "failed",
            str(run_dir / block.notebook),
            seconds_between(block.started_at, block.ended_at),
        )
        for block in record.blocks
        if block.status is BlockStatus.FAILED
    )
    upstream = tuple(b.block for b in record.blocks if b.status is BlockStatus.UPSTREAM_FAILED)
    end = record.ended_at or at or datetime.now(UTC)
    return Alert(
        event=event,
        pipeline=record.pipeline,
        run_id=record.run_id,
        trigger=str(record.trigger),
        status=record.status,
        started_at=record.started_at,
        ended_at=record.ended_at,
        duration=seconds_between(record.started_at, end),
        run_dir=record.run_dir,
        failed=failed,
        upstream_failed=upstream,
        error=None if failed else _first_line(record.error),
        sla=sla,
        drift=tuple((b.block, dict(d)) for b in record.blocks for d in b.schema_drift),
    )


def alerts_for(config: AlertsConfig | None, record: RunRecord) -> list[Alert]:
    """The alerts a finished run calls for: failure (failed, crashed) or success, if in `on`."""
    if config is None:
        return []
    event = _EVENTS.get(record.status)
    if event is not None and event in config.on:
        return [build_alert(event, record)]  # it lists the drift too
    drifted = any(block.schema_drift for block in record.blocks)
    if drifted and "schema_drift" in config.on and event is not None:
        return [build_alert("schema_drift", record)]
    return []


def render_text(alert: Alert) -> str:
    """A compact message, Slack-compatible and fit for an email body."""
    took = format_duration(alert.duration)
    if alert.event == "sla":
        sla = format_duration(alert.sla)
        what = f"is still running after {took} ({alert.trigger}, SLA {sla})"
    elif alert.event == "schema_drift":
        verb = _VERBS.get(alert.status, str(alert.status))
        what = f"{verb} with schema drift ({alert.trigger}, {took})"
    else:
        what = f"{_VERBS.get(alert.status, str(alert.status))} ({alert.trigger}, {took})"
    lines = [f"Blockbook: pipeline {alert.pipeline} run {alert.run_id} {what}"]
    for block in alert.failed:
        lines.append(
            f"• {block.name} ({format_duration(block.duration)}): {block.error}"
            f" — notebook: {block.notebook}"
        )
    if alert.upstream_failed:
        lines.append(f"Not run (upstream failed): {', '.join(alert.upstream_failed)}")
    if alert.error:
        lines.append(f"Error: {alert.error}")
    for drifted, drift in alert.drift:
        against = f" (against {drift['baseline']})" if drift.get("baseline") else ""
        lines.append(f"Schema drift in {drifted}: {drift.get('message', '')}{against}")
    lines.append(f"Run folder: {alert.run_dir}")
    return "\n".join(lines)


def subject(alert: Alert) -> str:
    if alert.event == "sla":
        what = f"still running after its {format_duration(alert.sla)} SLA"
    elif alert.event == "schema_drift":
        what = "schema drift"
    else:
        what = _VERBS.get(alert.status, str(alert.status))
    return f"[blockbook] {alert.pipeline} {what}: run {alert.run_id}"


def webhook_payload(alert: Alert) -> dict[str, Any]:
    return {"text": render_text(alert), "blockbook": alert.to_json()}


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "? s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


# ---- helpers ------------------------------------------------------------------------------------


def _first_line(text: str | None) -> str | None:
    if not text:
        return None
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line if len(line) <= _ERROR_LENGTH else line[: _ERROR_LENGTH - 1] + "…"


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()
