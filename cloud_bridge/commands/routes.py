"""The downlink over HTTP (PROTOCOL §4): the long-poll of a gateway's command queue.

`GET /v1/gateways/{gateway_id}/commands?after={cursor}&wait={seconds}`, signed like ingest
over an empty body. The answer holds every command after the cursor, or, when there is none,
waits up to `wait` seconds for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiohttp import web

from cloud_bridge.commands.queue import CommandQueue
from cloud_bridge.httpkit import authenticate, int_param, is_whole_number, problem, refuse

MAX_WAIT = 120

COMMANDS_KEY = web.AppKey("commands", CommandQueue)


def parse_cursor(request: web.Request) -> int | None:
    raw = request.query.get("after", "")
    if raw in ("", "0"):
        return 0
    return int(raw) if is_whole_number(raw) else None


async def poll_commands(request: web.Request) -> web.Response:
    gateway_id, refusal = authenticate(request, b"")
    if gateway_id is None:
        assert refusal is not None  # authenticate gives one or the other
        return refuse(refusal)
    if request.match_info["gateway_id"] != gateway_id:
        return problem(403, "the gateway in the path does not match the signed header")
    after = parse_cursor(request)
    if after is None:
        return problem(400, "after must be a cursor this endpoint returned")
    wait = int_param(request, "wait", 0, MAX_WAIT)
    queue = request.app[COMMANDS_KEY]
    deadline = time.monotonic() + wait
    while True:
        # Take the wake-up signal before looking, so a command queued in between is not missed.
        signal = queue.signal(gateway_id)
        cursor, commands = await asyncio.to_thread(queue.fetch, gateway_id, after)
        remaining = deadline - time.monotonic()
        if commands or remaining <= 0 or queue.closing:
            return web.json_response({"cursor": str(cursor), "commands": commands})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signal.wait(), remaining)


def add_command_routes(app: web.Application) -> None:
    app.router.add_get("/v1/gateways/{gateway_id}/commands", poll_commands)
