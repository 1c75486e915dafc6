"""Operators' drill endpoints (admin token): `POST /v1/drills` schedules a drill press for a
button, `GET /v1/drills` lists them, `DELETE /v1/drills/{id}` cancels one still to come."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloud_bridge.drills.schedule import NOTE_MAX, Drill, DrillError, DrillSchedule, parse_time
from cloud_bridge.httpkit import json_error, require_admin

DRILLS_KEY = web.AppKey("drills", DrillSchedule)


class DrillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(min_length=1, max_length=200)
    # '2026-11-30 10:00' in the community's time zone, or ISO 8601 with an offset; none: now.
    at: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, max_length=NOTE_MAX)


def drill_view(drill: Drill) -> dict[str, Any]:
    return asdict(drill)


async def schedule_drill(request: web.Request) -> web.Response:
    require_admin(request)
    try:
        asked = DrillRequest.model_validate_json(await request.read())
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                            for e in exc.errors()[:5])
        raise json_error(web.HTTPBadRequest, reasons) from None
    drills = request.app[DRILLS_KEY]
    try:
        due_at = time.time() if asked.at is None else parse_time(asked.at, drills.zone)
        drill = await asyncio.to_thread(drills.schedule, asked.device_id, due_at, "admin",
                                        asked.note)
    except DrillError as error:
        raise json_error(web.HTTPBadRequest, str(error)) from None
    drills.wake()
    return web.json_response(drill_view(drill), status=201)


async def list_drills(request: web.Request) -> web.Response:
    require_admin(request)
    drills = await asyncio.to_thread(request.app[DRILLS_KEY].listing)
    return web.json_response({"drills": [drill_view(drill) for drill in drills]})


async def cancel_drill(request: web.Request) -> web.Response:
    require_admin(request)
    cancelled = await asyncio.to_thread(request.app[DRILLS_KEY].cancel,
                                        request.match_info["drill_id"])
    if not cancelled:
        raise json_error(web.HTTPNotFound, "no such drill still to come")
    return web.json_response({"cancelled": request.match_info["drill_id"]})


def add_drill_routes(app: web.Application, drills: DrillSchedule) -> None:
    app[DRILLS_KEY] = drills
    app.router.add_post("/v1/drills", schedule_drill)
    app.router.add_get("/v1/drills", list_drills)
    app.router.add_delete("/v1/drills/{drill_id}", cancel_drill)
