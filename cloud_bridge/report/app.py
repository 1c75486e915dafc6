"""The report on the console: `GET /v1/report?month=YYYY-MM` (the figures), its charts at
`/v1/report/{month}/chart/{name}.png`, its PDF at `/v1/report/{month}/report.pdf`, and a small
page at /report/. Logged-in console accounts only, by the console's own session; a butler's
report holds his buildings only and no stall matters, the duty room's the whole community."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web

from cloud_bridge.console.app import Console
from cloud_bridge.console.gate import add_page
from cloud_bridge.httpkit import json_error
from cloud_bridge.receiver.store import Database
from cloud_bridge.registry.source import RegistrySource
from cloud_bridge.report.charts import charts_for, png
from cloud_bridge.report.figures import Month, Report, ReportError, gather
from cloud_bridge.report.pdf import render

STATIC = Path(__file__).parent / "static"


class ReportPages:
    def __init__(self, db: Database, registry: RegistrySource, console: Console,
                 zone: ZoneInfo) -> None:
        self._db = db
        self._zone = zone
        self._registry = registry
        self._console = console

    async def _report(self, request: web.Request, month_text: str | None) -> Report:
        # The console's own session and scope (Console.viewer, Console.buildings), so
        # that who sees what is decided in one place.
        viewer = await self._console.viewer(request)  # 401 without a live session
        if not month_text:
            raise json_error(web.HTTPBadRequest, "month is required, as YYYY-MM")
        try:
            month = Month.parse(month_text, self._zone)
        except ReportError as error:
            raise json_error(web.HTTPBadRequest, str(error)) from None
        return await asyncio.to_thread(
            gather, self._db, self._registry.current, month, now=time.time(),
            buildings=self._console.buildings(viewer.account),
        )

    async def figures(self, request: web.Request) -> web.Response:
        report = await self._report(request, request.query.get("month"))
        charts = {name: f"/v1/report/{report.month}/chart/{name}.png"
                  for name in charts_for(report)}
        return web.json_response({**report.as_dict(), "charts": charts,
                                  "pdf": f"/v1/report/{report.month}/report.pdf"})

    async def chart(self, request: web.Request) -> web.Response:
        report = await self._report(request, request.match_info["month"])
        name = request.match_info["name"]
        if name not in charts_for(report):
            raise json_error(web.HTTPNotFound, f"no chart {name!r}")
        body = await asyncio.to_thread(png, report, name)
        return web.Response(body=body, content_type="image/png")

    async def pdf(self, request: web.Request) -> web.Response:
        report = await self._report(request, request.match_info["month"])
        body = await asyncio.to_thread(render, report)
        disposition = f'inline; filename="report-{report.month}.pdf"'
        return web.Response(body=body, content_type="application/pdf",
                            headers={"Content-Disposition": disposition})


def add_report_routes(app: web.Application, pages: ReportPages) -> None:
    # Nothing of it cached, the page neither: a report names no resident but is a butler's own.
    add_page(app, "report", STATIC, cache_page=False)
    router = app.router
    router.add_get("/v1/report", pages.figures)
    router.add_get(r"/v1/report/{month}/chart/{name}.png", pages.chart)
    router.add_get(r"/v1/report/{month}/report.pdf", pages.pdf)
