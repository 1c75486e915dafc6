"""The street office's view: a page at /office/ and its API under /v1/office/.

Street office accounts (`mashang office passwd`) log in at the console's login
(/v1/console/login, its throttle included) and their session is good here alone; the
community duty contact may look too. A butler's session is refused (403), no session 401.
What it shows: the stalls' violations (every `stall.violation` event, newest first, with the
stall by name and number, the zone by its display name, the reason in Chinese, the time in the
community's zone and the scanner), a stall's history (its check-ins, violations and reports),
and residents' reports, each new, handled or dismissed with a note (`POST
/v1/office/reports/{id}`, CSRF token in the header as in the console). Nothing of a resident
is here: no name, room or phone, and not the address a report came from.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloud_bridge.config import CentralConfig
from cloud_bridge.console.accounts import DUTY_ACCOUNT, STREET_OFFICE, AccountStore
from cloud_bridge.console.app import refused_fields
from cloud_bridge.console.gate import SessionGate, Viewer, add_page
from cloud_bridge.httpkit import json_error
from cloud_bridge.localtime import date_time
from cloud_bridge.office.facts import PURPOSE_WORDS, office_name, violation_facts, zone_name
from cloud_bridge.office.reports import ReportBook, State, report_view
from cloud_bridge.receiver.store import Database
from cloud_bridge.registry.source import RegistrySource
from mashang.registry import Registry

STATIC = Path(__file__).parent / "static"
LIST_LIMIT = 200
HISTORY_LIMIT = 100
NOTE_MAX = 500
# A stall's own scans, as its history shows them.
HISTORY_TYPES = ("scan.accepted", "stall.violation")


class ReportChange(BaseModel):
    """The body of a report's change: its new state and the office's note."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    state: State
    note: str | None = Field(default=None, max_length=NOTE_MAX)


def moment(event: dict[str, Any], arrived: float) -> float:
    """When the gateway received it; when the central did, if that is unreadable."""
    try:
        return datetime.fromisoformat(str(event.get("received_at"))).timestamp()
    except ValueError:
        return arrived


