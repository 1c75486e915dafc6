"""What a scanned code means here and now: verified offline, then judged by the registry.

A stall code at a gate or in an inspector's hand is accepted when the stall is licensed for
the scanner's zone at this hour, and is otherwise a violation for the street office. So is a
stall's placard that does not hold (revoked, denied, expired, or forged: its signature or key
is not ours) at a check-in or an inspection. A household code scanned on a butler's visit logs
the visit. Anything else is rejected with its reason. The result is what the scanner beeps:
a violation is a `scan.rejected` like any refusal, and a `stall.violation` alert beside it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mashang.codes import (
    CodeRejected,
    VerifiedCode,
    decode_token,
    parse_code,
    public_keys,
    verify_code,
)
from mashang.registry import Registry, Scanner, Stall
from mashang.wire import Kind, Priority

log = logging.getLogger(__name__)

STALL_PURPOSES = {"checkin", "checkout", "inspect"}
# Where a placard that does not hold is a violation, not only a refusal.
TRADING_PURPOSES = {"checkin", "inspect"}
# A stall code's refusal → the violation it is; a forgery names only the stall it claims.
BAD_PLACARDS = {"revoked": "revoked", "denied": "denied", "expired": "expired",
                "bad_signature": "forged", "unknown_key": "forged"}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The event a scan becomes, and what the scanner is told."""

    event_type: str
    kind: Kind
    priority: Priority
    result: str  # "accepted" | "rejected", the scanner's beep
    reason: str
    subject: dict[str, Any]
    # A violation for the street office beside the scan's own event: its reason and subject.
    violation: dict[str, Any] | None = None

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
            return self._bad_placard(exc.reason, text, registry.scanner(scanner_id), purpose)
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
        subject |= stall_subject(stall, self._registry)
        if scanner is None or scanner.zone is None:
            return rejected("unknown_scanner", subject)
        if scanner.zone != stall.zone:
            return self._violation("wrong_zone", subject, scanner)
        if not stall.open_at(moment.time()):
            return self._violation("outside_hours", subject, scanner)
        return Verdict("scan.accepted", "log", "low", "accepted", "licensed", subject)

    def _bad_placard(self, reason: str, text: str, scanner: Scanner | None,
                     purpose: str) -> Verdict:
        """Refused as today (the scanner hears the code's own reason); a stall's placard at a
        check-in or an inspection is a violation too, for the stall it names."""
        claimed = claimed_stall(text) if reason in BAD_PLACARDS else None
        if (claimed is None or purpose not in TRADING_PURPOSES or scanner is None
                or scanner.zone is None):
            return rejected(reason)
        subject: dict[str, Any] = {"kind": "stall", "id": claimed,
                                   "verified": BAD_PLACARDS[reason] != "forged"}
        stall = self._registry.stall(claimed)
        if stall is not None:
            subject |= stall_subject(stall, self._registry)
        violation = self._violation(BAD_PLACARDS[reason], subject, scanner).violation
        return Verdict("scan.rejected", "log", "low", "rejected", reason, {}, violation)

    def _violation(self, reason: str, subject: dict[str, Any], scanner: Scanner) -> Verdict:
        inspection = self._registry.community.inspection_contact
        alert_subject = subject | {
            "scanner_zone": scanner.zone,
            "scanner_zone_name": zone_name(self._registry, scanner.zone),
            # Violations go to the street office's inspection channel, not to butlers.
            "route": "inspection",
            "inspection_contact": inspection.model_dump() if inspection else None,
        }
        violation = {"reason": reason, "subject": alert_subject}
        return Verdict("scan.rejected", "log", "low", "rejected", reason, subject, violation)

    def _min_generation(self, kind: str, subject_id: str) -> int:
        entry = (self._registry.stall(subject_id) if kind == "stall"
                 else self._registry.household(subject_id))
        return entry.min_generation if entry else 0


def stall_subject(stall: Stall, registry: Registry) -> dict[str, Any]:
    return {"name": stall.name, "number": stall.number, "zone": stall.zone,
            "zone_name": zone_name(registry, stall.zone), "hours": stall.hours}


def zone_name(registry: Registry, zone_id: str | None) -> str | None:
    zone = registry.zone(zone_id) if zone_id else None
    return zone.name if zone else None


def claimed_stall(text: str) -> str | None:
    """The stall id a stall code's text names, unverified; None for any other text."""
    try:
        parsed = parse_code(text)
        return decode_token(parsed.token).subject_id if parsed.kind == "stall" else None
    except CodeRejected:
        return None
