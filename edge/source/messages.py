"""What devices send (PROTOCOL §1): topic parsing and payload validation.

Parsing never raises, and a message that cannot be understood is never dropped silently:
- On a button's events topic a JSON object is always a press (PROTOCOL §6, "when in doubt, a
  press"): each field that cannot be used is named in `invalid` with the reason, and the
  press goes on with what can be (an unusable `action` counts as `single`).
- Anything else that cannot be understood becomes a `DeviceMessage` with a `rejection`
  reason, which the rules turn into a `gateway.rejected` event.
- Whatever a device sent is made fit to travel as strict JSON here, deterministically, so that
  a redelivered message gives the same result and no value can fail later, on the commit
  thread: numbers past float's or int's range, lone UTF-16 surrogates and nesting deeper than
  the central reads are replaced by text and named in `invalid`; a `ts` that cannot be a real
  moment is ignored for the time and named too.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mashang.topics import Channel, DeviceKind, split_topic

MAX_PAYLOAD_BYTES = 64 * 1024
REJECTED_EXCERPT_BYTES = 512
# Deeper values are replaced by text: the central's JSON parser stops at 200 levels, and a
# message the central cannot parse would park its event in the dead letters.
MAX_NESTING = 32
# What a value nested deeper than that becomes.
TOO_DEEP = f"[nested deeper than {MAX_NESTING} levels]"
# The central keeps device ids of up to this many characters (mashang.wire.WireEvent).
MAX_DEVICE_ID = 128
# Unicode categories that must not stand in a device id: controls, format characters (the
# bidirectional overrides such as U+202E among them, which display as someone else's id),
# surrogates, private use, unassigned, and line or paragraph separators.
REFUSED_ID_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# A device clock's moment must be this far inside datetime's range, so that it converts to
# any zone (offsets are under a day) here and at the central.
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
# A numeric `ts` larger than this is taken as milliseconds (as pydantic and most devices do).
MILLISECONDS_FROM = 2e10
MAX_SEQ = 2**63

Action = Literal["single", "double", "long"]
ACTIONS: dict[str, Action] = {name: name for name in get_args(Action)}


class Unrepresentable(str):
    """A JSON number no float or int can hold (1e309, 5,000 digits), kept as its text."""

    __slots__ = ()


class Payload(BaseModel):
    # Unknown fields are kept and forwarded upstream, never a reason to reject.
    model_config = ConfigDict(extra="allow", strict=False)


@dataclass(frozen=True, slots=True)
class ButtonPress:
    """What a press says, every field usable (unusable ones are in DeviceMessage.invalid)."""

    seq: int | None = None
    action: Action = "single"
    battery: int | None = None
    ts: datetime | None = None


class DeviceStatus(Payload):
    state: Literal["online", "offline"]
    battery: int | None = Field(default=None, ge=0, le=100)
    rssi: int | None = None


class Scan(Payload):
    seq: int | None = Field(default=None, ge=0)
    code: str
    purpose: Literal["checkin", "checkout", "inspect", "visit"] = "inspect"


PAYLOAD_MODELS: dict[Channel, type[Payload]] = {
    "status": DeviceStatus,
    "scans": Scan,
}
# The channels whose payloads declare a `ts` (the device's clock at the moment it happened).
TIMED: frozenset[Channel] = frozenset({"events", "scans"})


@dataclass(frozen=True, slots=True)
class DeviceMessage:
    """One MQTT message as the rules see it, valid or not."""

    topic: str
    device_kind: DeviceKind | None
    device_id: str | None
    channel: Channel | None
    raw: bytes
    received_at: datetime
    payload: ButtonPress | Payload | None = None
    # The JSON object as received (made fit for JSON), so that every field, unknown ones too,
    # travels upstream.
    fields: dict[str, Any] = field(default_factory=dict)
    rejection: str | None = None
    # Set by device adapters whose native payloads carry no seq, ts or id of their own.
    identity: str | None = None
    # Fields that could not be used, each with the reason (PROTOCOL §6 `data.invalid`).
    invalid: dict[str, str] = field(default_factory=dict)
    # The device's own clock for the moment, when it sent a usable `ts`.
    occurred_at: datetime | None = None

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
    refused = device_id_problem(device_id)
    if refused is not None:
        # The id itself is not to be shown or trusted: the event names no device.
        return DeviceMessage(topic, kind, None, channel, raw, received_at,
                             rejection=f"device id refused: {refused}")

    def rejected(reason: str, fields: dict[str, Any] | None = None) -> DeviceMessage:
        return DeviceMessage(topic, kind, device_id, channel, raw, received_at,
                             fields=fields or {}, rejection=reason)

    decoded = decode_object(raw)
    if isinstance(decoded, str):
        return rejected(decoded)
    fields, invalid = decoded
    occurred_at = None
    if channel in TIMED and "ts" in fields and fields["ts"] is not None:
        occurred_at, problem = device_moment(fields["ts"])
        if problem is not None:
            invalid["ts"] = problem
    if channel == "events":
        press = read_press(fields, invalid, occurred_at)
        return DeviceMessage(topic, kind, device_id, channel, raw, received_at, press, fields,
                             invalid=invalid, occurred_at=occurred_at)
    try:
        known = {key: value for key, value in fields.items() if key not in invalid}
        payload = PAYLOAD_MODELS[channel].model_validate(known)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}"
            for err in exc.errors()
        )
        return rejected(f"invalid fields: {problems}", fields)
    return DeviceMessage(topic, kind, device_id, channel, raw, received_at, payload, fields,
                         invalid=invalid, occurred_at=occurred_at)


def device_id_problem(device_id: str) -> str | None:
    """Why an id from a topic cannot name a device, if it cannot."""
    if len(device_id) > MAX_DEVICE_ID:
        return f"{len(device_id)} characters (at most {MAX_DEVICE_ID})"
    for char in device_id:
        if unicodedata.category(char) in REFUSED_ID_CATEGORIES:
            return f"it holds U+{ord(char):04X} ({unicodedata.name(char, 'unnamed')})"
    return None


def decode_json(raw: bytes) -> tuple[Any, bool] | str:
    """The payload's JSON value, and whether it may hold what must be made fit to travel
    (`fit_for_json`); or, when the payload is no JSON at all, the reason. Values nested deeper
    than MAX_NESTING are cut from the text before it is parsed, so the parser never meets
    Python's recursion limit, whose depth would depend on the calling thread's stack."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        return f"payload too large: {len(raw)} bytes (limit {MAX_PAYLOAD_BYTES})"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"payload is not UTF-8: {exc.reason} at byte {exc.start}"
    # Only as many brackets as levels can nest that deep, only a \u escape can make a lone
    # surrogate (the text was decoded strictly), and only a long number overflows: most
    # payloads need neither the cut nor a walk.
    deep = text.count("{") + text.count("[") > MAX_NESTING
    if deep:
        text = cut_deep_values(text)
    try:
        if text.startswith("\ufeff"):  # as json.loads says it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        document = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        return f"payload is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except ValueError as exc:  # NaN or Infinity: not JSON (found by tests/test_fuzz.py)
        return f"payload is not JSON: {exc}"
    finally:
        overflowed, _DECODED.overflowed = _DECODED.overflowed, False
    return document, overflowed or deep or "\\u" in text


