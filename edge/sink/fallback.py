"""Local fallback: when the central has been out of reach too long and an alert is waiting,
the alert goes to the community's own duty room (local webhooks) and onto the LAN page.

It never takes an alert out of the outbox: the central still gets every alert once it is back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp

from edge.buffer.outbox import EventClass, Outbox
from edge.config import FallbackSection
from edge.sink.central import CentralHealth

log = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0
SHOWN_AT_MOST = 100


def describe(alert: dict[str, Any]) -> str:
    """One line in Chinese for the duty room: who, where, how urgent."""
    data = alert.get("data", {})
    resident = data.get("resident") or {}
    building = (data.get("building") or {}).get("name") or resident.get("building") or "?"
    who = resident.get("name") or f"未登记按钮 {alert.get('device_id')}"
    room = resident.get("room") or ""
    return f"【{alert.get('priority')}】{who} {building} {room} 呼叫求助 ({alert.get('type')})"


class Fallback:
    def __init__(self, config: FallbackSection, outbox: Outbox, health: CentralHealth,
                 gateway_id: str) -> None:
        self._config = config
        self._outbox = outbox
        self._health = health
        self._gateway_id = gateway_id
        self._posted: set[str] = set()
        # What the LAN page shows while the fallback is active.
        self.waiting: list[dict[str, Any]] = []

    @property
    def active(self) -> bool:
        return self._health.unreachable_for() > self._config.after

    async def run(self, session: aiohttp.ClientSession) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            if not self.active:
                self.waiting = []
                self._posted.clear()
                continue
            pending = await asyncio.to_thread(self._outbox.peek, EventClass.ALERT, SHOWN_AT_MOST)
            self.waiting = [json.loads(item.body) for item in pending]
            for alert in self.waiting:
                if alert["id"] not in self._posted and await self._post(session, alert):
                    self._posted.add(alert["id"])

    async def _post(self, session: aiohttp.ClientSession, alert: dict[str, Any]) -> bool:
        """True once every local webhook took it; a failed one is tried again next round."""
        body = {"gateway_id": self._gateway_id, "text": describe(alert), "alert": alert}
        timeout = aiohttp.ClientTimeout(total=self._config.timeout)
        delivered = True
        for url in self._config.webhooks:
            try:
                async with session.post(str(url), json=body, timeout=timeout) as response:
                    delivered &= response.status < 300
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.warning("duty-room webhook failed: %s", type(exc).__name__)
                delivered = False
        return delivered
