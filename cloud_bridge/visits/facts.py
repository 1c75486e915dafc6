"""What a butler reads of a visit: who lives in a household, when it was last visited (a date in
the community's time zone) and how many days it is overdue, for the 待探访 card, the robot's
message and the monthly list alike, so that each says the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from cloud_bridge.localtime import local
from mashang.registry import Household, Registry

DAY = 86400.0
# The gateway id the central's own reminders are stored under: no gateway's, so that a check-in
# through any gateway of the community closes one (alerts/book.py `_visited`).
REMINDER_SOURCE = "central"


def reminder_subject(household_id: str) -> str:
    """A reminder's `device_id`: its subject is the household, not a device."""
    return f"household:{household_id}"


def visited_household(data: dict[str, Any]) -> str | None:
    """The household an accepted `visit.checkin` (edge/transform/scans.py) logs a visit of."""
    subject = data.get("subject")
    if data.get("result") != "accepted" or not isinstance(subject, dict):
        return None
    household = subject.get("id")
    if subject.get("kind") != "household" or not isinstance(household, str) or not household:
        return None
    return household


def resident_of(household: Household, registry: Registry) -> dict[str, Any]:
    """The household's resident as an alert's `data.resident` carries it (the registry names
    residents on their buttons); name and phone None when no button names the household."""
    button = next((b for b in registry.buttons if b.resident.household == household.id), None)
    resident = button.resident if button else None
    return {
        "name": resident.name if resident else None,
        "phone": resident.phone if resident else None,
        "household": household.id,
        "building": household.building,
        "room": household.room or (resident.room if resident else None),
    }


def visit_moment(occurred_at: Any, arrived: float) -> float:
    """When a visit was scanned: the gateway's time of it (a check-in may wait out an outage
    in the outbox), never later than it reached the central (a gateway's clock running fast
    must not make a household look visited ahead of time)."""
    try:
        return min(datetime.fromisoformat(occurred_at).timestamp(), arrived)
    except (TypeError, ValueError):
        return arrived


def building_name(household: Household, registry: Registry) -> str | None:
    building = registry.building(household.building) if household.building else None
    return building.name if building else None


def whole_days(seconds: float) -> int:
    return max(0, int(seconds // DAY))


def ago(days: int | None) -> str:
    return "今天" if not days else f"{days} 天前"


def day_of(moment: float | None, zone: ZoneInfo) -> str | None:
    """'2026-11-20', the community's date of a moment."""
    return local(moment, zone).date().isoformat() if moment is not None else None


@dataclass(frozen=True)
class Overdue:
    """A household's visit standing at a moment: the last visit (None: none on record since
    the central began watching it) and when the next visit was due."""

    last_visit_at: float | None
    due_at: float

    @classmethod
    def of(cls, data: dict[str, Any]) -> Overdue | None:
        """From a `visit.overdue` alert's data; None for a reminder of an older central."""
        due_at, last = data.get("due_at"), data.get("last_visit_at")
        if not isinstance(due_at, int | float) or isinstance(due_at, bool):
            return None
        if not isinstance(last, int | float) or isinstance(last, bool):
            last = None
        return cls(last, float(due_at))

    def days_overdue(self, now: float) -> int:
        return whole_days(now - self.due_at)

    def days_since_visit(self, now: float) -> int | None:
        return None if self.last_visit_at is None else whole_days(now - self.last_visit_at)

    def view(self, now: float, zone: ZoneInfo) -> dict[str, Any]:
        """The `visit` of the console's alert view."""
        return {
            "last_visit_at": self.last_visit_at,
            "last_visit_date": day_of(self.last_visit_at, zone),
            "days_since_visit": self.days_since_visit(now),
            "due_at": self.due_at,
            "days_overdue": self.days_overdue(now),
        }

    def words(self, now: float, last_visit_date: Any) -> list[str]:
        """The robot's lines, the last visit's date as the watch wrote it in the community's
        zone: '上次探访: 2026-11-20（11 天前）', '逾期: 4 天'."""
        since = self.days_since_visit(now)
        last = ("上次探访: 无记录" if self.last_visit_at is None
                else f"上次探访: {last_visit_date}（{ago(since)}）")
        days = self.days_overdue(now)
        return [last, f"逾期: {days} 天" if days else "逾期: 今天到期"]