def decode_object(raw: bytes) -> tuple[dict[str, Any], dict[str, str]] | str:
    """The payload's JSON object, made fit to travel, with what had to be changed in it; or,
    when the payload is no JSON object at all, the reason."""
    decoded = decode_json(raw)
    if isinstance(decoded, str):
        return decoded
    document, suspect = decoded
    if not isinstance(document, dict):
        shape = "number" if isinstance(document, Unrepresentable) else type(document).__name__
        return f"payload must be a JSON object, got {shape}"
    invalid: dict[str, str] = {}
    if not suspect:
        return document, invalid
    fields: dict[str, Any] = {}
    for key, value in document.items():
        clean_key, _ = fit_for_json(key, 1)
        fields[clean_key], problem = fit_for_json(value, 1)
        if problem is not None:
            invalid[clean_key] = problem
    return fields, invalid


def cut_deep_values(text: str) -> str:
    """JSON text with every value nested deeper than MAX_NESTING replaced by TOO_DEEP (a
    string). Brackets inside strings do not count; text that is no JSON stays no JSON."""
    out: list[str] = []
    depth = 0
    in_string = escaped = False
    skipping_from = 0  # the depth at which a cut value began, 0 while not cutting
    start = 0
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_NESTING and not skipping_from:
                out.append(text[start:index])
                out.append(json.dumps(TOO_DEEP))
                skipping_from = depth
        elif char in "]}":
            if skipping_from and depth == skipping_from:
                skipping_from = 0
                start = index + 1
            depth -= 1
    if not skipping_from:
        out.append(text[start:])
    return "".join(out)


