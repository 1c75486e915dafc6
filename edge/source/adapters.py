"""Device adapters: off-the-shelf buttons' native MQTT topics mapped onto PROTOCOL §1.

Zigbee2MQTT buttons and Shelly inputs do not speak the Mashang topics. `translate()` turns
each native message into the canonical messages a Mashang button would have sent for the same
thing (a press on `{root}/buttons/{device_id}/events`, a heartbeat on `.../status`), built with
`edge.source.messages.parse_message` from canonical JSON, so the rules see no difference. The native
fields travel upstream as well; a native value that a canonical field replaced is kept as
`native_<name>` (`native_action: "hold"` next to `action: "long"`), with `native_topic` and
`adapter` naming where the message came from.

Native topics handled:

- Zigbee2MQTT: `{base}/{friendly_name}` (the device's state: `action`, `battery`,
  `linkquality`, `last_seen`...) and `{base}/{friendly_name}/availability`
  (`{"state": "online"}`, or plain `online` with `legacy_availability_payload`).
- Shelly Gen1: `shellies/{id}/input_event/{n}` (`{"event": "S", "event_cnt": 7}`),
  `shellies/{id}/online` (`true`/`false`) and `shellies/{id}/sensor/battery` (a number).
- Shelly Gen2+: `{prefix}/events/rpc` (`NotifyEvent` of `input:N` components) and
  `{prefix}/online` (`true`/`false`); the prefix is the device id unless changed on the device.

Device ids: a native device is listed in `[adapters.devices."<native name>"]`, with the
`device_id` it has in the registry. An unlisted native name is used as the device id itself
when it is a valid one (Zigbee2MQTT's default names such as `0x00158d0001a2b3c4` and Shelly
ids are), otherwise a sanitised form with a short hash of the name (`Bedroom-button-3f9a1c`).
Presses of unlisted devices are accepted (a freshly paired button must never go unheard,
`accept_unlisted`); their availability and battery reports are not, so that lights, plugs and
sensors sharing the Zigbee network or the broker never pose as buttons. A Shelly input can be
mapped on its own: `[adapters.devices."shellyix3-A4CF12F454A1/input:2"]`.

Identity (PROTOCOL §2): a native counter or timestamp makes a message itself when there is one
(Shelly Gen1 `event_cnt`, Gen2 event `ts`, Zigbee2MQTT `last_seen` when enabled). Without one
(plain Zigbee2MQTT), two real presses publish the same bytes, so the identity is a hash of the
bytes plus the gateway's receive time: a redelivery after a crash may then be a duplicate, but
a press is never merged away.

Never raises on device input: invalid payloads become rejected `DeviceMessage`s that name the
native topic and carry the native bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from edge.source.messages import MAX_PAYLOAD_BYTES, Channel, DeviceMessage, parse_message
from mashang.config import Section

DEFAULT_TOPIC_ROOT = "mashang/v1"
DEVICE_ID_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"
SHELLY_GEN1_BASE = "shellies"

Action = Literal["single", "double", "long"]
AdapterName = Literal["zigbee2mqtt", "shelly-gen1", "shelly-gen2"]

_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
_INPUT_KEY = re.compile(r"^(?P<native>.+)/input:(?P<input>\d+)$")
# Device clocks that were never set report 1970: such a time is kept, not believed.
_PLAUSIBLE_SINCE = datetime(2020, 1, 1, tzinfo=UTC)
# Canonical field names (ButtonPress, DeviceStatus) and what the adapters add. A native field
# with one of these names is kept as `native_<name>` unless the canonical value is the same.
_RESERVED = frozenset(
    {"seq", "action", "battery", "ts", "state", "rssi", "id", "native_topic", "adapter",
     "retained", "input"}
)


# -- configuration --------------------------------------------------------------------------


class DeviceMapping(Section):
    """One native device (or one Shelly input) and the device id it has in the registry."""

    device_id: str | None = Field(default=None, pattern=DEVICE_ID_PATTERN)
    kind: Literal["button"] = "button"


class AdaptersSection(Section):
    """`[adapters]` in the gateway's configuration."""

    enabled: bool = True
    # Presses from native devices not listed under `devices` raise alerts under their native
    # name; false ignores them (and subscribes only to the listed devices' topics).
    accept_unlisted: bool = True
    zigbee2mqtt: bool = True
    zigbee2mqtt_base: str = "zigbee2mqtt"
    shelly_gen1: bool = True
    shelly_gen2: bool = True
    # Native name -> mapping. Native names: a Zigbee2MQTT friendly name, a Shelly Gen1 id
    # (`shellybutton1-E8DB84AA1234`), a Shelly Gen2 topic prefix, or `<shelly>/input:<n>`.
    devices: dict[str, DeviceMapping] = Field(default_factory=dict)

    @field_validator("zigbee2mqtt_base")
    @classmethod
    def _topic_prefix(cls, value: str) -> str:
        _check_topic_levels(value)
        return value

    @field_validator("devices")
    @classmethod
    def _native_names(cls, devices: dict[str, DeviceMapping]) -> dict[str, DeviceMapping]:
        for name, mapping in devices.items():
            _check_topic_levels(name)
            if _INPUT_KEY.match(name) and mapping.device_id is None:
                raise ValueError(f"{name!r}: a single Shelly input needs its own device_id")
        return devices

    @model_validator(mode="after")
    def _distinct_ids(self) -> AdaptersSection:
        seen: dict[str, str] = {}
        for name, mapping in self.devices.items():
            device_id = mapping.device_id or default_device_id(name)
            if device_id in seen:
                raise ValueError(
                    f"devices {seen[device_id]!r} and {name!r} both map to {device_id!r}"
                )
            seen[device_id] = name
        return self


