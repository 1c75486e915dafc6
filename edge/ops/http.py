"""The gateway's own HTTP listener: health for supervisors, a LAN page for the duty room.

The LAN page is what the duty room has while the central is down, often on a phone: in
Chinese, with local times, the central's state in plain words, tap-to-call phone numbers and
a "handled here" button per waiting alert. Residents' names, rooms and phones (and who handled
an alert) appear only behind the page password (`http.page_password`); without one, the page
shows alerts without personal data, and no button.

Alerts hold whatever their devices sent (any JSON): every value is read through the accessors
of `edge.sink.fallback` (never a `.get` on an assumed object), bounded and escapes; a row
that cannot be drawn still shows its alert's id, and the page always answers.

"Handled here" is a POST that needs the page password (basic auth) and a token the page put
in the form: an HMAC of the alert's id under a secret of this process, so that no other site
can make a logged-in browser mark an alert.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import logging
import secrets
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aiohttp import web

from edge.ops.lanpage import EXTRA_STYLE, central_words, extra_sections, local_time, tel_link
from edge.sink.fallback import (
    action_words,
    device_said,
    field_of,
    mapping,
    priority_words,
    text_of,
    type_words,
)

log = logging.getLogger(__name__)

HANDLED_PATH = "/handled"
BY_DEFAULT = "值班室"
BY_LIMIT = 40
NOTE_LIMIT = 200
ID_LIMIT = 200
HEADERS = ("级别", "类型", "住户", "楼栋/房间", "电话", "时间", "处理")

Token = Callable[[str], str]


class NotRecorded(Exception):
    """`handle_locally` could not record the mark; the message is for the duty room."""


class GatewayView(Protocol):
    """What the listener asks of the gateway (`edge.ops.operations.Operations` is one)."""

    def live(self) -> tuple[bool, dict[str, Any]]: ...
    def ready(self) -> tuple[bool, dict[str, Any]]: ...
    def metrics_text(self, accept: str | None) -> tuple[bytes, str]: ...
    def page(self) -> dict[str, Any]: ...
    # Blocking (waits for the commit): from a worker thread. Raises NotRecorded.
    def handle_locally(self, alert_id: str, by: str, note: str) -> dict[str, Any]: ...


def make_status_app(view: GatewayView, page_password: str | None) -> web.Application:
    secret = secrets.token_bytes(32)

    def token(alert_id: str) -> str:
        return hmac.new(secret, alert_id.encode(), hashlib.sha256).hexdigest()

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
            return challenge()
        page = await asyncio.to_thread(view.page)  # it reads the outbox: not on the loop
        marking = token if authorized else None
        try:
            text = render_page(page, authorized, marking)
        except Exception:  # a bug: the duty room still gets the page's bare bones
            log.exception("LAN page could not be drawn; showing the bare list")
            text = bare_page(page)
        return web.Response(text=text, content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def handled(request: web.Request) -> web.Response:
        if page_password is None:
            raise web.HTTPNotFound()
        if not basic_auth_ok(request, page_password):
            return challenge()
        if not same_origin(request):
            return message_page(403, "请求来自其他网站，未记录。")
        form = await request.post()
        alert_id, offered = form.get("alert"), form.get("token")
        if (not isinstance(alert_id, str) or not isinstance(offered, str)
                or not alert_id or len(alert_id) > ID_LIMIT
                or not hmac.compare_digest(offered.encode(), token(alert_id).encode())):
            return message_page(403, "表单已过期（网关可能已重启），请返回刷新后再试。")
        by = one_line(form.get("by"), BY_LIMIT) or BY_DEFAULT
        note = one_line(form.get("note"), NOTE_LIMIT)
        try:
            await asyncio.to_thread(view.handle_locally, alert_id, by, note)
        except NotRecorded as exc:
            return message_page(503, f"未能记录：{exc}")
        raise web.HTTPSeeOther(f"/?login#a-{urllib.parse.quote(alert_id, safe='')}")

    app = web.Application(client_max_size=64 * 1024)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", lan_page)
    app.router.add_post(HANDLED_PATH, handled)
    return app


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def challenge() -> web.Response:
    return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="mashang"'})


def basic_auth_ok(request: web.Request, password: str) -> bool:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return False
    try:
        _, _, offered = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(offered.encode(), password.encode())


def same_origin(request: web.Request) -> bool:
    """False for a request a browser says came from another site (the token is the guard;
    this is a second one, for browsers that tell)."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


def one_line(value: object, limit: int) -> str:
    return text_of(value, limit) if isinstance(value, str) else ""


