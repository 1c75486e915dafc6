"""Scheduled drill presses, kept in the central's database and fired by the central when due.

A drill is stored as a row of `drills`; when its time comes the central stores a `button.press`
event of its own (source "central", as the overdue-visit watch does) carrying `drill: true`, and
the alert engine routes it like any press: paged, shown, escalated until acknowledged. The
event's id is the drill's id, so a crash between storing the event and marking the drill fired
never presses twice. A drill whose time passed while the central was down longer than
`MISSED_AFTER` is marked missed rather than fired hours late.

The press is the central's, never the gateway's: it carries no gateway alert id, so no feedback
command goes to the real button. The resident did not press and is not waiting for anyone; a
button lighting "help is coming" (or its indicator speaking) would alarm them, and a resident
who then presses for real must not be told help is already on its way. The central's own
source also keeps the drill apart from the button's real alerts: a real press during a drill
opens an alert of its own, never joins the drill's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from cloud_bridge.alerts.clock import SYSTEM_CLOCK, Clock
from cloud_bridge.receiver.store import Database, EventStore
from cloud_bridge.registry.source import RegistrySource
from mashang.registry import Registry

log = logging.getLogger(__name__)

DRILL_SOURCE = "central"  # the events' gateway id: the central's own, like visit reminders
# A drill found due this long after its time (the central was down) is not fired any more.
MISSED_AFTER = 3600.0
# How often the runner looks for drills scheduled by `mashang drill` (a separate process,
# which cannot wake it); the HTTP endpoint wakes it at once.
POLL_SECONDS = 2.0
# A drill may be set this far in the past (a clock a little behind, "now" typed by hand).
PAST_GRACE = 60.0
NOTE_MAX = 200

State = Literal["scheduled", "fired", "missed", "cancelled"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS drills (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    due_at REAL NOT NULL,
    scheduled_at REAL NOT NULL,
    scheduled_by TEXT NOT NULL,
    note TEXT,
    state TEXT NOT NULL,
    fired_at REAL
);
CREATE INDEX IF NOT EXISTS drills_by_due ON drills (state, due_at);
"""


class DrillError(Exception):
    """A drill that cannot be scheduled (an unknown button, a time gone by)."""


@dataclass(frozen=True)
class Drill:
    id: str
    device_id: str
    due_at: float
    scheduled_at: float
    scheduled_by: str
    note: str | None
    state: State
    fired_at: float | None


COLUMNS = "id, device_id, due_at, scheduled_at, scheduled_by, note, state, fired_at"


