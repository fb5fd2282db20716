"""When alerts go out: once a run has its final status, and when a running run outlasts its SLA.

The runner calls `notify_finished` at the end of a run and polls an `SlaWatch` while it runs.
Neither ever raises: alerts never fail a run. `notifier_for` is the seam tests replace.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pipelines.alerts.messages import alerts_for, build_alert
from pipelines.assembly.config import AlertsConfig
from pipelines.store.run_store import RunStore

if TYPE_CHECKING:
    from pipelines.alerts.sending import Notifier

logger = logging.getLogger("pipelines.alerts")


def notifier_for(config: AlertsConfig) -> Notifier:
    """The destinations `config` names. The composition root: tests replace it."""
    # Imported here for cost: every runner imports this module, few ever send an alert, and the
    # SMTP and HTTP clients would be imported before a run's first kernel starts.
    from pipelines.alerts.sending import Notifier

    return Notifier.from_config(config)


def notify_finished(config: AlertsConfig | None, store: RunStore, run_id: str) -> None:
    """Send the alerts a finished run calls for. Never raises: alerts never fail a run."""
    if config is None:
        return
    try:
        record = store.get_run(run_id)
        due = alerts_for(config, record) if record is not None else []
        if due:
            notifier = notifier_for(config)
            for alert in due:
                notifier.send(alert)
    except Exception:
        logger.exception("run %s: its alerts could not be sent", run_id)


class SlaWatch:
    """Sends one `sla` alert when a run is still going `alerts.sla` seconds after it started.

    `check()` is cheap (a clock reading) so the runner can call it on every poll; the alert is
    sent from a thread so a slow destination never holds up the run.
    """

    def __init__(
        self,
        config: AlertsConfig | None,
        store: RunStore,
        run_id: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.store = store
        self.run_id = run_id
        self.clock = clock
        sla = None if config is None else config.sla
        self._deadline = None if sla is None else clock() + sla
        self.thread: threading.Thread | None = None

    def check(self) -> None:
        if self._deadline is None or self.clock() < self._deadline:
            return
        self._deadline = None  # once per run
        self.thread = threading.Thread(
            target=self._send, name=f"sla-alert:{self.run_id}", daemon=True
        )
        self.thread.start()

    def _send(self) -> None:
        assert self.config is not None
        try:
            record = self.store.get_run(self.run_id)
            if record is None or record.status.is_terminal:
                return
            notifier_for(self.config).send(build_alert("sla", record, sla=self.config.sla))
        except Exception:
            logger.exception("run %s: its SLA alert could not be sent", self.run_id)