def message_page(status: int, text: str) -> web.Response:
    body = (f'<!doctype html><html lang="zh"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>码上网关</title></head>'
            f'<body style="font-family:sans-serif;margin:1em"><p>{html.escape(text)}</p>'
            '<p><a href="/?login">返回</a></p></body></html>')
    return web.Response(status=status, text=body, content_type="text/html")


# -- the alerts table --------------------------------------------------------------------------

def _td(inner: str, css: str = "") -> str:
    attr = f' class="{css}"' if css else ""
    return f"<td{attr}>{inner or '—'}</td>"


def _small(text: str) -> str:
    return f'<br><small>{html.escape(text)}</small>' if text else ""


def alert_row(alert: object, personal: bool, token: Token | None = None,
              mark: Mapping[str, Any] | None = None) -> str:
    """One waiting alert. Personal data (names, rooms, phones, who handled it) only when
    `personal`; the "handled here" form only with a `token` maker (behind the password)."""
    event = mapping(alert)
    data = mapping(event.get("data"))
    resident = data.get("resident")
    alert_id = text_of(event.get("id"), ID_LIMIT)
    device = text_of(event.get("device_id"), 60)
    unregistered = data.get("unregistered") is True
    critical = text_of(event.get("priority"), 20) == "critical"

    name = field_of(resident, "name", whole=True) if personal else ""
    who = " · ".join(part for part in ("未登记" if unregistered else "", name) if part)
    # What the device said of itself may be anything, names too: behind the password.
    said = device_said(data) if personal else ""
    who_cell = html.escape(who) + _small(device) + _small(f"设备自报：{said}" if said else "")

    building = (field_of(data.get("building"), "name", whole=True)
                or field_of(resident, "building"))
    room = field_of(resident, "room") if personal else ""
    place = html.escape(" ".join(part for part in (building, room) if part))

    phones = ""
    if personal:
        phone = field_of(resident, "phone")
        if phone:
            phones = tel_link(phone)
            # On a phone the 电话 column is a swipe away: the resident's number here too.
            who_cell += f'<span class="narrow"><br>{phones}</span>'
        contacts = (("管家", mapping(mapping(data.get("butlers")).get("primary"))),
                    ("值班", mapping(data.get("duty_contact"))))
        for label, contact in contacts:
            if contact.get("phone"):
                phones += (f'<br><small>{label} {html.escape(field_of(contact, "name"))}</small> '
                           + tel_link(contact.get("phone")))
    elif resident is not None or data.get("butlers"):
        phones = '<small>登录后可见</small>'

    handling = ""
    if mark is not None:
        by = field_of(mark, "by", limit=BY_LIMIT) if personal else ""
        note = field_of(mark, "note", limit=NOTE_LIMIT) if personal else ""
        done = f"已由 {by} 本地处理" if by else "已在本地处理"
        handling = (f'<span class="done">✔ {html.escape(done)}</span>'
                    f"{_small(local_time(mark.get('at')))}{_small(note)}")
    elif token is not None and alert_id:
        handling = (
            f'<form method="post" action="{HANDLED_PATH}">'
            f'<input type="hidden" name="alert" value="{html.escape(alert_id)}">'
            f'<input type="hidden" name="token" value="{html.escape(token(alert_id))}">'
            f'<input name="by" maxlength="{BY_LIMIT}" placeholder="{BY_DEFAULT}" '
            'aria-label="处理人" size="6">'
            '<button type="submit">已在本地处理</button></form>'
        )
    anchor = f' id="a-{html.escape(alert_id)}"' if alert_id else ""
    return (
        f'<tr{anchor}{" class=crit" if critical else ""}>'
        + _td(html.escape(priority_words(event.get("priority"))))
        + _td(html.escape(type_words(event, action=False)) + _small(action_words(event)))
        + _td(who_cell)
        + _td(place)
        + _td(phones)
        + _td(html.escape(local_time(event.get("received_at"))))
        + _td(handling)
        + "</tr>"
    )


def alerts_table(page: Mapping[str, Any], personal: bool, token: Token | None) -> str:
    alerts = page.get("alerts")
    marks = mapping(page.get("handled"))
    rows = []
    for alert in alerts if isinstance(alerts, list) else []:
        try:
            mark = marks.get(text_of(mapping(alert).get("id"), ID_LIMIT))
            rows.append(alert_row(alert, personal, token, mapping(mark) if mark else None))
        except Exception:  # a bug must not hide the other alerts, nor this one's existence
            log.exception("LAN page: an alert could not be drawn")
            shown = html.escape(text_of(mapping(alert).get("id"), 60) or "?")
            rows.append(f'<tr><td colspan="{len(HEADERS)}">警报 {shown}（无法完整显示）</td></tr>')
    body = "".join(rows) or f'<tr><td colspan="{len(HEADERS)}">没有待处理的警报</td></tr>'
    head = "".join(f"<th>{label}</th>" for label in HEADERS)
    return f'<div class="scroll"><table class="alerts"><tr>{head}</tr>{body}</table></div>'