def _check_topic_levels(value: str) -> None:
    if not value:
        raise ValueError("must not be empty")
    if "+" in value or "#" in value or "\x00" in value:
        raise ValueError("must not contain the MQTT wildcards + or #")
    if any(not level for level in value.split("/")):
        raise ValueError("must not start or end with / or contain //")


def default_device_id(native: str) -> str:
    """The device id of a native device nobody mapped: its name, or a safe form of it."""
    if _DEVICE_ID.match(native):
        return native
    digest = hashlib.sha256(native.encode()).hexdigest()[:6]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", native).strip("-")[:100]
    return f"{safe}-{digest}" if safe else f"device-{digest}"


# -- subscriptions --------------------------------------------------------------------------


def adapter_subscriptions(config: AdaptersSection) -> list[str]:
    """The native topic filters to subscribe to (QoS 1), none covering another."""
    if not config.enabled:
        return []
    natives = list(dict.fromkeys(_native_of(name) for name in config.devices))
    zigbee_names = [name for name in config.devices if not _INPUT_KEY.match(name)]
    filters: list[str] = []
    if config.zigbee2mqtt:
        base = config.zigbee2mqtt_base
        if config.accept_unlisted:
            filters.append(f"{base}/+")
        for name in zigbee_names:
            filters += [f"{base}/{name}", f"{base}/{name}/availability"]
    if config.shelly_gen1:
        if config.accept_unlisted:
            filters.append(f"{SHELLY_GEN1_BASE}/+/input_event/+")
        for native in natives:
            if "/" not in native:
                prefix = f"{SHELLY_GEN1_BASE}/{native}"
                filters += [
                    f"{prefix}/input_event/+",
                    f"{prefix}/online",
                    f"{prefix}/sensor/battery",
                ]
    if config.shelly_gen2:
        if config.accept_unlisted:
            filters.append("+/events/rpc")
        for native in natives:
            filters += [f"{native}/events/rpc", f"{native}/online"]
    unique = list(dict.fromkeys(filters))
    # Overlapping filters can make a broker deliver one message twice: keep the widest.
    return [f for f in unique if not any(g != f and _covers(g, f) for g in unique)]


