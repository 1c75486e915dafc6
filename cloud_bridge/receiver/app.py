"""The reference central endpoint: the receiver of PROTOCOL §3, the operators' event API, and
the assembly of the central's parts (alerts, downlink, webhooks, the butlers' console)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time

from aiohttp import web
from pydantic import ValidationError

from cloud_bridge.alerts.api import add_alert_routes
from cloud_bridge.alerts.book import AlertBook
from cloud_bridge.alerts.engine import AlertEngine
from cloud_bridge.alerts.live import AlertBus
from cloud_bridge.commands.queue import CommandQueue
from cloud_bridge.commands.relay import relay_registry_changes
from cloud_bridge.commands.routes import COMMANDS_KEY, add_command_routes
from cloud_bridge.config import CentralConfig
from cloud_bridge.console.accounts import AccountStore
from cloud_bridge.console.app import Console, add_console_routes
from cloud_bridge.httpkit import (
    CONFIG_KEY,
    HEARD_KEY,
    authenticate,
    int_param,
    problem,
    refuse,
    require_admin,
)
from cloud_bridge.metrics import METRICS_KEY, add_metrics_route
from cloud_bridge.notify.webhooks import Notifier
from cloud_bridge.receiver.openapi import Health, add_openapi_route
from cloud_bridge.receiver.store import Database, EventStore
from cloud_bridge.registry.api import add_registry_routes
from cloud_bridge.registry.source import RegistrySource
from cloud_bridge.stalls.pages import StallPages, add_stall_routes
from cloud_bridge.visits.watch import VisitWatch
from mashang.signing import MAX_SKEW_SECONDS, SIGNATURE_HEADER, Refusal
from mashang.wire import IngestRequest, IngestResult

log = logging.getLogger(__name__)

STORE_KEY = web.AppKey("store", EventStore)
ENGINE_KEY = web.AppKey("engine", AlertEngine)
REPLAYS_KEY = web.AppKey("replays", dict)


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
    gateway_id, refusal = authenticate(request, body)
    if gateway_id is None:
        assert refusal is not None  # authenticate gives one or the other
        log.warning("refused ingest from %s: %s", request.remote, refusal.text)
        return refuse(refusal)
    if seen_before(request.app, request.headers[SIGNATURE_HEADER]):
        return refuse(Refusal.REPLAYED)
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return problem(400, "body is not JSON")
    try:
        batch = IngestRequest.model_validate(document)
    except ValidationError as exc:
        return problem(
            422,
            "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:10]
            ),
        )
    if batch.gateway_id != gateway_id:
        return problem(403, "gateway_id in the body does not match the signed header")
    # Stored as sent (validated above): dumping 500 models again would cost the loop more.
    events = document["events"]
    store = request.app[STORE_KEY]
    accepted, duplicates = await asyncio.to_thread(store.add, gateway_id, events)
    request.app[METRICS_KEY].stored(gateway_id, events, accepted, duplicates)
    if accepted:
        request.app[ENGINE_KEY].poke()
    return web.json_response(IngestResult(accepted=accepted, duplicates=duplicates).model_dump())


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
    return web.json_response(Health(ok=True).model_dump())


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
    db = Database(config.database_path)
    registry = RegistrySource(config.registry_path)
    commands = CommandQueue(db, registry, list(config.gateways))
    book = AlertBook(db, config.alerts)
    notifier = Notifier(db, config, registry)
    bus = AlertBus()
    engine = AlertEngine(book, registry, notifier, bus, commands)
    app[CONFIG_KEY] = config
    app[STORE_KEY] = EventStore(db)
    app[ENGINE_KEY] = engine
    app[COMMANDS_KEY] = commands
    app[REPLAYS_KEY] = {}
    app[HEARD_KEY] = {}
    add_metrics_route(app, db)
    add_registry_routes(app)
    app.router.add_post("/v1/ingest", ingest)
    app.router.add_get("/v1/events", list_events)
    app.router.add_get("/healthz", healthz)
    add_openapi_route(app)
    add_command_routes(app)
    add_alert_routes(app, book, notifier)
    add_console_routes(app, Console(config, engine, registry, AccountStore(db), bus))
    stall_pages = StallPages(config.stalls, lambda: registry.current, db)
    add_stall_routes(app, stall_pages)
    visits = VisitWatch(db, app[STORE_KEY], registry, config.visits)
    background: list[asyncio.Task] = []

    async def start(app: web.Application) -> None:
        await notifier.start()
        await engine.start()
        # Queues the registry if it changed while the central was down, then watches it.
        relay = relay_registry_changes(registry, commands, config.central.registry_poll)
        background.append(asyncio.create_task(relay))
        background.append(asyncio.create_task(visits.run(engine.poke)))

    async def stop(app: web.Application) -> None:
        # Long-polls and live streams answer now instead of holding the shutdown up.
        commands.close()
        bus.close()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await engine.stop()
        await notifier.close()

    async def close_store(app: web.Application) -> None:
        db.close()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
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
