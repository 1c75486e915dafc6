"""The reference central endpoint: the receiver of PROTOCOL §3, the operators' event API, and
the assembly of the central's parts (alerts, downlink, webhooks, the butlers' console)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal

from aiohttp import web
from pydantic import ValidationError

from cloud_bridge.alerts.api import add_alert_routes
from cloud_bridge.alerts.book import AlertBook
from cloud_bridge.alerts.engine import AlertEngine
from cloud_bridge.alerts.live import AlertBus
from cloud_bridge.alerts.supervision import SUPERVISION_KEY, Supervision
from cloud_bridge.commands.queue import CommandQueue
from cloud_bridge.commands.relay import relay_registry_changes
from cloud_bridge.commands.routes import COMMANDS_KEY, add_command_routes
from cloud_bridge.commands.signing import command_signing_key
from cloud_bridge.config import CentralConfig
from cloud_bridge.console.accounts import AccountStore
from cloud_bridge.console.app import Console, add_console_routes
from cloud_bridge.console.sessions import console_secret
from cloud_bridge.drills.api import add_drill_routes
from cloud_bridge.drills.schedule import DrillSchedule
from cloud_bridge.households.pages import HouseholdPages, add_household_routes
from cloud_bridge.httpkit import (
    CONFIG_KEY,
    authenticate_body,
    identify,
    int_param,
    problem,
    refuse,
    require_admin,
)
from cloud_bridge.metrics import METRICS_KEY, add_metrics_route
from cloud_bridge.notify.webhooks import Notifier
from cloud_bridge.office.app import OfficeView, add_office_routes
from cloud_bridge.office.reports import ReportWatch
from cloud_bridge.receiver.engines import open_database
from cloud_bridge.receiver.gateways import GATEWAYS_KEY, Gateways, devices_of
from cloud_bridge.receiver.openapi import Health, add_openapi_route
from cloud_bridge.receiver.replays import REPLAYS_KEY, Replays
from cloud_bridge.receiver.store import Database, EventStore
from cloud_bridge.registry.api import add_registry_routes
from cloud_bridge.registry.source import RegistrySource
from cloud_bridge.report.app import ReportPages, add_report_routes
from cloud_bridge.stalls.pages import StallPages, add_stall_routes
from cloud_bridge.visits.watch import VisitWatch
from mashang.signing import Refusal
from mashang.wire import IngestRequest, IngestResult

log = logging.getLogger(__name__)

STORE_KEY = web.AppKey("store", EventStore)
ENGINE_KEY = web.AppKey("engine", AlertEngine)
DATABASE_KEY = web.AppKey("database", Database)


# A log batch (500 events, ~150 KB) takes milliseconds to parse and check: that is done in a
# worker thread, so that the loop meanwhile takes an alert's request. An alert's few events are
# checked on the loop, where the hop to a thread would cost more than the work (bench/NOTES.md,
# "Issue 13 item 3").
OFF_LOOP_BYTES = 32 * 1024


def read_batch(body: bytes, gateway_id: str) -> tuple[dict, IngestRequest] | web.Response:
    """The body's document and its checked batch, or the answer that refuses it."""
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
    return document, batch


async def ingest(request: web.Request) -> web.Response:
    # Who and when from the headers first: the body of a request refused for them is never read.
    caller = identify(request)
    if isinstance(caller, Refusal):
        log.warning("refused ingest from %s: %s", request.remote, caller.text)
        return refuse(caller)
    limit = request.app[CONFIG_KEY].central.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return problem(413, f"request body too large (over {limit} bytes)")
    body = await request.read()
    refusal = await authenticate_body(caller, body, request)
    if refusal is not None:
        log.warning("refused ingest from %s: %s", request.remote, refusal.text)
        return refuse(refusal)
    gateway_id = caller.gateway_id
    if len(body) > OFF_LOOP_BYTES:
        read = await asyncio.to_thread(read_batch, body, gateway_id)
    else:
        read = read_batch(body, gateway_id)
    if isinstance(read, web.Response):
        return read
    document, batch = read
    if batch.gateway is None and document.get("gateway") is not None:
        log.warning("ignored gateway facts from %s that do not validate", gateway_id)
    # Stored as sent (validated above): dumping 500 models again would cost the loop more.
    events = document["events"]
    store = request.app[STORE_KEY]
    accepted, duplicates = await asyncio.to_thread(store.add, gateway_id, events)
    request.app[METRICS_KEY].stored(gateway_id, events, accepted, duplicates)
    if accepted:
        request.app[ENGINE_KEY].poke()
    await request.app[GATEWAYS_KEY].heard(gateway_id, batch.gateway, devices_of(events))
    return web.json_response(IngestResult(accepted=accepted, duplicates=duplicates).model_dump())


