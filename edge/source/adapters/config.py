"""`[adapters]`: which adapters run, and which native devices are buttons under which ids.

Device ids: a native device is listed in `[adapters.devices."<native name>"]`, with the
`device_id` it has in the registry. An unlisted native name is used as the device id itself
when it is a valid one (Zigbee2MQTT's default names such as `0x00158d0001a2b3c4` and Shelly
ids are), otherwise a sanitised form with a short hash of the name (`Bedroom-button-3f9a1c`).
Presses of unlisted devices are accepted (a freshly paired button must never go unheard,
`accept_unlisted`); their availability and battery reports are not, so that lights, plugs and
sensors sharing the Zigbee network or the broker never pose as buttons. A Shelly input can be
mapped on its own: `[adapters.devices."shellyix3-A4CF12F454A1/input:2"]`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mashang.config import Section

__all__ = [
    "DEVICE_ID_PATTERN",
    "INPUT_KEY",
    "AdaptersSection",
    "DeviceMapping",
    "default_device_id",
    "native_of",
]

DEVICE_ID_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"
# The native name of a single Shelly input: `<shelly>/input:<n>`.
INPUT_KEY = re.compile(r"^(?P<native>.+)/input:(?P<input>\d+)$")

_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)


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
            if INPUT_KEY.match(name) and mapping.device_id is None:
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


def native_of(name: str) -> str:
    """The native device a name under `devices` belongs to (a Shelly input's, or itself)."""
    found = INPUT_KEY.match(name)
    return found.group("native") if found else name
