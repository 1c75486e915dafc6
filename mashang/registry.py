"""The registry's models: who a button belongs to, who looks after a building, which stalls
and codes are valid where. The central is its source of truth and sends it whole
(`registry.replace`, PROTOCOL §4); the gateway keeps the last copy on disk
(`edge.registry_store`) so that it works offline and after a restart.
"""

from __future__ import annotations

from datetime import time
from typing import Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_SUPERVISION_HOURS = 25.0


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Contact(Entry):
    name: str
    phone: str | None = None


class Butler(Contact):
    id: str
    # Group-chat robot or other webhook URLs that reach this butler (central side).
    webhooks: list[str] = Field(default_factory=list)


class Resident(Contact):
    household: str | None = None
    building: str
    room: str | None = None


class Button(Entry):
    device_id: str
    resident: Resident
    # How long a button may stay silent before it counts as offline (social-alarm supervision).
    supervision_hours: float = Field(default=DEFAULT_SUPERVISION_HOURS, gt=0)


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

    def butlers_of_building(self, building_id: str) -> list[Butler]:
        building = self.building(building_id)
        if building is None:
            return []
        ids = [building.primary_butler, building.backup_butler]
        return [butler for butler in map(self.butler, ids) if butler is not None]
