"""A month's figures from the central's database: queries in, dataclasses out.

A month is a calendar month in the community's time zone. A call is an alert of kind "call"
raised in the month (a press, or a press counter gap); a drill is such an alert whose data says
`drill: true` (cloud_bridge/drills), counted apart so that practice never flatters or spoils
the real figures. Times are from the press reaching the gateway (`raised_at`) to the
acknowledgement, and to the first "arrived" step of the alert, read by name from its steps
(the butler's scan at the door), so the report has no part in how that step is written.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from cloud_bridge.alerts.book import categories_of, moment
from cloud_bridge.receiver.store import Database
from mashang.registry import Registry

ARRIVED = "arrived"  # the alert step of the butler's arrival at the door
OFFLINE = "offline"  # the category of a button gone silent
VISIT = "visit"
STALL_EVENT = "stall.violation"
CALLS = categories_of(frozenset({"call"}))
UNKNOWN_BUILDING = "未登记"
MONTH_PATTERN = re.compile(r"(\d{4})-(\d{2})", re.ASCII)


class ReportError(Exception):
    """What the report cannot be made of (a month it cannot read, a missing font)."""


@dataclass(frozen=True)
class Month:
    year: int
    month: int
    zone: ZoneInfo

    @classmethod
    def parse(cls, text: str, zone: ZoneInfo) -> Month:
        match = MONTH_PATTERN.fullmatch(text.strip())
        # 9999-12 would end in a year the calendar does not have.
        if match is None or not 1 <= int(match[2]) <= 12 or not 1970 <= int(match[1]) <= 9998:
            raise ReportError(f"month {text!r}: write it as YYYY-MM, e.g. 2026-11")
        return cls(int(match[1]), int(match[2]), zone)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def start(self) -> float:
        return datetime(self.year, self.month, 1, tzinfo=self.zone).timestamp()

    @property
    def end(self) -> float:
        year, month = (self.year + 1, 1) if self.month == 12 else (self.year, self.month + 1)
        return datetime(year, month, 1, tzinfo=self.zone).timestamp()


@dataclass(frozen=True)
class Call:
    building: str | None
    raised_at: float
    acknowledged_at: float | None
    arrived_at: float | None
    escalations: int
    drill: bool


@dataclass(frozen=True)
class Outage:
    building: str | None
    device_id: str
    seconds: float  # within the month


@dataclass(frozen=True)
class Response:
    """How a set of calls (or of drills) was answered; times in seconds, None for none."""

    count: int
    acknowledge_median: float | None
    acknowledge_worst: float | None
    arrival_median: float | None
    arrival_worst: float | None
    escalations: int
    unacknowledged: int

    @classmethod
    def of(cls, calls: list[Call]) -> Response:
        acknowledge = [c.acknowledged_at - c.raised_at for c in calls
                       if c.acknowledged_at is not None]
        arrival = [c.arrived_at - c.raised_at for c in calls if c.arrived_at is not None]
        return cls(
            count=len(calls),
            acknowledge_median=median(acknowledge),
            acknowledge_worst=max(acknowledge, default=None),
            arrival_median=median(arrival),
            arrival_worst=max(arrival, default=None),
            escalations=sum(c.escalations for c in calls),
            unacknowledged=len(calls) - len(acknowledge),
        )


@dataclass(frozen=True)
class Group:
    """One building, or one butler's buildings (those they are the primary butler of)."""

    id: str
    name: str
    buildings: list[str]
    calls: Response
    drills: Response
    offline_buttons: int
    offline_hours: float
    overdue_visits: int


@dataclass(frozen=True)
class ZoneViolations:
    zone: str
    name: str
    violations: int


@dataclass(frozen=True)
class Report:
    month: str
    time_zone: str
    generated_at: float
    buildings: list[Group]
    butlers: list[Group]
    stalls: list[ZoneViolations] | None  # None: not the viewer's to see (a butler)
    # False while no alert of the month has an arrival step (the column then reads "—").
    arrivals_recorded: bool = field(default=False)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass
class Records:
    """The month's rows, before they are summed per building or per butler."""

    calls: list[Call]
    outages: list[Outage]
    visits: Counter[str | None]
    violations: Counter[str]

    def group(self, group_id: str, name: str, buildings: Iterable[str | None]) -> Group:
        inside = set(buildings)
        calls = [c for c in self.calls if c.building in inside]
        outages = [o for o in self.outages if o.building in inside]
        return Group(
            id=group_id, name=name, buildings=sorted(b or UNKNOWN_BUILDING for b in inside),
            calls=Response.of([c for c in calls if not c.drill]),
            drills=Response.of([c for c in calls if c.drill]),
            offline_buttons=len({o.device_id for o in outages}),
            offline_hours=round(sum(o.seconds for o in outages) / 3600, 2),
            overdue_visits=sum(self.visits[b] for b in inside),
        )


