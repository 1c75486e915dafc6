"""What the street office reads about a stall matter, in Chinese: the stall by name and number,
zones by their display names, the reason of a violation. One source for the office's view and
the robots' messages (`cloud_bridge.notify.messages`).

A violation's facts come from its event (`edge/transform/scans.py` puts the stall, its zone
and the scanner's zone in `data.subject`); names are the central registry's when it knows the
stall or zone, else the gateway's copy at the time, else the id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mashang.registry import Registry

OFFICE_NAME = "街道办"
REASON_WORDS = {
    "wrong_zone": "不在登记的区域经营",
    "outside_hours": "不在经营时间内",
    "revoked": "经营许可已吊销",
    "denied": "经营许可已被禁用",
    "expired": "经营许可已过期",
    "forged": "疑似伪造",
}
PURPOSE_WORDS = {"checkin": "签到", "checkout": "签退", "inspect": "巡查"}


def office_name(registry: Registry) -> str:
    """How a street office account is named: the community's inspection contact."""
    contact = registry.community.inspection_contact
    return contact.name if contact else OFFICE_NAME


def zone_name(registry: Registry | None, zone_id: Any, fallback: Any = None) -> str | None:
    if not isinstance(zone_id, str) or not zone_id:
        return None
    zone = registry.zone(zone_id) if registry else None
    if zone is not None:
        return zone.name
    return fallback if isinstance(fallback, str) and fallback else zone_id


def text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class StallFacts:
    id: str | None
    name: str | None
    number: str | None
    zone: str | None  # the zone it is licensed for, by name

    @property
    def label(self) -> str:
        """'老王烤串（017号）', as a title names it."""
        name = self.name or (f"摊位 {self.id}" if self.id else "未知摊位")
        return f"{name}（{self.number}号）" if self.number else name


def stall_facts(registry: Registry | None, stall_id: Any, subject: dict[str, Any]) -> StallFacts:
    stall = registry.stall(stall_id) if registry and isinstance(stall_id, str) else None
    if stall is not None:
        return StallFacts(stall.id, stall.name, stall.number, zone_name(registry, stall.zone))
    return StallFacts(
        text(stall_id),
        text(subject.get("name")),
        text(subject.get("number")),
        zone_name(registry, subject.get("zone"), subject.get("zone_name")),
    )


@dataclass(frozen=True)
class Violation:
    stall: StallFacts
    zone: str | None  # where it was seen: the scanner's zone, by name
    reason: str
    scanner: str | None
    purpose: str | None
    forged: bool  # the placard's stall is only what a suspected forgery claims

    @property
    def reason_words(self) -> str:
        return REASON_WORDS.get(self.reason, self.reason)


def violation_facts(
    data: dict[str, Any], scanner: str | None, registry: Registry | None = None
) -> Violation:
    """The facts of a `stall.violation` from its event's (or alert's) data."""
    subject = data.get("subject") if isinstance(data.get("subject"), dict) else {}
    reason = text(data.get("reason")) or "unknown"
    return Violation(
        stall=stall_facts(registry, subject.get("id"), subject),
        zone=zone_name(registry, subject.get("scanner_zone"), subject.get("scanner_zone_name")),
        reason=reason,
        scanner=scanner,
        purpose=text(data.get("purpose")),
        forged=reason == "forged",
    )
