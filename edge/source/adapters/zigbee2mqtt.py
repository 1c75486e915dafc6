"""Zigbee2MQTT buttons.

Native topics: `{base}/{friendly_name}` (the device's state: `action`, `battery`,
`linkquality`, `last_seen`...), `{base}/{friendly_name}/availability` (`{"state": "online"}`,
or plain `online` with `legacy_availability_payload`), and the bridge's own retained
`{base}/bridge/devices` and `{base}/bridge/info` (see `bridge`).

Which devices are buttons, under which device id:

- listed under `[adapters.devices]`: under the listed device id;
- a known button model (`models.MODEL_ACTIONS`, by the bridge's device list or the state's
  `device.model`): under its friendly name as device id (`default_device_id`), presses and
  availability and reports alike, so that a renamed button needs no listing to be heard and
  supervised (with `accept_unlisted`);
- anything else: only presses in the generic words (with `accept_unlisted`), under its name.

What an action means: the model's own table when the model is known (listed or not); the
generic words otherwise (`zigbee2mqtt_action`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from edge.source.adapters.bridge import (
    MAX_BRIDGE_BYTES,
    Problem,
    Zigbee2MqttBridge,
    buttons_of,
    output_problem,
    unheard_problem,
)
from edge.source.adapters.common import (
    PLAUSIBLE_SINCE,
    Action,
    Context,
    plausible_epoch,
    put_battery,
)
from edge.source.adapters.config import INPUT_KEY, AdaptersSection, default_device_id
from edge.source.adapters.models import GUESSES, MODEL_ACTIONS
from edge.source.messages import DeviceMessage

__all__ = ["subscriptions", "translate_zigbee2mqtt", "zigbee2mqtt_action"]

_SINGLE = {"single"}
_MULTIPLE = {"double", "triple", "quadruple", "many"}
_LONG = {"hold", "long"}
_EMERGENCY = {"emergency", "sos"}  # SOS buttons (e.g. Loginovo ZG-101Z): help is needed now


def subscriptions(config: AdaptersSection) -> list[str]:
    """Zigbee2MQTT's topic filters, before the dispatcher drops those another one covers."""
    if not config.zigbee2mqtt:
        return []
    base = config.zigbee2mqtt_base
    # The bridge's first: a broker that sends retained messages filter by filter (Mosquitto
    # does) then delivers the device list before the buttons' retained availability.
    filters = [f"{base}/bridge/devices", f"{base}/bridge/info"]
    if config.accept_unlisted:
        filters += [f"{base}/+", f"{base}/+/availability"]
    for name in config.devices:
        if not INPUT_KEY.match(name):
            filters += [f"{base}/{name}", f"{base}/{name}/availability"]
    return filters


def zigbee2mqtt_action(
    action: object, *, listed: bool, model: str | None = None, guess: bool = False
) -> Action | None:
    """A Zigbee2MQTT `action` as a canonical press, or None when it is not a press.

    A known `model` (`models.MODEL_ACTIONS`): its own table says; an action it does not name
    counts as for a listed button. Otherwise the generic words: `single`, `double`, `triple`,
    `quadruple`, `many`, `hold`, `long`, and SOS buttons' `emergency`/`sos`, also with a
    button name or number (`single_left`, `1_hold`); `release` and `*_release`/`*_stop` end a
    press, they are not one. For a listed (declared help) button the press word may stand
    anywhere (`on_hold`), and any other action still counts as a single press: a declared
    help button is never ignored. `guess`: the device's model is not known yet (no device
    list from the bridge): a press word of some known model (`on`) is taken as that press.
    """
    if not isinstance(action, str) or not action.strip():
        return None
    native = action.strip().lower()
    table = MODEL_ACTIONS.get(model) if model is not None else None
    if table is not None and native in table:
        return table[native]
    button = listed or table is not None
    words = native.split("_")
    if "release" in words or words[-1] == "stop":
        return None
    if words[0].isdecimal() and len(words) > 1:
        words = words[1:]  # a button number: `1_single`
    for word in words if button else words[:1]:
        if word in _LONG or word in _EMERGENCY:
            return "long"
        if word in _MULTIPLE:
            return "double"
        if word in _SINGLE:
            return "single"
    if guess and table is None and native in GUESSES:
        return GUESSES[native]
    return "single" if button else None


def translate_zigbee2mqtt(
    ctx: Context, rest: str, bridge: Zigbee2MqttBridge | None = None
) -> list[DeviceMessage]:
    """The canonical messages for `{base}/{rest}`; `bridge` remembers the bridge's topics."""
    if rest == "bridge/devices":
        return _bridge_devices(ctx, bridge)
    if rest == "bridge/info":
        return _bridge_info(ctx, bridge)
    if rest == "bridge" or rest.startswith("bridge/") or "" in rest.split("/"):
        return []  # Zigbee2MQTT's other topics, never a device
    if rest.endswith("/availability"):
        return _availability(ctx, rest[: -len("/availability")], bridge)
    name = rest
    mapping = ctx.config.devices.get(name)
    device_id = (mapping.device_id if mapping else None) or default_device_id(name)
    state = ctx.decode_object(device_id, "events")
    if isinstance(state, DeviceMessage):
        return [state]
    model = _model(name, bridge, state)
    # Presses queued in the session while the gateway was away arrive before the retained
    # device list; a retained state is old, never such a press.
    guess = model is None and not ctx.retained and (bridge is None or not bridge.devices_known)
    action = zigbee2mqtt_action(
        state.get("action"), listed=mapping is not None, model=model, guess=guess
    )
    native = {**state, "model": model} if model is not None and "model" not in state else state
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
        put_battery(canonical, state.get("battery"))
        moment = _moment(last_seen)
        if moment is not None:
            canonical["ts"] = moment.isoformat()
        return [ctx.message(device_id, "events", canonical, native, identity)]
    if not _supervised(ctx, mapping is not None, model) or ctx.retained:
        return []
    # A report (battery, link quality...) of a button: it spoke, so it is online.
    canonical = {"state": "online"}
    put_battery(canonical, state.get("battery"))
    return [ctx.message(device_id, "status", canonical, native, ctx.received_identity())]


