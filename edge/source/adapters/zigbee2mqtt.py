"""Zigbee2MQTT buttons.

Native topics: `{base}/{friendly_name}` (the device's state: `action`, `battery`,
`linkquality`, `last_seen`...) and `{base}/{friendly_name}/availability`
(`{"state": "online"}`, or plain `online` with `legacy_availability_payload`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from edge.source.adapters.common import (
    PLAUSIBLE_SINCE,
    Action,
    Context,
    plausible_epoch,
    put_battery,
)
from edge.source.adapters.config import INPUT_KEY, AdaptersSection, default_device_id
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
    filters = [f"{base}/+"] if config.accept_unlisted else []
    for name in config.devices:
        if not INPUT_KEY.match(name):
            filters += [f"{base}/{name}", f"{base}/{name}/availability"]
    return filters


def zigbee2mqtt_action(action: object, *, listed: bool) -> Action | None:
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


def translate_zigbee2mqtt(ctx: Context, rest: str) -> list[DeviceMessage]:
    """The canonical messages for `{base}/{rest}`."""
    if rest == "bridge" or rest.startswith("bridge/") or "" in rest.split("/"):
        return []  # Zigbee2MQTT's own topics, never a device
    if rest.endswith("/availability"):
        return _availability(ctx, rest[: -len("/availability")])
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
        put_battery(canonical, state.get("battery"))
        moment = _moment(last_seen)
        if moment is not None:
            canonical["ts"] = moment.isoformat()
        return [ctx.message(device_id, "events", canonical, state, identity)]
    if mapping is None or ctx.retained:
        return []
    # A report (battery, link quality...) of a listed button: it spoke, so it is online.
    canonical = {"state": "online"}
    put_battery(canonical, state.get("battery"))
    return [ctx.message(device_id, "status", canonical, state, ctx.received_identity())]


def _availability(ctx: Context, name: str) -> list[DeviceMessage]:
    mapping = ctx.config.devices.get(name)
    if mapping is None:
        return []
    device_id = mapping.device_id or default_device_id(name)
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
