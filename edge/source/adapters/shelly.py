"""Shelly inputs, Gen1 and Gen2+ (one module: both share `online` and the input mapping).

Native topics:

- Gen1: `shellies/{id}/input_event/{n}` (`{"event": "S", "event_cnt": 7}`),
  `shellies/{id}/online` (`true`/`false`) and `shellies/{id}/sensor/battery` (a number).
- Gen2+: `{prefix}/events/rpc` (`NotifyEvent` of `input:N` components) and
  `{prefix}/online` (`true`/`false`); the prefix is the device id unless changed on the device.

A battery Shelly Button1 sleeps between presses: its `online: false` is ignored, and it is
supervised by silence instead (`translate_online`).
"""

from __future__ import annotations

from typing import Any

from edge.source.adapters.common import Action, Context, plausible_epoch, put_battery
from edge.source.adapters.config import AdaptersSection, default_device_id, native_of
from edge.source.adapters.memory import AdapterMemory
from edge.source.messages import DeviceMessage
from mashang.topics import SHELLY_GEN1_BASE

__all__ = [
    "BATTERY_BUTTON_PREFIX",
    "GEN1_BASE",
    "gen1_subscriptions",
    "gen2_subscriptions",
    "shelly_gen1_action",
    "shelly_gen2_action",
    "sleeps",
    "translate_gen1",
    "translate_gen2_rpc",
    "translate_online",
]

GEN1_BASE = SHELLY_GEN1_BASE
# A Shelly Button1's Gen1 id: `shellybutton1-<MAC>` (https://shelly-api-docs.shelly.cloud/gen1/).
BATTERY_BUTTON_PREFIX = "shellybutton1"


# -- subscriptions --------------------------------------------------------------------------


def gen1_subscriptions(config: AdaptersSection) -> list[str]:
    """Gen1 topic filters, before the dispatcher drops those another one covers."""
    if not config.shelly_gen1:
        return []
    filters = [f"{GEN1_BASE}/+/input_event/+"] if config.accept_unlisted else []
    for native in _natives(config):
        if "/" not in native:
            prefix = f"{GEN1_BASE}/{native}"
            filters += [f"{prefix}/input_event/+", f"{prefix}/online", f"{prefix}/sensor/battery"]
    return filters


def gen2_subscriptions(config: AdaptersSection) -> list[str]:
    """Gen2+ topic filters, before the dispatcher drops those another one covers."""
    if not config.shelly_gen2:
        return []
    filters = ["+/events/rpc"] if config.accept_unlisted else []
    for native in _natives(config):
        filters += [f"{native}/events/rpc", f"{native}/online"]
    return filters


def _natives(config: AdaptersSection) -> list[str]:
    return list(dict.fromkeys(native_of(name) for name in config.devices))


# -- events ---------------------------------------------------------------------------------


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


def shelly_gen2_action(event: object) -> Action | None:
    """A Gen2 input event as a canonical press: `single_push`, `double_push`, `triple_push`,
    `long_push`. `btn_down`, `btn_up` and switch-mode toggles are not presses."""
    if not isinstance(event, str) or not event.endswith("_push"):
        return None
    words = event[: -len("_push")].split("_")
    if "long" in words or "hold" in words:
        return "long"
    return "single" if words == ["single"] else "double"


def sleeps(native: str) -> bool:
    """A battery Shelly that sleeps between presses: a Button1 (`shellybutton1-<id>`)."""
    return native.lower().startswith(BATTERY_BUTTON_PREFIX)


# -- device ids -----------------------------------------------------------------------------


def _devices(ctx: Context, native: str) -> list[str]:
    """Device ids a Shelly device's own status concerns: the device and its mapped inputs."""
    ids = []
    for name, mapping in ctx.config.devices.items():
        if name == native or native_of(name) == native:
            ids.append(mapping.device_id or default_device_id(name))
    return list(dict.fromkeys(ids))


def _main_id(ctx: Context, native: str) -> str:
    mapping = ctx.config.devices.get(native)
    return (mapping.device_id if mapping else None) or default_device_id(native)


def _input_device(ctx: Context, native: str, channel: int) -> str | None:
    """The device id of one Shelly input, or None when unlisted presses are not accepted."""
    for name in (f"{native}/input:{channel}", native):
        mapping = ctx.config.devices.get(name)
        if mapping is not None:
            return mapping.device_id or default_device_id(native)
    return default_device_id(native) if ctx.config.accept_unlisted else None


def _index(text: str) -> int | None:
    """An input number from a topic level or a component name (`input:2`)."""
    return int(text) if text.isdecimal() and len(text) <= 6 else None


