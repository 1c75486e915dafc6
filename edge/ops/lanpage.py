"""The LAN page's devices and outbox sections (the page itself is in `edge.ops.http`).

What each device last said (battery, signal) is learnt from the events the gateway commits;
what the rules remember (last seen, offline, battery low, an open alert) comes from
`Rules.device_snapshot()`; who a button belongs to, from the registry. Residents' names, rooms
and phones are rendered only for a visitor who gave the page password.
"""

from __future__ import annotations

import html
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from edge.events import Event
from edge.sink.fallback import text_of
from mashang.registry import Registry

log = logging.getLogger(__name__)

SHOWN_AT_MOST = 500
# Devices whose last words the page remembers (battery, signal), the most recently heard.
BOARD_REMEMBERS = 2000
SIGNAL_FIELDS = ("rssi", "linkquality")
PERSONAL = {"name", "room", "phone"}


class DeviceBoard:
    """What each device last told us. Written on the commit thread, read by the page."""

    def __init__(self, remembered: int = BOARD_REMEMBERS) -> None:
        self._lock = threading.Lock()
        # Least recently heard first, at most `remembered`: made-up device ids must not grow
        # the gateway's memory (the rules keep registered buttons' state on their own).
        self._devices: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._remembered = remembered

    def committed(self, events: Iterable[Event]) -> None:
        with self._lock:  # once for the group, not once an event
            for event in events:
                if event.device_id is not None and not event.type.startswith("gateway."):
                    self._heard(event.device_id, event)

    def _heard(self, device_id: str, event: Event) -> None:
        entry = self._devices.setdefault(device_id, {})
        self._devices.move_to_end(device_id)
        while len(self._devices) > self._remembered:
            self._devices.popitem(last=False)
        entry["kind"] = "scanner" if event.type.startswith(("scan.", "stall.", "visit.",
                                                             "scanner.")) else "button"
        entry["last_event"] = event.type
        entry["heard"] = event.received_at.timestamp()
        data = event.data
        battery = data.get("battery")
        if isinstance(battery, int | float) and not isinstance(battery, bool):
            entry["battery"] = battery
        for name in SIGNAL_FIELDS:
            value = data.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                entry["signal"] = f"{name} {value}"

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {device: dict(entry) for device, entry in self._devices.items()}


def device_rows(buttons: dict[str, dict[str, Any]], heard: dict[str, dict[str, Any]],
                registry: Registry) -> list[dict[str, Any]]:
    """One row per device, the ones needing attention first."""
    rows = []
    for device_id in sorted(set(buttons) | set(heard)):
        state = buttons.get(device_id, {})
        said = heard.get(device_id, {})
        button = registry.button(device_id)
        resident = button.resident if button else None
        building = registry.building(resident.building) if resident else None
        last_seen = max(state.get("last_seen") or 0.0, said.get("heard") or 0.0) or None
        rows.append({
            "device_id": device_id,
            "kind": said.get("kind", "button"),
            "last_seen": last_seen,
            "offline": bool(state.get("offline")),
            "battery": said.get("battery"),
            "battery_low": bool(state.get("battery_low")),
            "signal": said.get("signal"),
            "last_press": state.get("last_press") or None,
            "presses": state.get("presses") or 0,
            "registered": button is not None or registry.scanner(device_id) is not None,
            "building": building.name if building else (resident.building if resident else None),
            "resident": resident.model_dump(include=PERSONAL) if resident else None,
        })
    # Registered devices first (someone lives behind them), then those needing attention.
    rows.sort(key=lambda r: (not r["registered"], not r["offline"], not r["battery_low"],
                             r["device_id"]))
    return rows[:SHOWN_AT_MOST]