# -- the page ----------------------------------------------------------------------------------

STYLE = (
    "body{font-family:sans-serif;margin:.6em;font-size:16px;line-height:1.35}"
    "h1{font-size:1.25em;margin:.2em 0}table{border-collapse:collapse;width:100%}"
    "td{border-bottom:1px solid #ddd;padding:.4em;font-size:.95em;vertical-align:top}"
    ".warn{background:#fdd;padding:.6em}.ok{background:#dfd;padding:.6em}"
    "tr.crit td:first-child{background:#c00;color:#fff;font-weight:bold}"
    "td small{color:#666;overflow-wrap:break-word}.done{color:#060;font-weight:bold}"
    "table.alerts td,table.alerts th{padding:.35em .3em}"
    "table.alerts td:nth-child(2),table.alerts td:nth-child(4){min-width:4.2em}"
    "table.alerts td:nth-child(3){min-width:6em;max-width:12em}"
    "table.alerts td:nth-child(5){white-space:nowrap}"
    "table.alerts td:nth-child(6){min-width:4.6em}"
    # On a phone the table scrolls sideways under its last column (处理), which stays in view.
    "table.alerts td:last-child,table.alerts th:last-child{position:sticky;right:0;"
    "background:#fff;box-shadow:-3px 0 4px -2px rgba(0,0,0,.25);min-width:5.5em}"
    "form{margin:0}input[name=by]{display:block;width:5.5em;margin-bottom:.3em;"
    "box-sizing:border-box}button{padding:.5em .4em;font-size:.95em;width:5.5em}"
    "ul.facts{padding-left:1.2em}.narrow{display:none}"
    "@media (max-width:600px){.narrow{display:inline}}"
)
# Reloads every 5 s, but not while someone types a name into a "handled here" form.
REFRESH = (
    "<script>(function t(){setTimeout(function(){var f=document.activeElement,"
    "busy=f&&f.tagName==='INPUT'||Array.prototype.some.call("
    "document.querySelectorAll('input[name=by]'),function(i){return i.value});"
    "if(busy)t();else location.reload()},5000)})()</script>"
    '<noscript><meta http-equiv="refresh" content="5"></noscript>'
)


def render_page(page: dict[str, Any], personal: bool, token: Token | None = None) -> str:
    gateway = html.escape(text_of(page.get("gateway_id"), 60))
    reachable, central = central_words(dict(mapping(page.get("central"))))
    status = f'<p class="{"ok" if reachable else "warn"}">{html.escape(central)}</p>'
    banner = (
        '<p class="warn"><b>中心平台暂时无法连接，以下警报请值班室处理</b>'
        "（已同时发给值班室的本地通知）</p>" if page.get("fallback") else ""
    )
    facts = "".join(
        f"<li>{html.escape(text_of(k))}：{html.escape(text_of(v))}</li>"
        for k, v in mapping(page.get("facts")).items()
    )
    notice = "" if personal else (
        '<p><a href="?login">登录查看住户姓名、房间和电话</a></p>'
    )
    return f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">{REFRESH}
<title>码上网关 {gateway}</title><style>{STYLE}{EXTRA_STYLE}</style></head><body>
<h1>码上网关 · {gateway}</h1>{banner}{status}
<h2>待处理警报</h2>{notice}{alerts_table(page, personal, token)}
<ul class="facts">{facts}</ul>
{extra_sections(page, personal)}
<p class="small">每 5 秒自动刷新 · 时间为本地时间</p></body></html>"""


def bare_page(page: Mapping[str, Any]) -> str:
    """What the page shows should drawing it fail: the waiting alerts' ids and kinds."""
    alerts = page.get("alerts")
    items = "".join(
        f"<li>{html.escape(priority_words(mapping(a).get('priority')))} "
        f"{html.escape(type_words(mapping(a)))} {html.escape(text_of(mapping(a).get('id'), 60))}"
        "</li>" for a in (alerts if isinstance(alerts, list) else [])
    )
    return (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1">{REFRESH}<title>码上网关</title>'
            f"</head><body><h1>码上网关</h1><p>页面显示出错，待处理警报：</p><ul>{items}</ul>"
            "</body></html>")
