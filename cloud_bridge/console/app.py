"""The butlers' console: a mobile page at /console/ and its API under /v1/console/.

Every API answer that holds an alert needs a session, and an alert (with its resident's name,
room and phone) is shown only to the butlers of its building (primary or backup) and to the
community duty contact; to anyone else it does not exist (404). Actions need the session's
CSRF token in the X-CSRF-Token header. New and changed alerts reach an open page through a
server-sent event stream: first a `snapshot` of the open alerts, then one `alert` per change,
and `ended` when the session ends (logout, new password, disabled account) before closing.
Stall matters are the duty room's: a butler of buildings never sees them, in no list, stream
or history. Resolving takes a reason (`Resolution`); the history pages and exports
(`history`).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cloud_bridge.alerts.book import Alert, LifecycleError, Reason, Search, categories_of
from cloud_bridge.alerts.engine import AlertEngine
from cloud_bridge.alerts.live import AlertBus, Subscription
from cloud_bridge.alerts.routing import buildings_of
from cloud_bridge.alerts.states import Listing
from cloud_bridge.alerts.supervision import SUPERVISION_KEY
from cloud_bridge.clients import client_address
from cloud_bridge.config import CentralConfig
from cloud_bridge.console import arrival, history
from cloud_bridge.console.accounts import BUTLER, DUTY_ACCOUNT, STREET_OFFICE, AccountStore
from cloud_bridge.console.gate import COOKIE, SessionGate, Viewer, add_page, redirect
from cloud_bridge.console.sessions import LoginLimiter, Session
from cloud_bridge.httpkit import json_error
from cloud_bridge.localtime import local
from cloud_bridge.office.facts import office_name
from cloud_bridge.registry.source import RegistrySource
from cloud_bridge.report.figures import Month, ReportError
from cloud_bridge.visits.facts import Overdue
from cloud_bridge.visits.month import as_dict as visit_lists
from cloud_bridge.visits.month import month_lists

STATIC = Path(__file__).parent / "static"
KEEPALIVE_SECONDS = 15.0
# An open stream asks the database this often whether its session still holds: a logout, a
# new password or a disabled account, made by this process or another, ends it this soon.
SESSION_RECHECK_SECONDS = 2.0
LIST_LIMIT = 200
NOTE_MAX = 500
# What a butler of buildings may see; the duty room (no building restriction) sees stalls too.
BUTLER_KINDS = history.KINDS - {"stall"}


class Login(BaseModel):
    account: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class Resolution(BaseModel):
    """The body of a resolve: the one-tap reason, and a note ("other" says it there)."""

    model_config = ConfigDict(str_strip_whitespace=True)

    reason: Reason
    note: str | None = Field(default=None, max_length=NOTE_MAX)

    @model_validator(mode="after")
    def _other_says_why(self) -> Resolution:
        self.note = self.note or None  # a blank note is no note
        if self.reason == "other" and self.note is None:
            raise ValueError("a note is needed when the reason is other")
        return self


def resolution(body: bytes) -> Resolution:
    try:
        return Resolution.model_validate_json(body)
    except ValidationError as exc:
        raise json_error(web.HTTPBadRequest, refused_fields(exc)) from exc


def refused_fields(exc: ValidationError) -> str:
    """"field: what is wrong" for each refused field, in pydantic's words."""
    reasons = []
    for error in exc.errors():
        where = ".".join(map(str, error["loc"]))
        what = error["msg"].removeprefix("Value error, ")
        reasons.append(f"{where}: {what}" if where else what)
    return "; ".join(reasons)


def gateway_facts(data: dict[str, Any]) -> dict[str, Any]:
    """The buildings and the number of buttons behind a gateway in trouble, as it was raised."""
    buildings = data.get("buildings") if isinstance(data.get("buildings"), list) else []
    buttons = data.get("buttons")
    return {
        "buildings": [
            {"id": building.get("id"), "name": building.get("name")}
            for building in buildings
            if isinstance(building, dict)
        ],
        "buttons": buttons if isinstance(buttons, int) and not isinstance(buttons, bool) else None,
    }