def read(db: Database, month: Month, now: float) -> Records:
    start, end = month.start, month.end
    placeholders = ", ".join("?" for _ in CALLS)
    arrivals = dict(db.rows(
        "SELECT alert, MIN(at) FROM alert_steps WHERE step = ? AND alert IN"
        f" (SELECT id FROM alerts WHERE category IN ({placeholders})"
        " AND raised_at >= ? AND raised_at < ?) GROUP BY alert",
        (ARRIVED, *sorted(CALLS), start, end),
    ))
    calls = [
        Call(building, raised, acknowledged, arrivals.get(alert_id), escalations,
             bool(json.loads(data).get("drill")))
        for alert_id, building, raised, acknowledged, escalations, data in db.rows(
            "SELECT id, building, raised_at, acknowledged_at, escalations, data FROM alerts"
            f" WHERE category IN ({placeholders}) AND raised_at >= ? AND raised_at < ?",
            (*sorted(CALLS), start, end),
        )
    ]
    # An outage counts for the part of it inside the month; one still open runs until now.
    outages = [
        Outage(building, device_id or "",
               max(0.0, min(resolved if resolved is not None else now, end) - max(raised, start)))
        for building, device_id, raised, resolved in db.rows(
            "SELECT building, device_id, raised_at, resolved_at FROM alerts WHERE category = ?"
            " AND raised_at < ? AND (resolved_at IS NULL OR resolved_at > ?)",
            (OFFLINE, end, start),
        )
    ]
    visits = Counter(building for (building,) in db.rows(
        "SELECT building FROM alerts WHERE category = ? AND raised_at >= ? AND raised_at < ?",
        (VISIT, start, end),
    ))
    # Every violation found, not only the ones that raised an alert: further ones join the
    # scanner's open alert. Received in the month, so arrived at its start or later.
    violations: Counter[str] = Counter()
    for arrived, body in db.rows(
        "SELECT arrived, body FROM events WHERE type = ? AND arrived >= ?",
        (STALL_EVENT, start),
    ):
        event = json.loads(body)
        if start <= moment(event.get("received_at"), arrived) < end:
            data = event.get("data")
            violations[violation_zone(data if isinstance(data, dict) else {})] += 1
    return Records(calls, outages, visits, violations)


def violation_zone(data: dict[str, Any]) -> str:
    """Where the violation was found (the scanner's zone), else the zone the stall is for."""
    subject = data.get("subject") if isinstance(data.get("subject"), dict) else {}
    zone = subject.get("scanner_zone") or subject.get("zone")
    return zone if isinstance(zone, str) else ""


def gather(
    db: Database, registry: Registry, month: Month, *, now: float,
    buildings: frozenset[str] | None = None,
) -> Report:
    """The month's report; `buildings` None: the whole community (the duty room), else only
    these buildings, and no stall matters (a butler's view)."""
    records = read(db, month, now)
    names = {building.id: building.name for building in registry.buildings}
    seen = ({c.building for c in records.calls} | {o.building for o in records.outages}
            | set(records.visits))
    every: list[str | None] = [*names, *sorted(b for b in seen - set(names) if b is not None)]
    if None in seen:
        every.append(None)
    shown = [b for b in every if buildings is None or b in buildings]
    by_building = [
        records.group(b or UNKNOWN_BUILDING, names.get(b or "", b or UNKNOWN_BUILDING), [b])
        for b in shown
    ]
    primaries: defaultdict[str, list[str | None]] = defaultdict(list)
    for building in registry.buildings:
        if building.id in shown:
            primaries[building.primary_butler].append(building.id)
    by_butler = [
        records.group(butler_id, butler.name if butler else butler_id, owned)
        for butler_id, owned in primaries.items()
        for butler in [registry.butler(butler_id)]
    ]
    zones = {zone.id: zone.name for zone in registry.zones}
    stalls = None if buildings is not None else [
        ZoneViolations(zone or "—", zones.get(zone, zone or "—"), count)
        for zone, count in sorted(records.violations.items())
    ]
    return Report(
        month=month.label, time_zone=str(month.zone), generated_at=now,
        buildings=by_building, butlers=by_butler, stalls=stalls,
        arrivals_recorded=any(c.arrived_at is not None for c in records.calls),
    )