def _model(name: str, bridge: Zigbee2MqttBridge | None, state: dict[str, Any]) -> str | None:
    """A known button model for the device, from the bridge's list or the state itself."""
    model = bridge.model_of(name) if bridge is not None else None
    if model is None:
        device = state.get("device")  # advanced.include_device_information
        model = device.get("model") if isinstance(device, dict) else None
    return model if isinstance(model, str) and model in MODEL_ACTIONS else None


def _supervised(ctx: Context, listed: bool, model: str | None) -> bool:
    """Whether a device's availability and reports count: a listed button's, or a known
    button model's (a light or a sensor must never pose as a button)."""
    return listed or (model is not None and ctx.config.accept_unlisted)


def _availability(
    ctx: Context, name: str, bridge: Zigbee2MqttBridge | None
) -> list[DeviceMessage]:
    mapping = ctx.config.devices.get(name)
    model = bridge.model_of(name) if bridge is not None else None
    if not _supervised(ctx, mapping is not None, model):
        return []
    device_id = (mapping.device_id if mapping else None) or default_device_id(name)
    text = ctx.raw.decode("utf-8", errors="replace").strip()
    native: dict[str, Any]
    state: object
    if text in ("online", "offline"):  # legacy_availability_payload: true
        native, state = {}, text
    else:
        decoded = ctx.decode_object(device_id, "status")
        if isinstance(decoded, DeviceMessage):
            return [decoded]
        native, state = decoded, decoded.get("state")
        if state not in ("online", "offline"):
            return [ctx.parser_rejection(device_id, "status")]
    return [ctx.message(device_id, "status", {"state": state}, native, ctx.received_identity())]


# -- the bridge's own topics ----------------------------------------------------------------


def _bridge_devices(ctx: Context, bridge: Zigbee2MqttBridge | None) -> list[DeviceMessage]:
    """bridge/devices: learn the buttons' models; no event, unless some button goes unheard."""
    devices = _bridge_json(ctx)
    if isinstance(devices, DeviceMessage):
        return [devices]
    if not isinstance(devices, list):
        kind = type(devices).__name__
        return [ctx.unreadable(f"bridge/devices must be a JSON list of devices, got {kind}")]
    buttons = buttons_of(devices)
    if bridge is not None:
        bridge.learn(buttons)
    config = ctx.config
    unheard = [
        button.friendly_name for button in buttons
        if "/" in button.friendly_name and config.accept_unlisted
        and button.friendly_name not in config.devices
    ]
    return _report(ctx, bridge, unheard_problem(unheard))


def _bridge_info(ctx: Context, bridge: Zigbee2MqttBridge | None) -> list[DeviceMessage]:
    """bridge/info: no event, unless its output mode hides presses."""
    info = _bridge_json(ctx)
    if isinstance(info, DeviceMessage):
        return [info]
    if not isinstance(info, dict):
        kind = type(info).__name__
        return [ctx.unreadable(f"bridge/info must be a JSON object, got {kind}")]
    return _report(ctx, bridge, output_problem(info))


def _report(
    ctx: Context, bridge: Zigbee2MqttBridge | None, problem: Problem | None
) -> list[DeviceMessage]:
    """A notice for a problem not reported yet (each time, without a memory)."""
    new = bridge.first_report(ctx.topic, problem) if bridge is not None else True
    if problem is None or not new:
        return []
    return [ctx.notice(problem.key, problem.reason, problem.setting, problem.value)]


def _bridge_json(ctx: Context) -> Any | DeviceMessage:
    """A bridge topic's JSON value (larger than a device's payload may be), or a rejection."""
    if len(ctx.raw) > MAX_BRIDGE_BYTES:
        return ctx.unreadable(
            f"payload too large: {len(ctx.raw)} bytes (limit {MAX_BRIDGE_BYTES})"
        )
    try:
        return json.loads(ctx.raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return ctx.unreadable(f"payload is not UTF-8: {exc.reason} at byte {exc.start}")
    except json.JSONDecodeError as exc:
        return ctx.unreadable(
            f"payload is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        )
    except (ValueError, RecursionError):  # integers past 4,300 digits, deep nesting
        return ctx.unreadable("payload is not JSON: a number too long or nesting too deep")


def _moment(last_seen: object) -> datetime | None:
    """`last_seen` as ISO_8601 or epoch (milliseconds); ISO_8601_local has no offset: None."""
    if isinstance(last_seen, bool):
        return None
    if isinstance(last_seen, int | float):
        return plausible_epoch(last_seen, scale=1000)
    if isinstance(last_seen, str):
        try:
            moment = datetime.fromisoformat(last_seen)
        except ValueError:
            return None
        if moment.tzinfo is not None and moment >= PLAUSIBLE_SINCE:
            return moment
    return None
