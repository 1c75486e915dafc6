"""The gateway's own HTTP listener: health for supervisors, a LAN page for the duty room.

Residents' names, rooms and phones appear on the LAN page only behind the page password
(`http.page_password`); without one, the page shows alerts without personal data.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import html
from typing import Any, Protocol

from aiohttp import web

from edge.ops.lanpage import EXTRA_STYLE, extra_sections


class GatewayView(Protocol):
    """What the listener asks of the gateway (`edge.ops.operations.Operations` is one)."""

    def live(self) -> tuple[bool, dict[str, Any]]: ...
    def ready(self) -> tuple[bool, dict[str, Any]]: ...
    def metrics_text(self, accept: str | None) -> tuple[bytes, str]: ...
    def page(self) -> dict[str, Any]: ...


def make_status_app(view: GatewayView, page_password: str | None) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        ok, detail = view.live()
        return web.json_response({"ok": ok, **detail}, status=200 if ok else 503)

    async def readyz(request: web.Request) -> web.Response:
        ok, detail = await asyncio.to_thread(view.ready)
        return web.json_response({"ok": ok, **detail}, status=200 if ok else 503)

    async def metrics(request: web.Request) -> web.Response:
        accept = request.headers.get("Accept")
        body, content_type = await asyncio.to_thread(view.metrics_text, accept)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def lan_page(request: web.Request) -> web.Response:
        authorized = page_password is not None and basic_auth_ok(request, page_password)
        if page_password is not None and not authorized and "login" in request.query:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="mashang"'})
        page = await asyncio.to_thread(view.page)  # it reads the outbox: not on the loop
        return web.Response(text=render_page(page, authorized), content_type="text/html")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", lan_page)
    return app


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def basic_auth_ok(request: web.Request, password: str) -> bool:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return False
    try:
        _, _, offered = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(offered.encode(), password.encode())


def alert_row(alert: dict[str, Any], personal: bool) -> str:
    data = alert.get("data", {})
    resident = data.get("resident") or {}
    building = (data.get("building") or {}).get("name") or ""
    who = "未登记 unregistered" if data.get("unregistered") else ""
    if personal and resident:
        who = " ".join(str(resident.get(field) or "") for field in ("name", "room", "phone"))
    cells = [alert.get("priority"), alert.get("type"), alert.get("device_id"), building, who,
             alert.get("received_at")]
    return "<tr>" + "".join(f"<td>{html.escape(str(c or ''))}</td>" for c in cells) + "</tr>"


def render_page(page: dict[str, Any], personal: bool) -> str:
    alerts = page.get("alerts", [])
    rows = "".join(alert_row(alert, personal) for alert in alerts) or (
        '<tr><td colspan="6">无待发送警报 · no alert waiting</td></tr>'
    )
    facts = "".join(
        f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in page["facts"].items()
    )
    notice = "" if personal else (
        '<p><a href="?login">登录查看住户信息 · log in for residents\' details</a></p>'
    )
    banner = (
        '<p class="warn">中心平台暂时无法连接，以下警报请值班室处理 · central unreachable: '
        "handle these alerts locally</p>" if page.get("fallback") else ""
    )
    return f"""<!doctype html><html lang="zh"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5"><title>码上网关 {html.escape(page['gateway_id'])}</title>
<style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse;width:100%}}
td{{border-bottom:1px solid #ddd;padding:.4em;font-size:.95em}}.warn{{background:#fdd;padding:.6em}}
{EXTRA_STYLE}</style></head><body><h1>码上网关 · {html.escape(page['gateway_id'])}</h1>{banner}
<ul>{facts}</ul><h2>待发送警报 · alerts waiting</h2>{notice}
<div class="scroll"><table>{rows}</table></div>
{extra_sections(page, personal)}</body></html>"""
