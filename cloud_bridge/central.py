"""The reference central endpoint: the receiver of PROTOCOL §3 and the operators' event API."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import signal
import time
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloud_bridge.config import CentralConfig
from cloud_bridge.store import EventStore
from edge.signing import (
    GATEWAY_HEADER,
    MAX_SKEW_SECONDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    check_signature,
)

log = logging.getLogger(__name__)

CONFIG_KEY = web.AppKey("config", CentralConfig)
STORE_KEY = web.AppKey("store", EventStore)
REPLAYS_KEY = web.AppKey("replays", dict)


class WireEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=64)
    kind: Literal["alert", "log"]
    type: str = Field(min_length=1, max_length=64)
    priority: Literal["critical", "high", "normal", "low"]
    device_id: str | None = Field(default=None, max_length=128)
    occurred_at: datetime
    received_at: datetime
    data: dict[str, Any] = Field(default_factory=dict)


class IngestRequest(BaseModel):
    gateway_id: str
    sent_at: datetime
    events: list[WireEvent] = Field(max_length=10000)


def problem(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


def authenticate(request: web.Request, body: bytes) -> tuple[str | None, str | None]:
    """(gateway id, None) for an authentic request, else (None, why not)."""
    gateway_id = request.headers.get(GATEWAY_HEADER)
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    claimed = request.headers.get(SIGNATURE_HEADER)
    if not gateway_id or not timestamp or not claimed:
        return None, "missing signature headers"
    key = request.app[CONFIG_KEY].gateway_key(gateway_id)
    if key is None:
        return None, "unknown gateway"
    reason = check_signature(key, timestamp, body, claimed)
    return (None, reason) if reason else (gateway_id, None)


def seen_before(app: web.Application, signature: str) -> bool:
    """A signature is good once: a captured request cannot be played again within its window."""
    seen: dict[str, float] = app[REPLAYS_KEY]
    moment = time.time()
    if len(seen) > 10000:
        for old in [sig for sig, at in seen.items() if moment - at > 2 * MAX_SKEW_SECONDS]:
            del seen[old]
    if signature in seen:
        return True
    seen[signature] = moment
    return False


async def ingest(request: web.Request) -> web.Response:
    body = await request.read()
    gateway_id, reason = authenticate(request, body)
    if gateway_id is None:
        log.warning("refused ingest from %s: %s", request.remote, reason)
        return problem(401, reason or "unauthorized")
    if seen_before(request.app, request.headers[SIGNATURE_HEADER]):
        return problem(401, "replayed request")
    try:
        batch = IngestRequest.model_validate_json(body)
    except ValidationError as exc:
        return problem(
            422,
            "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:10]
            ),
        )
    if batch.gateway_id != gateway_id:
        return problem(403, "gateway_id in the body does not match the signed header")
    events = [event.model_dump(mode="json") for event in batch.events]
    store = request.app[STORE_KEY]
    accepted, duplicates = await asyncio.to_thread(store.add, gateway_id, events)
    return web.json_response({"accepted": accepted, "duplicates": duplicates})


def require_admin(request: web.Request) -> None:
    token = request.app[CONFIG_KEY].central.admin_token
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if token is None or not hmac.compare_digest(
        offered.encode(), token.get_secret_value().encode()
    ):
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": "admin token required"}), content_type="application/json"
        )


def int_param(request: web.Request, name: str, default: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) > high:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"{name} must be a whole number from 0 to {high}"}),
            content_type="application/json",
        )
    return int(raw)


async def list_events(request: web.Request) -> web.Response:
    require_admin(request)
    after = int_param(request, "after", 0, 2**62)
    limit = int_param(request, "limit", 1000, 10000)
    events = await asyncio.to_thread(
        request.app[STORE_KEY].list, after=after, limit=limit, event_type=request.query.get("type")
    )
    cursor = events[-1]["seq"] if events else after
    return web.json_response({"events": events, "next": cursor})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@web.middleware
async def errors_as_json(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return problem(413, "request body too large")


def create_central_app(config: CentralConfig) -> web.Application:
    app = web.Application(
        client_max_size=config.central.max_body_bytes, middlewares=[errors_as_json]
    )
    app[CONFIG_KEY] = config
    app[STORE_KEY] = EventStore(config.central.data_dir / "central.sqlite")
    app[REPLAYS_KEY] = {}
    app.router.add_post("/v1/ingest", ingest)
    app.router.add_get("/v1/events", list_events)
    app.router.add_get("/healthz", healthz)

    async def close_store(app: web.Application) -> None:
        app[STORE_KEY].close()

    app.on_cleanup.append(close_store)
    return app


async def serve_central(config: CentralConfig) -> int:
    app = create_central_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.http.host, config.http.port).start()
    log.info("central listening on http://%s", config.central.listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    return 0


def run_central(config: CentralConfig) -> int:
    return asyncio.run(serve_central(config))
