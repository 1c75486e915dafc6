"""Alert lifecycle, GoAlert-like: raised → notified → acknowledged → resolved.

One open alert per button and category: a press for a button whose help alert is open adds to
its press count (and can raise its priority) instead of paging anyone again. Every step is a
row of `alert_steps` (alert, step, who, when, detail).

The book reads the event log in order and keeps its cursor in the same transaction as the
alert changes, so an event stored just before a crash still raises its alert on restart, and
a duplicate event (never stored twice) never counts twice. Everything here is synchronous
SQLite work; `dispatch.AlertEngine` runs it off the event loop and acts on what it returns.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any, Literal

from cloud_bridge.alerts.clock import SYSTEM_CLOCK, Clock
from cloud_bridge.alerts.states import OPEN_STATES, UNACKNOWLEDGED, AlertState, Listing, Step
from cloud_bridge.commands.queue import enqueue, feedback_command
from cloud_bridge.config import AlertsSection
from cloud_bridge.receiver.store import Database

log = logging.getLogger(__name__)

PRIORITIES = ("low", "normal", "high", "critical")

# Who is paged for an alert (see routing.ladder): "butlers" is the building's escalation ladder,
# "building" its primary butler alone, quietly; "inspection" the street office.
Route = Literal["butlers", "building", "inspection"]


@dataclass(frozen=True)
class Policy:
    category: str  # the dedup class: one open alert per (device, category)
    route: Route
    escalates: bool
    feedback: bool  # the button's LED follows this alert (acknowledged, resolved)


HELP = Policy("help", "butlers", escalates=True, feedback=True)

# Which events raise or join alerts. Events of any other type are only kept in the log.
POLICIES: dict[str, Policy] = {
    "button.press": HELP,
    "button.repeat": HELP,
    # A registered button's press counter jumped: a press may have been lost, so someone
    # calls the resident, and it climbs the ladder until someone does.
    "button.gap": Policy("gap", "butlers", escalates=True, feedback=False),
    "button.offline": Policy("offline", "building", escalates=False, feedback=False),
    "button.battery_low": Policy("battery", "building", escalates=False, feedback=False),
    # The stall rules (issue 4) live at the gateway; a violation they find goes to the street
    # office's inspection contact, never to the butlers, and does not escalate.
    "stall.violation": Policy("stall", "inspection", escalates=False, feedback=False),
    # Raised by the central itself (cloud_bridge/visits/watch.py): a quiet reminder to the butler.
    "visit.overdue": Policy("visit", "building", escalates=False, feedback=False),
    # The gateway itself is in trouble (a damaged outbox set aside, a Zigbee2MQTT setting that
    # hides presses): no building is behind it, so the ladder is the duty contact.
    "gateway.outbox_replaced": Policy("gateway", "building", escalates=False, feedback=False),
    "gateway.misconfigured": Policy("gateway", "building", escalates=False, feedback=False),
}
BY_CATEGORY = {policy.category: policy for policy in POLICIES.values()}
# Events that close the open alert of a category for the same device.
CLOSERS = {"button.online": "offline"}
# A gateway's duty room handled an alert on the LAN page while the central was away (a log
# event: data.alert_id is the id of the alert's event; data.gateway_alert_id, when the alert
# was a press, the gateway's id for the emergency). A step in the alert's history, no more.
HANDLED_LOCALLY = "alert.handled_locally"
HANDLED = (*POLICIES, *CLOSERS, HANDLED_LOCALLY)

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    gateway_id TEXT NOT NULL,
    device_id TEXT,
    type TEXT NOT NULL,
    category TEXT NOT NULL,
    priority TEXT NOT NULL,
    state TEXT NOT NULL,
    building TEXT,
    presses INTEGER NOT NULL,
    escalations INTEGER NOT NULL,
    gateway_alert_id TEXT,
    data TEXT NOT NULL,
    raised_at REAL NOT NULL,
    arrived_at REAL NOT NULL,
    notified_at REAL,
    pushed_at REAL,
    acknowledged_at REAL,
    acknowledged_by TEXT,
    resolved_at REAL,
    resolved_by TEXT,
    next_escalation_at REAL,
    -- Set while the alert is open, NULL once resolved: the database itself keeps one open
    -- alert per device and category.
    open_key TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS alerts_by_building ON alerts (building, raised_at);
CREATE TABLE IF NOT EXISTS alert_steps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alert TEXT NOT NULL,
    step TEXT NOT NULL,
    who TEXT,
    at REAL NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_steps_by_alert ON alert_steps (alert, seq);
CREATE TABLE IF NOT EXISTS alert_feed (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
"""

