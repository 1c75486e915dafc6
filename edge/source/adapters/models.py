"""Zigbee buttons by model: each model's own `action` values, as Zigbee2MQTT documents them on
its device pages (https://www.zigbee2mqtt.io/devices/<model>.html, "Exposes: action"), mapped
onto the canonical presses.

The model is Zigbee2MQTT's `definition.model` (from `zigbee2mqtt/bridge/devices`, or the
`device.model` a state carries with `advanced.include_device_information`). A value mapped to
None ends a press that was already counted (a hold's release or stop), so that one long press
stays one press. A known model's action that its table does not name still counts as a single
press: such a model is a button, and a button's press is never ignored. A model not in the
table keeps the generic mapping (`zigbee2mqtt.zigbee2mqtt_action`).

SOS buttons' emergency is `long`, the critical press, as for every adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from edge.source.adapters.common import Action

__all__ = ["GUESSES", "MODEL_ACTIONS", "ModelActions"]

# Native action -> canonical press, or None for the end of one.
ModelActions = Mapping[str, Action | None]

_MULTI_CLICK: dict[str, Action | None] = {
    "single": "single",
    "double": "double",
    "triple": "double",
    "quadruple": "double",
    "hold": "long",
    "release": None,  # the end of a hold, already counted
}

MODEL_ACTIONS: Mapping[str, ModelActions] = MappingProxyType({
    # Xiaomi MiJia wireless switch: single, double, triple, quadruple, hold, release, many
    "WXKG01LM": MappingProxyType({**_MULTI_CLICK, "many": "double"}),
    # Aqara wireless mini switch: single, double, triple, quadruple, hold, release
    "WXKG11LM": MappingProxyType(dict(_MULTI_CLICK)),
    # Aqara wireless mini switch with gyroscope: single, double, hold, release, shake. A
    # shake is taken as a press: a button shaken (or dropped with its wearer) may be a call.
    "WXKG12LM": MappingProxyType({
        "single": "single", "double": "double", "hold": "long", "release": None,
        "shake": "single",
    }),
    # IKEA TRADFRI shortcut button: a click is `on`; a hold is `brightness_move_up` and its
    # release `brightness_stop`, so a hold is one long press, not two presses.
    "E1812": MappingProxyType({
        "on": "single", "brightness_move_up": "long", "brightness_stop": None,
    }),
    # Tuya SOS button: emergency
    "TS0215A_sos": MappingProxyType({"emergency": "long"}),
    # Loginovo SOS button: sos, emergency
    "ZG-101Z": MappingProxyType({"sos": "long", "emergency": "long"}),
    # SONOFF wireless button: single, double, long
    "SNZB-01": MappingProxyType({"single": "single", "double": "double", "long": "long"}),
})


def _guesses() -> Mapping[str, Action]:
    found: dict[str, Action] = {}
    for actions in MODEL_ACTIONS.values():
        for native, action in actions.items():
            if action is None:
                continue
            if found.setdefault(native, action) != action:
                raise ValueError(f"models disagree on {native!r}")  # caught by the unit tests
    return MappingProxyType(found)


# Every press word some model in the table uses, for a device whose model is not known yet
# (Zigbee2MQTT's device list not received): such a word is taken as that press rather than
# dropped, a false alarm from a remote control being better than a help button unheard.
GUESSES: Mapping[str, Action] = _guesses()
