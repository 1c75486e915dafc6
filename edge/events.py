"""The events the gateway creates and sends upstream (PROTOCOL §3), and their identity (§2)."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Literal

Kind = Literal["alert", "log"]
Priority = Literal["critical", "high", "normal", "low"]

# A fixed namespace: the same message gives the same event id on every gateway run.
EVENT_NAMESPACE = uuid.UUID("5b0e3c1e-6a57-4c55-9f1e-6d6173686e67")
_NAMESPACE_BYTES = EVENT_NAMESPACE.bytes
# One encoder for every event: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
# (valid until, the system's time zone then). Asking the system for its zone is most of the cost
# of `datetime.now().astimezone()`; offsets change (DST) only on a minute boundary, so the zone
# is looked up again at the first call of each minute (and whenever the clock steps back).
_zone: tuple[float, tzinfo | None] = (0.0, None)


def _local_zone(stamp: float) -> tzinfo | None:
    global _zone
    until, zone = _zone
    if not until - 60 <= stamp < until:
        zone = datetime.fromtimestamp(stamp).astimezone().tzinfo
        _zone = ((stamp // 60 + 1) * 60, zone)
    return zone


def now() -> datetime:
    """The time now, in the system's time zone (as `datetime.now().astimezone()`)."""
    stamp = time.time()
    return datetime.fromtimestamp(stamp, _local_zone(stamp))


def isoformat(moment: datetime) -> str:
    """In the system's time zone; a moment from now() already is (no conversion needed)."""
    if moment.tzinfo is None or moment.tzinfo is not _zone[1]:
        moment = moment.astimezone()
    return moment.isoformat(timespec="milliseconds")


def event_id(identity: str, event_type: str) -> str:
    """Deterministic: a redelivered message yields the same id, so the central sees a duplicate.

    uuid5(EVENT_NAMESPACE, identity + "\\n" + event_type), computed without the UUID object."""
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + f"{identity}\n{event_type}".encode()).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    kind: Kind
    type: str
    priority: Priority
    device_id: str | None
    occurred_at: datetime
    received_at: datetime
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def is_alert(self) -> bool:
        return self.kind == "alert"

    def to_wire(self) -> dict[str, Any]:
        received = isoformat(self.received_at)
        # Most events happened when received (same moment): formatted once.
        occurred = received if self.occurred_at is self.received_at else isoformat(self.occurred_at)
        return {
            "id": self.id,
            "kind": self.kind,
            "type": self.type,
            "priority": self.priority,
            "device_id": self.device_id,
            "occurred_at": occurred,
            "received_at": received,
            "data": self.data,
        }

    def encode(self) -> bytes:
        """The event's JSON, encoded once at commit and sent as stored."""
        return _ENCODER.encode(self.to_wire()).encode()
