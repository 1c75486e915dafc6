"""What each device message means: the events the gateway commits for it."""

from __future__ import annotations

from edge.events import Event, Kind, Priority, event_id
from edge.messages import ButtonPress, DeviceMessage


def make_event(
    message: DeviceMessage,
    kind: Kind,
    event_type: str,
    priority: Priority,
    extra: dict | None = None,
) -> Event:
    """An event traced to its message: the message's fields plus what the gateway adds."""
    occurred = getattr(message.payload, "ts", None) or message.received_at
    return Event(
        id=event_id(message.identity_key(), event_type),
        kind=kind,
        type=event_type,
        priority=priority,
        device_id=message.device_id,
        occurred_at=occurred,
        received_at=message.received_at,
        data={**message.fields, **(extra or {})},
    )


class Rules:
    """Turns one message into its events. Runs on the commit thread only."""

    def evaluate(self, message: DeviceMessage) -> list[Event]:
        if message.rejection is not None:
            return [self._rejected(message)]
        if isinstance(message.payload, ButtonPress):
            return [self._press(message, message.payload)]
        if message.channel == "scans":
            return [make_event(message, "log", "scan.received", "low")]
        return [make_event(message, "log", f"{message.device_kind}.status", "low")]

    def _press(self, message: DeviceMessage, press: ButtonPress) -> Event:
        priority: Priority = "critical" if press.action == "long" else "high"
        return make_event(
            message, "alert", "button.press", priority, {"action": press.action, "presses": 1}
        )

    def _rejected(self, message: DeviceMessage) -> Event:
        return Event(
            id=event_id(message.identity_key(), "gateway.rejected"),
            kind="log",
            type="gateway.rejected",
            priority="normal",
            device_id=message.device_id,
            occurred_at=message.received_at,
            received_at=message.received_at,
            data={
                "reason": message.rejection,
                "topic": message.topic,
                "payload": message.excerpt(),
            },
        )