def ago(moment: float | None, now: float | None = None) -> str:
    if not moment:
        return "—"
    seconds = max(0.0, (now or time.time()) - moment)
    if seconds < 90:
        text = f"{seconds:.0f} 秒前"
    elif seconds < 5400:
        text = f"{seconds / 60:.0f} 分钟前"
    elif seconds < 48 * 3600:
        text = f"{seconds / 3600:.0f} 小时前"
    else:
        text = f"{seconds / 86400:.0f} 天前"
    return f"{text} ({local_time(moment)})"


# -- words for the duty room -------------------------------------------------------------------

def local_time(moment: object) -> str:
    """A moment (seconds since the epoch, or an ISO 8601 text as events carry) in the gateway's
    own time zone, as "12-01 13:51:07"; anything else as bounded text."""
    try:
        if isinstance(moment, int | float) and not isinstance(moment, bool):
            when = datetime.fromtimestamp(moment)
        elif isinstance(moment, str):
            parsed = datetime.fromisoformat(moment)
            when = parsed.astimezone().replace(tzinfo=None) if parsed.tzinfo else parsed
        else:
            return text_of(moment, 40)
        return when.strftime("%m-%d %H:%M:%S")
    except (ValueError, OverflowError, OSError):
        return text_of(moment, 40)


def tel_link(phone: object) -> str:
    """A phone number as a tap-to-call link (HTML, escaped); text only if it has no digits."""
    shown = text_of(phone, 40)
    number = re.sub(r"[^0-9+]", "", shown)[:20]
    if not re.search(r"[0-9]", number):
        return html.escape(shown)
    return f'<a class="tel" href="tel:{html.escape(number)}">{html.escape(shown)}</a>'


# What the central's last failure means, in the duty room's words: (pattern, words), first
# match wins. The patterns are those of aiohttp's errors and of `CentralHealth.last_error`.
ERROR_WORDS: tuple[tuple[str, str], ...] = (
    (r"dnserror|name or service not known|nodename nor servname|name resolution|"
     r"no address associated|getaddrinfo", "域名解析失败（DNS），请检查网络与 central.url"),
    (r"refused|connect call failed|errno 111", "连接被拒绝"),
    (r"certificate|sslerror|\[ssl|tls", "安全连接（TLS）失败，请检查证书与本机时间"),
    (r"timeout|timed out", "连接超时"),
    (r"network is unreachable|no route to host|errno 101|errno 113", "网络不通"),
    (r"reset|disconnected|broken pipe|errno 104", "连接中断"),
)


def error_words(error: str | None) -> str:
    text = (error or "").lower()
    status = re.match(r"http (\d{3})", text)
    if status:
        code = int(status.group(1))
        if code in (401, 403):
            return f"密钥或时间错误（HTTP {code}），请检查 central.key 与本机时间"
        if code == 429:
            return "中心平台繁忙（HTTP 429）"
        if code >= 500:
            return f"中心平台服务出错（HTTP {code}）"
        if code == 404:
            return "地址错误（HTTP 404），请检查 central.url"
        return f"中心平台答复异常（HTTP {code}）"
    for pattern, words in ERROR_WORDS:
        if re.search(pattern, text):
            return words
    return "其他错误" if text else "原因不明"


def span(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} 秒"
    if seconds < 7200:
        return f"{seconds // 60:.0f} 分钟"
    return f"{seconds // 3600:.0f} 小时 {seconds % 3600 // 60:.0f} 分钟"


def central_words(central: dict[str, Any], now: float | None = None) -> tuple[bool, str]:
    """(reachable, the central's state in plain Chinese) from `Operations.page()`'s
    `central`: failing_since, last_ok, last_error."""
    failing_since = central.get("failing_since")
    if isinstance(failing_since, int | float):
        down = max(0.0, (now or time.time()) - failing_since)
        reason = error_words(central.get("last_error"))
        return False, f"中心平台无法连接（已 {span(down)}）：{reason}"
    if central.get("last_ok") is None:
        return False, "正在连接中心平台…"
    return True, "中心平台连接正常"


