"""The registry's models: who a button belongs to, who looks after a building, which stalls
and codes are valid where. The central is its source of truth and sends it whole
(`registry.replace`, PROTOCOL §4); the gateway keeps the last copy on disk
(`edge.registry_store`) so that it works offline and after a restart.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_SUPERVISION_HOURS = 25.0

# What a button's indicator is, which says what the gateway sends it (docs/indicators.md).
IndicatorKind = Literal[
    "zigbee2mqtt-light",         # zigbee2mqtt/{device}/set: a colour or white light
    "zigbee2mqtt-plug",          # zigbee2mqtt/{device}/set: a plug or relay, {"state": "ON"}
    "zigbee2mqtt-siren",         # zigbee2mqtt/{device}/set: an IAS warning device, {"warning": …}
    "zigbee2mqtt-melody-siren",  # zigbee2mqtt/{device}/set: a melody siren, {"melody": …}
    "shelly-gen1-rgbw",          # shellies/{device}/color/{channel}/set (JSON)
    "shelly-gen1-relay",         # shellies/{device}/relay/{channel}/command (on / off)
    "shelly-gen2-light",         # {device}/rpc, Light.Set
    "shelly-gen2-switch",        # {device}/rpc, Switch.Set
    "speaker",                   # {root}/speakers/{device}/play (PROTOCOL §1)
]
INDICATOR_KINDS: tuple[str, ...] = get_args(IndicatorKind)
SPEAKER_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Contact(Entry):
    name: str
    phone: str | None = None


class Butler(Contact):
    id: str
    # Group-chat robot or other webhook URLs that reach this butler (central side).
    webhooks: list[str] = Field(default_factory=list)
    # The butler's WeCom user id (企业微信 userid), when known: a WeCom robot then @-mentions
    # them in a markdown message (`<@userid>`); without it, by phone in a text message.
    wecom_userid: str | None = Field(default=None, min_length=1, max_length=64)


class Resident(Contact):
    household: str | None = None
    building: str
    room: str | None = None


class Indicator(Entry):
    """A device in the resident's flat that shows or says what became of a press: a light, a
    plug, a siren or a speaker. The gateway turns each feedback state into its native command
    (`edge/downlink/indicators.py`)."""

    kind: IndicatorKind
    # The Zigbee2MQTT friendly name, the Shelly Gen1 id (`shellyrgbw2-A4CF12F454A1`), the
    # Shelly Gen2 topic prefix (`shellyplus1-a8032ab12345`), or the speaker's id.
    device: str = Field(min_length=1, max_length=200)
    # The Shelly output (relay, light or switch id); 0 for the others.
    channel: int = Field(default=0, ge=0, le=15)

    @field_validator("device")
    @classmethod
    def _topic_levels(cls, value: str) -> str:
        if "+" in value or "#" in value or "\x00" in value:
            raise ValueError("must not contain the MQTT wildcards + or #")
        if any(not level for level in value.split("/")):
            raise ValueError("must not start or end with / or contain //")
        return value

    @model_validator(mode="after")
    def _speaker_id(self) -> Indicator:
        if self.kind == "speaker" and not SPEAKER_ID.match(self.device):
            raise ValueError("a speaker's device is a device id: letters, digits, . _ -")
        return self


class Button(Entry):
    device_id: str
    resident: Resident
    # How long a button may stay silent before it counts as offline (social-alarm supervision).
    supervision_hours: float = Field(default=DEFAULT_SUPERVISION_HOURS, gt=0)
    # Devices in the same flat that show the feedback (docs/indicators.md); optional.
    indicators: list[Indicator] = Field(default_factory=list)

    @field_validator("indicators")
    @classmethod
    def _distinct_indicators(cls, indicators: list[Indicator]) -> list[Indicator]:
        seen = set()
        for indicator in indicators:
            key = (indicator.kind, indicator.device, indicator.channel)
            if key in seen:
                raise ValueError(f"indicator {indicator.kind} {indicator.device!r} is named twice")
            seen.add(key)
        return indicators


class Building(Entry):
    id: str
    name: str
    primary_butler: str
    backup_butler: str | None = None


class Household(Entry):
    id: str
    building: str | None = None
    room: str | None = None
    elderly_living_alone: bool = False
    min_generation: int = Field(default=0, ge=0)


class Zone(Entry):
    id: str
    name: str


class Scanner(Entry):
    device_id: str
    zone: str | None = None
    purpose: Literal["checkin", "checkout", "inspect", "visit"] = "inspect"


class Stall(Entry):
    id: str
    name: str
    number: str | None = None
    zone: str
    hours: str = Field(pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$")
    min_generation: int = Field(default=0, ge=0)

    def open_window(self) -> tuple[time, time]:
        start, end = self.hours.split("-")
        return time.fromisoformat(start), time.fromisoformat(end)

    def open_at(self, moment: time) -> bool:
        # Hours are to the minute: "17:00-23:59" includes 23:59:30.
        moment = moment.replace(second=0, microsecond=0)
        start, end = self.open_window()
        if start <= end:
            return start <= moment <= end
        return moment >= start or moment <= end  # a night market past midnight


class Community(Entry):
    name: str = ""
    duty_contact: Contact | None = None
    # Where stall violations go: the street office's inspection channel, not the butlers.
    inspection_contact: Contact | None = None


class Registry(Entry):
    version: int = 0
    community: Community = Community()
    butlers: list[Butler] = Field(default_factory=list)
    buildings: list[Building] = Field(default_factory=list)
    buttons: list[Button] = Field(default_factory=list)
    households: list[Household] = Field(default_factory=list)
    zones: list[Zone] = Field(default_factory=list)
    scanners: list[Scanner] = Field(default_factory=list)
    stalls: list[Stall] = Field(default_factory=list)
    # Ed25519 public keys by key id (base64 of the 32 raw bytes): gateways never hold private keys.
    code_keys: dict[int, str] = Field(default_factory=dict)
    denied_codes: list[str] = Field(default_factory=list)

    @field_validator("butlers", "buildings", "buttons", "households", "zones", "scanners", "stalls")
    @classmethod
    def _unique_ids(cls, entries: list[Entry]) -> list[Entry]:
        seen: set[str] = set()
        for entry in entries:
            # Keyed by id, except buttons and scanners: by device_id.
            key = getattr(entry, "id", None) or cast("Button | Scanner", entry).device_id
            if key in seen:
                raise ValueError(f"duplicate id {key!r}")
            seen.add(key)
        return entries

    def button(self, device_id: str) -> Button | None:
        return next((b for b in self.buttons if b.device_id == device_id), None)

    def building(self, building_id: str) -> Building | None:
        return next((b for b in self.buildings if b.id == building_id), None)

    def butler(self, butler_id: str | None) -> Butler | None:
        return next((b for b in self.butlers if b.id == butler_id), None)

    def scanner(self, device_id: str) -> Scanner | None:
        return next((s for s in self.scanners if s.device_id == device_id), None)

    def stall(self, stall_id: str) -> Stall | None:
        return next((s for s in self.stalls if s.id == stall_id), None)

    def household(self, household_id: str) -> Household | None:
        return next((h for h in self.households if h.id == household_id), None)

    def zone(self, zone_id: str) -> Zone | None:
        return next((z for z in self.zones if z.id == zone_id), None)

    def butlers_of_building(self, building_id: str) -> list[Butler]:
        building = self.building(building_id)
        if building is None:
            return []
        ids = [building.primary_butler, building.backup_butler]
        return [butler for butler in map(self.butler, ids) if butler is not None]
