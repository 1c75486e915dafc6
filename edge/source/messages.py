"""What devices send (PROTOCOL §1): topic parsing and payload validation.

Parsing never raises: a message that cannot be understood becomes a `DeviceMessage` with a
`rejection` reason, so that the rules turn it into a `gateway.rejected` event and nothing is
dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mashang.topics import Channel, DeviceKind, split_topic

MAX_PAYLOAD_BYTES = 64 * 1024
REJECTED_EXCERPT_BYTES = 512
# Deeper payloads are refused here: the central's JSON parser stops at 200 levels, and a
# message the central cannot parse would park its event in the dead letters.
MAX_NESTING = 32



class Payload(BaseModel):
    # Unknown fields are kept and forwarded upstream, never a reason to reject.
    model_config = ConfigDict(extra="allow", strict=False)


class ButtonPress(Payload):
    seq: int | None = Field(default=None, ge=0)
    action: Literal["single", "double", "long"] = "single"
    battery: int | None = Field(default=None, ge=0, le=100)
    ts: datetime | None = None


class DeviceStatus(Payload):
    state: Literal["online", "offline"]
    battery: int | None = Field(default=None, ge=0, le=100)
    rssi: int | None = None


class Scan(Payload):
    seq: int | None = Field(default=None, ge=0)
    code: str
    purpose: Literal["checkin", "checkout", "inspect", "visit"] = "inspect"
    ts: datetime | None = None


PAYLOAD_MODELS: dict[Channel, type[Payload]] = {
    "events": ButtonPress,
    "status": DeviceStatus,
    "scans": Scan,
}


@dataclass(frozen=True, slots=True)
class DeviceMessage:
    """One MQTT message as the rules see it, valid or not."""

    topic: str
    device_kind: DeviceKind | None
    device_id: str | None
    channel: Channel | None
    raw: bytes
    received_at: datetime
    payload: Payload | None = None
    # The JSON object as received, so that every field (unknown ones too) travels upstream.
    fields: dict[str, Any] = field(default_factory=dict)
    rejection: str | None = None
    # Set by device adapters whose native payloads carry no seq, ts or id of their own.
    identity: str | None = None

    def identity_key(self) -> str:
        """What makes this message itself, the same on every redelivery (PROTOCOL §2)."""
        if self.identity is not None:
            return f"{self.topic}\n{self.identity}"
        parts = [
            f"{name}={self.fields[name]!r}" for name in ("seq", "ts", "id") if name in self.fields
        ]
        if not parts:
            parts = ["sha256=" + hashlib.sha256(self.raw).hexdigest()]
        return f"{self.topic}\n" + ";".join(parts)

    def excerpt(self) -> str:
        return self.raw[:REJECTED_EXCERPT_BYTES].decode("utf-8", errors="replace")


def parse_message(root: str, topic: str, raw: bytes, received_at: datetime) -> DeviceMessage:
    where = split_topic(root, topic)
    if where is None:
        return DeviceMessage(topic, None, None, None, raw, received_at, rejection="unknown topic")
    kind, device_id, channel = where

    def rejected(reason: str) -> DeviceMessage:
        return DeviceMessage(topic, kind, device_id, channel, raw, received_at, rejection=reason)

    if len(raw) > MAX_PAYLOAD_BYTES:
        return rejected(f"payload too large: {len(raw)} bytes (limit {MAX_PAYLOAD_BYTES})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return rejected(f"payload is not UTF-8: {exc.reason} at byte {exc.start}")
    try:
        if text.startswith("\ufeff"):  # as json.loads says it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        fields = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        return rejected(f"payload is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except RecursionError:
        return rejected("payload is not JSON: nested too deeply")
    except ValueError as exc:
        # NaN, Infinity, 1e999, integers past Python's 4,300 digits: found by tests/test_fuzz.py
        # (raised from the MQTT thread, such a payload stopped ingest altogether).
        return rejected(f"payload is not JSON: {exc}")
    if not isinstance(fields, dict):
        return rejected(f"payload must be a JSON object, got {type(fields).__name__}")
    # Only a \u escape can make a lone surrogate (the text was decoded strictly), and only as
    # many brackets as levels can nest that deep: most payloads need no walk at all.
    deep = text.count("{") + text.count("[") > MAX_NESTING
    problem = _unsendable(fields) if deep or "\\u" in text else None
    if problem is not None:
        return rejected(f"payload cannot travel as JSON: {problem}")
    try:
        payload = PAYLOAD_MODELS[channel].model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}"
            for err in exc.errors()
        )
        return DeviceMessage(
            topic,
            kind,
            device_id,
            channel,
            raw,
            received_at,
            fields=fields,
            rejection=f"invalid fields: {problems}",
        )
    return DeviceMessage(topic, kind, device_id, channel, raw, received_at, payload, fields)


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


# One decoder for every message: json.loads with options builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite)


def _unsendable(fields: dict[str, Any]) -> str | None:
    """Why parsed fields could not be re-encoded as UTF-8 JSON a central can read, if so.

    A lone surrogate escape ("\\ud800") is valid JSON syntax but not text: encoding the event
    failed on the commit thread and stopped all commits (found by tests/test_fuzz.py)."""
    stack: list[tuple[Any, int]] = [(fields, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            if level > MAX_NESTING:
                return f"nested deeper than {MAX_NESTING} levels"
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
            if isinstance(item, dict):
                stack.extend((key, level) for key in item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a string holds a lone UTF-16 surrogate, which is not text"
    return None