def parse_time(text: str, zone: ZoneInfo) -> float:
    """'2026-11-30 10:00' in the community's time zone, or an ISO 8601 time with its offset."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DrillError(f"time {text!r}: write it as YYYY-MM-DD HH:MM (community time)"
                         " or ISO 8601 with an offset") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    try:  # it is shown in the community's zone, where 0001-01-01 +14:00 is in no year
        iso(moment.timestamp(), zone)
    except (ValueError, OverflowError):
        raise DrillError(f"time {text!r}: not a date the calendar has") from None
    return moment.timestamp()


def iso(moment: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(moment, zone).isoformat(timespec="milliseconds")


def drill_event(drill: Drill, registry: Registry, moment: float, zone: ZoneInfo) -> dict[str, Any]:
    """The press as a gateway would have sent it, with who is behind the button, marked a
    drill; no `alert_id`, so no feedback reaches the button."""
    button = registry.button(drill.device_id)
    data: dict[str, Any] = {"drill": True, "drill_id": drill.id, "action": "single",
                            "presses": 1, "scheduled_by": drill.scheduled_by,
                            "note": drill.note}
    if button is not None:
        resident = button.resident
        building = registry.building(resident.building)
        data |= {"resident": resident.model_dump(),
                 "building": {"id": resident.building,
                              "name": building.name if building else None}}
    else:  # removed from the registry since: still practised, as an unregistered button is
        data["unregistered"] = True
    return {
        "id": drill.id,
        "kind": "alert",
        "type": "button.press",
        "priority": "high",
        "device_id": drill.device_id,
        "occurred_at": iso(moment, zone),
        "received_at": iso(moment, zone),
        "data": data,
    }


class DrillSchedule:
    def __init__(self, db: Database, registry: RegistrySource, zone: ZoneInfo, *,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        db.migrate("drills", [SCHEMA])
        self._db = db
        self._registry = registry
        self._zone = zone
        self._clock = clock
        self._wake: asyncio.Event | None = None

    @property
    def zone(self) -> ZoneInfo:
        return self._zone

    # -- operators ---------------------------------------------------------------------------

    def schedule(self, device_id: str, due_at: float, by: str, note: str | None = None) -> Drill:
        if self._registry.current.button(device_id) is None:
            raise DrillError(f"no button {device_id!r} in the registry")
        now = self._clock()
        if due_at < now - PAST_GRACE:
            raise DrillError(f"{iso(due_at, self._zone)} has passed")
        if note is not None and len(note) > NOTE_MAX:
            raise DrillError(f"note: at most {NOTE_MAX} characters")
        drill = Drill(uuid.uuid4().hex, device_id, due_at, now, by, note, "scheduled", None)
        with self._db.transaction() as db:
            db.execute(f"INSERT INTO drills ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (drill.id, drill.device_id, drill.due_at, drill.scheduled_at,
                        drill.scheduled_by, drill.note, drill.state, drill.fired_at))
        return drill

    def cancel(self, drill_id: str) -> bool:
        """False when there is no such drill still to come."""
        with self._db.transaction() as db:
            return bool(db.execute(
                "UPDATE drills SET state = 'cancelled' WHERE id = ? AND state = 'scheduled'",
                (drill_id,)).rowcount)

    def listing(self, limit: int = 100) -> list[Drill]:
        """Drills to come first (soonest first), then the latest others."""
        rows = self._db.rows(
            f"SELECT {COLUMNS} FROM drills ORDER BY state != 'scheduled',"
            " CASE WHEN state = 'scheduled' THEN due_at ELSE -due_at END LIMIT ?", (limit,))
        return [Drill(*row) for row in rows]

    # -- the central ------------------------------------------------------------------------

    def fire_due(self, store: EventStore) -> int:
        """Store the press of every drill now due; the number fired."""
        now = self._clock()
        due = [Drill(*row) for row in self._db.rows(
            f"SELECT {COLUMNS} FROM drills WHERE state = 'scheduled' AND due_at <= ?"
            " ORDER BY due_at", (now,))]
        fired = 0
        for drill in due:
            if now - drill.due_at > MISSED_AFTER:
                log.warning("drill %s for %s was due at %s while the central was down: missed",
                            drill.id, drill.device_id, iso(drill.due_at, self._zone))
                self._mark(drill.id, "missed", None)
                continue
            event = drill_event(drill, self._registry.current, now, self._zone)
            store.add(DRILL_SOURCE, [event])  # a second try after a crash is a duplicate
            self._mark(drill.id, "fired", now)
            log.info("drill %s pressed %s", drill.id, drill.device_id)
            fired += 1
        return fired

    def _mark(self, drill_id: str, state: State, fired_at: float | None) -> None:
        with self._db.transaction() as db:
            db.execute("UPDATE drills SET state = ?, fired_at = ? WHERE id = ?",
                       (state, fired_at, drill_id))

    def _next_due(self) -> float | None:
        rows = self._db.rows("SELECT MIN(due_at) FROM drills WHERE state = 'scheduled'")
        return rows[0][0]

    def wake(self) -> None:
        """A drill was scheduled in this process: look again now."""
        if self._wake is not None:
            self._wake.set()

    async def run(self, store: EventStore, raised: Any) -> None:
        """Fire drills when due, from now until cancelled (restarts pick up where the last run
        left off: the schedule is in the database); `raised()` wakes the alert engine."""
        self._wake = asyncio.Event()
        while True:
            self._wake.clear()
            try:
                if await asyncio.to_thread(self.fire_due, store):
                    raised()
                next_due = await asyncio.to_thread(self._next_due)
            except Exception:
                log.exception("drill run failed")
                next_due = None
            wait = POLL_SECONDS if next_due is None else next_due - self._clock()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, min(wait, POLL_SECONDS)))
