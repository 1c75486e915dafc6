"""Who an alert goes to, and who may see it, from the central's registry.

Targets are strings: "butler:ID", "duty" (the community duty contact) or "inspection" (the
street office). An alert's ladder is a list of rungs; rung 0 is paged when it is raised, rung
n at its n-th escalation, and once the ladder is climbed each further escalation (a repeat)
pages every rung again.
"""

from __future__ import annotations

from collections.abc import Sequence

from cloud_bridge.alerts.book import Route
from mashang.registry import Registry

DUTY = "duty"
INSPECTION = "inspection"


def butler_target(butler_id: str) -> str:
    return f"butler:{butler_id}"


def ladder(
    registry: Registry, route: Route, building_id: str | None, served: Sequence[str] = ()
) -> list[list[str]]:
    """`served`: for a gateway's alert, the buildings behind the gateway."""
    if route == "inspection":
        return [[INSPECTION]]
    if route == "gateway":
        return gateway_ladder(registry, served)
    building = registry.building(building_id) if building_id else None
    if building is None:  # an unregistered button, or a building the central does not know
        return [[DUTY]]
    if route == "building":
        return [[butler_target(building.primary_butler)]]
    rungs = [[butler_target(building.primary_butler)]]
    if building.backup_butler:
        rungs.append([butler_target(building.backup_butler)])
    rungs.append([DUTY])
    return rungs


def gateway_ladder(registry: Registry, served: Sequence[str]) -> list[list[str]]:
    """A gateway gone silent: the duty contact first (someone to power it up or call the
    installer), then the buildings' butlers, primaries before backups, whose residents'
    buttons are mute meanwhile. A gateway with no building known behind it: the duty alone."""
    buildings = [b for b in map(registry.building, served) if b is not None]
    primaries = sorted({butler_target(b.primary_butler) for b in buildings})
    backups = sorted({butler_target(b.backup_butler) for b in buildings if b.backup_butler}
                     - set(primaries))
    return [[DUTY], *(rung for rung in (primaries, backups) if rung)]


def targets_for(rungs: list[list[str]], escalation: int) -> list[str]:
    if escalation < len(rungs):
        return rungs[escalation]
    return [target for rung in rungs for target in rung]


def buildings_of(registry: Registry, butler_id: str) -> frozenset[str]:
    """The buildings whose alerts, and residents, a butler may see: primary or backup."""
    return frozenset(
        building.id
        for building in registry.buildings
        if butler_id in (building.primary_butler, building.backup_butler)
    )
