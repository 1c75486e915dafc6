"""What Zigbee2MQTT's bridge says about itself, remembered between messages.

- `{base}/bridge/devices` (retained): a JSON list of the devices, each with `friendly_name`,
  `ieee_address` and `definition` (`{"model": ..., "vendor": ...}`; null for the coordinator
  and unsupported devices). It is published again whenever a device joins, leaves or is
  renamed. Only the buttons whose model `models.MODEL_ACTIONS` knows are kept: their friendly
  name and model (https://www.zigbee2mqtt.io/guide/usage/mqtt_topics_and_messages.html,
  "zigbee2mqtt/bridge/devices").
- `{base}/bridge/info` (retained): among much else, the bridge's `config`; its
  `advanced.output` is `json` (the default), `attribute` or `attribute_and_json`
  (https://www.zigbee2mqtt.io/guide/configuration/mqtt.html). With `attribute` no JSON state
  is published: a press reaches the broker only as `{base}/<name>/action`, which the gateway
  does not read.

`Zigbee2MqttBridge` lives as long as the MQTT client (in `memory.AdapterMemory`); it is used
on paho's network thread, locked all the same, and bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edge.source.adapters.models import MODEL_ACTIONS

__all__ = [
    "MAX_BRIDGE_BYTES",
    "MAX_BUTTONS",
    "BridgeButton",
    "Problem",
    "Zigbee2MqttBridge",
    "buttons_of",
    "output_problem",
    "unheard_problem",
]

# bridge/devices holds every device's definition and exposes (kilobytes each): far more than
# a device's own payload may be. Larger documents are refused, not parsed.
MAX_BRIDGE_BYTES = 16 * 1024 * 1024
# Buttons remembered from one device list (a Zigbee network has a few hundred devices at most).
MAX_BUTTONS = 4096
# Names of unheard buttons quoted in one notice.
_QUOTED = 10


@dataclass(frozen=True, slots=True)
class BridgeButton:
    """A device of the bridge's list whose model is a known button."""

    friendly_name: str
    model: str
    ieee_address: str | None


@dataclass(frozen=True, slots=True)
class Problem:
    """A misconfiguration that hides presses: `key` says which (and whether it changed), the
    rest goes into the `gateway.misconfigured` event."""

    key: str
    reason: str
    setting: str
    value: str | list[str]


def buttons_of(devices: list[Any]) -> list[BridgeButton]:
    """The known buttons in a bridge/devices list (entries of another shape are skipped)."""
    found = []
    for entry in devices:
        if not isinstance(entry, dict):
            continue
        name, definition = entry.get("friendly_name"), entry.get("definition")
        model = definition.get("model") if isinstance(definition, dict) else None
        if not isinstance(name, str) or not name or not isinstance(model, str):
            continue
        if model not in MODEL_ACTIONS:
            continue
        ieee = entry.get("ieee_address")
        found.append(BridgeButton(name, model, ieee if isinstance(ieee, str) else None))
        if len(found) >= MAX_BUTTONS:
            break
    return found


def output_problem(info: dict[str, Any]) -> Problem | None:
    """The problem with bridge/info's `config.advanced.output`, if presses would be hidden."""
    config = info.get("config")
    advanced = config.get("advanced") if isinstance(config, dict) else None
    output = advanced.get("output", "json") if isinstance(advanced, dict) else "json"
    if output in ("json", "attribute_and_json"):
        return None
    shown = (output if isinstance(output, str) else repr(output))[:40]
    if output == "attribute":
        reason = (
            "Zigbee2MQTT is set to publish each value on a topic of its own "
            "(advanced.output: attribute) and no JSON state, so the gateway hears no Zigbee "
            "button at all: every press is lost. Set advanced.output to json (or remove it) in "
            "Zigbee2MQTT's configuration.yaml and restart Zigbee2MQTT."
        )
    else:
        reason = (
            f"Zigbee2MQTT's advanced.output is {shown!r}, which the gateway does not know: "
            "Zigbee button presses may not reach it. Set advanced.output to json in "
            "Zigbee2MQTT's configuration.yaml and restart Zigbee2MQTT."
        )
    return Problem(f"output={shown!r}", reason, "advanced.output", shown)


def unheard_problem(names: Iterable[str]) -> Problem | None:
    """Known buttons whose topics the gateway does not subscribe to (folder names), if any."""
    unheard = sorted(names)
    if not unheard:
        return None
    quoted = ", ".join(repr(name) for name in unheard[:_QUOTED])
    more = f" and {len(unheard) - _QUOTED} more" if len(unheard) > _QUOTED else ""
    reason = (
        f"Zigbee button {quoted}{more} has a friendly name with a '/', which the gateway does "
        "not subscribe to unless the name is listed: its presses are not heard. List it under "
        "[adapters.devices] in the gateway's configuration, or rename it without '/'."
    )
    return Problem(f"unheard={unheard!r}", reason, "friendly_name", unheard)


class Zigbee2MqttBridge:
    """The bridge's buttons (friendly name -> model) and the problems already reported."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, str] = {}
        self._known = False
        self._reported: dict[str, str] = {}

    @property
    def devices_known(self) -> bool:
        """Whether a device list has arrived (until then a device's model is unknown)."""
        with self._lock:
            return self._known

    def model_of(self, friendly_name: str) -> str | None:
        with self._lock:
            return self._models.get(friendly_name)

    def learn(self, buttons: list[BridgeButton]) -> None:
        """A new device list: it replaces the previous one."""
        models = {button.friendly_name: button.model for button in buttons[:MAX_BUTTONS]}
        with self._lock:
            self._models = models
            self._known = True

    def first_report(self, topic: str, problem: Problem | None) -> bool:
        """Whether `problem` (what `topic` shows now; None: nothing wrong) is new: a problem
        is reported once, again only after it changed or went away in between."""
        with self._lock:
            if problem is None:
                self._reported.pop(topic, None)
                return False
            if self._reported.get(topic) == problem.key:
                return False
            self._reported[topic] = problem.key
            return True
