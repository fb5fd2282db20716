"""Sensors and conditions: the two kinds of block that end with a verdict.

The verdict is read from the body's variable of that name when the body assigns it (at top
level, even in a branch not taken this time), else from the value of its last expression:

- a sensor (`--kind sensor`, variable `ready`) re-runs its body every `--poke-interval` seconds
  until the verdict is true, and fails after `--sensor-timeout` seconds (not retried);
  `--timeout` bounds each run of the body;
- a condition (`--kind condition`, variable `proceed`) runs once and records its verdict on its
  state: false skips the blocks downstream of it in a run (the condition itself succeeds).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pipelines.assembly.analysis import BlockAnalysis
from pipelines.assembly.header import BlockHeader, BlockKind

VERDICT_NAMES = {BlockKind.SENSOR: "ready", BlockKind.CONDITION: "proceed"}
"""The variable a sensor or condition body may set instead of ending with an expression."""


class SensorTimeout(Exception):
    def __init__(self, seconds: float, pokes: int) -> None:
        super().__init__(
            f"sensor condition not met after {seconds:g} s ({pokes} poke{'s' * (pokes != 1)}); "
            "raise --sensor-timeout or check what the sensor waits for"
        )
        self.seconds = seconds
        self.pokes = pokes


@dataclass(slots=True)
class SensorClock:
    """A sensor's time and pokes, across its attempts: --sensor-timeout bounds them all."""

    started: float | None = None
    pokes: int = 0


def forget_verdict(header: BlockHeader, analysis: BlockAnalysis, namespace: dict[str, Any]) -> None:
    """Drop a verdict variable left by an earlier run, so only this run's assignment counts
    (kept when the body reads it before assigning it: then it is the body's own state)."""
    variable = VERDICT_NAMES[header.kind]
    if variable in analysis.outputs and variable not in analysis.inputs:
        namespace.pop(variable, None)


def read_verdict(
    header: BlockHeader, analysis: BlockAnalysis, namespace: dict[str, Any], value: Any
) -> bool:
    """The body's verdict: its `ready` / `proceed` variable when it assigned one, else the
    value of its last expression (None, false, when it has none)."""
    variable = VERDICT_NAMES[header.kind]
    if variable in analysis.outputs and variable in namespace:
        value, source = namespace[variable], f"`{variable}`"
    else:
        source = "its last expression"
    try:
        return bool(value)
    except Exception as exc:
        raise TypeError(
            f"the {header.kind} `{header.name}` needs a true or false result, but {source} is a "
            f"{type(value).__name__} whose truth is undefined ({type(exc).__name__}: {exc}); "
            f"end the block with a bool, or set `{variable} = ...`"
        ) from exc


def verdict_notes(header: BlockHeader, verdict: bool | None, clock: SensorClock) -> list[str]:
    """What a sensor or condition that succeeded tells the person who ran it."""
    if header.kind is BlockKind.SENSOR and clock.started is not None:
        seconds = time.monotonic() - clock.started
        pokes = f"{clock.pokes} poke{'s' * (clock.pokes != 1)}"
        return [f"sensor ready after {pokes} in {seconds:.1f} s"]
    if verdict is True:
        return ["condition true: downstream blocks run"]
    if verdict is False:
        return ["condition false: downstream blocks will be skipped in runs"]
    return []
