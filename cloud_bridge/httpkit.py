"""What every HTTP handler of the central shares: its config, error bodies and the two ways
a caller proves who it is (a gateway's request signature, the operators' admin token)."""

from __future__ import annotations

import asyncio
import hmac
import json
from dataclasses import dataclass

from aiohttp import web

from cloud_bridge.config import CentralConfig
from cloud_bridge.receiver.replays import REPLAYS_KEY
from mashang.signing import (
    GATEWAY_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Refusal,
    check_poll_signature,
    check_signature,
    check_timestamp,
)

CONFIG_KEY = web.AppKey("config", CentralConfig)


def problem(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


def json_error(error: type[web.HTTPError], reason: str) -> web.HTTPError:
    return error(text=json.dumps({"error": reason}), content_type="application/json")


def refuse(refusal: Refusal) -> web.Response:
    """401 for a gateway's request: the words, and the stable code tools match on."""
    return web.json_response({"error": refusal.text, "code": refusal}, status=401)


@dataclass(frozen=True)
class Caller:
    """A gateway's signature headers, its id known and its timestamp fresh; the signature
    itself not checked yet."""

    gateway_id: str
    key: bytes
    timestamp: str
    claimed: str


def identify(request: web.Request) -> Caller | Refusal:
    """The headers alone, before any body is read: an unsigned request or one from a gateway
    the central does not know costs it no more than its headers, however big its body."""
    gateway_id = request.headers.get(GATEWAY_HEADER)
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    claimed = request.headers.get(SIGNATURE_HEADER)
    if not gateway_id or not timestamp or not claimed:
        return Refusal.MISSING_HEADERS
    key = request.app[CONFIG_KEY].gateway_key(gateway_id)
    if key is None:
        return Refusal.UNKNOWN_GATEWAY
    return check_timestamp(timestamp) or Caller(gateway_id, key, timestamp, claimed)


async def authenticate_body(caller: Caller, body: bytes, request: web.Request) -> Refusal | None:
    """None when `body` is what the caller signed, and its signature is used for the first
    time; else why not."""
    refusal = check_signature(caller.key, caller.timestamp, body, caller.claimed)
    if refusal is None and not await first_use(request, f"ingest:{caller.claimed.lower()}",
                                               caller.timestamp):
        refusal = Refusal.REPLAYED
    return refusal


async def authenticate_poll(request: web.Request) -> tuple[str | None, Refusal | None]:
    """(gateway id, None) for a poll signed the v1.1 way (PROTOCOL §6) with a nonce never
    used before, else (None, why not)."""
    caller = identify(request)
    if isinstance(caller, Refusal):
        return None, caller
    nonce = request.headers.get(NONCE_HEADER)
    # raw_path: the path and query exactly as they came on the request line.
    refusal = check_poll_signature(caller.key, caller.timestamp, nonce, request.raw_path,
                                   caller.claimed)
    if refusal is not None:
        return None, refusal
    assert nonce is not None  # checked above
    if not await first_use(request, f"poll:{caller.gateway_id}:{nonce.lower()}",
                           caller.timestamp):
        return None, Refusal.REPLAYED
    return caller.gateway_id, None


async def first_use(request: web.Request, mark: str, timestamp: str) -> bool:
    return await asyncio.to_thread(request.app[REPLAYS_KEY].first_use, mark, timestamp)


def require_admin(request: web.Request) -> None:
    token = request.app[CONFIG_KEY].central.admin_token
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if token is None or not hmac.compare_digest(
        offered.encode(), token.get_secret_value().encode()
    ):
        raise json_error(web.HTTPUnauthorized, "admin token required")


def is_whole_number(raw: str) -> bool:
    """ASCII digits of a size int() takes: `isdigit()` alone lets "²" and 5,000 digits by."""
    return raw.isascii() and raw.isdigit() and len(raw) <= 30


def int_param(request: web.Request, name: str, default: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not is_whole_number(raw) or int(raw) > high:
        raise json_error(web.HTTPBadRequest, f"{name} must be a whole number from 0 to {high}")
    return int(raw)