def _covers(wide: str, narrow: str) -> bool:
    wide_levels, narrow_levels = wide.split("/"), narrow.split("/")
    return len(wide_levels) == len(narrow_levels) and all(
        w == "+" or w == n for w, n in zip(wide_levels, narrow_levels, strict=True)
    )


def _native_of(name: str) -> str:
    found = _INPUT_KEY.match(name)
    return found.group("native") if found else name


# -- repeated Shelly Gen1 events ------------------------------------------------------------


class RepeatFilter:
    """The last Shelly Gen1 input event seen per device input, in memory.

    Gen1 firmware re-publishes the last `input_event` with every status update (every 30 s
    by default) with the same `event_cnt`. Its identity already makes it the same event, but
    the rules would still take it for a press again (refreshing the guard window, folding a
    later real press into an old alert). One instance lives as long as the MQTT client.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._last: OrderedDict[tuple[str, int], tuple[str, int]] = OrderedDict()
        self._lock = threading.Lock()

    def repeated(self, native: str, channel: int, event: str, count: int) -> bool:
        """True when this input's last event had the same name and counter; remembers it."""
        key, value = (native, channel), (event, count)
        with self._lock:
            previous = self._last.get(key)
            self._last[key] = value
            self._last.move_to_end(key)
            while len(self._last) > self._capacity:
                self._last.popitem(last=False)
        return previous == value


# -- translation ----------------------------------------------------------------------------


class _Context:
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

    def decode_object(self, device_id: str, channel: Channel) -> dict | DeviceMessage:
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


def translate(
    topic: str,
    raw: bytes,
    received_at: datetime,
    config: AdaptersSection,
    *,
    topic_root: str = DEFAULT_TOPIC_ROOT,
    retained: bool = False,
    repeats: RepeatFilter | None = None,
) -> list[DeviceMessage] | None:
    """The canonical messages for one native MQTT message.

    None: not an adapter topic (parse it as a Mashang topic). An empty list: an adapter topic
    with nothing to record (a button released, a relay's status, a repeated Gen1 event), to
    be acked at once. `retained` is the MQTT retain flag: a retained press without a native
    identity is old state, not a press. `repeats` filters Shelly Gen1's re-published events.
    """
    if not config.enabled:
        return None

    def context(adapter: AdapterName) -> _Context:
        return _Context(adapter, topic, raw, received_at, config, topic_root, retained)

    if config.zigbee2mqtt and topic.startswith(config.zigbee2mqtt_base + "/"):
        return _zigbee2mqtt(context("zigbee2mqtt"), topic[len(config.zigbee2mqtt_base) + 1 :])
    if config.shelly_gen1 and topic.startswith(SHELLY_GEN1_BASE + "/"):
        found = _shelly_gen1(context("shelly-gen1"), topic.split("/")[1:], repeats)
        if found is not None:
            return found
    if config.shelly_gen2:
        if topic.endswith("/events/rpc") and len(topic) > len("/events/rpc"):
            return _shelly_gen2_rpc(context("shelly-gen2"), topic[: -len("/events/rpc")])
        if topic.endswith("/online") and len(topic) > len("/online"):
            return _shelly_online(context("shelly-gen2"), topic[: -len("/online")])
    return None


# -- Zigbee2MQTT ----------------------------------------------------------------------------

_SINGLE = {"single"}
_MULTIPLE = {"double", "triple", "quadruple", "many"}
_LONG = {"hold", "long"}
_EMERGENCY = {"emergency", "sos"}  # SOS buttons (e.g. Loginovo ZG-101Z): help is needed now


