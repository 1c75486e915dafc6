"""What every adapter shares: one native message's context, the canonical messages built
from it, and the reading of native values (JSON, battery levels, device clocks).

Canonical messages are built as canonical JSON and parsed by
`edge.source.messages.parse_message`, the same code as a Mashang button's, so the rules see
no difference. The native fields travel upstream as well; a native value that a canonical
field replaced is kept as `native_<name>` (`native_action: "hold"` next to `action: "long"`),
with `native_topic` and `adapter` naming where the message came from.

Identity (PROTOCOL §2): a native counter or timestamp makes a message itself when there is one
(Shelly Gen1 `event_cnt`, Gen2 event `ts`, Zigbee2MQTT `last_seen` when enabled). Without one
(plain Zigbee2MQTT), two real presses publish the same bytes, so the identity is a hash of the
bytes plus the gateway's receive time: a redelivery after a crash may then be a duplicate, but
a press is never merged away.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

from edge.source.adapters.config import AdaptersSection
from edge.source.messages import DeviceMessage, Payload, decode_json, fit_for_json, parse_message
from mashang.topics import Channel

__all__ = [
    "PLAUSIBLE_SINCE",
    "Action",
    "AdapterName",
    "Context",
    "GatewayNotice",
    "plausible_epoch",
    "put_battery",
]

Action = Literal["single", "double", "long"]
AdapterName = Literal["zigbee2mqtt", "shelly-gen1", "shelly-gen2"]

# Device clocks that were never set report 1970: such a time is kept, not believed.
PLAUSIBLE_SINCE = datetime(2020, 1, 1, tzinfo=UTC)
# Canonical field names (ButtonPress, DeviceStatus) and what the adapters add. A native field
# with one of these names is kept as `native_<name>` unless the canonical value is the same.
_RESERVED = frozenset(
    {"seq", "action", "battery", "ts", "state", "rssi", "id", "native_topic", "adapter",
     "retained", "input"}
)


class GatewayNotice(Payload):
    """Not a device's message: what an adapter found wrong around it, for the rules to raise
    as an event of its own (`event`: `gateway.misconfigured`, kind alert, priority high).

    Its `DeviceMessage` has no device kind, id or channel; its fields are the event's data:
    `reason` in plain words, `setting` and `value` (what is wrong where), `native_topic` and
    `adapter` (where it was seen). Its identity is the problem and the bytes that showed it,
    so that the retained message delivered again on every reconnect is the same event.
    """

    event: Literal["gateway.misconfigured"]
    reason: str


class Context:
    """One native message on its way through an adapter."""

    def __init__(
        self,
        adapter: AdapterName,
        topic: str,
        raw: bytes,
        received_at: datetime,
        config: AdaptersSection,
        root: str,
        retained: bool,
    ) -> None:
        self.adapter = adapter
        self.topic = topic
        self.raw = raw
        self.received_at = received_at
        self.config = config
        self.root = root.rstrip("/")
        self.retained = retained

    def received_identity(self) -> str:
        """For native payloads with no counter or time of their own (see the module doc)."""
        digest = hashlib.sha256(self.raw).hexdigest()
        return f"{self.adapter};sha256={digest};received_at={self.received_at.isoformat()}"

    def canonical_topic(self, device_id: str, channel: Channel) -> str:
        return f"{self.root}/buttons/{device_id}/{channel}"

    def message(
        self, device_id: str, channel: Channel, canonical: dict[str, Any],
        native: dict[str, Any], identity: str,
    ) -> DeviceMessage:
        """A canonical message, parsed by the same code as a Mashang button's."""
        fields = _merge(canonical, native)
        fields["native_topic"] = self.topic
        fields["adapter"] = self.adapter
        if self.retained:
            fields["retained"] = True
        raw = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
        parsed = parse_message(
            self.root, self.canonical_topic(device_id, channel), raw, self.received_at
        )
        if parsed.rejection is not None:
            return replace(parsed, topic=self.topic, raw=self.raw)
        return replace(parsed, identity=identity)

    def notice(self, key: str, reason: str, setting: str, value: str | list[str]) -> DeviceMessage:
        """A `gateway.misconfigured` notice (see GatewayNotice) that `key` names."""
        fields: dict[str, Any] = {
            "reason": reason, "setting": setting, "value": value,
            "native_topic": self.topic, "adapter": self.adapter,
        }
        if self.retained:
            fields["retained"] = True
        digest = hashlib.sha256(self.raw).hexdigest()
        return DeviceMessage(
            topic=self.topic,
            device_kind=None,
            device_id=None,
            channel=None,
            raw=self.raw,
            received_at=self.received_at,
            payload=GatewayNotice(event="gateway.misconfigured", reason=reason),
            fields=fields,
            identity=f"{self.adapter};gateway.misconfigured;{key};sha256={digest}",
        )

    def unreadable(self, reason: str) -> DeviceMessage:
        """A rejection of a message that concerns no device (a bridge's own topics)."""
        return DeviceMessage(
            topic=self.topic,
            device_kind=None,
            device_id=None,
            channel=None,
            raw=self.raw,
            received_at=self.received_at,
            rejection=reason,
        )

    def rejected(self, device_id: str | None, channel: Channel, reason: str) -> DeviceMessage:
        return DeviceMessage(
            topic=self.topic,
            device_kind="button",
            device_id=device_id,
            channel=channel,
            raw=self.raw,
            received_at=self.received_at,
            rejection=reason,
        )

    def decode(self, device_id: str, channel: Channel) -> Any | DeviceMessage:
        """The native JSON value, or the rejection `parse_message` gives bytes that are not."""
        value = _json(self.raw)
        if value is _INVALID:
            return self.parser_rejection(device_id, channel)
        return value

    def decode_object(self, device_id: str, channel: Channel) -> dict[str, Any] | DeviceMessage:
        value = self.decode(device_id, channel)
        if isinstance(value, DeviceMessage | dict):
            return value
        return self.parser_rejection(device_id, channel)

    def parser_rejection(self, device_id: str, channel: Channel) -> DeviceMessage:
        try:
            parsed = parse_message(
                self.root, self.canonical_topic(device_id, channel), self.raw, self.received_at
            )
        except ValueError:  # json.loads of an integer too long to convert (Python >= 3.11)
            return self.rejected(device_id, channel, "payload is not JSON: number too long")
        if parsed.rejection is None:  # parse_message accepts more than the adapter: say so
            return self.rejected(device_id, channel, "payload is not what the device sends")
        return replace(parsed, topic=self.topic)


