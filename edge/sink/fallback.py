"""Local fallback: when the central has been out of reach too long and an alert is waiting,
the alert goes to the community's own duty room (local webhooks) and onto the LAN page.

It never takes an alert out of the outbox: the central still gets every alert once it is back.

An alert's `data` holds whatever its device sent beside what the gateway added: any JSON at
all (a string where a resident object was expected, a list, a null, 100 KB of text). Nothing
here assumes a shape: the accessors below turn any value into bounded text, a bad alert is
logged with its id and skipped (never the loop), and the duty room still hears of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from edge.buffer.outbox import EventClass, Leased, Outbox
from edge.config import FallbackSection
from edge.sink.central import CentralHealth

__all__ = ["Fallback", "action_words", "describe", "device_said", "field_of", "mapping",
           "priority_words", "text_of", "type_words"]

log = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0
SHOWN_AT_MOST = 100
# Characters of one value shown (the page, the duty room's text); the rest becomes "…".
TEXT_LIMIT = 120
# A loop failing every round says so at most this often (seconds).
COMPLAIN_EVERY = 60.0

PRIORITY_WORDS = {"critical": "紧急", "high": "高", "normal": "一般", "low": "低"}
TYPE_WORDS = {
    "button.press": "呼叫求助",
    "button.repeat": "再次呼叫",
    "button.offline": "按钮离线",
    "button.online": "按钮恢复在线",
    "button.battery_low": "按钮电量低",
    "stall.violation": "摊位违规",
    "gateway.rules_failed": "网关规则出错（原样转发）",
}
ACTION_WORDS = {"long": "长按", "single": "短按", "double": "双击"}
UNPRINTABLE = {
    **{code: " " for code in [*range(0x20), *range(0x7F, 0xA0)]},
    **{code: None for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]},
}


# -- what a device sent, as text ---------------------------------------------------------------

def text_of(value: object, limit: int = TEXT_LIMIT) -> str:
    """Any JSON value as one line of at most `limit` characters ("" for null); objects and
    lists as compact JSON. Never raises. Not escaped: escape it where it is rendered."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        try:
            text = str(value)
        except ValueError:  # an int past Python's digit limit
            text = "（数字过长）"
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError, RecursionError):
            text = f"（{type(value).__name__}）"
    # Control characters and whitespace (newlines too) become single spaces: one line; and
    # no bidirectional override turns the rest of a line around.
    text = " ".join(text[: limit * 4].translate(UNPRINTABLE).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mapping(value: object) -> Mapping[str, Any]:
    """The value if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def field_of(value: object, key: str, *, whole: bool = False, limit: int = TEXT_LIMIT) -> str:
    """`value[key]` as text when the value is an object; with `whole`, a value that is not an
    object (a device's `"building": "B3"`) stands for the field itself."""
    if isinstance(value, dict):
        return text_of(value.get(key), limit)
    return text_of(value, limit) if whole else ""


def priority_words(priority: object) -> str:
    text = text_of(priority, 20)
    return PRIORITY_WORDS.get(text, text or "?")


def type_words(alert: Mapping[str, Any], *, action: bool = True) -> str:
    kind = text_of(alert.get("type"), 60)
    words = TYPE_WORDS.get(kind, kind or "?")
    how = action_words(alert) if action else ""
    return f"{words}（{how}）" if how else words


def action_words(alert: Mapping[str, Any]) -> str:
    return ACTION_WORDS.get(text_of(mapping(alert.get("data")).get("action"), 20), "")


def device_said(data: Mapping[str, Any], limit: int = 3 * TEXT_LIMIT // 2) -> str:
    """What a device put where the gateway derives its own keys (data.device): labelled as
    the device's word, never taken for the registry's."""
    said = data.get("device")
    if said is None:
        return ""
    if not isinstance(said, dict):
        return text_of(said, limit)
    parts = [f"{text_of(key, 20)}: {text_of(value, 40)}" for key, value in
             list(said.items())[:10]]
    return text_of("，".join(parts), limit)


def describe(alert: object) -> str:
    """One line in Chinese for the duty room: how urgent, who, where."""
    event = mapping(alert)
    data = mapping(event.get("data"))
    resident = data.get("resident")
    device = text_of(event.get("device_id"), 60) or "?"
    building = (field_of(data.get("building"), "name", whole=True)
                or field_of(resident, "building"))
    if data.get("unregistered") is True:
        who = f"未登记按钮 {device}"
    else:
        who = field_of(resident, "name", whole=True) or f"按钮 {device}"
    room = field_of(resident, "room")
    phone = field_of(resident, "phone", limit=40)
    said = device_said(data)
    parts = [f"【{priority_words(event.get('priority'))}】{who}", building, room,
             type_words(event), f"电话 {phone}" if phone else "",
             f"（设备自报：{said}）" if said else ""]
    return " ".join(part for part in parts if part)


def decode(item: Leased) -> dict[str, Any]:
    """An outbox row as the alert dict it holds; a row that is not one still yields a dict
    with its id, so it is still shown and posted."""
    try:
        alert = json.loads(item.body)
    except (ValueError, UnicodeDecodeError):
        return {"id": item.id, "type": "?", "data": {"undecodable": True}}
    if not isinstance(alert, dict):
        return {"id": item.id, "type": "?", "data": {"value": alert}}
    return alert


class Fallback:
    def __init__(self, config: FallbackSection, outbox: Outbox, health: CentralHealth,
                 gateway_id: str) -> None:
        self._config = config
        self._outbox = outbox
        self._health = health
        self._gateway_id = gateway_id
        self._posted: set[str] = set()
        self._complained = 0.0
        # What the LAN page shows while the fallback is active.
        self.waiting: list[dict[str, Any]] = []

    @property
    def active(self) -> bool:
        return self._health.unreachable_for() > self._config.after

    async def run(self, session: aiohttp.ClientSession) -> None:
        """Until cancelled: no alert and no failure ends it."""
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            try:
                await self._round(session)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The outbox unreadable, a bug: say so (not every second), try next round.
                moment = time.monotonic()
                if moment - self._complained >= COMPLAIN_EVERY:
                    self._complained = moment
                    log.exception("local fallback round failed; trying again")

    async def _round(self, session: aiohttp.ClientSession) -> None:
        if not self.active:
            self.waiting = []
            self._posted.clear()
            return
        pending = await asyncio.to_thread(self._outbox.peek, EventClass.ALERT, SHOWN_AT_MOST)
        waiting = [(item.id, decode(item)) for item in pending]
        self.waiting = [alert for _, alert in waiting]
        for key, alert in waiting:
            if key in self._posted:
                continue
            try:
                if await self._post(session, alert):
                    self._posted.add(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alert %s not posted to the duty room; trying again next round",
                              text_of(key, 60))

    async def _post(self, session: aiohttp.ClientSession, alert: dict[str, Any]) -> bool:
        """True once every local webhook took it; a failed one is tried again next round."""
        try:
            text = describe(alert)
        except Exception:  # a bug in describe() must not keep the alert from the duty room
            log.exception("alert %s could not be described", text_of(alert.get("id"), 60))
            text = f"【{priority_words(alert.get('priority'))}】警报 {text_of(alert.get('id'))}"
        body = {"gateway_id": self._gateway_id, "text": text, "alert": alert}
        timeout = aiohttp.ClientTimeout(total=self._config.timeout)
        delivered = True
        for url in self._config.webhooks:
            try:
                async with session.post(str(url), json=body, timeout=timeout) as response:
                    delivered &= response.status < 300
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                log.warning("duty-room webhook failed for alert %s: %s",
                            text_of(alert.get("id"), 60), type(exc).__name__)
                delivered = False
        return delivered
