"""What a scanned code means here and now: verified offline, then judged by the registry.

A stall code at a gate or in an inspector's hand is accepted when the stall is licensed for
the scanner's zone at this hour, and is otherwise a violation for the street office. A
household code scanned on a butler's visit logs the visit. Anything else is rejected with its
reason. The result is what the scanner beeps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mashang.codes import CodeRejected, VerifiedCode, public_keys, verify_code
from mashang.registry import Registry, Scanner, Stall
from mashang.wire import Kind, Priority

log = logging.getLogger(__name__)

STALL_PURPOSES = {"checkin", "checkout", "inspect"}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The event a scan becomes, and what the scanner is told."""

    event_type: str
    kind: Kind
    priority: Priority
    result: str  # "accepted" | "rejected", the scanner's beep
    reason: str
    subject: dict[str, Any]

    def data(self) -> dict[str, Any]:
        return {"result": self.result, "reason": self.reason, "subject": self.subject}


def rejected(reason: str, subject: dict[str, Any] | None = None) -> Verdict:
    return Verdict("scan.rejected", "log", "low", "rejected", reason, subject or {})


class ScanJudge:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._keys = public_keys(registry.code_keys)
        self._denied = frozenset(registry.denied_codes)

    def judge(self, scanner_id: str, text: str, purpose: str, moment: datetime) -> Verdict:
        registry = self._registry
        try:
            code = verify_code(
                text,
                self._keys,
                today=moment.date(),
                min_generation=self._min_generation,
                denied=self._denied,
            )
        except CodeRejected as exc:
            return rejected(exc.reason)
        subject = {"kind": code.kind, "id": code.subject_id, "generation": code.generation}
        if code.kind == "household":
            return self._household(code, purpose, subject)
        return self._stall(code, registry.scanner(scanner_id), purpose, moment, subject)

    def _household(self, code: VerifiedCode, purpose: str, subject: dict[str, Any]) -> Verdict:
        if purpose != "visit":
            return rejected("wrong_purpose", subject)
        household = self._registry.household(code.subject_id)
        if household is not None:
            subject |= {"building": household.building, "room": household.room,
                        "elderly_living_alone": household.elderly_living_alone}
        return Verdict("visit.checkin", "log", "normal", "accepted", "visit", subject)

    def _stall(self, code: VerifiedCode, scanner: Scanner | None, purpose: str,
               moment: datetime, subject: dict[str, Any]) -> Verdict:
        if purpose not in STALL_PURPOSES:
            return rejected("wrong_purpose", subject)
        stall = self._registry.stall(code.subject_id)
        if stall is None:
            return rejected("unknown_stall", subject)
        subject |= stall_subject(stall)
        if scanner is None or scanner.zone is None:
            return rejected("unknown_scanner", subject)
        if scanner.zone != stall.zone:
            return self._violation("wrong_zone", subject, scanner)
        if not stall.open_at(moment.time()):
            return self._violation("outside_hours", subject, scanner)
        return Verdict("scan.accepted", "log", "low", "accepted", "licensed", subject)

    def _violation(self, reason: str, subject: dict[str, Any], scanner: Scanner) -> Verdict:
        inspection = self._registry.community.inspection_contact
        subject = subject | {
            "scanner_zone": scanner.zone,
            # Violations go to the street office's inspection channel, not to butlers.
            "route": "inspection",
            "inspection_contact": inspection.model_dump() if inspection else None,
        }
        return Verdict("stall.violation", "alert", "high", "rejected", reason, subject)

    def _min_generation(self, kind: str, subject_id: str) -> int:
        entry = (self._registry.stall(subject_id) if kind == "stall"
                 else self._registry.household(subject_id))
        return entry.min_generation if entry else 0


def stall_subject(stall: Stall) -> dict[str, Any]:
    return {"name": stall.name, "number": stall.number, "zone": stall.zone, "hours": stall.hours}