def fit_for_json(value: Any, level: int) -> tuple[Any, str | None]:
    """`value` as strict JSON can carry it, and what had to change, if anything."""
    if isinstance(value, Unrepresentable):
        return str(value), "number out of range"
    if value == TOO_DEEP:
        return value, f"nested deeper than {MAX_NESTING} levels"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            fixed = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            return fixed, "a string held a lone UTF-16 surrogate (replaced by U+FFFD)"
        return value, None
    if isinstance(value, dict | list):
        if level >= MAX_NESTING:
            return TOO_DEEP, f"nested deeper than {MAX_NESTING} levels"
        problems: list[str] = []
        if isinstance(value, dict):
            fixed_dict: dict[str, Any] = {}
            for key, child in value.items():
                clean_key, key_problem = fit_for_json(key, level)
                fixed_dict[clean_key], problem = fit_for_json(child, level + 1)
                problems += [p for p in (key_problem, problem) if p]
            return fixed_dict, problems[0] if problems else None
        fixed_list = []
        for child in value:
            fixed, problem = fit_for_json(child, level + 1)
            fixed_list.append(fixed)
            if problem:
                problems.append(problem)
        return fixed_list, problems[0] if problems else None
    return value, None


def read_press(fields: dict[str, Any], invalid: dict[str, str],
               occurred_at: datetime | None) -> ButtonPress:
    """A press from whatever the fields hold; what cannot be used goes into `invalid`."""
    seq = fields.get("seq")
    if seq is not None and not (type(seq) is int and 0 <= seq < MAX_SEQ):
        invalid.setdefault("seq", f"not a whole number from 0 to 2^63-1: {shown(seq)}")
        seq = None
    given = fields.get("action", "single")
    action = ACTIONS.get(given) if isinstance(given, str) else None
    if action is None:
        invalid.setdefault("action", f"not single, double or long: {shown(given)} "
                                     "(counted as single)")
        action = "single"
    battery = fields.get("battery")
    if battery is not None:
        whole = type(battery) is int or (type(battery) is float and battery.is_integer())
        if not whole or not 0 <= battery <= 100:
            invalid.setdefault("battery", f"not a whole percentage from 0 to 100: {shown(battery)}")
            battery = None
        else:
            battery = int(battery)
    return ButtonPress(seq, action, battery, occurred_at)


def device_moment(value: Any) -> tuple[datetime | None, str | None]:
    """A device's `ts` as an aware moment, or why it cannot be one (ISO 8601 text, naive ones
    in this gateway's zone, or unix seconds or milliseconds)."""
    try:
        if isinstance(value, str) and not isinstance(value, Unrepresentable):
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                moment = moment.astimezone()  # naive: the gateway's own zone
        elif type(value) in (int, float) and math.isfinite(value):
            seconds = value / 1000 if abs(value) > MILLISECONDS_FROM else value
            moment = datetime.fromtimestamp(seconds, UTC)
        else:
            return None, f"not a date: {shown(value)}"
        if not EARLIEST <= moment <= LATEST:
            return None, f"out of range: {shown(value)}"
        moment.astimezone()  # and it has a local time here, as events are sent in
    except (ValueError, OverflowError, OSError):
        return None, f"not a real moment: {shown(value)}"
    return moment, None


def shown(value: Any) -> str:
    """A device value as a reason may quote it: short, and JSON-like."""
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) \
        else json.dumps(str(value), ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not a JSON value")


class _Decoded(threading.local):
    # Set when the decoder met a number it could not hold, so that the payload gets walked.
    overflowed = False


_DECODED = _Decoded()


def _real(text: str) -> float | str:
    value = float(text)
    if math.isinf(value):
        _DECODED.overflowed = True
        return Unrepresentable(text[:40])
    return value


def _whole(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:  # past Python's 4,300 digits
        _DECODED.overflowed = True
        return Unrepresentable(text[:40])


# One decoder for every message: json.loads with options builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_not_json, parse_float=_real, parse_int=_whole)
