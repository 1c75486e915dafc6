"""The LAN page's devices and outbox sections (the page itself is in `edge.ops.http`).

What each device last said (battery, signal) is learnt from the events the gateway commits;
what the rules remember (last seen, offline, battery low, an open alert) comes from
`Rules.device_snapshot()`; who a button belongs to, from the registry. Residents' names, rooms
and phones are rendered only for a visitor who gave the page password.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from edge.events import Event
from mashang.registry import Registry

SHOWN_AT_MOST = 500
SIGNAL_FIELDS = ("rssi", "linkquality")
PERSONAL = {"name", "room", "phone"}


class DeviceBoard:
    """What each device last told us. Written on the commit thread, read by the page."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._devices: dict[str, dict[str, Any]] = {}

    def committed(self, events: Iterable[Event]) -> None:
        for event in events:
            if event.device_id is None or event.type.startswith("gateway."):
                continue
            data = event.data
            with self._lock:
                entry = self._devices.setdefault(event.device_id, {})
                entry["kind"] = "scanner" if event.type.startswith(("scan.", "stall.", "visit.",
                                                                     "scanner.")) else "button"
                entry["last_event"] = event.type
                entry["heard"] = event.received_at.timestamp()
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
    rows.sort(key=lambda r: (not r["offline"], not r["battery_low"], r["device_id"]))
    return rows[:SHOWN_AT_MOST]


def ago(moment: float | None, now: float | None = None) -> str:
    if not moment:
        return "—"
    seconds = max(0.0, (now or time.time()) - moment)
    if seconds < 90:
        text = f"{seconds:.0f} 秒前 s ago"
    elif seconds < 5400:
        text = f"{seconds / 60:.0f} 分钟前 min ago"
    elif seconds < 48 * 3600:
        text = f"{seconds / 3600:.0f} 小时前 h ago"
    else:
        text = f"{seconds / 86400:.0f} 天前 days ago"
    stamp = datetime.fromtimestamp(moment).strftime("%m-%d %H:%M")
    return f"{text} ({stamp})"


def _cell(value: Any, css: str = "") -> str:
    attr = f' class="{css}"' if css else ""
    return f"<td{attr}>{html.escape(str(value if value is not None else '—'))}</td>"


def devices_section(rows: list[dict[str, Any]], personal: bool) -> str:
    if not rows:
        body = '<tr><td colspan="5">尚无设备 · no device heard from yet</td></tr>'
    else:
        body = ""
        for row in rows:
            state = "离线 offline" if row["offline"] else "在线 online"
            battery = "—" if row["battery"] is None else f"{row['battery']}%"
            if row["battery_low"]:
                battery += " 低 low"
            who = row["building"] or ""
            if not row["registered"]:
                who = "未登记 unregistered"
            elif personal and row["resident"]:
                resident = row["resident"]
                who = " ".join(str(resident.get(k) or "") for k in ("name", "room", "phone"))
                who = f"{who} · {row['building'] or ''}".strip(" ·")
            name = row["device_id"] + (" 📷" if row["kind"] == "scanner" else "")
            body += (
                "<tr>"
                + _cell(name)
                + _cell(state, "warn" if row["offline"] else "")
                + _cell(ago(row["last_seen"]))
                + _cell(battery, "warn" if row["battery_low"] else "")
                + _cell(who)
                + "</tr>"
            )
    return (
        f"<h2>设备 · devices ({len(rows)})</h2><div class=\"scroll\"><table>"
        "<tr><th>设备 device</th><th>状态 state</th><th>最后联系 last seen</th>"
        f"<th>电量 battery</th><th>住户/楼栋 who</th></tr>{body}</table></div>"
    )


def outbox_section(outbox: dict[str, Any]) -> str:
    def oldest(age: float | None) -> str:
        return "—" if age is None else f"{age:.0f} s"

    rows = "".join(
        f"<tr><td>{label}</td><td>{c['events']:,}</td><td>{c['bytes']:,}</td>"
        f"<td>{oldest(c['oldest_age'])}</td></tr>"
        for label, c in (("警报 alerts", outbox["alerts"]), ("日志 logs", outbox["logs"]))
    )
    share = outbox["used_bytes"] / outbox["max_bytes"] if outbox["max_bytes"] else 0
    full = '<p class="warn">发件箱已满 · outbox full</p>' if outbox.get("full") else ""
    return (
        f"<h2>发件箱 · outbox</h2>{full}<div class=\"scroll\"><table>"
        "<tr><th></th><th>条 events</th><th>字节 bytes</th><th>最早 oldest</th></tr>"
        f"{rows}</table></div><p>磁盘 disk: {outbox['used_bytes']:,} / {outbox['max_bytes']:,}"
        f" bytes ({share:.0%}) · 死信 dead letters: {outbox['dead_letters']}</p>"
    )


def extra_sections(page: dict[str, Any], personal: bool) -> str:
    """The sections the page shows after the alerts, from `Gateway.page()`'s extra keys."""
    parts = []
    if "devices" in page:
        parts.append(devices_section(page["devices"], personal))
    if "outbox" in page:
        parts.append(outbox_section(page["outbox"]))
    return "".join(parts)


EXTRA_STYLE = (
    "th{text-align:left;font-size:.85em;color:#555;padding:.4em}"
    "td.warn{background:#fdd}.scroll{overflow-x:auto}"
    "h2{font-size:1.1em;margin-top:1.4em}"
)