class StallEvents:
    """The event log's stall matters, newest first."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _read(self, query: str, params: tuple) -> list[tuple[dict[str, Any], str, float]]:
        rows = self._db.rows(f"SELECT body, gateway_id, arrived FROM events {query}", params)
        return [(json.loads(body), gateway_id, arrived) for body, gateway_id, arrived in rows]

    def violations(self, limit: int) -> list[tuple[dict[str, Any], str, float]]:
        return self._read("WHERE type = 'stall.violation' ORDER BY seq DESC LIMIT ?", (limit,))

    def of_stall(self, stall_id: str, limit: int) -> list[tuple[dict[str, Any], str, float]]:
        marks = ", ".join("?" for _ in HISTORY_TYPES)
        return self._read(
            f"WHERE type IN ({marks}) AND json_extract(body, '$.data.subject.id') = ?"
            " ORDER BY seq DESC LIMIT ?",
            (*HISTORY_TYPES, stall_id, limit),
        )


class OfficeView:
    def __init__(
        self,
        config: CentralConfig,
        accounts: AccountStore,
        registry: RegistrySource,
        db: Database,
    ) -> None:
        self._accounts = accounts
        self._registry = registry
        self._gate = SessionGate(config, accounts)
        self._zone = config.central.zone
        self._events = StallEvents(db)
        self.reports = ReportBook(db)

    # -- who is asking -------------------------------------------------------------------

    def _when(self, ts: float) -> str:
        return date_time(ts, self._zone)

    async def _officer(self, request: web.Request) -> Viewer:
        """Who is asking: 401 without a session that holds, 403 unless it is the street
        office's or the duty room's."""
        session = await self._gate.session(request)
        registry = self._registry.current
        if session.account == DUTY_ACCOUNT:
            duty = registry.community.duty_contact
            return Viewer(session.account, duty.name if duty else "值班", session)
        kind = await asyncio.to_thread(self._accounts.kind, session.account)
        if kind != STREET_OFFICE:
            raise json_error(web.HTTPForbidden, "for the street office's accounts only")
        return Viewer(session.account, office_name(registry), session)

    async def _actor(self, request: web.Request) -> Viewer:
        officer = await self._officer(request)
        self._gate.require_csrf(officer.session, request)
        return officer

    # -- handlers ------------------------------------------------------------------------

    async def session(self, request: web.Request) -> web.Response:
        return web.json_response(self._gate.answer(await self._officer(request)))

    async def logout(self, request: web.Request) -> web.Response:
        officer = await self._actor(request)
        return await self._gate.logout(officer.session)

    async def violations(self, request: web.Request) -> web.Response:
        await self._officer(request)
        found = await asyncio.to_thread(self._events.violations, LIST_LIMIT)
        registry = self._registry.current
        return web.json_response(
            {"violations": [self._violation(registry, *entry) for entry in found]}
        )

    def _violation(
        self, registry: Registry, event: dict[str, Any], gateway_id: str, arrived: float
    ) -> dict[str, Any]:
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        facts = violation_facts(data, event.get("device_id"), registry)
        at = moment(event, arrived)
        return {
            "id": event.get("id"),
            "at": at,
            "time": self._when(at),
            "stall": {"id": facts.stall.id, "name": facts.stall.name,
                      "number": facts.stall.number, "label": facts.stall.label},
            "zone": facts.zone,
            "stall_zone": facts.stall.zone,
            "reason": facts.reason,
            "reason_words": facts.reason_words,
            "forged": facts.forged,
            "scanner": facts.scanner,
            "purpose_words": PURPOSE_WORDS.get(facts.purpose or ""),
            "gateway_id": gateway_id,
        }

    async def history(self, request: web.Request) -> web.Response:
        """A stall's check-ins, violations and reports, newest first."""
        await self._officer(request)
        stall_id = request.match_info["stall_id"]
        registry = self._registry.current
        scans = await asyncio.to_thread(self._events.of_stall, stall_id, HISTORY_LIMIT)
        reports = await asyncio.to_thread(self.reports.listing, stall_id, HISTORY_LIMIT)
        stall = registry.stall(stall_id)
        if stall is None and not scans and not reports:
            raise json_error(web.HTTPNotFound, "no such stall")
        entries = [self._scan_entry(registry, *entry) for entry in scans]
        entries += [
            {"kind": "report", **report_view(report, registry, self._when)} for report in reports
        ]
        entries.sort(key=lambda entry: entry["at"], reverse=True)
        return web.json_response({
            "stall": stall and {
                "id": stall.id, "name": stall.name, "number": stall.number,
                "zone": zone_name(registry, stall.zone), "hours": stall.hours,
            },
            "entries": entries,
        })

    def _scan_entry(
        self, registry: Registry, event: dict[str, Any], gateway_id: str, arrived: float
    ) -> dict[str, Any]:
        if event.get("type") == "stall.violation":
            return {"kind": "violation", **self._violation(registry, event, gateway_id, arrived)}
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        at = moment(event, arrived)
        scanner = registry.scanner(str(event.get("device_id")))
        return {
            "kind": "checkin",
            "id": event.get("id"),
            "at": at,
            "time": self._when(at),
            "purpose_words": PURPOSE_WORDS.get(str(data.get("purpose")), "扫码"),
            "scanner": event.get("device_id"),
            "zone": zone_name(registry, scanner.zone if scanner else None),
        }

    async def list_reports(self, request: web.Request) -> web.Response:
        await self._officer(request)
        found = await asyncio.to_thread(self.reports.listing)
        registry = self._registry.current
        return web.json_response(
            {"reports": [report_view(report, registry, self._when) for report in found]}
        )

    async def change_report(self, request: web.Request) -> web.Response:
        officer = await self._actor(request)
        raw = request.match_info["report_id"]
        if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
            raise json_error(web.HTTPNotFound, "no such report")
        try:
            change = ReportChange.model_validate_json(await request.read())
        except ValidationError as exc:
            raise json_error(web.HTTPBadRequest, refused_fields(exc)) from exc
        seq = int(raw)
        who = f"{officer.name}（{officer.account}）"
        if not await asyncio.to_thread(
            self.reports.set_state, seq, change.state, change.note or None, who
        ):
            raise json_error(web.HTTPNotFound, "no such report")
        report = await asyncio.to_thread(self.reports.get, seq)
        assert report is not None
        return web.json_response(
            {"report": report_view(report, self._registry.current, self._when)}
        )


def add_office_routes(app: web.Application, view: OfficeView) -> None:
    add_page(app, "office", STATIC)
    router = app.router
    router.add_get("/v1/office/session", view.session)
    router.add_post("/v1/office/logout", view.logout)
    router.add_get("/v1/office/violations", view.violations)
    router.add_get("/v1/office/stalls/{stall_id}", view.history)
    router.add_get("/v1/office/reports", view.list_reports)
    router.add_post("/v1/office/reports/{report_id}", view.change_report)