def zigbee2mqtt_action(action: Any, *, listed: bool) -> Action | None:
    """A Zigbee2MQTT `action` as a canonical press, or None when it is not a press.

    `single`, `double`, `triple`, `quadruple`, `many`, `hold`, `long`, and SOS buttons'
    `emergency`/`sos`, also with a button name or number (`single_left`, `1_hold`);
    `release` and `*_release`/`*_stop` end a press, they are not one. For a listed (declared
    help) button the press word may stand anywhere (`on_hold`), and any other action still
    counts as a single press: a declared help button is never ignored.
    """
    if not isinstance(action, str) or not action.strip():
        return None
    words = action.strip().lower().split("_")
    if "release" in words or words[-1] == "stop":
        return None
    if words[0].isdecimal() and len(words) > 1:
        words = words[1:]  # a button number: `1_single`
    for word in words if listed else words[:1]:
        if word in _LONG or word in _EMERGENCY:
            return "long"
        if word in _MULTIPLE:
            return "double"
        if word in _SINGLE:
            return "single"
    return "single" if listed else None


def _zigbee2mqtt(ctx: _Context, rest: str) -> list[DeviceMessage]:
    if rest == "bridge" or rest.startswith("bridge/") or "" in rest.split("/"):
        return []  # Zigbee2MQTT's own topics, never a device
    if rest.endswith("/availability"):
        return _zigbee2mqtt_availability(ctx, rest[: -len("/availability")])
    name = rest
    mapping = ctx.config.devices.get(name)
    device_id = (mapping.device_id if mapping else None) or default_device_id(name)
    state = ctx.decode_object(device_id, "events")
    if isinstance(state, DeviceMessage):
        return [state]
    action = zigbee2mqtt_action(state.get("action"), listed=mapping is not None)
    if action is not None:
        if mapping is None and not ctx.config.accept_unlisted:
            return []
        last_seen = state.get("last_seen")
        if last_seen is not None:
            identity = f"zigbee2mqtt;last_seen={last_seen!r};action={state.get('action')!r}"
        elif ctx.retained:
            return []  # a retained action (device `retain: true`) is old state
        else:
            identity = ctx.received_identity()
        canonical: dict[str, Any] = {"action": action}
        _put_battery(canonical, state.get("battery"))
        moment = _zigbee2mqtt_moment(last_seen)
        if moment is not None:
            canonical["ts"] = moment.isoformat()
        return [ctx.message(device_id, "events", canonical, state, identity)]
    if mapping is None or ctx.retained:
        return []
    # A report (battery, link quality...) of a listed button: it spoke, so it is online.
    canonical = {"state": "online"}
    _put_battery(canonical, state.get("battery"))
    return [ctx.message(device_id, "status", canonical, state, ctx.received_identity())]


def _zigbee2mqtt_availability(ctx: _Context, name: str) -> list[DeviceMessage]:
    mapping = ctx.config.devices.get(name)
    if mapping is None:
        return []
    device_id = mapping.device_id or default_device_id(name)
    text = ctx.raw.decode("utf-8", errors="replace").strip()
    if text in ("online", "offline"):  # legacy_availability_payload: true
        native: dict[str, Any] = {}
        state = text
    else:
        decoded = ctx.decode_object(device_id, "status")
        if isinstance(decoded, DeviceMessage):
            return [decoded]
        native, state = decoded, decoded.get("state")
        if state not in ("online", "offline"):
            return [ctx.parser_rejection(device_id, "status")]
    return [ctx.message(device_id, "status", {"state": state}, native, ctx.received_identity())]


def _zigbee2mqtt_moment(last_seen: Any) -> datetime | None:
    """`last_seen` as ISO_8601 or epoch (milliseconds); ISO_8601_local has no offset: None."""
    if isinstance(last_seen, bool):
        return None
    if isinstance(last_seen, int | float):
        return _plausible_epoch(last_seen, scale=1000)
    if isinstance(last_seen, str):
        try:
            moment = datetime.fromisoformat(last_seen)
        except ValueError:
            return None
        if moment.tzinfo is not None and moment >= _PLAUSIBLE_SINCE:
            return moment
    return None


# -- Shelly ---------------------------------------------------------------------------------


