"""The schedules a scheduler watches: the pipelines under the project root that have one, and
when each fires next.

A rescan picks up added, changed and removed schedules, parsing a pipeline.toml again only when
its stat changed. Next fire times wait in a heap, so the due ones are found without looking at
every schedule, and the loop knows when to wake up.
"""

from __future__ import annotations

import heapq
import logging
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipelines.assembly.config import PIPELINE_FILE, load_pipeline_config
from pipelines.assembly.project import list_pipelines
from pipelines.scheduling.fire_times import Schedule, next_fire_after, schedule_of
from pipelines.scheduling.fire_times import fingerprint as schedule_fingerprint
from pipelines.store.queue import ScheduleState, adopt_schedule, forget_schedule, schedule_states
from pipelines.store.run_store import RunStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class WatchedSchedule:
    pipeline: str
    folder: Path
    schedule: Schedule
    fingerprint: str
    first_seen: datetime
    last_fired: datetime | None
    next_fire: datetime
    file_stamp: tuple[int, ...] = ()
    """pipeline.toml's stat when last read: an unchanged file is not parsed again."""


class Watchlist:
    """The watched schedules by pipeline name, and a heap of their next fire times."""

    def __init__(self, root: Path, store: RunStore) -> None:
        self.root = root
        self.store = store
        self.watched: dict[str, WatchedSchedule] = {}
        self._heap: list[tuple[datetime, str]] = []

    def rescan(self, moment: datetime) -> None:
        """Pick up added, changed and removed schedules; one pipeline's broken schedule (or a
        failed write of it) is logged and leaves every other pipeline's as it is."""
        stored: list[dict[str, ScheduleState]] = []

        def stored_state(name: str) -> ScheduleState | None:
            # Read once per rescan, and only when a schedule is new or changed.
            if not stored:
                stored.append(schedule_states(self.store))
            return stored[0].get(name)

        seen: set[str] = set()
        for ref in list_pipelines(self.root):
            try:
                if self._watch(ref.name, ref.folder, stored_state, moment):
                    seen.add(ref.name)
            except Exception:
                log.exception("%s: could not read its schedule; trying again later", ref.name)
                seen.add(ref.name)  # a failure to read is no reason to forget the schedule
        for name in set(self.watched) - seen:
            log.info("%s: schedule removed", name)
            del self.watched[name]
            forget_schedule(self.store, name)

    def take_due(self, moment: datetime) -> list[WatchedSchedule]:
        """The schedules with a fire time at or before `moment`, each once, taken off the heap
        (`put_back` them once their next fire time is known)."""
        due: dict[str, WatchedSchedule] = {}
        while self._heap and self._heap[0][0] <= moment:
            _, name = heapq.heappop(self._heap)
            watched = self.watched.get(name)
            if watched is None or watched.next_fire > moment or name in due:
                continue  # removed, or a stale heap entry from before a change
            due[name] = watched
        return list(due.values())

    def put_back(self, watched: WatchedSchedule) -> None:
        """Wait for the schedule's `next_fire` again."""
        heapq.heappush(self._heap, (watched.next_fire, watched.pipeline))

    def earliest_fire(self) -> datetime | None:
        """The earliest fire time waited for (it may be a stale entry: never a later one)."""
        return self._heap[0][0] if self._heap else None

    def _watch(
        self,
        name: str,
        folder: Path,
        stored_state: Callable[[str], ScheduleState | None],
        moment: datetime,
    ) -> bool:
        """Watch the pipeline's schedule from now on; False when it has none (or an invalid
        one, which is said)."""
        stamp = _file_stamp(folder / PIPELINE_FILE)
        if stamp is None:
            return False
        current = self.watched.get(name)
        if current is not None and current.folder == folder and current.file_stamp == stamp:
            return True  # the same file as last time (1,000 pipelines: no TOML parsed)
        config, problems = load_pipeline_config(folder)
        if any(p.is_error for p in problems):
            log.warning("%s: not scheduling: %s", name, problems[0].format())
            return False
        if config.schedule is None:
            return False
        fingerprint = schedule_fingerprint(config.schedule)
        if current is not None and current.fingerprint == fingerprint:
            current.folder = folder
            current.file_stamp = stamp
            return True
        state = stored_state(name)
        if state is None or state.fingerprint != fingerprint:
            # New or changed: fire times before this moment are never run.
            state = adopt_schedule(self.store, name, fingerprint, moment)
            log.info(
                "%s: schedule %s from %s", name, "added" if current is None else "changed", moment
            )
        schedule = schedule_of(config.schedule)
        since = max(state.first_seen_at, state.last_fired or state.first_seen_at)
        watched = WatchedSchedule(
            name,
            folder,
            schedule,
            fingerprint,
            state.first_seen_at,
            state.last_fired,
            next_fire_after(schedule, since, state.first_seen_at),
            stamp,
        )
        self.watched[name] = watched
        self.put_back(watched)
        return True


def _file_stamp(path: Path) -> tuple[int, ...] | None:
    """What changes when a file is written (or replaced); None when there is no such file."""
    try:
        status = path.stat()
    except OSError:
        return None
    if not stat.S_ISREG(status.st_mode):
        return None
    return (status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)