def alert_view(
    alert: Alert, building_names: dict[str, str], zone: ZoneInfo, now: float
) -> dict[str, Any]:
    """What a butler's page shows of an alert (a visit's days counted to `now`)."""
    data = alert.data
    overdue = Overdue.of(data) if alert.kind == "visit" else None
    resident = data.get("resident") if isinstance(data.get("resident"), dict) else None
    building = data.get("building") if isinstance(data.get("building"), dict) else {}
    return {
        "id": alert.id,
        "kind": alert.kind,
        "category": alert.category,
        "type": alert.type,
        "priority": alert.priority,
        "state": alert.state,
        "device_id": alert.device_id,
        "gateway_id": alert.gateway_id,
        # About the gateway itself (gateway.silent, gateway.outbox_replaced, ...).
        "gateway": gateway_facts(data) if alert.type.startswith("gateway.") else None,
        "presses": alert.presses,
        "escalations": alert.escalations,
        "unregistered": bool(data.get("unregistered")),
        "drill": bool(data.get("drill")),  # a scheduled drill press (演练), counted apart
        "action": data.get("action"),
        "battery": data.get("battery"),
        "reason": data.get("reason"),
        "building": {
            "id": alert.building,
            "name": building.get("name") or building_names.get(alert.building or ""),
        },
        "resident": resident
        and {key: resident.get(key) for key in ("name", "room", "phone", "household")},
        # A visit reminder (待探访): the last visit, its date in the community's zone, the days.
        "visit": overdue and overdue.view(now, zone),
        "raised_at": alert.raised_at,
        "notified_at": alert.notified_at,
        "acknowledged_at": alert.acknowledged_at,
        "acknowledged_by": alert.acknowledged_by,
        # The household code is to be scanned at the door (the console's "我已到达 · 扫码")
        # by `arrive_by`, or the call escalates again.
        "arrival_expected": alert.household is not None,
        "arrive_by": alert.next_escalation_at if alert.state == "acknowledged" else None,
        "on_site_at": alert.on_site_at,
        "on_site_by": alert.on_site_by,
        "resolved_at": alert.resolved_at,
        "resolved_by": alert.resolved_by,
        "resolve_reason": alert.resolve_reason,
        "resolve_note": alert.resolve_note,
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
        self._gate = SessionGate(config, accounts)
        self._limiter = LoginLimiter(accounts.database, settings)
        self._proxies = config.central.trusted_proxies
        self._secure = settings.secure_cookie
        self._zone = config.central.zone
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

    def buildings(self, account: str) -> frozenset[str] | None:
        """None: every alert (the duty contact)."""
        if account == DUTY_ACCOUNT:
            return None
        return buildings_of(self._registry.current, account)

    def _kinds(self, account: str) -> frozenset[str]:
        return history.KINDS if self.buildings(account) is None else BUTLER_KINDS

    def _may_see(self, account: str, alert: Alert) -> bool:
        buildings = self.buildings(account)
        if buildings is None:
            return True
        return bool(alert.buildings & buildings) and alert.kind in BUTLER_KINDS

    async def viewer(self, request: web.Request) -> Viewer:
        """Who is asking: 401 unless the session holds and the registry still knows its person,
        as `_holds` asks again of an open stream. A butler's account only (or the duty
        room's): a street office account a registry later named a butler sees nothing here."""
        session = await self._gate.session(request, BUTLER)
        name = self._name(session.account)
        if name is None:
            raise json_error(web.HTTPUnauthorized, "login required")
        return Viewer(session.account, name, session)

    async def _holds(self, session: Session) -> bool:
        """The session holds (not expired, not ended by a logout, a new password or a
        disabled account) and its person is still in the registry."""
        return (
            await self._gate.holds(session, BUTLER) and self._name(session.account) is not None
        )

    async def _actor(self, request: web.Request) -> Viewer:
        """A viewer who may act: a JSON request carrying the session's CSRF token."""
        viewer = await self.viewer(request)
        self._gate.require_csrf(viewer.session, request)
        return viewer

    def _view(self, alert: Alert) -> dict[str, Any]:
        names = {building.id: building.name for building in self._registry.current.buildings}
        return alert_view(alert, names, self._zone, time.time())

    def _session_answer(self, viewer: Viewer) -> dict[str, Any]:
        return {**self._gate.answer(viewer), "duty": viewer.account == DUTY_ACCOUNT}

    # -- sessions ------------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            raise json_error(web.HTTPUnsupportedMediaType, "send JSON")
        try:
            login = Login.model_validate_json(await request.read())
        except ValidationError as exc:
            raise json_error(web.HTTPUnprocessableEntity, "account and password needed") from exc
        address = client_address(request, self._proxies)
        wait = await asyncio.to_thread(self._limiter.attempt, login.account, address)
        if wait is not None:
            raise web.HTTPTooManyRequests(
                text=json.dumps({"error": "too many failed logins from here, try again later"}),
                content_type="application/json",
                headers={"Retry-After": str(int(wait) + 1)},
            )
        good = await asyncio.to_thread(self._accounts.check, login.account, login.password)
        kind = await asyncio.to_thread(self._accounts.kind, login.account) if good else None
        # A street office account logs in here too; its session is good at /office/ alone.
        name = (
            office_name(self._registry.current)
            if kind == STREET_OFFICE
            else self._name(login.account) if kind == BUTLER else None
        )
        if name is None:
            raise json_error(web.HTTPUnauthorized, "wrong account or password")
        await asyncio.to_thread(self._limiter.succeeded, login.account, address)
        cookie, session = self._gate.signer.issue(login.account)
        answer = self._session_answer(Viewer(login.account, name, session))
        if kind == STREET_OFFICE:
            answer["home"] = "/office/"  # the page this account's session is good for
        response = web.json_response(answer)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(self._gate.signer.ttl),
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self._secure,
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        viewer = await self._actor(request)
        return await self._gate.logout(viewer.session)

    async def session(self, request: web.Request) -> web.Response:
        return web.json_response(self._session_answer(await self.viewer(request)))

    # -- alerts --------------------------------------------------------------------------

    async def list_alerts(self, request: web.Request) -> web.Response:
        viewer = await self.viewer(request)
        if request.query.get("view") == "history":
            return await self._history_page(viewer, request)
        alerts = await self._open_alerts(viewer)
        return web.json_response({"alerts": [self._view(alert) for alert in alerts]})

    async def _open_alerts(self, viewer: Viewer) -> list[Alert]:
        return await asyncio.to_thread(
            self._engine.book.listing,
            buildings=self.buildings(viewer.account),
            which=Listing.OPEN,
            limit=LIST_LIMIT,
            search=Search(categories=categories_of(self._kinds(viewer.account))),
        )

    async def _history(
        self, viewer: Viewer, asked: history.HistoryQuery, limit: int
    ) -> list[Alert]:
        return await asyncio.to_thread(
            self._engine.book.listing,
            buildings=self.buildings(viewer.account),
            which=Listing.RESOLVED,
            limit=limit,
            search=asked.search(self._kinds(viewer.account), self._zone),
            before=asked.before,
        )

    def _asked(self, request: web.Request) -> history.HistoryQuery:
        try:
            return history.HistoryQuery.parse(request.query)
        except history.BadQuery as exc:
            raise json_error(web.HTTPBadRequest, str(exc)) from exc

    async def _history_page(self, viewer: Viewer, request: web.Request) -> web.Response:
        asked = self._asked(request)
        alerts = await self._history(viewer, asked, asked.limit + 1)
        page = alerts[: asked.limit]
        more = len(alerts) > asked.limit
        return web.json_response(
            {
                "alerts": [self._view(alert) for alert in page],
                "next": history.cursor(page[-1]) if more else None,
            }
        )

    async def export(self, request: web.Request) -> web.Response:
        """The history as CSV, the same filters without paging, up to EXPORT_MAX alerts."""
        viewer = await self.viewer(request)
        asked = self._asked(request)
        alerts = await self._history(viewer, asked, history.EXPORT_MAX)
        rows = [(alert, self._view(alert)) for alert in alerts]
        body = await asyncio.to_thread(history.export, rows, self._zone)
        day = asked.day or local(time.time(), self._zone).date()
        return web.Response(
            body=body,
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="alerts-{day}.csv"'},
        )

    async def _visible(self, viewer: Viewer, alert_id: str) -> Alert:
        alert = await asyncio.to_thread(self._engine.book.get, alert_id)
        if alert is None or not self._may_see(viewer.account, alert):
            raise json_error(web.HTTPNotFound, "no such alert")
        return alert

    async def show_alert(self, request: web.Request) -> web.Response:
        viewer = await self.viewer(request)
        alert = await self._visible(viewer, request.match_info["alert_id"])
        steps = await asyncio.to_thread(self._engine.book.steps, alert.id)
        return web.json_response({"alert": self._view(alert), "steps": steps})

    async def act(self, request: web.Request) -> web.Response:
        viewer = await self._actor(request)
        alert = await self._visible(viewer, request.match_info["alert_id"])
        try:
            if request.match_info["action"] == "acknowledge":
                change = await self._engine.acknowledge(alert.id, viewer.account, viewer.name)
            else:
                said = resolution(await request.read())
                change = await self._engine.resolve(
                    alert.id, viewer.account, viewer.name, said.reason, said.note
                )
        except LifecycleError as exc:
            raise json_error(web.HTTPConflict, str(exc)) from exc
        return web.json_response({"alert": self._view(change.alert if change else alert)})

    async def arrive(self, request: web.Request) -> web.Response:
        """The butler at the door scanned (or typed) the resident's household code."""
        viewer = await self._actor(request)
        alert = await self._visible(viewer, request.match_info["alert_id"])
        try:
            said = arrival.DoorCode.model_validate_json(await request.read())
        except ValidationError as exc:
            raise json_error(web.HTTPBadRequest, refused_fields(exc)) from exc
        today = local(time.time(), self._zone).date()
        try:
            household = arrival.household_of(self._registry.current, said.code, today)
            arrival.door_of(alert, household)
            change = await self._engine.arrive(alert.id, viewer.account, viewer.name, household)
        except arrival.NotProof as exc:
            error = web.HTTPBadRequest if exc.status == 400 else web.HTTPConflict
            raise json_error(error, exc.words) from exc
        except LifecycleError as exc:
            raise json_error(web.HTTPConflict, str(exc)) from exc  # changed meanwhile
        return web.json_response({"alert": self._view(change.alert if change else alert)})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        viewer = await self.viewer(request)
        # Subscribe before taking the snapshot, so that no change falls between the two.
        subscription = self._bus.subscribe()
        try:
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
            )
            await response.prepare(request)
            alerts = await self._open_alerts(viewer)
            await self._send(response, "snapshot", [self._view(alert) for alert in alerts])
            for alert in alerts:
                await self._pushed(viewer, alert)
            if await self._follow(response, viewer, subscription):
                await self._send(response, "ended", {"reason": "session ended"})
        except ConnectionResetError:
            pass  # the page went away
        finally:
            self._bus.unsubscribe(subscription)
        return response

    async def _follow(
        self, response: web.StreamResponse, viewer: Viewer, subscription: Subscription
    ) -> bool:
        """Send the viewer's alerts as they change until the session ends (True) or the bus
        ends the stream (False: the central stops, or the stream fell behind)."""
        checked = written = time.monotonic()
        while True:
            now = time.monotonic()
            if now - checked >= SESSION_RECHECK_SECONDS:
                if not await self._holds(viewer.session):
                    return True
                checked = now
            if now - written >= KEEPALIVE_SECONDS:
                await response.write(b": keepalive\n\n")
                written = now
            try:
                alert = await subscription.next(checked + SESSION_RECHECK_SECONDS - now)
            except TimeoutError:
                continue
            if alert is None:
                return False
            if not self._may_see(viewer.account, alert):
                continue
            # Asked again right before sending: no alert reaches a session that has ended.
            if not await self._holds(viewer.session):
                return True
            await self._send(response, "alert", self._view(alert))
            self._record_push(viewer, alert)
            checked = written = time.monotonic()

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

    # -- the fleet -----------------------------------------------------------------------

    async def fleet(self, request: web.Request) -> web.Response:
        """The gateways serving the viewer's buildings (every gateway for an account without a
        building restriction), silent ones first (`Supervision.fleet`)."""
        viewer = await self.viewer(request)
        gateways = await asyncio.to_thread(
            request.app[SUPERVISION_KEY].fleet, self.buildings(viewer.account)
        )
        return web.json_response({"gateways": gateways})

    # -- visits --------------------------------------------------------------------------

    async def visits(self, request: web.Request) -> web.Response:
        """The month's visit list (?month=YYYY-MM, this month by default): the butler's own
        residents living alone, every butler's for the duty room (visits/month.py)."""
        viewer = await self.viewer(request)
        now = time.time()
        asked = request.query.get("month") or local(now, self._zone).strftime("%Y-%m")
        try:
            month = Month.parse(asked, self._zone)
        except ReportError as exc:
            raise json_error(web.HTTPBadRequest, str(exc)) from None
        butler = None if viewer.account == DUTY_ACCOUNT else viewer.account
        lists = await asyncio.to_thread(
            month_lists, self._accounts.database, self._registry.current, month, now, butler
        )
        return web.json_response(visit_lists(month, lists))


