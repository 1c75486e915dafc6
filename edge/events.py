"""The events the gateway creates, as they travel between its stages until encoded for the
wire (`mashang.wire`, PROTOCOL §3)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from mashang.wire import Kind, Priority, event_id

__all__ = ["Event", "event_id", "isoformat", "moment", "now"]

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
    return moment(time.time())


def moment(stamp: float) -> datetime:
    """A unix time as now() gives it: in the system's time zone."""
    return datetime.fromtimestamp(stamp, _local_zone(stamp))


def isoformat(moment: datetime) -> str:
    """In the system's time zone; a moment from now() already is (no conversion needed)."""
    if moment.tzinfo is None or moment.tzinfo is not _zone[1]:
        moment = moment.astimezone()
    return moment.isoformat(timespec="milliseconds")


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