async def list_events(request: web.Request) -> web.Response:
    require_admin(request)
    after = int_param(request, "after", 0, 2**62)
    limit = int_param(request, "limit", 1000, 10000)
    event_type = request.query.get("type")
    if event_type is not None and "\x00" in event_type:
        # No event's type holds a NUL (mashang.wire.NO_NUL), and PostgreSQL takes none in text.
        return web.json_response({"events": [], "next": after})
    events = await asyncio.to_thread(
        request.app[STORE_KEY].list, after=after, limit=limit, event_type=event_type
    )
    cursor = events[-1]["seq"] if events else after
    return web.json_response({"events": events, "next": cursor})


async def healthz(request: web.Request) -> web.Response:
    """200 while the store takes writes; 503 with the reason when it does not, so that a load
    balancer sends to another process."""
    problem_text = await asyncio.to_thread(request.app[DATABASE_KEY].write_problem)
    if problem_text is not None:
        log.error("unhealthy: %s", problem_text)
        return web.json_response(Health(ok=False, error=problem_text).model_dump(), status=503)
    return web.json_response(Health(ok=True).model_dump(exclude_none=True))


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
    db = open_database(config)
    registry = RegistrySource(db, config.registry_path)
    commands = CommandQueue(db, registry, list(config.gateways))
    book = AlertBook(db, config.alerts)
    notifier = Notifier(db, config, registry, alerts=book.get)
    bus = AlertBus()
    engine = AlertEngine(book, registry, notifier, bus, commands)
    gateways = Gateways(db)
    supervision = Supervision(gateways, book, registry, list(config.gateways),
                              config.central.silent_after)
    app[CONFIG_KEY] = config
    app[STORE_KEY] = EventStore(db)
    app[ENGINE_KEY] = engine
    app[COMMANDS_KEY] = commands
    app[REPLAYS_KEY] = Replays(db)
    app[DATABASE_KEY] = db
    app[GATEWAYS_KEY] = gateways
    app[SUPERVISION_KEY] = supervision
    add_metrics_route(app, db, supervision)
    add_registry_routes(app, registry.table)
    app.router.add_post("/v1/ingest", ingest)
    app.router.add_get("/v1/events", list_events)
    app.router.add_get("/healthz", healthz)
    add_openapi_route(app)
    add_command_routes(app, command_signing_key(config, db))
    add_alert_routes(app, book, notifier)
    console = Console(config, engine, registry, AccountStore(db), bus)
    add_console_routes(app, console)
    add_report_routes(app, ReportPages(db, registry, console, config.central.zone))
    drills = DrillSchedule(db, registry, config.central.zone)
    add_drill_routes(app, drills)
    stall_pages = StallPages(
        config.stalls, lambda: registry.current, db, config.central.trusted_proxies,
        zone=config.central.zone, secret=console_secret(config, db),
    )
    add_stall_routes(app, stall_pages)
    # After the stall pages: their migration makes the columns the office reads.
    office = OfficeView(config, AccountStore(db), registry, db)
    add_office_routes(app, office)
    office_reports = ReportWatch(office.reports, notifier, lambda: registry.current)
    add_household_routes(app, HouseholdPages(lambda: registry.current, zone=config.central.zone))
    visits = VisitWatch(db, app[STORE_KEY], registry, config.visits, config.central.zone)
    # What the other central processes on a shared database must hear of at once.
    db.announce_changes("events", "events", "gateway_id")
    db.announce_changes("alerts", "alert", "id")
    db.announce_changes("commands", "command", "gateway_id")
    db.announce_changes("robot_queue", "robot", "endpoint")
    background: list[asyncio.Task] = []

    async def start(app: web.Application) -> None:
        await notifier.start(engine.delivered)
        await engine.start()
        loop = asyncio.get_running_loop()
        db.listen(lambda topic, payload: loop.call_soon_threadsafe(engine.heard, topic, payload))
        background.append(asyncio.create_task(supervision.run(engine.react)))
        # Queues the registry if it changed while the central was down, then watches it.
        relay = relay_registry_changes(registry, commands, config.central.registry_poll)
        background.append(asyncio.create_task(relay))
        background.append(asyncio.create_task(visits.run(engine.poke)))
        background.append(asyncio.create_task(office_reports.run()))
        background.append(asyncio.create_task(drills.run(app[STORE_KEY], engine.poke)))

    async def stop(app: web.Application) -> None:
        # Long-polls and live streams answer now instead of holding the shutdown up.
        commands.close()
        bus.close()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await office_reports.stop()
        await engine.stop()
        await notifier.close()

    async def close_store(app: web.Application) -> None:
        db.close()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    app.on_cleanup.append(close_store)
    return app


def migrate_central(config: CentralConfig) -> dict[str, int]:
    """Every part's schema brought to this release (each part migrates its tables when it is
    made), then the database closed: what `mashang central migrate` prints."""
    db = create_central_app(config)[DATABASE_KEY]
    try:
        return db.versions()
    finally:
        db.close()


async def serve_central(config: CentralConfig) -> int:
    app = create_central_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.http.host, config.http.port,
                      reuse_port=config.central.reuse_port).start()
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