FEED_CHUNK = 500


class LifecycleError(Exception):
    """An action the alert's state does not allow (acknowledging a resolved alert)."""


@dataclass
class Alert:
    id: str
    gateway_id: str
    device_id: str | None
    type: str
    category: str
    priority: str
    state: AlertState
    building: str | None
    presses: int
    escalations: int
    gateway_alert_id: str | None
    data: dict[str, Any]
    raised_at: float
    arrived_at: float
    notified_at: float | None = None
    pushed_at: float | None = None
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    next_escalation_at: float | None = None

    @property
    def policy(self) -> Policy:
        return BY_CATEGORY[self.category]

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def escalating(self) -> bool:
        """Nobody has acknowledged the alert, and it has an escalation to come."""
        return self.state in UNACKNOWLEDGED and self.next_escalation_at is not None

    def escalation_due(self, now: float) -> bool:
        """An escalation is to come, and its time (`next_escalation_at`) is `now` or past."""
        return (
            self.state in UNACKNOWLEDGED
            and self.next_escalation_at is not None
            and now >= self.next_escalation_at
        )

    def latencies(self) -> dict[str, float | None]:
        """Seconds from the press reaching the gateway to each later step."""

        def since_raise(moment: float | None) -> float | None:
            return None if moment is None else round(moment - self.raised_at, 4)

        return {
            "central": since_raise(self.arrived_at),
            "notified": since_raise(self.notified_at),
            "console": since_raise(self.pushed_at),
            "acknowledged": since_raise(self.acknowledged_at),
            "resolved": since_raise(self.resolved_at),
        }

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "latency": self.latencies()}


COLUMNS = [field.name for field in fields(Alert)]
SELECT = f"SELECT {', '.join(COLUMNS)} FROM alerts"


def from_row(row: tuple) -> Alert:
    values = dict(zip(COLUMNS, row, strict=True))
    values["data"] = json.loads(values["data"])
    values["state"] = AlertState(values["state"])
    return Alert(**values)


@dataclass(frozen=True)
class Change:
    """What a book operation did, for the engine to act on (publish, page, wake gateways)."""

    alert: Alert
    step: Step
    feedback_to: str | None = None  # a gateway for which a feedback command was queued


def rank(priority: str) -> int:
    return PRIORITIES.index(priority) if priority in PRIORITIES else 0


def building_of(data: dict[str, Any]) -> str | None:
    building = data.get("building")
    if isinstance(building, dict):
        building = building.get("id")
    if building is None and isinstance(data.get("resident"), dict):
        building = data["resident"].get("building")
    return building if isinstance(building, str) else None


def moment(text: Any, fallback: float) -> float:
    try:
        return datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return fallback


def add_step(
    db: sqlite3.Connection,
    at: float,
    alert_id: str,
    step: Step,
    who: str | None,
    detail: dict | None = None,
) -> None:
    db.execute(
        "INSERT INTO alert_steps (alert, step, who, at, detail) VALUES (?, ?, ?, ?, ?)",
        (alert_id, step, who, at, json.dumps(detail or {}, ensure_ascii=False)),
    )


def save(db: sqlite3.Connection, alert: Alert) -> None:
    values = asdict(alert)
    values["data"] = json.dumps(alert.data, ensure_ascii=False)
    values["open_key"] = open_key(alert) if alert.is_open else None
    names = [*COLUMNS, "open_key"]
    db.execute(
        f"INSERT OR REPLACE INTO alerts ({', '.join(names)})"
        f" VALUES ({', '.join('?' for _ in names)})",
        [values[name] for name in names],
    )


def open_key(alert: Alert) -> str:
    return f"{alert.category}:{alert.device_id or alert.id}"


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    gateway_id: str
    arrived: float
    body: dict[str, Any]

    @property
    def data(self) -> dict[str, Any]:
        data = self.body.get("data")
        return data if isinstance(data, dict) else {}

    @property
    def gateway_alert_id(self) -> str | None:
        """The gateway's id for the emergency; anything but a string is no id (and no reason
        to lose the press)."""
        alert_id = self.data.get("alert_id")
        return alert_id if isinstance(alert_id, str) and alert_id else None


