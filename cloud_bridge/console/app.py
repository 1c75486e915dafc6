"""The butlers' console: a mobile page at /console/ and its API under /v1/console/.

Every API answer that holds an alert needs a session, and an alert (with its resident's name,
room and phone) is shown only to the butlers of its building (primary or backup) and to the
community duty contact; to anyone else it does not exist (404). Actions need the session's
CSRF token in the X-CSRF-Token header. New and changed alerts reach an open page through a
server-sent event stream: first a `snapshot` of the open alerts, then one `alert` per change.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from cloud_bridge.alerts.book import Alert, LifecycleError
from cloud_bridge.alerts.engine import AlertEngine
from cloud_bridge.alerts.live import AlertBus
from cloud_bridge.alerts.routing import buildings_of
from cloud_bridge.alerts.states import Listing
from cloud_bridge.config import CentralConfig
from cloud_bridge.console.accounts import DUTY_ACCOUNT, AccountStore
from cloud_bridge.console.sessions import LoginLimiter, Session, SessionSigner, console_secret
from cloud_bridge.httpkit import json_error
from cloud_bridge.registry.source import RegistrySource

STATIC = Path(__file__).parent / "static"
COOKIE = "mashang_session"
CSRF_HEADER = "X-CSRF-Token"
KEEPALIVE_SECONDS = 15.0
LIST_LIMIT = 200
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
        " img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class Login(BaseModel):
    account: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


@dataclass(frozen=True)
class Viewer:
    account: str
    name: str
    session: Session


def alert_view(alert: Alert, building_names: dict[str, str]) -> dict[str, Any]:
    """What a butler's page shows of an alert."""
    data = alert.data
    resident = data.get("resident") if isinstance(data.get("resident"), dict) else None
    building = data.get("building") if isinstance(data.get("building"), dict) else {}
    return {
        "id": alert.id,
        "category": alert.category,
        "type": alert.type,
        "priority": alert.priority,
        "state": alert.state,
        "device_id": alert.device_id,
        "presses": alert.presses,
        "escalations": alert.escalations,
        "unregistered": bool(data.get("unregistered")),
        "action": data.get("action"),
        "battery": data.get("battery"),
        "reason": data.get("reason"),
        "building": {
            "id": alert.building,
            "name": building.get("name") or building_names.get(alert.building or ""),
        },
        "resident": resident
        and {key: resident.get(key) for key in ("name", "room", "phone", "household")},
        "raised_at": alert.raised_at,
        "notified_at": alert.notified_at,
        "acknowledged_at": alert.acknowledged_at,
        "acknowledged_by": alert.acknowledged_by,
        "resolved_at": alert.resolved_at,
        "resolved_by": alert.resolved_by,
    }


