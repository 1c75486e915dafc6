"""The downlink over HTTP (PROTOCOL §4): the long-poll of a gateway's command queue.

`GET /v1/gateways/{gateway_id}/commands?after={cursor}&wait={seconds}`, signed the v1.1 way
(PROTOCOL §6: a nonce, used once, and the path with its query). The answer holds every command
after the cursor, each signed by the central's command key (`commands.signing`), or, when there
is none, waits up to `wait` seconds for one. The optional `gateway` parameter carries the gateway's
facts (PROTOCOL §6) as compact JSON; facts that do not validate are ignored, never refused (the
poll is what carries the butlers' feedback to the buttons). A poll counts as hearing from the
gateway as it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_bridge.commands.queue import CommandQueue
from cloud_bridge.httpkit import authenticate_poll, int_param, is_whole_number, problem, refuse
from cloud_bridge.receiver.gateways import GATEWAYS_KEY
from mashang.signing import sign_command
from mashang.wire import FACTS_PARAM, facts_or_none

log = logging.getLogger(__name__)

MAX_WAIT = 120

COMMANDS_KEY = web.AppKey("commands", CommandQueue)
SIGNING_KEY = web.AppKey("command_signing_key", Ed25519PrivateKey)


def parse_cursor(request: web.Request) -> int | None:
    raw = request.query.get("after", "")
    if raw in ("", "0"):
        return 0
    return int(raw) if is_whole_number(raw) else None


async def poll_commands(request: web.Request) -> web.Response:
    gateway_id, refusal = await authenticate_poll(request)
    if gateway_id is None:
        assert refusal is not None  # authenticate_poll gives one or the other
        log.warning("refused a command poll from %s: %s", request.remote, refusal.text)
        return refuse(refusal)
    if request.match_info["gateway_id"] != gateway_id:
        return problem(403, "the gateway in the path does not match the signed header")
    raw_facts = request.query.get(FACTS_PARAM)
    facts = facts_or_none(raw_facts)
    if raw_facts is not None and facts is None:
        log.warning("ignored gateway facts from %s that do not validate", gateway_id)
    await request.app[GATEWAYS_KEY].heard(gateway_id, facts)
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
            key = request.app[SIGNING_KEY]
            signed = [sign_command(key, command) for command in commands]
            return web.json_response({"cursor": str(cursor), "commands": signed})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signal.wait(), remaining)


def add_command_routes(app: web.Application, signing_key: Ed25519PrivateKey) -> None:
    app[SIGNING_KEY] = signing_key
    app.router.add_get("/v1/gateways/{gateway_id}/commands", poll_commands)
