"""The monthly visit list, per butler: the residents living alone in the butler's buildings
(primary or backup, as the console shows them), each with the last visit up to the month's end
(or now, for the month under way), the visits in the month and the days since the last one.
Months and dates are the community's (`central.time_zone`); a visit is an accepted
`visit.checkin` of the household, at the moment it was scanned.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from cloud_bridge.alerts.routing import buildings_of
from cloud_bridge.receiver.store import Database
from cloud_bridge.report.figures import Month
from cloud_bridge.visits.facts import (
    ago,
    building_name,
    day_of,
    resident_of,
    visit_moment,
    visited_household,
    whole_days,
)
from mashang.registry import Household, Registry


@dataclass(frozen=True)
class Row:
    household: str
    resident: str | None
    building: str | None
    building_name: str | None
    room: str | None
    last_visit_at: float | None
    last_visit_date: str | None
    visits: int  # in the month
    days_since_visit: int | None  # to the month's end, or now; None: never visited


@dataclass(frozen=True)
class ButlerList:
    butler: str
    name: str
    households: list[Row]


def visits_by_household(db: Database, until: float) -> dict[str, list[float]]:
    """Household → the moments of its accepted visits before `until`."""
    found: dict[str, list[float]] = defaultdict(list)
    rows = db.rows(
        "SELECT arrived, json_extract(body, '$.occurred_at'), json_extract(body, '$.data')"
        " FROM events WHERE type = 'visit.checkin'"
    )
    for arrived, occurred, data in rows:
        household = visited_household(json.loads(data) if data else {})
        at = visit_moment(occurred, arrived)
        if household and at < until:
            found[household].append(at)
    return found


def month_lists(db: Database, registry: Registry, month: Month, now: float,
                butler: str | None) -> list[ButlerList]:
    """One list per butler of a building (`butler` None: every one, for the duty room)."""
    as_of = min(now, month.end)
    visits = visits_by_household(db, as_of)
    butlers = [b for b in registry.butlers if butler in (None, b.id)]
    lists = []
    for person in butlers:
        buildings = buildings_of(registry, person.id)
        if not buildings:
            continue
        rows = [
            row(household, registry, visits.get(household.id, []), month, as_of)
            for household in registry.households
            if household.elderly_living_alone and household.building in buildings
        ]
        rows.sort(key=lambda r: (-(r.days_since_visit if r.days_since_visit is not None
                                   else 1 << 30), r.building or "", r.room or ""))
        lists.append(ButlerList(person.id, person.name, rows))
    return lists


def row(household: Household, registry: Registry, visits: list[float], month: Month,
        as_of: float) -> Row:
    last = max(visits, default=None)
    return Row(
        household=household.id,
        resident=resident_of(household, registry)["name"],
        building=household.building,
        building_name=building_name(household, registry),
        room=household.room,
        last_visit_at=last,
        last_visit_date=day_of(last, month.zone),
        visits=sum(1 for at in visits if month.start <= at < month.end),
        days_since_visit=None if last is None else whole_days(as_of - last),
    )


def as_dict(month: Month, lists: list[ButlerList]) -> dict[str, Any]:
    return {"month": month.label, "butlers": [asdict(entry) for entry in lists]}


def lines(month: Month, lists: list[ButlerList]) -> list[str]:
    """The list as `mashang visits` prints it, one butler after another."""
    out = [f"探访 {month.label}"]
    for entry in lists:
        out.append(f"\n{entry.name} ({entry.butler}): {len(entry.households)} 户独居老人")
        for r in entry.households:
            last = (f"上次探访 {r.last_visit_date}（{ago(r.days_since_visit)}）"
                    if r.last_visit_date else "没有探访记录")
            where = " ".join(part for part in (r.building_name or r.building, r.room) if part)
            out.append(f"  {r.resident or r.household}  {where}  {last}  当月 {r.visits} 次")
    return out