def put_battery(canonical: dict[str, Any], value: object) -> None:
    """A battery percentage the canonical field accepts; anything else stays native only."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if 0 <= value <= 100:
        canonical["battery"] = round(value)


def plausible_epoch(stamp: float, scale: int = 1) -> datetime | None:
    """A Unix time (in 1/scale seconds) as a datetime, unless it is before 2020 or nonsense."""
    try:
        moment = datetime.fromtimestamp(stamp / scale, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment if moment >= PLAUSIBLE_SINCE else None


_INVALID = object()


def _json(raw: bytes) -> Any:
    """What parse_message would decode, made fit to travel as it makes it (numbers past
    range as text, lone surrogates as U+FFFD, values nested too deep as text), or _INVALID
    where it would reject the bytes: a native message can no more stop the MQTT thread than
    a Mashang one."""
    decoded = decode_json(raw)
    if isinstance(decoded, str):
        return _INVALID
    value, suspect = decoded
    return fit_for_json(value, 0)[0] if suspect else value


def _merge(canonical: dict[str, Any], native: dict[str, Any]) -> dict[str, Any]:
    """Canonical fields first, then every native field; a native value a canonical field
    replaced (or one under a canonical name the adapter did not set) as `native_<name>`."""
    fields = dict(canonical)
    for name, value in native.items():
        if name not in _RESERVED:
            fields.setdefault(name, value)
        elif name not in canonical or canonical[name] != value:
            fields[f"native_{name}"] = value
    return fields