class Console:
    def __init__(
        self,
        config: CentralConfig,
        engine: AlertEngine,
        registry: RegistrySource,
        accounts: AccountStore,
        bus: AlertBus,
    ) -> None:
        settings = config.console
        self._engine = engine
        self._registry = registry
        self._accounts = accounts
        self._bus = bus
        self._signer = SessionSigner(console_secret(config), settings.session_ttl)
        self._limiter = LoginLimiter(settings.login_attempts, settings.login_window)
        self._secure = settings.secure_cookie
        # Recording "pushed" is a database write; it must not hold up the next live alert.
        self._recording: set[asyncio.Task] = set()

    # -- who is asking -------------------------------------------------------------------

    def _name(self, account: str) -> str | None:
        """The account's display name, or None if the registry no longer knows the person."""
        registry = self._registry.current
        if account == DUTY_ACCOUNT:
            duty = registry.community.duty_contact
            return duty.name if duty else "值班"
        butler = registry.butler(account)
        return butler.name if butler else None

    def _buildings(self, account: str) -> frozenset[str] | None:
        """None: every alert (the duty contact)."""
        if account == DUTY_ACCOUNT:
            return None
        return buildings_of(self._registry.current, account)

    def _may_see(self, account: str, alert: Alert) -> bool:
        buildings = self._buildings(account)
        return buildings is None or alert.building in buildings

    async def _viewer(self, request: web.Request) -> Viewer:
        session = self._signer.read(request.cookies.get(COOKIE))
        if session is None:
            raise json_error(web.HTTPUnauthorized, "login required")
        valid_from = await asyncio.to_thread(self._accounts.sessions_after, session.account)
        name = self._name(session.account)
        if valid_from is None or session.issued < valid_from or name is None:
            raise json_error(web.HTTPUnauthorized, "login required")
        return Viewer(session.account, name, session)

    async def _actor(self, request: web.Request) -> Viewer:
        """A viewer who may act: a JSON request carrying the session's CSRF token."""
        viewer = await self._viewer(request)
        if not self._signer.csrf_ok(viewer.session, request.headers.get(CSRF_HEADER)):
            raise json_error(web.HTTPForbidden, "CSRF token missing or wrong")
        return viewer

    def _view(self, alert: Alert) -> dict[str, Any]:
        names = {building.id: building.name for building in self._registry.current.buildings}
        return alert_view(alert, names)

    def _session_answer(self, viewer: Viewer) -> dict[str, Any]:
        return {
            "account": viewer.account,
            "name": viewer.name,
            "duty": viewer.account == DUTY_ACCOUNT,
            "csrf": self._signer.csrf_token(viewer.session),
            "expires": viewer.session.expires,
        }

    # -- sessions ------------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            raise json_error(web.HTTPUnsupportedMediaType, "send JSON")
        try:
            login = Login.model_validate_json(await request.read())
        except ValidationError as exc:
            raise json_error(web.HTTPUnprocessableEntity, "account and password needed") from exc
        address = request.remote or "unknown"
        wait = self._limiter.retry_after(login.account, address)
        if wait is not None:
            raise web.HTTPTooManyRequests(
                text=json.dumps({"error": "too many failed logins, try again later"}),
                content_type="application/json",
                headers={"Retry-After": str(int(wait) + 1)},
            )
        good = await asyncio.to_thread(self._accounts.check, login.account, login.password)
        name = self._name(login.account) if good else None
        if name is None:
            self._limiter.failed(login.account, address)
            raise json_error(web.HTTPUnauthorized, "wrong account or password")
        self._limiter.succeeded(login.account)
        cookie, session = self._signer.issue(login.account)
        response = web.json_response(self._session_answer(Viewer(login.account, name, session)))
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(self._signer.ttl),
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self._secure,
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        viewer = await self._actor(request)
        await asyncio.to_thread(self._accounts.end_sessions, viewer.account)
        response = web.json_response({"ok": True})
        response.del_cookie(COOKIE, path="/")
        return response

    async def session(self, request: web.Request) -> web.Response:
        return web.json_response(self._session_answer(await self._viewer(request)))

    # -- alerts --------------------------------------------------------------------------

    async def list_alerts(self, request: web.Request) -> web.Response:
        viewer = await self._viewer(request)
        which = Listing.RESOLVED if request.query.get("view") == "history" else Listing.OPEN
        alerts = await asyncio.to_thread(
            self._engine.book.listing,
            buildings=self._buildings(viewer.account),
            which=which,
            limit=LIST_LIMIT,
        )
        return web.json_response({"alerts": [self._view(alert) for alert in alerts]})

    async def _visible(self, viewer: Viewer, alert_id: str) -> Alert:
        alert = await asyncio.to_thread(self._engine.book.get, alert_id)
        if alert is None or not self._may_see(viewer.account, alert):
            raise json_error(web.HTTPNotFound, "no such alert")
        return alert

    async def show_alert(self, request: web.Request) -> web.Response:
        viewer = await self._viewer(request)
        alert = await self._visible(viewer, request.match_info["alert_id"])
        steps = await asyncio.to_thread(self._engine.book.steps, alert.id)
        return web.json_response({"alert": self._view(alert), "steps": steps})

    async def act(self, request: web.Request) -> web.Response:
        viewer = await self._actor(request)
        alert = await self._visible(viewer, request.match_info["alert_id"])
        action = (
            self._engine.acknowledge
            if request.match_info["action"] == "acknowledge"
            else self._engine.resolve
        )
        try:
            change = await action(alert.id, viewer.account, viewer.name)
        except LifecycleError as exc:
            raise json_error(web.HTTPConflict, str(exc)) from exc
        return web.json_response({"alert": self._view(change.alert if change else alert)})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._viewer(request)
        # Subscribe before taking the snapshot, so that no change falls between the two.
        subscription = self._bus.subscribe()
        try:
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
            )
            await response.prepare(request)
            alerts = await asyncio.to_thread(
                self._engine.book.listing,
                buildings=self._buildings(viewer.account),
                which=Listing.OPEN,
                limit=LIST_LIMIT,
            )
            await self._send(response, "snapshot", [self._view(alert) for alert in alerts])
            for alert in alerts:
                await self._pushed(viewer, alert)
            while (remaining := viewer.session.expires - time.time()) > 0:
                try:
                    alert = await subscription.next(min(KEEPALIVE_SECONDS, remaining))
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if alert is None:
                    break
                if self._may_see(viewer.account, alert):
                    await self._send(response, "alert", self._view(alert))
                    self._record_push(viewer, alert)
        except ConnectionResetError:
            pass  # the page went away
        finally:
            self._bus.unsubscribe(subscription)
        return response

    async def _send(self, response: web.StreamResponse, event: str, data: Any) -> None:
        payload = json.dumps(data, ensure_ascii=False)
        await response.write(f"event: {event}\ndata: {payload}\n\n".encode())

    async def _pushed(self, viewer: Viewer, alert: Alert) -> None:
        if alert.pushed_at is None:
            await self._engine.pushed(alert.id, viewer.account)

    def _record_push(self, viewer: Viewer, alert: Alert) -> None:
        """In the background: only the first push of an alert counts, whichever stream."""
        task = asyncio.create_task(self._pushed(viewer, alert))
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    # -- the page ------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")


async def console_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Security headers on the console's page and API (streams and errors too, hence a
    prepare hook rather than a middleware); nothing personal is cached."""
    if request.path.startswith(("/console", "/v1/console")):
        response.headers.update(SECURITY_HEADERS)
        if request.path.startswith("/v1/console"):
            response.headers["Cache-Control"] = "no-store"


def add_console_routes(app: web.Application, console: Console) -> None:
    app.on_response_prepare.append(console_headers)
    router = app.router

    async def to_console(request: web.Request) -> web.Response:
        raise web.HTTPFound("/console/")

    router.add_get("/", to_console)
    router.add_get("/console", to_console)
    router.add_get("/console/", console.page)
    router.add_static("/console/assets", STATIC)
    router.add_post("/v1/console/login", console.login)
    router.add_post("/v1/console/logout", console.logout)
    router.add_get("/v1/console/session", console.session)
    router.add_get("/v1/console/alerts", console.list_alerts)
    router.add_get("/v1/console/alerts/{alert_id}", console.show_alert)
    router.add_post("/v1/console/alerts/{alert_id}/{action:acknowledge|resolve}", console.act)
    router.add_get("/v1/console/stream", console.stream)