def _cell(value: Any, css: str = "") -> str:
    attr = f' class="{css}"' if css else ""
    text = text_of(value) if value is not None else ""
    return f"<td{attr}>{html.escape(text or '—')}</td>"


def devices_section(rows: list[dict[str, Any]], personal: bool) -> str:
    if not rows:
        body = '<tr><td colspan="5">尚无设备消息</td></tr>'
    else:
        body = ""
        for row in rows:
            state = "离线" if row["offline"] else "在线"
            battery = "—" if row["battery"] is None else f"{row['battery']}%"
            if row["battery_low"]:
                battery += " 电量低"
            who = html.escape(text_of(row["building"]))
            if not row["registered"]:
                who = "未登记"
            elif personal and row["resident"]:
                resident = row["resident"]
                named = " ".join(text_of(resident.get(k)) for k in ("name", "room"))
                who = " · ".join(part for part in (
                    html.escape(named.strip()), who,
                    tel_link(resident.get("phone")) if resident.get("phone") else "",
                ) if part)
            name = text_of(row["device_id"], 60) + (" 📷" if row["kind"] == "scanner" else "")
            body += (
                "<tr>"
                + _cell(name)
                + _cell(state, "warn" if row["offline"] else "")
                + _cell(ago(row["last_seen"]))
                + _cell(battery, "warn" if row["battery_low"] else "")
                + f"<td>{who or '—'}</td>"
                + "</tr>"
            )
    return (
        f"<h2>设备（{len(rows)}）</h2><div class=\"scroll\"><table>"
        "<tr><th>设备</th><th>状态</th><th>最后联系</th>"
        f"<th>电量</th><th>住户 / 楼栋</th></tr>{body}</table></div>"
    )


def outbox_section(outbox: dict[str, Any]) -> str:
    def oldest(age: float | None) -> str:
        return "—" if age is None else f"{age:.0f} 秒"

    rows = "".join(
        f"<tr><td>{label}</td><td>{c['events']:,}</td><td>{c['bytes']:,}</td>"
        f"<td>{oldest(c['oldest_age'])}</td></tr>"
        for label, c in (("警报", outbox["alerts"]), ("日志", outbox["logs"]))
    )
    share = outbox["used_bytes"] / outbox["max_bytes"] if outbox["max_bytes"] else 0
    full = '<p class="warn">发件箱已满</p>' if outbox.get("full") else ""
    return (
        f"<h2>发件箱（待发往中心平台）</h2>{full}<div class=\"scroll\"><table>"
        "<tr><th></th><th>条数</th><th>字节</th><th>最早一条已等</th></tr>"
        f"{rows}</table></div><p class=\"small\">磁盘：{outbox['used_bytes']:,} / "
        f"{outbox['max_bytes']:,} 字节（{share:.0%}）· 死信：{outbox['dead_letters']}</p>"
    )


def extra_sections(page: dict[str, Any], personal: bool) -> str:
    """The sections the page shows after the alerts, from `Gateway.page()`'s extra keys; a
    section that cannot be drawn says so instead of taking the page down."""
    parts = []
    for key, title in (("devices", "设备"), ("outbox", "发件箱")):
        if key not in page:
            continue
        try:
            if key == "devices":
                parts.append(devices_section(page["devices"], personal))
            else:
                parts.append(outbox_section(page["outbox"]))
        except Exception:
            log.exception("LAN page: the %s section could not be drawn", key)
            parts.append(f'<p class="warn">{title}一栏暂时无法显示</p>')
    return "".join(parts)


EXTRA_STYLE = (
    "th{text-align:left;font-size:.85em;color:#555;padding:.4em;white-space:nowrap;"
    "border-bottom:2px solid #bbb}"
    "td.warn{background:#fdd}.scroll{overflow-x:auto}"
    "h2{font-size:1.1em;margin-top:1.4em}.small{font-size:.8em;color:#666}"
    "a.tel{white-space:nowrap;font-weight:bold}"
)
