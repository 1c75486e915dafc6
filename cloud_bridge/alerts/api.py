"""The operators' view of alerts (admin token): every alert, newest raised first, with its kind,
the time of each step, the latency from the press reaching the gateway and why a person resolved
it (`resolve_reason`, `resolve_note`), and one alert's steps and webhook deliveries."""

from __future__ import annotations

import asyncio

from aiohttp import web

from cloud_bridge.alerts.book import AlertBook
from cloud_bridge.alerts.states import Listing
from cloud_bridge.httpkit import int_param, json_error, require_admin
from cloud_bridge.notify.webhooks import Notifier

BOOK_KEY = web.AppKey("alert_book", AlertBook)
NOTIFIER_KEY = web.AppKey("notifier", Notifier)


async def list_alerts(request: web.Request) -> web.Response:
    require_admin(request)
    try:
        which = Listing(request.query.get("state", Listing.ALL))
    except ValueError:
        raise json_error(web.HTTPBadRequest, f"state must be one of {', '.join(Listing)}") from None
    limit = int_param(request, "limit", 1000, 10000)
    alerts = await asyncio.to_thread(
        request.app[BOOK_KEY].listing,
        buildings=None,
        which=which,
        limit=limit,
        device_id=request.query.get("device_id"),
    )
    return web.json_response({"alerts": [alert.as_dict() for alert in alerts]})


async def show_alert(request: web.Request) -> web.Response:
    require_admin(request)
    book = request.app[BOOK_KEY]
    alert = await asyncio.to_thread(book.get, request.match_info["alert_id"])
    if alert is None:
        raise json_error(web.HTTPNotFound, "no such alert")
    steps = await asyncio.to_thread(book.steps, alert.id)
    deliveries = await asyncio.to_thread(request.app[NOTIFIER_KEY].deliveries, alert.id)
    return web.json_response({"alert": alert.as_dict(), "steps": steps, "deliveries": deliveries})


def add_alert_routes(app: web.Application, book: AlertBook, notifier: Notifier) -> None:
    app[BOOK_KEY] = book
    app[NOTIFIER_KEY] = notifier
    app.router.add_get("/v1/alerts", list_alerts)
    app.router.add_get("/v1/alerts/{alert_id}", show_alert)
