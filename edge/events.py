"""The events the gateway creates and sends upstream (PROTOCOL §3), and their identity (§2)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Kind = Literal["alert", "log"]
Priority = Literal["critical", "high", "normal", "low"]

# A fixed namespace: the same message gives the same event id on every gateway run.
EVENT_NAMESPACE = uuid.UUID("5b0e3c1e-6a57-4c55-9f1e-6d6173686e67")


def now() -> datetime:
    return datetime.now().astimezone()


def isoformat(moment: datetime) -> str:
    return moment.astimezone().isoformat(timespec="milliseconds")


def event_id(identity: str, event_type: str) -> str:
    """Deterministic: a redelivered message yields the same id, so the central sees a duplicate."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{identity}\n{event_type}"))


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
        return {
            "id": self.id,
            "kind": self.kind,
            "type": self.type,
            "priority": self.priority,
            "device_id": self.device_id,
            "occurred_at": isoformat(self.occurred_at),
            "received_at": isoformat(self.received_at),
            "data": self.data,
        }

    def encode(self) -> bytes:
        """The event's JSON, encoded once at commit and sent as stored."""
        return json.dumps(
            self.to_wire(), ensure_ascii=False, separators=(",", ":"), default=str
        ).encode()
