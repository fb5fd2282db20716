"""Alerts of runs with schema drift (issue 14, item 2): a `schema_drift` event for runs whose
blocks drifted, and the drift listed in failure and success alerts too."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pipelines.alerts.messages import alerts_for, render_text, subject, webhook_payload
from pipelines.assembly.config import AlertsConfig, WebhookConfig
from pipelines.status import BlockStatus, RunStatus
from tests.pipelines.test_alerts_unit import block, record

DRIFT = {
    "output": "trips",
    "kind": "retyped",
    "column": "km",
    "before": "int64",
    "after": "float64",
    "baseline": "run R1",
    "message": "`trips`: column `km` changed type int64 -> float64",
}


def drifted(status: RunStatus) -> Any:
    load = replace(block("load_trips", BlockStatus.SUCCESS), schema_drift=(DRIFT,))
    return record(status, (load, block("clean_trips", BlockStatus.SUCCESS)))


def config(*on: Any) -> AlertsConfig:
    return AlertsConfig(on=on, webhook=WebhookConfig(url="https://hooks.example.invalid/x"))


@pytest.mark.parametrize(
    ("status", "on", "expected"),
    [
        (RunStatus.SUCCESS, ("schema_drift",), ["schema_drift"]),
        (RunStatus.SUCCESS, ("failure",), []),
        (RunStatus.SUCCESS, ("success", "schema_drift"), ["success"]),  # it lists the drift
        (RunStatus.FAILED, ("failure", "schema_drift"), ["failure"]),
        (RunStatus.FAILED, ("schema_drift",), ["schema_drift"]),
        (RunStatus.CANCELLED, ("schema_drift",), []),
        (RunStatus.RUNNING, ("schema_drift",), []),
    ],
)
def test_which_alert_a_drifted_run_sends(status: RunStatus, on: Any, expected: list[str]) -> None:
    assert [alert.event for alert in alerts_for(config(*on), drifted(status))] == expected


def test_a_run_without_drift_sends_no_drift_alert() -> None:
    assert alerts_for(config("schema_drift"), record(RunStatus.SUCCESS)) == []


def test_the_drift_alert_says_which_block_drifted_and_how() -> None:
    [alert] = alerts_for(config("schema_drift"), drifted(RunStatus.SUCCESS))
    text = render_text(alert)
    assert text.splitlines()[0] == (
        "Blockbook: pipeline taxi run 20261125T060000Z-abc123 succeeded with schema drift "
        "(schedule, 12.3 s)"
    )
    assert (
        "Schema drift in load_trips: `trips`: column `km` changed type int64 -> float64 "
        "(against run R1)"
    ) in text.splitlines()
    assert subject(alert) == "[blockbook] taxi schema drift: run 20261125T060000Z-abc123"
    payload = webhook_payload(alert)["blockbook"]
    assert payload["event"] == "schema_drift"
    assert payload["schema_drift"] == [{"block": "load_trips", **DRIFT}]

    [failure] = alerts_for(config("failure"), drifted(RunStatus.FAILED))
    assert "Schema drift in load_trips: `trips`" in render_text(failure)
