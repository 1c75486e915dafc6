"""Who an alert goes to, and who may see it, from the central's registry.

Targets are strings: "butler:ID", "duty" (the community duty contact) or "inspection" (the
street office). An alert's ladder is a list of rungs; rung 0 is paged when it is raised, rung
n at its n-th escalation, and once the ladder is climbed each further escalation (a repeat)
pages every rung again.
"""

from __future__ import annotations

from cloud_bridge.alerts.book import Route
from mashang.registry import Registry

DUTY = "duty"
INSPECTION = "inspection"


def butler_target(butler_id: str) -> str:
    return f"butler:{butler_id}"


def ladder(registry: Registry, route: Route, building_id: str | None) -> list[list[str]]:
    if route == "inspection":
        return [[INSPECTION]]
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
