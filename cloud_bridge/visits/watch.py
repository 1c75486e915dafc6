"""Overdue visits: an elderly resident living alone whose household code has not been scanned
on a butler's visit for too long raises a quiet reminder to the building's butler.

The watch reads `visit.checkin` events from the event log (with a cursor), remembers the last
visit per household, and stores a `visit.overdue` alert event of its own when one is due; the
alert engine routes it like any other. A household newly marked as living alone is watched
from the moment the central first sees it so, not from the beginning of time.

A reminder carries what the butler's 待探访 card and the robot's message say (facts.py): the
resident, building and room, the last visit (a date in the community's time zone) and when the
visit fell due. An accepted check-in of the household closes it (alerts/book.py `_visited`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from cloud_bridge.config import VisitsSection
from cloud_bridge.receiver.store import Database, EventStore
from cloud_bridge.registry.source import RegistrySource
from cloud_bridge.visits.facts import (
    REMINDER_SOURCE,
    Overdue,
    building_name,
    day_of,
    reminder_subject,
    resident_of,
    visit_moment,
    visited_household,
)
from mashang.registry import Household, Registry

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS visit_watch (
    household TEXT PRIMARY KEY,
    watched_since REAL NOT NULL,
    last_visit REAL,
    last_reminder REAL
);
CREATE TABLE IF NOT EXISTS visit_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
"""


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment).astimezone().isoformat(timespec="milliseconds")


def reminder_event(household: Household, registry: Registry, overdue: Overdue, moment: float,
                   zone: ZoneInfo) -> dict[str, Any]:
    last_visit = overdue.last_visit_at
    return {
        "id": str(uuid.uuid4()),
        "kind": "alert",
        "type": "visit.overdue",
        "priority": "normal",
        "device_id": reminder_subject(household.id),
        "occurred_at": iso(moment),
        "received_at": iso(moment),
        "data": {
            "household": household.id,
            "resident": resident_of(household, registry),
            "building": {"id": household.building,
                         "name": building_name(household, registry)},
            "room": household.room,
            "last_visit": iso(last_visit) if last_visit else None,
            "last_visit_at": last_visit,
            "last_visit_date": day_of(last_visit, zone),
            "due_at": overdue.due_at,
            "days_overdue": overdue.days_overdue(moment),
        },
    }


class VisitWatch:
    def __init__(self, db: Database, store: EventStore, registry: RegistrySource,
                 settings: VisitsSection, zone: ZoneInfo) -> None:
        db.migrate("visits", [SCHEMA])
        self._db = db
        self._store = store
        self._registry = registry
        self._settings = settings
        self._zone = zone

    async def run(self, raised: Any) -> None:
        """Check now and then; `raised()` wakes the alert engine after a reminder is stored."""
        while True:
            await asyncio.sleep(self._settings.check_interval)
            try:
                count = await asyncio.to_thread(self.check)
            except Exception:
                log.exception("overdue-visit check failed")
                continue
            if count:
                raised()

    def check(self) -> int:
        moment = time.time()
        self._record_visits()
        registry = self._registry.current
        due = []
        for household in registry.households:
            if not household.elderly_living_alone:
                continue
            overdue, reminded = self._watch(household.id, moment)
            if moment >= max(overdue.due_at, reminded + self._settings.overdue_after):
                due.append(reminder_event(household, registry, overdue, moment, self._zone))
        if due:
            self._store.add(REMINDER_SOURCE, due)
            with self._db.transaction() as db:
                db.executemany(
                    "UPDATE visit_watch SET last_reminder = ? WHERE household = ?",
                    [(moment, event["data"]["household"]) for event in due],
                )
            log.info("overdue visits: %d reminders raised", len(due))
        return len(due)

    def _watch(self, household: str, moment: float) -> tuple[Overdue, float]:
        """The household's visit standing, and when it was last reminded of (0: never)."""
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO visit_watch (household, watched_since) VALUES (?, ?)"
                " ON CONFLICT (household) DO NOTHING",
                (household, moment),
            )
            since, last_visit, last_reminder = db.execute(
                "SELECT watched_since, last_visit, last_reminder FROM visit_watch"
                " WHERE household = ?", (household,),
            ).fetchone()
        due_at = max(since, last_visit or 0.0) + self._settings.overdue_after
        return Overdue(last_visit, due_at), last_reminder or 0.0

    def _record_visits(self) -> None:
        rows = self._db.rows("SELECT seq FROM visit_cursor WHERE id = 1")
        cursor = rows[0][0] if rows else 0
        visits = self._store.list(after=cursor, limit=10000, event_type="visit.checkin")
        if not visits:
            return
        with self._db.transaction() as db:
            for event in visits:
                household = visited_household(event.get("data") or {})
                if household:
                    at = visit_moment(event.get("occurred_at"), event["arrived_at"])
                    db.execute(
                        "INSERT INTO visit_watch (household, watched_since, last_visit)"
                        " VALUES (?, ?, ?) ON CONFLICT (household) DO UPDATE SET"
                        " last_visit = CASE WHEN visit_watch.last_visit >= excluded.last_visit"
                        " THEN visit_watch.last_visit ELSE excluded.last_visit END",
                        (household, at, at),
                    )
            db.execute("INSERT INTO visit_cursor VALUES (1, ?) ON CONFLICT (id)"
                       " DO UPDATE SET seq = excluded.seq", (visits[-1]["seq"],))
