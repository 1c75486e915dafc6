"""What every HTTP handler of the central shares: its config, error bodies and the two ways
a caller proves who it is (a gateway's request signature, the operators' admin token)."""

from __future__ import annotations

import hmac
import json
import time

from aiohttp import web

from cloud_bridge.config import CentralConfig
from mashang.signing import (
    GATEWAY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Refusal,
    check_signature,
)

CONFIG_KEY = web.AppKey("config", CentralConfig)
# gateway id → Unix time of its last authentic request (the central's /metrics reads it).
HEARD_KEY = web.AppKey("heard", dict)


def problem(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


def json_error(error: type[web.HTTPError], reason: str) -> web.HTTPError:
    return error(text=json.dumps({"error": reason}), content_type="application/json")


def refuse(refusal: Refusal) -> web.Response:
    """401 for a gateway's request: the words, and the stable code tools match on."""
    return web.json_response({"error": refusal.text, "code": refusal}, status=401)


def authenticate(request: web.Request, body: bytes) -> tuple[str | None, Refusal | None]:
    """(gateway id, None) for an authentic request, else (None, why not)."""
    gateway_id = request.headers.get(GATEWAY_HEADER)
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    claimed = request.headers.get(SIGNATURE_HEADER)
    if not gateway_id or not timestamp or not claimed:
        return None, Refusal.MISSING_HEADERS
    key = request.app[CONFIG_KEY].gateway_key(gateway_id)
    if key is None:
        return None, Refusal.UNKNOWN_GATEWAY
    refusal = check_signature(key, timestamp, body, claimed)
    if refusal:
        return None, refusal
    heard = request.app.get(HEARD_KEY)
    if heard is not None:
        heard[gateway_id] = time.time()
    return gateway_id, None


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