# -- translation ----------------------------------------------------------------------------


def translate_gen1(
    ctx: Context, levels: list[str], repeats: AdapterMemory | None
) -> list[DeviceMessage] | None:
    """The canonical messages for `shellies/{levels}`; None when it is no Gen1 topic."""
    channel = _index(levels[2]) if len(levels) == 3 and levels[1] == "input_event" else None
    if channel is not None:
        return _gen1_input(ctx, levels[0], channel, repeats)
    if len(levels) == 2 and levels[1] == "online":
        return translate_online(ctx, levels[0])
    if levels[1:] == ["sensor", "battery"] and len(levels) == 3:
        return _gen1_battery(ctx, levels[0])
    return None


def _gen1_input(
    ctx: Context, native: str, channel: int, repeats: AdapterMemory | None
) -> list[DeviceMessage]:
    device_id = _input_device(ctx, native, channel)
    if device_id is None:
        return []
    payload = ctx.decode_object(device_id, "events")
    if isinstance(payload, DeviceMessage):
        return [payload]
    event, native_count = payload.get("event"), payload.get("event_cnt")
    if not isinstance(event, str):
        return [ctx.rejected(device_id, "events", "invalid fields: event: expected a string")]
    try:
        action = shelly_gen1_action(event)
    except ValueError as exc:
        return [ctx.rejected(device_id, "events", f"invalid fields: event: {exc}")]
    counted = isinstance(native_count, int) and not isinstance(native_count, bool)
    count: int | None = native_count if counted else None
    if count is not None and repeats is not None and repeats.repeated(
        native, channel, event, count
    ):
        return []  # the periodic re-publication of an event already seen
    if action is None:
        return []
    if count is not None:
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


def _gen1_battery(ctx: Context, native: str) -> list[DeviceMessage]:
    device_ids = _devices(ctx, native)
    if not device_ids:
        return []
    value = ctx.decode(device_ids[0], "status")
    if isinstance(value, DeviceMessage):
        return [value]
    canonical: dict[str, Any] = {"state": "online"}
    put_battery(canonical, value)
    if "battery" not in canonical:
        reason = "invalid fields: battery: expected a percentage from 0 to 100"
        return [ctx.rejected(device_ids[0], "status", reason)]
    identity = ctx.received_identity()
    return [ctx.message(device_id, "status", canonical, {}, identity) for device_id in device_ids]


def translate_online(ctx: Context, native: str) -> list[DeviceMessage]:
    """`true` when the device connects, `false` as its last will (Gen1 and Gen2 alike).

    A battery Shelly Button1 sleeps between presses and may leave `false` behind each time
    it does (Home Assistant's Shelly discovery does not use its `online` topic either):
    its `false` is no news, and it is supervised by silence (its presses, battery
    reports and `true` are heard from it; quiet past its supervision interval, it is offline).
    """
    device_ids = _devices(ctx, native)
    if not device_ids:
        return []
    text = ctx.raw.decode("utf-8", errors="replace").strip()
    if text not in ("true", "false"):
        reason = f"invalid online payload: expected true or false, got {text[:40]!r}"
        return [ctx.rejected(device_ids[0], "status", reason)]
    if text == "false" and sleeps(native):
        return []
    canonical = {"state": "online" if text == "true" else "offline"}
    identity = ctx.received_identity()
    return [ctx.message(device_id, "status", canonical, {}, identity) for device_id in device_ids]


def translate_gen2_rpc(ctx: Context, native: str) -> list[DeviceMessage]:
    """The canonical messages for `{native}/events/rpc`: one press per input event."""
    if not _devices(ctx, native) and not ctx.config.accept_unlisted:
        return []
    main_id = _main_id(ctx, native)
    frame = ctx.decode_object(main_id, "events")
    if isinstance(frame, DeviceMessage):
        return [frame]
    if frame.get("method") != "NotifyEvent":
        return []  # NotifyStatus, NotifyFullStatus, RPC responses
    params = frame.get("params")
    events = params.get("events") if isinstance(params, dict) else None
    if not isinstance(params, dict) or not isinstance(events, list):
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
        device_id = _input_device(ctx, native, channel)
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
        moment = plausible_epoch(stamp) if isinstance(stamp, int | float) else None
        if moment is not None:
            canonical["ts"] = moment.isoformat()
        native_fields = {**event}
        if isinstance(frame.get("src"), str):
            native_fields["src"] = frame["src"]
        messages.append(ctx.message(device_id, "events", canonical, native_fields, identity))
    return messages