class AlertBook:
    def __init__(
        self, db: Database, settings: AlertsSection, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._db = db
        self._settings = settings
        self.clock = clock
        db.schema(SCHEMA)

    def _step(
        self,
        db: sqlite3.Connection,
        alert_id: str,
        step: Step,
        who: str | None,
        detail: dict | None = None,
    ) -> None:
        add_step(db, self.clock(), alert_id, step, who, detail)

    # -- events in -------------------------------------------------------------------------

    def feed(self) -> tuple[int, list[Change]]:
        """Apply the next chunk of the event log: (events looked at, changes made)."""
        marks = ", ".join("?" for _ in HANDLED)
        with self._db.transaction() as db:
            row = db.execute("SELECT seq FROM alert_feed WHERE id = 1").fetchone()
            after = row[0] if row else 0
            rows = db.execute(
                "SELECT seq, gateway_id, arrived, body FROM events"
                f" WHERE seq > ? AND type IN ({marks}) ORDER BY seq LIMIT ?",
                (after, *HANDLED, FEED_CHUNK),
            ).fetchall()
            if len(rows) == FEED_CHUNK:
                cursor = rows[-1][0]
            else:  # nothing handled further on: skip the logs after it too
                (cursor,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
            changes = []
            for seq, gateway_id, arrived, body in rows:
                event = StoredEvent(seq, gateway_id, arrived, json.loads(body))
                # One event that trips a bug must not hold back every alert after it.
                db.execute("SAVEPOINT event")
                try:
                    changes.extend(self._apply(db, event))
                except Exception:
                    log.exception("event %s could not be applied to the alerts", seq)
                    db.execute("ROLLBACK TO event")
                db.execute("RELEASE event")
            db.execute("INSERT OR REPLACE INTO alert_feed (id, seq) VALUES (1, ?)", (cursor,))
        return len(rows), changes

    def _apply(self, db: sqlite3.Connection, event: StoredEvent) -> list[Change]:
        event_type = event.body["type"]
        if event_type == HANDLED_LOCALLY:
            return self._handled_locally(db, event)
        if event_type in CLOSERS:
            alert = self._open(db, CLOSERS[event_type], event.body.get("device_id"))
            if alert is None:
                return []
            return [self._resolve(db, alert, f"gateway:{event.gateway_id}", None, event_type)]
        policy = POLICIES[event_type]
        alert = self._open(db, policy.category, event.body.get("device_id"))
        if alert is None:
            return [self._raise(db, event, policy)]
        return self._join(db, alert, event)

    def _open(self, db: sqlite3.Connection, category: str, device_id: str | None) -> Alert | None:
        if device_id is None:
            return None
        row = db.execute(f"{SELECT} WHERE open_key = ?", (f"{category}:{device_id}",)).fetchone()
        return from_row(row) if row else None

    def _raise(self, db: sqlite3.Connection, event: StoredEvent, policy: Policy) -> Change:
        body, data = event.body, event.data
        alert = Alert(
            id=uuid.uuid4().hex,
            gateway_id=event.gateway_id,
            device_id=body.get("device_id"),
            type=body["type"],
            category=policy.category,
            priority=body["priority"],
            state=AlertState.RAISED,
            building=building_of(data),
            presses=1 if policy is HELP else 0,
            escalations=0,
            gateway_alert_id=event.gateway_alert_id,
            data=data,
            raised_at=moment(body.get("received_at"), event.arrived),
            arrived_at=event.arrived,
            next_escalation_at=(
                event.arrived + self._settings.escalate_after if policy.escalates else None
            ),
        )
        save(db, alert)
        self._step(
            db,
            alert.id,
            Step.RAISED,
            event.gateway_id,
            {"event": body["id"], "type": alert.type, "priority": alert.priority},
        )
        return Change(alert, Step.RAISED)

    def _join(self, db: sqlite3.Connection, alert: Alert, event: StoredEvent) -> list[Change]:
        """A further event for an open alert: one more press, maybe a higher priority."""
        body = event.body
        before = alert.priority
        if rank(body["priority"]) > rank(before):
            alert.priority = body["priority"]
        if alert.category == HELP.category:
            alert.presses += 1
        feedback_to = None
        joined_id = event.gateway_alert_id
        if joined_id and joined_id != alert.gateway_alert_id:
            alert.gateway_alert_id = joined_id
            # The gateway opened a new alert of its own (its guard window had passed) while
            # ours was already acknowledged: tell the button that help is still coming.
            if alert.state == AlertState.ACKNOWLEDGED and alert.policy.feedback and alert.device_id:
                feedback_to = self._feedback(
                    db, alert, AlertState.ACKNOWLEDGED, alert.acknowledged_by
                )
        alert.gateway_id = event.gateway_id
        save(db, alert)
        self._step(
            db,
            alert.id,
            Step.PRESSED,
            event.gateway_id,
            {"event": body["id"], "type": body["type"], "presses": alert.presses},
        )
        changes = [Change(alert, Step.PRESSED, feedback_to)]
        if alert.priority != before:
            detail = {"from": before, "to": alert.priority}
            self._step(db, alert.id, Step.PRIORITY, event.gateway_id, detail)
            changes.append(Change(alert, Step.PRIORITY))
        return changes

    def _handled_locally(self, db: sqlite3.Connection, event: StoredEvent) -> list[Change]:
        data = event.data
        alert = self._by_event(db, event.gateway_id, data.get("alert_id"),
                               data.get("gateway_alert_id"))
        if alert is None:
            log.warning("event %s: handled locally, but no alert here came of event %r",
                        event.seq, data.get("alert_id"))
            return []

        def text(key: str) -> str | None:
            value = data.get(key)
            return value[:500] if isinstance(value, str) else None

        detail = {"event": event.body.get("id"), "alert_event": text("alert_id"),
                  "name": text("by"), "at": text("at"), "note": text("note")}
        self._step(db, alert.id, Step.HANDLED_LOCALLY, f"gateway:{event.gateway_id}", detail)
        return [Change(alert, Step.HANDLED_LOCALLY)]

    def _by_event(
        self, db: sqlite3.Connection, gateway_id: str, event_id: Any, gateway_alert_id: Any
    ) -> Alert | None:
        """The alert that a gateway's event raised or joined (its steps name the event), or
        else the one that holds the gateway's id for the emergency."""
        if isinstance(event_id, str) and event_id:
            row = db.execute(
                "SELECT alert FROM alert_steps WHERE step IN (?, ?)"
                " AND json_extract(detail, '$.event') = ? ORDER BY seq DESC LIMIT 1",
                (Step.RAISED, Step.PRESSED, event_id),
            ).fetchone()
            if row is not None:
                return self._get(db, row[0])
        if isinstance(gateway_alert_id, str) and gateway_alert_id:
            row = db.execute(
                f"{SELECT} WHERE gateway_id = ? AND gateway_alert_id = ?"
                " ORDER BY raised_at DESC LIMIT 1",
                (gateway_id, gateway_alert_id),
            ).fetchone()
            if row is not None:
                return from_row(row)
        return None

    # -- people act --------------------------------------------------------------------------

    def acknowledge(self, alert_id: str, who: str, name: str) -> Change | None:
        """None when nothing changed (already acknowledged); LifecycleError when resolved."""
        with self._db.transaction() as db:
            alert = self._get(db, alert_id)
            if alert is None or alert.state == AlertState.ACKNOWLEDGED:
                return None
            if alert.state == AlertState.RESOLVED:
                raise LifecycleError("the alert is already resolved")
            alert.state = AlertState.ACKNOWLEDGED
            alert.acknowledged_at = self.clock()
            alert.acknowledged_by = name
            alert.next_escalation_at = None
            save(db, alert)
            self._step(db, alert.id, Step.ACKNOWLEDGED, who, {"name": name})
            feedback_to = None
            if alert.policy.feedback and alert.device_id and alert.gateway_alert_id:
                feedback_to = self._feedback(db, alert, AlertState.ACKNOWLEDGED, name)
        return Change(alert, Step.ACKNOWLEDGED, feedback_to)

    def resolve(self, alert_id: str, who: str, name: str) -> Change | None:
        """None when already resolved."""
        with self._db.transaction() as db:
            alert = self._get(db, alert_id)
            if alert is None or alert.state == AlertState.RESOLVED:
                return None
            return self._resolve(db, alert, who, name, None)

    def _resolve(
        self,
        db: sqlite3.Connection,
        alert: Alert,
        who: str,
        name: str | None,
        by_event: str | None,
    ) -> Change:
        alert.state = AlertState.RESOLVED
        alert.resolved_at = self.clock()
        alert.resolved_by = name or who
        alert.next_escalation_at = None
        save(db, alert)
        self._step(db, alert.id, Step.RESOLVED, who, {"name": name, "event": by_event})
        feedback_to = None
        if alert.policy.feedback and alert.device_id and alert.gateway_alert_id:
            feedback_to = self._feedback(db, alert, AlertState.RESOLVED, alert.resolved_by)
        return Change(alert, Step.RESOLVED, feedback_to)

    def _feedback(
        self, db: sqlite3.Connection, alert: Alert, state: AlertState, by: str | None
    ) -> str:
        assert alert.device_id and alert.gateway_alert_id
        command = feedback_command(alert.device_id, alert.gateway_alert_id, state, by)
        enqueue(db, alert.gateway_id, command)
        detail = {"state": state, "command": command["id"]}
        self._step(db, alert.id, Step.FEEDBACK, alert.gateway_id, detail)
        return alert.gateway_id

    # -- the engine reports ------------------------------------------------------------------

    def escalate(self, alert_id: str) -> Alert | None:
        """Count one escalation of an alert nobody has acknowledged, once its time has come by
        the book's clock; None when nothing changed: acknowledged or resolved, escalated
        enough, or not due yet (`next_escalation_at` then says when to ask again)."""
        settings = self._settings
        with self._db.transaction() as db:
            alert = self._get(db, alert_id)
            now = self.clock()
            if alert is None or not alert.escalation_due(now):
                return None
            if alert.escalations >= settings.max_escalations:
                alert.next_escalation_at = None
                save(db, alert)
                return None
            alert.escalations += 1
            last = alert.escalations >= settings.max_escalations
            alert.next_escalation_at = None if last else now + settings.escalate_after
            save(db, alert)
            self._step(db, alert.id, Step.ESCALATED, None, {"escalation": alert.escalations})
        return alert

    def paged(self, alert_id: str, targets: list[str], escalation: int, webhooks: int) -> None:
        detail = {"targets": targets, "escalation": escalation, "webhooks": webhooks}
        with self._db.transaction() as db:
            self._step(db, alert_id, Step.PAGED, None, detail)

    def notified(self, alert_id: str, who: str, detail: dict[str, Any]) -> Change | None:
        """Someone was reached (a webhook took the message); a Change on the first time."""
        with self._db.transaction() as db:
            self._step(db, alert_id, Step.NOTIFIED, who, detail)
            return self._first_reach(db, alert_id)

    def pushed(self, alert_id: str, account: str) -> Change | None:
        """The alert reached a butler's open console for the first time."""
        with self._db.transaction() as db:
            updated = db.execute(
                "UPDATE alerts SET pushed_at = ? WHERE id = ? AND pushed_at IS NULL",
                (self.clock(), alert_id),
            ).rowcount
            if not updated:
                return None
            self._step(db, alert_id, Step.PUSHED, account, {"channel": "console"})
            return self._first_reach(db, alert_id)

    def _first_reach(self, db: sqlite3.Connection, alert_id: str) -> Change | None:
        alert = self._get(db, alert_id)
        if alert is None or alert.notified_at is not None:
            return None
        alert.notified_at = self.clock()
        if alert.state == AlertState.RAISED:
            alert.state = AlertState.NOTIFIED
        save(db, alert)
        return Change(alert, Step.NOTIFIED)

    # -- reading -----------------------------------------------------------------------------

    def _get(self, db: sqlite3.Connection, alert_id: str) -> Alert | None:
        row = db.execute(f"{SELECT} WHERE id = ?", (alert_id,)).fetchone()
        return from_row(row) if row else None

    def get(self, alert_id: str) -> Alert | None:
        rows = self._db.rows(f"{SELECT} WHERE id = ?", (alert_id,))
        return from_row(rows[0]) if rows else None

    def escalating(self) -> list[Alert]:
        rows = self._db.rows(f"{SELECT} WHERE next_escalation_at IS NOT NULL")
        return [from_row(row) for row in rows]

    def listing(
        self,
        *,
        buildings: frozenset[str] | None,
        which: Listing,
        limit: int,
        device_id: str | None = None,
    ) -> list[Alert]:
        """Alerts newest first; `buildings` None means every building and none."""
        query, params = SELECT + " WHERE 1", []
        if device_id is not None:
            query += " AND device_id = ?"
            params.append(device_id)
        if buildings is not None:
            query += f" AND building IN ({', '.join('?' for _ in buildings)})"
            params.extend(sorted(buildings))
        if which != Listing.ALL:
            open_only = which == Listing.OPEN
            query += " AND open_key IS NOT NULL" if open_only else " AND open_key IS NULL"
        query += " ORDER BY COALESCE(resolved_at, raised_at) DESC LIMIT ?"
        params.append(limit)
        return [from_row(row) for row in self._db.rows(query, params)]

    def steps(self, alert_id: str) -> list[dict[str, Any]]:
        rows = self._db.rows(
            "SELECT step, who, at, detail FROM alert_steps WHERE alert = ? ORDER BY seq",
            (alert_id,),
        )
        return [
            {"step": step, "who": who, "at": at, "detail": json.loads(detail)}
            for step, who, at, detail in rows
        ]
