"""The settings of a scheduler daemon (`blockbook scheduler` and its options)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class SchedulerOptions:
    max_runs: int = 4
    """Runner processes at once, over all pipelines."""
    tick_seconds: float = 0.5
    rescan_seconds: float = 5.0
    """How often pipeline.toml files are looked at again (added, changed, removed schedules)."""
    heartbeat_timeout: timedelta = timedelta(seconds=30)
    """A running run whose runner has been silent this long is marked crashed."""
    kill_wait: timedelta = timedelta(seconds=30)
    """How long a tick waits for a silent runner on this host to die once killed; its crash
    retry is queued only after it died (a runner that outlives this is looked at next tick)."""