def shelly_gen1_action(event: str) -> Action | None:
    """A Gen1 input event (`S`, `SS`, `SSS`, `L`, `SL`, `LS`) as a canonical press.

    None for `""` (no event: a switch-mode toggle). Raises ValueError for anything but S/L.
    """
    if not event:
        return None
    if set(event) - {"S", "L"}:
        raise ValueError(f"unknown Shelly input event {event!r}")
    if "L" in event:
        return "long"
    return "single" if event == "S" else "double"


def shelly_gen2_action(event: Any) -> Action | None:
    """A Gen2 input event as a canonical press: `single_push`, `double_push`, `triple_push`,
    `long_push`. `btn_down`, `btn_up` and switch-mode toggles are not presses."""
    if not isinstance(event, str) or not event.endswith("_push"):
        return None
    words = event[: -len("_push")].split("_")
    if "long" in words or "hold" in words:
        return "long"
    return "single" if words == ["single"] else "double"


def _shelly_devices(ctx: _Context, native: str) -> list[str]:
    """Device ids a Shelly device's own status concerns: the device and its mapped inputs."""
    ids = []
    for name, mapping in ctx.config.devices.items():
        if name == native or _native_of(name) == native:
            ids.append(mapping.device_id or default_device_id(name))
    return list(dict.fromkeys(ids))


def _shelly_main_id(ctx: _Context, native: str) -> str:
    mapping = ctx.config.devices.get(native)
    return (mapping.device_id if mapping else None) or default_device_id(native)


def _shelly_input_device(ctx: _Context, native: str, channel: int) -> str | None:
    """The device id of one Shelly input, or None when unlisted presses are not accepted."""
    for name in (f"{native}/input:{channel}", native):
        mapping = ctx.config.devices.get(name)
        if mapping is not None:
            return mapping.device_id or default_device_id(native)
    return default_device_id(native) if ctx.config.accept_unlisted else None


def _shelly_gen1(
    ctx: _Context, levels: list[str], repeats: RepeatFilter | None
) -> list[DeviceMessage] | None:
    channel = _index(levels[2]) if len(levels) == 3 and levels[1] == "input_event" else None
    if channel is not None:
        return _shelly_gen1_input(ctx, levels[0], channel, repeats)
    if len(levels) == 2 and levels[1] == "online":
        return _shelly_online(ctx, levels[0])
    if levels[1:] == ["sensor", "battery"] and len(levels) == 3:
        return _shelly_gen1_battery(ctx, levels[0])
    return None


def _shelly_gen1_input(
    ctx: _Context, native: str, channel: int, repeats: RepeatFilter | None
) -> list[DeviceMessage]:
    device_id = _shelly_input_device(ctx, native, channel)
    if device_id is None:
        return []
    payload = ctx.decode_object(device_id, "events")
    if isinstance(payload, DeviceMessage):
        return [payload]
    event, count = payload.get("event"), payload.get("event_cnt")
    if not isinstance(event, str):
        return [ctx.rejected(device_id, "events", "invalid fields: event: expected a string")]
    try:
        action = shelly_gen1_action(event)
    except ValueError as exc:
        return [ctx.rejected(device_id, "events", f"invalid fields: event: {exc}")]
    counted = isinstance(count, int) and not isinstance(count, bool)
    if counted and repeats is not None and repeats.repeated(native, channel, event, count):
        return []  # the periodic re-publication of an event already seen
    if action is None:
        return []
    if counted:
        # The counter identifies re-publications of one press; the day keeps a counter that
        # restarted with the device from merging today's press into an old one.
        day = ctx.received_at.date().isoformat()
        identity = f"shelly-gen1;input={channel};event={event};event_cnt={count};day={day}"
    elif ctx.retained:
        return []
    else:
        identity = ctx.received_identity()
    canonical = {"action": action, "input": channel}
    return [ctx.message(device_id, "events", canonical, payload, identity)]


