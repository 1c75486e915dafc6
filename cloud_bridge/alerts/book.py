"""Alert lifecycle, GoAlert-like: raised → notified → acknowledged → resolved, and for a help
call arrived (the butler's scan of the household's door code) between the last two.

One open alert per gateway, button and category (an alert belongs to the gateway that raised
it: no other gateway's device event joins, moves or closes it; a signed household code names a
door, not a device, so its scan counts through any gateway): a press for a button whose help alert
is open adds to its press count (and can raise its priority) instead of paging anyone again.
Every step is a row of `alert_steps` (alert, step, who, when, detail).

The book reads the event log in order and keeps its cursor in the same transaction as the
alert changes, so an event stored just before a crash still raises its alert on restart, and
a duplicate event (never stored twice) never counts twice. Everything here is synchronous
SQLite work; `dispatch.AlertEngine` runs it off the event loop and acts on what it returns.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any, Literal

from cloud_bridge.alerts.clock import SYSTEM_CLOCK, Clock
from cloud_bridge.alerts.states import (
    OPEN_STATES,
    UNACKNOWLEDGED,
    AlertState,
    Listing,
    Page,
    Step,
)
from cloud_bridge.commands.queue import enqueue, feedback_command
from cloud_bridge.config import AlertsSection
from cloud_bridge.receiver.store import Connection, Database
from cloud_bridge.visits.facts import REMINDER_SOURCE, reminder_subject, visited_household

log = logging.getLogger(__name__)

PRIORITIES = ("low", "normal", "high", "critical")

# Who is paged for an alert (see routing.ladder): "butlers" is the building's escalation ladder,
# "building" its primary butler alone, quietly; "inspection" the street office; "gateway" the
# duty contact, then the butlers of the buildings behind the gateway.
Route = Literal["butlers", "building", "inspection", "gateway"]
# What a person makes of an alert, each kind its own section of the console: a call for help,
# a device or gateway fault, a visit reminder, a stall matter (the duty room's alone).
Kind = Literal["call", "fault", "visit", "stall"]
# Why a person resolved an alert (the console's one tap); "other" is said in the note.
Reason = Literal["arrived", "mistaken", "phoned", "other"]


@dataclass(frozen=True)
class Policy:
    category: str  # the dedup class: one open alert per (device, category)
    route: Route
    escalates: bool
    feedback: bool  # the button's LED follows this alert (acknowledged, resolved)
    kind: Kind
    # One open alert per gateway and category, whatever the device (a gateway gone silent);
    # otherwise one per gateway, device and category, and none for a device-less event.
    per_gateway: bool = False
    # Someone is to come to the door: once acknowledged, the resident's household code is to
    # be scanned there within `alerts.arrive_within`, or the alert escalates again.
    arrival: bool = False


HELP = Policy("help", "butlers", escalates=True, feedback=True, kind="call", arrival=True)

# Which events raise or join alerts. Events of any other type are only kept in the log.
POLICIES: dict[str, Policy] = {
    "button.press": HELP,
    "button.repeat": HELP,
    # A registered button's press counter jumped: a press may have been lost, so someone
    # calls the resident, and it climbs the ladder until someone does.
    "button.gap": Policy("gap", "butlers", escalates=True, feedback=False, kind="call"),
    "button.offline": Policy("offline", "building", escalates=False, feedback=False, kind="fault"),
    "button.battery_low": Policy(
        "battery", "building", escalates=False, feedback=False, kind="fault"
    ),
    # The stall rules (issue 4) live at the gateway; a violation they find goes to the street
    # office's inspection contact, never to the butlers, and does not escalate.
    "stall.violation": Policy("stall", "inspection", escalates=False, feedback=False, kind="stall"),
    # Raised by the central itself (cloud_bridge/visits/watch.py): a quiet reminder to the butler.
    "visit.overdue": Policy("visit", "building", escalates=False, feedback=False, kind="visit"),
    # The gateway itself is in trouble (a damaged outbox set aside, a Zigbee2MQTT setting that
    # hides presses): no building is behind it, so the ladder is the duty contact.
    "gateway.outbox_replaced": Policy(
        "gateway", "building", escalates=False, feedback=False, kind="fault"
    ),
    "gateway.misconfigured": Policy(
        "gateway", "building", escalates=False, feedback=False, kind="fault"
    ),
}
# Raised by the central itself, never from an event (cloud_bridge/alerts/supervision.py): a
# gateway not heard for `central.silent_after` seconds, so every button behind it is mute.
SILENT = Policy("silent", "gateway", escalates=True, feedback=False, kind="fault",
                per_gateway=True)
BY_CATEGORY = {policy.category: policy for policy in (*POLICIES.values(), SILENT)}
# Events that close the open alert of a category for the same gateway and device.
CLOSERS = {"button.online": "offline"}
# A gateway's duty room handled an alert on the LAN page while the central was away (a log
# event: data.alert_id is the id of the alert's event; data.gateway_alert_id, when the alert
# was a press, the gateway's id for the emergency). A step in the alert's history, no more.
HANDLED_LOCALLY = "alert.handled_locally"
# A household's code accepted at a gateway (edge/transform/scans.py): the butler is at that
# door, so the household's acknowledged help call has someone there (`_checked_in`).
CHECKIN = "visit.checkin"
# It also closes the household's overdue-visit reminder (`_visited`), with a step saying who
# visited. The reminder is the central's own (REMINDER_SOURCE, the household as its device),
# not a gateway's: the butler stood at that door whichever gateway the scanner reached the
# central through, so a check-in through any gateway of the community closes it.
HANDLED = (*POLICIES, *CLOSERS, HANDLED_LOCALLY, CHECKIN)

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
    -- alert per category and subject (`open_key`).
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

# Step 2: why a person resolved an alert; history pages newest raised first.
RESOLUTIONS = """
ALTER TABLE alerts ADD COLUMN resolve_reason TEXT;
ALTER TABLE alerts ADD COLUMN resolve_note TEXT;
CREATE INDEX IF NOT EXISTS alerts_by_raise ON alerts (raised_at, id);
"""

# Step 3: an alert belongs to its gateway: the open key names the gateway beside the device, so
# an event of another gateway for the same device never joins, moves or closes it; a gateway's
# latest alert of a category is found by the index.
OPEN_KEY_BY_GATEWAY = """
UPDATE alerts SET open_key = category || ':' || gateway_id || ':' || COALESCE(device_id, id)
WHERE open_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS alerts_by_gateway ON alerts (gateway_id, category, raised_at);
"""

# Step 4: when, and by whom, the butler was at the door (the `arrived` step is the record;
# these let a list show it without reading every alert's steps).
ARRIVALS = """
ALTER TABLE alerts ADD COLUMN on_site_at REAL;
ALTER TABLE alerts ADD COLUMN on_site_by TEXT;
"""

FEED_CHUNK = 500
# Who the central's own steps are by (a silent gateway's alert raised and closed).
SYSTEM = "system"


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
    resolve_reason: Reason | None = None  # None: closed by an event (the button came back)
    resolve_note: str | None = None
    on_site_at: float | None = None  # the butler's arrival at the door (not `arrived_at`)
    on_site_by: str | None = None

    @property
    def policy(self) -> Policy:
        return BY_CATEGORY[self.category]

    @property
    def kind(self) -> Kind:
        return self.policy.kind

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def buildings(self) -> frozenset[str]:
        """The buildings the alert is about: its own, or those behind a silent gateway."""
        if self.building is not None:
            return frozenset({self.building})
        named = self.data.get("buildings")
        if not isinstance(named, list):
            return frozenset()
        return frozenset(b["id"] for b in named if isinstance(b, dict) and "id" in b)

    @property
    def household(self) -> str | None:
        """The household whose code proves an arrival, for an alert someone is to come to."""
        resident = self.data.get("resident")
        household = resident.get("household") if isinstance(resident, dict) else None
        return household if self.policy.arrival and isinstance(household, str) else None

    @property
    def escalating(self) -> bool:
        """An escalation is to come: nobody has acknowledged the alert, or nobody has arrived
        since (`next_escalation_at` is set only while one of those is awaited)."""
        awaited = self.state in UNACKNOWLEDGED or self.state == AlertState.ACKNOWLEDGED
        return awaited and self.next_escalation_at is not None

    def escalation_due(self, now: float) -> bool:
        """An escalation is to come, and its time (`next_escalation_at`) is `now` or past."""
        return self.escalating and now >= (self.next_escalation_at or 0.0)

    def latencies(self) -> dict[str, float | None]:
        """Seconds from the press reaching the gateway to each later step."""

        def since_raise(moment: float | None) -> float | None:
            return None if moment is None else round(moment - self.raised_at, 4)

        return {
            "central": since_raise(self.arrived_at),
            "notified": since_raise(self.notified_at),
            "console": since_raise(self.pushed_at),
            "acknowledged": since_raise(self.acknowledged_at),
            "on_site": since_raise(self.on_site_at),
            "resolved": since_raise(self.resolved_at),
        }

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind, "latency": self.latencies()}


COLUMNS = [field.name for field in fields(Alert)]
SELECT = f"SELECT {', '.join(COLUMNS)} FROM alerts"


def from_row(row: tuple) -> Alert:
    values = dict(zip(COLUMNS, row, strict=True))
    values["data"] = json.loads(values["data"])
    values["state"] = AlertState(values["state"])
    return Alert(**values)


def categories_of(kinds: frozenset[str]) -> frozenset[str]:
    return frozenset(policy.category for policy in BY_CATEGORY.values() if policy.kind in kinds)


@dataclass(frozen=True)
class Search:
    """What a person looks for in the alerts (the console's history); None: no condition."""

    categories: frozenset[str] | None = None
    building: str | None = None
    text: str | None = None  # in the resident's name or room, or the device id; ASCII any case
    raised_from: float | None = None  # raised in [raised_from, raised_until)
    raised_until: float | None = None


# A raise, a raised priority and an escalation each owe a page of the escalation ladder. It is
# owed in the step's own transaction and paid in another (`pay_pages`: routed, rendered, queued
# for the robots), so that a process that dies between the two leaves it owed for any other.
PAGING_STEPS = frozenset({Step.RAISED, Step.PRIORITY, Step.ESCALATED})
PAGES_OWED = """
CREATE TABLE IF NOT EXISTS pages_owed (step INTEGER PRIMARY KEY, alert TEXT NOT NULL);
"""

MIGRATIONS = [SCHEMA, RESOLUTIONS, OPEN_KEY_BY_GATEWAY, ARRIVALS, PAGES_OWED]

# Where `Search.text` looks: one string, the fields apart by a separator nobody types (the
# unit separator, written into the literal: the engines name the function that makes it apart).
HAYSTACK = (
    "lower(COALESCE(json_extract(data, '$.resident.name'), '') || '\x1f'"
    " || COALESCE(json_extract(data, '$.resident.room'), json_extract(data, '$.room'), '')"
    " || '\x1f' || COALESCE(device_id, ''))"
)


@dataclass(frozen=True)
class Change:
    """What a book operation did, for the engine to act on (publish, page, wake gateways)."""

    alert: Alert
    step: Step
    feedback_to: str | None = None  # a gateway for which a feedback command was queued


def arrived_words(name: str | None) -> str:
    """What the button hears of an arrival: `acknowledged` again, `by` saying who is there
    (a display shows it; the LED and the indicators stay as acknowledged)."""
    return f"{name} · 已到达" if name else "管家已到"


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


def in_list(values: Collection[Any]) -> str:
    """The placeholders of `IN (...)` for these values; for none, NULL, which nothing equals
    (SQLite takes an empty `IN ()`, PostgreSQL does not)."""
    return ", ".join("?" for _ in values) or "NULL"


def add_step(
    db: Connection,
    at: float,
    alert_id: str,
    step: Step,
    who: str | None,
    detail: dict | None = None,
) -> None:
    (seq,) = db.execute(
        "INSERT INTO alert_steps (alert, step, who, at, detail) VALUES (?, ?, ?, ?, ?)"
        " RETURNING seq",
        (alert_id, step, who, at, json.dumps(detail or {}, ensure_ascii=False)),
    ).fetchone()
    if step in PAGING_STEPS:
        db.execute("INSERT INTO pages_owed (step, alert) VALUES (?, ?)", (seq, alert_id))


@dataclass(frozen=True)
class OwedPage:
    """A page of the escalation ladder a step calls for: its rung and its words."""

    alert: Alert
    escalation: int
    page: Page


def owed_page(alert: Alert, step: str, detail: dict[str, Any]) -> OwedPage | None:
    if step == Step.RAISED:
        return OwedPage(alert, 0, Page.RAISED)
    if step == Step.PRIORITY:  # a raised priority pages again only who has not answered
        unanswered = alert.state in UNACKNOWLEDGED
        return OwedPage(alert, alert.escalations, Page.PRIORITY) if unanswered else None
    why = Page.NO_ARRIVAL if detail.get("why") == "no_arrival" else Page.ESCALATED
    return OwedPage(alert, int(detail["escalation"]), why)


# Pays a page inside the transaction that records it: the targets paged and how many robots'
# messages were queued (in that transaction too).
PagePayer = Callable[[Connection, OwedPage], tuple[list[str], int]]


def save(db: Connection, alert: Alert) -> None:
    values = asdict(alert)
    values["data"] = json.dumps(alert.data, ensure_ascii=False)
    values["open_key"] = open_key(alert) if alert.is_open else None
    names = [*COLUMNS, "open_key"]
    db.execute(
        f"INSERT INTO alerts ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
        " ON CONFLICT (id) DO UPDATE SET "
        + ", ".join(f"{name} = excluded.{name}" for name in names if name != "id"),
        [values[name] for name in names],
    )


def open_key(alert: Alert) -> str:
    """The alert's place among the open ones (as OPEN_KEY_BY_GATEWAY writes it)."""
    if alert.policy.per_gateway:
        subject = ""
    else:
        subject = subject_of(alert.category, alert.device_id, alert.data) or alert.id
    return key(alert.category, alert.gateway_id, subject)


def subject_of(category: str, device_id: str | None, data: dict[str, Any]) -> str | None:
    """What one open alert of a category is about: the device, and for a stall violation the
    stall too, so that a second stall caught at the same scanner is its own alert (and its
    own message to the street office), not a join."""
    if device_id is None or category != "stall":
        return device_id
    stall = data.get("subject")
    stall_id = stall.get("id") if isinstance(stall, dict) else None
    return f"{device_id}/{stall_id}" if isinstance(stall_id, str) else device_id


def key(category: str, gateway_id: str, subject: str) -> str:
    # Gateway ids are [A-Za-z0-9._-] (edge/config.py): the first two colons split it exactly.
    return f"{category}:{gateway_id}:{subject}"


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
        db.migrate("alerts", MIGRATIONS)

    def _step(
        self,
        db: Connection,
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
            db.execute("INSERT INTO alert_feed (id, seq) VALUES (1, ?)"
                       " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq", (cursor,))
        return len(rows), changes

    def _apply(self, db: Connection, event: StoredEvent) -> list[Change]:
        event_type = event.body["type"]
        if event_type == HANDLED_LOCALLY:
            return self._handled_locally(db, event)
        if event_type == CHECKIN:
            return self._checked_in(db, event) + self._visited(db, event)
        if event_type in CLOSERS:
            alert = self._open(db, CLOSERS[event_type], event.gateway_id,
                               event.body.get("device_id"))
            if alert is None:
                return []
            return [self._resolve(db, alert, f"gateway:{event.gateway_id}", None, event_type)]
        policy = POLICIES[event_type]
        alert = self._open(db, policy.category, event.gateway_id,
                           subject_of(policy.category, event.body.get("device_id"), event.data))
        if alert is None:
            return [self._raise(db, event, policy)]
        return self._join(db, alert, event)

    def _open(
        self, db: Connection, category: str, gateway_id: str, subject: str | None
    ) -> Alert | None:
        """The gateway's open alert of a category for a device (subject "" for one per
        gateway); None for no subject, as a device-less event never joins one."""
        if subject is None:
            return None
        row = db.execute(
            f"{SELECT} WHERE open_key = ?", (key(category, gateway_id, subject),)
        ).fetchone()
        return from_row(row) if row else None

    def _raise(self, db: Connection, event: StoredEvent, policy: Policy) -> Change:
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

    def _join(self, db: Connection, alert: Alert, event: StoredEvent) -> list[Change]:
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
            elif alert.state == AlertState.ARRIVED and alert.policy.feedback and alert.device_id:
                feedback_to = self._feedback(
                    db, alert, AlertState.ACKNOWLEDGED, arrived_words(alert.on_site_by)
                )
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

    def _handled_locally(self, db: Connection, event: StoredEvent) -> list[Change]:
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

    def _checked_in(self, db: Connection, event: StoredEvent) -> list[Change]:
        """A household's code accepted by a scanner: the acknowledged help calls of that
        household have their butler at the door. Whichever gateway the scanner reached us
        through (the signed code, verified there, names the door; the gateway does not), as
        for the overdue visit it closes. Another household's code, or a call not acknowledged
        yet, gets nothing (the scan stays a visit in the log)."""
        household = visited_household(event.data)
        if household is None:
            return []
        categories = sorted(p.category for p in BY_CATEGORY.values() if p.arrival)
        at = moment(event.body.get("received_at"), event.arrived)
        # A scan from before the press (a visit held back by an outage) proves nothing.
        rows = db.execute(
            f"{SELECT} WHERE state = ? AND open_key IS NOT NULL"
            f" AND category IN ({', '.join('?' for _ in categories)})"
            " AND json_extract(data, '$.resident.household') = ? AND raised_at <= ?",
            (AlertState.ACKNOWLEDGED, *categories, household, at),
        ).fetchall()
        scanner = event.body.get("device_id")
        changes = []
        for alert in map(from_row, rows):
            detail = {"via": "scanner", "scanner": scanner, "gateway": event.gateway_id,
                      "name": alert.acknowledged_by, "household": household,
                      "event": event.body.get("id")}
            changes.append(self._arrived(db, alert, at, f"scanner:{scanner}",
                                         alert.acknowledged_by, detail))
        return changes

    def _visited(self, db: Connection, event: StoredEvent) -> list[Change]:
        household = visited_household(event.data)
        category = POLICIES["visit.overdue"].category
        alert = household and self._open(db, category, REMINDER_SOURCE, reminder_subject(household))
        if not alert:
            return []
        scanner = event.body.get("device_id")
        who = f"gateway:{event.gateway_id}"
        detail = {"note": "探访已登记", "event": event.body.get("id"), "scanner": scanner,
                  "gateway": event.gateway_id, "visited_at": event.body.get("occurred_at")}
        self._step(db, alert.id, Step.NOTE, who, detail)
        name = scanner if isinstance(scanner, str) else None
        return [self._resolve(db, alert, who, name, CHECKIN, reason="arrived")]

    def _by_event(
        self, db: Connection, gateway_id: str, event_id: Any, gateway_alert_id: Any
    ) -> Alert | None:
        """The gateway's alert that its event raised or joined (its steps name the event), or
        else the one that holds the gateway's id for the emergency. Never another gateway's."""
        if isinstance(event_id, str) and event_id:
            row = db.execute(
                "SELECT alert FROM alert_steps WHERE step IN (?, ?)"
                " AND json_extract(detail, '$.event') = ?"
                " AND alert IN (SELECT id FROM alerts WHERE gateway_id = ?)"
                " ORDER BY seq DESC LIMIT 1",
                (Step.RAISED, Step.PRESSED, event_id, gateway_id),
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

    # -- the central's own alerts about a gateway (cloud_bridge/alerts/supervision.py) -------

    def raise_for_gateway(
        self, policy: Policy, event_type: str, priority: str, gateway_id: str,
        data: dict[str, Any],
    ) -> Change | None:
        """Raise a per-gateway alert the central itself decided on; None when the gateway
        already has one of the policy's category open."""
        with self._db.transaction() as db:
            if self._open(db, policy.category, gateway_id, "") is not None:
                return None
            now = self.clock()
            alert = Alert(
                id=uuid.uuid4().hex, gateway_id=gateway_id, device_id=None, type=event_type,
                category=policy.category, priority=priority, state=AlertState.RAISED,
                building=None, presses=0, escalations=0, gateway_alert_id=None, data=data,
                raised_at=now, arrived_at=now,
                next_escalation_at=now + self._settings.escalate_after if policy.escalates
                else None,
            )
            save(db, alert)
            self._step(db, alert.id, Step.RAISED, SYSTEM, {"type": event_type,
                                                          "priority": alert.priority})
        return Change(alert, Step.RAISED)

    def close_for_gateway(self, alert_id: str, note: str, detail: dict[str, Any]) -> Change | None:
        """Resolve such an alert by the system, a note saying why; None when already closed."""
        with self._db.transaction() as db:
            alert = self._get(db, alert_id)
            if alert is None or alert.state == AlertState.RESOLVED:
                return None
            self._step(db, alert.id, Step.NOTE, SYSTEM, {"note": note, **detail})
            return self._resolve(db, alert, SYSTEM, None, None, note=note)

    def latest_for_gateways(self, policy: Policy, gateway_ids: list[str]) -> dict[str, Alert]:
        """gateway id → its latest alert of the policy's category, open or resolved."""
        latest = {}
        for gateway_id in gateway_ids:
            rows = self._db.rows(
                f"{SELECT} WHERE gateway_id = ? AND category = ?"
                " ORDER BY raised_at DESC LIMIT 1", (gateway_id, policy.category),
            )
            latest.update((gateway_id, from_row(row)) for row in rows)
        return latest

    # -- people act --------------------------------------------------------------------------

    def acknowledge(self, alert_id: str, who: str, name: str) -> Change | None:
        """None when nothing changed (already acknowledged); LifecycleError when resolved."""
        with self._db.transaction() as db:
            alert = self._get(db, alert_id)
            if alert is None or alert.state in (AlertState.ACKNOWLEDGED, AlertState.ARRIVED):
                return None
            if alert.state == AlertState.RESOLVED:
                raise LifecycleError("the alert is already resolved")
            alert.state = AlertState.ACKNOWLEDGED
            alert.acknowledged_at = self.clock()
            alert.acknowledged_by = name
            alert.next_escalation_at = (
                alert.acknowledged_at + self._settings.arrive_within if alert.household else None
            )
            save(db, alert)
            self._step(db, alert.id, Step.ACKNOWLEDGED, who, {"name": name})
            feedback_to = None
            if alert.policy.feedback and alert.device_id and alert.gateway_alert_id:
                feedback_to = self._feedback(db, alert, AlertState.ACKNOWLEDGED, name)
        return Change(alert, Step.ACKNOWLEDGED, feedback_to)

    def arrive(self, alert_id: str, who: str, name: str, household: str) -> Change | None:
        """The butler scanned `household`'s code at the door in the console. None when already
        arrived; LifecycleError when the alert is not acknowledged, or not that household's."""
        with self._db.transaction() as db:
            alert = self._get(db, alert_id)
            if alert is None or alert.state == AlertState.ARRIVED:
                return None
            if alert.state != AlertState.ACKNOWLEDGED:
                raise LifecycleError("acknowledge the alert before scanning at the door")
            if alert.household != household:
                raise LifecycleError("not this alert's household code")
            detail = {"via": "console", "name": name, "household": household}
            return self._arrived(db, alert, self.clock(), who, name, detail)

    def _arrived(
        self, db: Connection, alert: Alert, at: float, who: str, name: str | None,
        detail: dict[str, Any],
    ) -> Change:
        alert.state = AlertState.ARRIVED
        alert.on_site_at, alert.on_site_by = at, name
        alert.next_escalation_at = None
        save(db, alert)
        add_step(db, at, alert.id, Step.ARRIVED, who, detail)
        feedback_to = None
        if alert.policy.feedback and alert.device_id and alert.gateway_alert_id:
            feedback_to = self._feedback(db, alert, AlertState.ACKNOWLEDGED, arrived_words(name))
        return Change(alert, Step.ARRIVED, feedback_to)

    def resolve(
        self, alert_id: str, who: str, name: str, reason: Reason, note: str | None = None
    ) -> Change | None:
        """None when already resolved."""
        with self._db.transaction() as db:
            alert = self._get(db, alert_id)
            if alert is None or alert.state == AlertState.RESOLVED:
                return None
            return self._resolve(db, alert, who, name, None, reason=reason, note=note)

    def _resolve(
        self,
        db: Connection,
        alert: Alert,
        who: str,
        name: str | None,
        by_event: str | None,
        *,
        reason: Reason | None = None,
        note: str | None = None,
    ) -> Change:
        alert.state = AlertState.RESOLVED
        alert.resolved_at = self.clock()
        alert.resolved_by = name or who
        alert.resolve_reason, alert.resolve_note = reason, note
        alert.next_escalation_at = None
        save(db, alert)
        detail = {"name": name, "event": by_event, "reason": reason, "note": note}
        self._step(db, alert.id, Step.RESOLVED, who, detail)
        feedback_to = None
        if alert.policy.feedback and alert.device_id and alert.gateway_alert_id:
            feedback_to = self._feedback(db, alert, AlertState.RESOLVED, alert.resolved_by)
        return Change(alert, Step.RESOLVED, feedback_to)

    def _feedback(
        self, db: Connection, alert: Alert, state: AlertState, by: str | None
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
            if alert.state == AlertState.ACKNOWLEDGED:
                return self._no_arrival(db, alert, now)
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

    def _no_arrival(self, db: Connection, alert: Alert, now: float) -> Alert:
        """Acknowledged, and nobody at the door within `arrive_within`: unacknowledged again,
        so it climbs the ladder as before (always this once, even past `max_escalations`: the
        resident is still waiting) and anyone on it may take it."""
        settings = self._settings
        who = alert.acknowledged_by
        alert.state = AlertState.NOTIFIED if alert.notified_at is not None else AlertState.RAISED
        alert.acknowledged_at = alert.acknowledged_by = None
        alert.escalations += 1
        last = alert.escalations >= settings.max_escalations
        alert.next_escalation_at = None if last else now + settings.escalate_after
        save(db, alert)
        detail = {"escalation": alert.escalations, "why": "no_arrival", "acknowledged_by": who,
                  "arrive_within": settings.arrive_within}
        self._step(db, alert.id, Step.ESCALATED, None, detail)
        return alert

    @property
    def shared(self) -> bool:
        """Other central processes may write the same book."""
        return self._db.shared

    def pay_pages(self, pay: PagePayer, limit: int = 100) -> int:
        """Pay the oldest pages owed, each with `pay` and a `paged` step, in one transaction:
        whichever process comes first pays a page, once; one killed before it commits leaves
        it owed for the next. How many were paid."""
        if not self._db.rows("SELECT 1 FROM pages_owed LIMIT 1"):  # a look without the lock
            return 0
        with self._db.transaction() as db:
            owed = db.execute(
                "SELECT o.step, s.step, s.detail, o.alert FROM pages_owed o"
                " JOIN alert_steps s ON s.seq = o.step ORDER BY o.step LIMIT ?", (limit,)
            ).fetchall()
            for seq, step, detail, alert_id in owed:
                db.execute("DELETE FROM pages_owed WHERE step = ?", (seq,))
                alert = self._get(db, alert_id)
                page = owed_page(alert, step, json.loads(detail)) if alert is not None else None
                if page is None:
                    continue
                targets, webhooks = pay(db, page)
                # The count tells an operator when a target has no webhook (only the console).
                self._step(db, alert_id, Step.PAGED, None, {
                    "targets": targets, "escalation": page.escalation, "webhooks": webhooks})
        return len(owed)

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

    def _first_reach(self, db: Connection, alert_id: str) -> Change | None:
        alert = self._get(db, alert_id)
        if alert is None or alert.notified_at is not None:
            return None
        alert.notified_at = self.clock()
        if alert.state == AlertState.RAISED:
            alert.state = AlertState.NOTIFIED
        save(db, alert)
        return Change(alert, Step.NOTIFIED)

    # -- reading -----------------------------------------------------------------------------

    def _get(self, db: Connection, alert_id: str) -> Alert | None:
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
        search: Search = Search(),
        before: tuple[float, str] | None = None,
    ) -> list[Alert]:
        """Alerts newest raised first (ties by id, so that a page ends where the next one
        starts: `before` is the (raised_at, id) of the last alert of the page before);
        `buildings` None means every building and none."""
        query, params = SELECT + " WHERE 1 = 1", []

        def where(condition: str, *values: Any) -> None:
            nonlocal query
            query += f" AND {condition}"
            params.extend(values)

        def within(column: str, values: frozenset[str]) -> None:
            where(f"{column} IN ({in_list(values)})", *sorted(values))

        if device_id is not None:
            where("device_id = ?", device_id)
        if buildings is not None:
            # A gateway's alert has no building of its own; it names those behind it.
            marks = in_list(buildings)
            where(
                f"(building IN ({marks}) OR (building IS NULL AND EXISTS (SELECT 1 FROM"
                " json_each(data, '$.buildings')"
                f" WHERE json_extract(value, '$.id') IN ({marks}))))",
                *sorted(buildings),
                *sorted(buildings),
            )
        if search.categories is not None:
            within("category", search.categories)
        if search.building is not None:
            where("building = ?", search.building)
        if search.text:
            where(f"instr({HAYSTACK}, lower(?)) > 0", search.text)
        if search.raised_from is not None:
            where("raised_at >= ?", search.raised_from)
        if search.raised_until is not None:
            where("raised_at < ?", search.raised_until)
        if before is not None:
            where("(raised_at < ? OR (raised_at = ? AND id < ?))", before[0], *before)
        if which != Listing.ALL:
            where("open_key IS NOT NULL" if which == Listing.OPEN else "open_key IS NULL")
        query += " ORDER BY raised_at DESC, id DESC LIMIT ?"
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
