"""Residents' reports on stalls as the street office handles them: each is new, handled or
dismissed, with the office's note; and each new one is told to the office's robot.

The reports are the stall pages' (`cloud_bridge/stalls/pages.py` stores them in
`stall_feedback`; its migration step 3 adds the columns used here). The client address a
report came from stays there: the office never sees it. A rating without words is no report.

Telling the robot: a report is no alert (nobody is paged again, nothing escalates), so it gets
no alert of its own; `ReportWatch` reads the reports not yet told (`told_at` NULL) every
REPORT_POLL_SECONDS and queues each to the "inspection" target's webhooks through the
notifier, as one message keyed `report-{seq}` in `deliveries`. A report is marked told once
its robots took it or gave it up, so a central that stops before that tells it again on start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from cloud_bridge.alerts.routing import INSPECTION
from cloud_bridge.notify.messages import Report, report_message
from cloud_bridge.notify.webhooks import Notifier
from cloud_bridge.office.facts import StallFacts, stall_facts
from cloud_bridge.receiver.store import Database
from cloud_bridge.stalls.pages import TEXT
from mashang.registry import Registry

log = logging.getLogger(__name__)

State = Literal["new", "handled", "dismissed"]
REPORT_POLL_SECONDS = 2.0
LIST_LIMIT = 200
COLUMNS = "seq, stall_id, rating, category, report, at, state, note, state_at, state_by"
# A report, or a rating given with a category: words for the office either way.
IS_REPORT = "(report IS NOT NULL OR category IS NOT NULL)"


def category_words(category: str | None) -> str | None:
    return TEXT["zh"].get(category, category) if category else None


@dataclass(frozen=True)
class StoredReport:
    seq: int
    stall_id: str
    rating: int | None
    category: str | None
    text: str
    at: float
    state: str
    note: str | None
    state_at: float | None
    state_by: str | None

    def facts(self, registry: Registry) -> StallFacts:
        return stall_facts(registry, self.stall_id, {})

    def told(self, registry: Registry) -> Report:
        return Report(self.seq, self.facts(registry), category_words(self.category), self.text,
                      self.at)


def from_row(row: tuple) -> StoredReport:
    seq, stall_id, rating, category, report, at, state, note, state_at, state_by = row
    return StoredReport(seq, stall_id, rating, category, report or "", at, state, note,
                        state_at, state_by)


class ReportBook:
    def __init__(self, db: Database) -> None:
        self._db = db

    def listing(self, stall_id: str | None = None, limit: int = LIST_LIMIT) -> list[StoredReport]:
        """Newest first; of one stall when given."""
        query, params = f"SELECT {COLUMNS} FROM stall_feedback WHERE {IS_REPORT}", []
        if stall_id is not None:
            query += " AND stall_id = ?"
            params.append(stall_id)
        rows = self._db.rows(query + " ORDER BY seq DESC LIMIT ?", [*params, limit])
        return [from_row(row) for row in rows]

    def get(self, seq: int) -> StoredReport | None:
        rows = self._db.rows(
            f"SELECT {COLUMNS} FROM stall_feedback WHERE seq = ? AND {IS_REPORT}", (seq,)
        )
        return from_row(rows[0]) if rows else None

    def set_state(self, seq: int, state: State, note: str | None, who: str) -> bool:
        """False when there is no such report."""
        with self._db.transaction() as db:
            cursor = db.execute(
                "UPDATE stall_feedback SET state = ?, note = ?, state_at = ?, state_by = ?"
                f" WHERE seq = ? AND {IS_REPORT}",
                (state, note, time.time(), who, seq),
            )
        return cursor.rowcount == 1

    def untold(self, limit: int = 50) -> list[StoredReport]:
        """Not yet told to the robot, oldest first; a rating alone is marked told at once."""
        with self._db.transaction() as db:
            db.execute(
                f"UPDATE stall_feedback SET told_at = ? WHERE told_at IS NULL AND NOT {IS_REPORT}",
                (time.time(),),
            )
            rows = db.execute(
                f"SELECT {COLUMNS} FROM stall_feedback WHERE told_at IS NULL ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [from_row(row) for row in rows]

    def mark_told(self, seq: int) -> None:
        with self._db.transaction() as db:
            db.execute("UPDATE stall_feedback SET told_at = ? WHERE seq = ?", (time.time(), seq))


class ReportWatch:
    """Tells the street office's robot of each new report (see the module's words)."""

    def __init__(
        self, book: ReportBook, notifier: Notifier, registry: Callable[[], Registry]
    ) -> None:
        self._book = book
        self._notifier = notifier
        self._registry = registry
        self._telling: dict[int, asyncio.Task[None]] = {}

    async def run(self, interval: float = REPORT_POLL_SECONDS) -> None:
        while True:
            try:
                await self.tell_new()
            except Exception:  # the database failing: the reports wait, nothing is lost
                log.exception("could not read new stall reports; trying again")
            await asyncio.sleep(interval)

    async def tell_new(self) -> None:
        for report in await asyncio.to_thread(self._book.untold):
            if report.seq not in self._telling:
                task = asyncio.create_task(self._tell(report))
                self._telling[report.seq] = task
                task.add_done_callback(lambda _, seq=report.seq: self._telling.pop(seq, None))

    async def _tell(self, report: StoredReport) -> None:
        notifier = self._notifier
        message = report_message(report.told(self._registry()), INSPECTION, notifier.console_url)
        deliveries = [
            notifier.deliver(f"report-{report.seq}", endpoint, message)
            for endpoint in notifier.endpoints(INSPECTION)
        ]
        await asyncio.gather(*deliveries)
        await asyncio.to_thread(self._book.mark_told, report.seq)

    async def stop(self) -> None:
        tasks = list(self._telling.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def report_view(report: StoredReport, registry: Registry, when: Callable[[float], str]
                ) -> dict[str, Any]:
    """What the office's page shows of a report: never the address it came from."""
    stall = report.facts(registry)
    return {
        "id": report.seq,
        "stall": {"id": stall.id, "name": stall.name, "number": stall.number,
                  "label": stall.label},
        "zone": stall.zone,
        "category": report.category,
        "category_words": category_words(report.category),
        "rating": report.rating,
        "text": report.text,
        "at": report.at,
        "time": when(report.at),
        "state": report.state,
        "note": report.note,
        "state_at": report.state_at,
        "state_by": report.state_by,
    }