def _shelly_gen1_battery(ctx: _Context, native: str) -> list[DeviceMessage]:
    device_ids = _shelly_devices(ctx, native)
    if not device_ids:
        return []
    value = ctx.decode(device_ids[0], "status")
    if isinstance(value, DeviceMessage):
        return [value]
    canonical: dict[str, Any] = {"state": "online"}
    _put_battery(canonical, value)
    if "battery" not in canonical:
        reason = "invalid fields: battery: expected a percentage from 0 to 100"
        return [ctx.rejected(device_ids[0], "status", reason)]
    identity = ctx.received_identity()
    return [ctx.message(device_id, "status", canonical, {}, identity) for device_id in device_ids]


def _shelly_online(ctx: _Context, native: str) -> list[DeviceMessage]:
    """`true` when the device connects, `false` as its last will (Gen1 and Gen2 alike)."""
    device_ids = _shelly_devices(ctx, native)
    if not device_ids:
        return []
    text = ctx.raw.decode("utf-8", errors="replace").strip()
    if text not in ("true", "false"):
        reason = f"invalid online payload: expected true or false, got {text[:40]!r}"
        return [ctx.rejected(device_ids[0], "status", reason)]
    canonical = {"state": "online" if text == "true" else "offline"}
    identity = ctx.received_identity()
    return [ctx.message(device_id, "status", canonical, {}, identity) for device_id in device_ids]


def _shelly_gen2_rpc(ctx: _Context, native: str) -> list[DeviceMessage]:
    if not _shelly_devices(ctx, native) and not ctx.config.accept_unlisted:
        return []
    main_id = _shelly_main_id(ctx, native)
    frame = ctx.decode_object(main_id, "events")
    if isinstance(frame, DeviceMessage):
        return [frame]
    if frame.get("method") != "NotifyEvent":
        return []  # NotifyStatus, NotifyFullStatus, RPC responses
    params = frame.get("params")
    events = params.get("events") if isinstance(params, dict) else None
    if not isinstance(events, list):
        reason = "invalid fields: params.events: expected a list"
        return [ctx.rejected(main_id, "events", reason)]
    messages = []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            continue
        component = event.get("component")
        if not isinstance(component, str) or not component.startswith("input:"):
            continue  # sys, script, ble... events
        action = shelly_gen2_action(event.get("event"))
        channel = _index(component.removeprefix("input:"))
        if action is None or channel is None:
            continue
        device_id = _shelly_input_device(ctx, native, channel)
        if device_id is None:
            continue
        stamp = event.get("ts", params.get("ts"))
        if isinstance(stamp, int | float) and not isinstance(stamp, bool):
            identity = f"shelly-gen2;component={component};event={event['event']};ts={stamp!r}"
        elif ctx.retained:
            continue
        else:
            identity = f"{ctx.received_identity()};event={index}"
        canonical: dict[str, Any] = {"action": action, "input": channel}
        moment = _plausible_epoch(stamp) if isinstance(stamp, int | float) else None
        if moment is not None:
            canonical["ts"] = moment.isoformat()
        native_fields = {**event}
        if isinstance(frame.get("src"), str):
            native_fields["src"] = frame["src"]
        messages.append(ctx.message(device_id, "events", canonical, native_fields, identity))
    return messages


# -- helpers --------------------------------------------------------------------------------

_INVALID = object()


def _json(raw: bytes) -> Any:
    """What parse_message would decode, or _INVALID where it would reject the bytes."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        return _INVALID
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError, JSONDecodeError, huge integers
        return _INVALID


def _index(text: str) -> int | None:
    """An input number from a topic level or a component name (`input:2`)."""
    return int(text) if text.isdecimal() and len(text) <= 6 else None


def _put_battery(canonical: dict[str, Any], value: Any) -> None:
    """A battery percentage the canonical field accepts; anything else stays native only."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if 0 <= value <= 100:
        canonical["battery"] = round(value)


def _plausible_epoch(stamp: float, scale: int = 1) -> datetime | None:
    """A Unix time (in 1/scale seconds) as a datetime, unless it is before 2020 or nonsense."""
    try:
        moment = datetime.fromtimestamp(stamp / scale, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment if moment >= _PLAUSIBLE_SINCE else None


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
