"""The registry's admin API: one button at a time, for `mashang device add|remove` at a gateway.

    PUT    /v1/registry/buttons/{device_id}   {"resident": {...}, "supervision_hours": 25,
                                                "kind": "button"}
    DELETE /v1/registry/buttons/{device_id}

Both want the admin token (`Authorization: Bearer <central.admin_token>`). A PUT merges the
button into the registry (a new button, or the same device id with new details), a DELETE takes
it out; either way in one transaction of the database (`RegistryTable.change`) with the version
one up, checked as `mashang registry import` checks an import (the resident's building must
exist). Every central process on the database notices the new version within
`central.registry_poll` seconds and relays it to every gateway (`registry.replace`), exactly as
after an import.

Refusals are 4xx with the reason in `{"error": ...}`: 400 (not JSON), 401 (token), 404 (DELETE
of a button the registry does not have), 409 (what the registry holds does not allow it: the
resident's building is not in it, or the stored registry is not valid for this release), 422
(an invalid device id or body).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloud_bridge.httpkit import problem, require_admin
from cloud_bridge.registry.admin import broken_references
from cloud_bridge.registry.table import RegistryTable
from mashang.config import describe_errors
from mashang.registry import DEFAULT_SUPERVISION_HOURS, Button, Registry, Resident

DEVICE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
TABLE_KEY = web.AppKey("registry_table", RegistryTable)

# What kind of device the button is at its gateway. The registry's Button has no field for it:
# it is checked and answered back, so that a gateway's tool and the central agree on it.
ButtonKind = Literal["button", "shelly-gen1", "shelly-gen2", "zigbee"]


class ButtonPut(BaseModel):
    """The body of `PUT /v1/registry/buttons/{device_id}`."""

    model_config = ConfigDict(extra="forbid")

    resident: Resident
    supervision_hours: float = Field(default=DEFAULT_SUPERVISION_HOURS, gt=0)
    kind: ButtonKind = "button"


class RegistryChange(BaseModel):
    """What a PUT or DELETE did: the registry's new version."""

    device_id: str
    version: int
    created: bool = False
    removed: bool = False
    kind: ButtonKind | None = None


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _change(table: RegistryTable, edit: Callable[[Registry], list[Button]]) -> Registry:
    """The registry with the buttons `edit` makes of the current one, version one up, stored;
    `edit` refuses by raising Refused, which leaves the registry as it was."""

    def changed(current: Registry) -> Registry:
        buttons = edit(current)
        try:
            updated = Registry.model_validate({**current.model_dump(), "buttons": [
                button.model_dump() for button in buttons], "version": current.version + 1})
        except ValidationError as exc:
            raise Refused(422, describe_errors(exc)) from exc
        problems = broken_references(updated)
        if problems:
            raise Refused(409, "; ".join(problems))
        return updated

    try:
        return table.change(changed)
    except ValidationError as exc:  # what is stored, not what was sent: that raised Refused
        raise Refused(409, f"the central's registry is not valid for this release, fix it "
                           f"first (`mashang registry import`): {exc}") from exc


def put_button(table: RegistryTable, device_id: str, body: ButtonPut) -> RegistryChange:
    button = Button(device_id=device_id, resident=body.resident,
                    supervision_hours=body.supervision_hours)
    created = False

    def edit(current: Registry) -> list[Button]:
        nonlocal created
        if current.building(body.resident.building) is None:
            known = ", ".join(sorted(b.id for b in current.buildings)) or "none yet"
            raise Refused(409, f"resident.building: no building {body.resident.building!r} in "
                               f"the registry (known: {known}); add it with `mashang registry "
                               "import`")
        created = current.button(device_id) is None
        return [b for b in current.buttons if b.device_id != device_id] + [button]

    updated = _change(table, edit)
    return RegistryChange(device_id=device_id, version=updated.version, created=created,
                          kind=body.kind)


def delete_button(table: RegistryTable, device_id: str) -> RegistryChange:
    def edit(current: Registry) -> list[Button]:
        if current.button(device_id) is None:
            raise Refused(404, f"no button {device_id!r} in the registry")
        return [b for b in current.buttons if b.device_id != device_id]

    updated = _change(table, edit)
    return RegistryChange(device_id=device_id, version=updated.version, removed=True)


def _device_id(request: web.Request) -> str:
    device_id = request.match_info["device_id"]
    if not DEVICE_ID.fullmatch(device_id):
        raise Refused(422, f"device_id {device_id!r}: 1 to 128 of A-Z a-z 0-9 . _ -")
    return device_id


async def put_button_route(request: web.Request) -> web.Response:
    require_admin(request)
    try:
        device_id = _device_id(request)
        raw = await request.read()
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):
            return problem(400, "body is not JSON")
        try:
            body = ButtonPut.model_validate(document)
        except ValidationError as exc:
            return problem(422, describe_errors(exc))
        change = await asyncio.to_thread(put_button, request.app[TABLE_KEY], device_id, body)
    except Refused as refused:
        return problem(refused.status, refused.reason)
    return web.json_response(change.model_dump(), status=200)


async def delete_button_route(request: web.Request) -> web.Response:
    require_admin(request)
    try:
        device_id = _device_id(request)
        change = await asyncio.to_thread(delete_button, request.app[TABLE_KEY], device_id)
    except Refused as refused:
        return problem(refused.status, refused.reason)
    return web.json_response(change.model_dump(), status=200)


def add_registry_routes(app: web.Application, table: RegistryTable) -> None:
    app[TABLE_KEY] = table
    app.router.add_put("/v1/registry/buttons/{device_id}", put_button_route)
    app.router.add_delete("/v1/registry/buttons/{device_id}", delete_button_route)
