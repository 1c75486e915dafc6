"""What a stall placard prints, taken from the central's registry.

A placard for a stall the registry does not know scans as `unknown_stall` at every gate, and a
placard that prints its own zone or hours drifts from what the gateways check. So the issuer
prints the registry's name, number, zone (by its display name) and hours, and refuses a stall
the registry does not know unless told to issue it anyway (a new stall, registered afterwards
from `issued.csv`).
"""

from __future__ import annotations

from collections.abc import Mapping

from cloud_bridge.issuing.keys import STALL_FIELDS, IssuingError
from mashang.registry import Registry, Stall


class StallDetailsSource:
    """Turns the columns given for a stall (``--name`` … or a CSV row) into what its placard
    prints. ``registry`` None means no registry to check against (then every stall is
    unregistered, and its zone is printed as given)."""

    def __init__(self, registry: Registry | None, *, allow_unregistered: bool) -> None:
        self._registry = registry
        self._allow_unregistered = allow_unregistered
        self.unregistered: list[str] = []  # the ids issued although the registry lacks them

    def __call__(self, stall_id: str, given: Mapping[str, str]) -> dict[str, str]:
        registry = self._registry
        stall = registry.stall(stall_id) if registry else None
        if registry is None or stall is None:
            return self._unregistered(stall_id, given)
        zone_name = _zone_name(registry, stall_id, stall.zone)
        recorded = _recorded(stall)
        drifting = [
            f"{field} {value!r}"
            for field, value in given.items()
            if value and value != recorded[field] and not (field == "zone" and value == zone_name)
        ]
        if drifting:
            raise IssuingError(
                f"stall {stall_id!r}: {', '.join(drifting)} differ from the registry's "
                f"({', '.join(f'{field} {recorded[field]!r}' for field in STALL_FIELDS)}): "
                "leave them out to print the registry's, or change the registry first"
            )
        return {**recorded, "zone_name": zone_name}

    def _unregistered(self, stall_id: str, given: Mapping[str, str]) -> dict[str, str]:
        if not self._allow_unregistered:
            where = "the registry" if self._registry else "a registry (no --config given)"
            raise IssuingError(
                f"stall {stall_id!r} is not in {where}: its placard would scan as "
                "unknown_stall; register it first, or pass --allow-unregistered and import "
                "issued.csv into the registry afterwards"
            )
        self.unregistered.append(stall_id)
        zone = given.get("zone", "").strip()
        if self._registry is None or not zone:
            return {**given, "zone_name": zone}
        known = {entry.id: entry.name for entry in self._registry.zones}
        by_name = {name: zone_id for zone_id, name in known.items()}
        zone_id = zone if zone in known else by_name.get(zone)
        if zone_id is None:
            raise IssuingError(
                f"stall {stall_id!r}: zone {zone!r} is not in the registry's zones "
                f"({', '.join(f'{key} {name}' for key, name in known.items()) or 'none'})"
            )
        return {**given, "zone": zone_id, "zone_name": known[zone_id]}


def _zone_name(registry: Registry, stall_id: str, zone_id: str) -> str:
    name = next((zone.name for zone in registry.zones if zone.id == zone_id), None)
    if name is None:
        raise IssuingError(
            f"stall {stall_id!r}: its zone {zone_id!r} has no entry in the registry's zones, "
            "so the placard has no name to print for it: add the zone with its display name"
        )
    return name


def _recorded(stall: Stall) -> dict[str, str]:
    return {"name": stall.name, "number": stall.number or "", "zone": stall.zone,
            "hours": stall.hours}