# The installable app's files sit at /console/ itself: a service worker controls only the
# pages under its own path, and the manifest's scope is /console/.
APP_FILES = {"sw.js": "text/javascript", "manifest.webmanifest": "application/manifest+json"}


def app_file(name: str, content_type: str) -> Any:
    async def serve(request: web.Request) -> web.FileResponse:
        # no-cache: a new console version reaches installed pages on their next start.
        headers = {"Content-Type": content_type, "Cache-Control": "no-cache"}
        return web.FileResponse(STATIC / name, headers=headers)

    return serve


def add_console_routes(app: web.Application, console: Console) -> None:
    add_page(app, "console", STATIC)
    router = app.router
    router.add_get("/", redirect("/console/"))
    for name, content_type in APP_FILES.items():
        router.add_get(f"/console/{name}", app_file(name, content_type))
    router.add_post("/v1/console/login", console.login)
    router.add_post("/v1/console/logout", console.logout)
    router.add_get("/v1/console/session", console.session)
    router.add_get("/v1/console/alerts", console.list_alerts)
    router.add_get("/v1/console/history.csv", console.export)
    router.add_get("/v1/console/alerts/{alert_id}", console.show_alert)
    router.add_post("/v1/console/alerts/{alert_id}/{action:acknowledge|resolve}", console.act)
    router.add_post("/v1/console/alerts/{alert_id}/arrive", console.arrive)
    router.add_get("/v1/console/stream", console.stream)
    router.add_get("/v1/console/fleet", console.fleet)
    router.add_get("/v1/console/visits", console.visits)
