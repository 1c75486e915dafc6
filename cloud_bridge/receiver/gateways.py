"""When each gateway was last heard, what it last said of itself, and which buttons came
through it: in the central's SQLite file, so that a restart forgets nothing and several
central processes can share it.

A gateway is heard whenever it makes an authentic request (ingest, or the command long-poll it
renews every `central.poll_wait` seconds). A burst of batches must not cost a write each, so
`last_heard` is written at most once a second per gateway (`HEARD_EVERY`), the facts with it;
a button that came through another gateway than before is written at once. The supervision of
silent gateways (`cloud_bridge/alerts/supervision.py`) reads this table.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from cloud_bridge.alerts.clock import SYSTEM_CLOCK, Clock
from cloud_bridge.receiver.store import Database
from mashang.wire import GatewayFacts

HEARD_EVERY = 1.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS gateways (
    id TEXT PRIMARY KEY,
    last_heard REAL NOT NULL,
    facts TEXT,       -- the latest gateway facts it sent (PROTOCOL §6), JSON
    version TEXT      -- its software version, from those facts
);
-- The gateway each button's latest event came through: the buttons behind a gateway.
CREATE TABLE IF NOT EXISTS gateway_buttons (
    device_id TEXT PRIMARY KEY,
    gateway_id TEXT NOT NULL,
    at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Heard:
    """One gateway's row."""

    id: str
    last_heard: float
    facts: GatewayFacts | None
    version: str | None


class Gateways:
    def __init__(self, db: Database, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._db = db
        self._clock = clock
        # Told (on the loop) when a gateway is heard that had been quiet for `quiet_after`
        # seconds or was never heard: the supervisor looks at once instead of at its next round.
        self.returned: Callable[[str], None] = lambda gateway_id: None
        self.quiet_after = float("inf")
        db.migrate("gateways", [SCHEMA])

    async def heard(
        self, gateway_id: str, facts: GatewayFacts | None = None, devices: Collection[str] = ()
    ) -> None:
        """An authentic request of `gateway_id`, carrying `facts` and events of `devices`."""
        returned = await asyncio.to_thread(self.record, gateway_id, facts, devices)
        if returned:
            self.returned(gateway_id)

    def record(
        self, gateway_id: str, facts: GatewayFacts | None, devices: Collection[str] = ()
    ) -> bool:
        """Blocking `heard`; True when the gateway was quiet or new."""
        now = self._clock()
        rows = self._db.rows("SELECT last_heard FROM gateways WHERE id = ?", (gateway_id,))
        before = rows[0][0] if rows else None
        moved = self._moved(gateway_id, set(devices))
        if before is not None and 0 <= now - before < HEARD_EVERY and not moved:
            return False
        text = facts.model_dump_json(exclude_none=True) if facts is not None else None
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO gateways (id, last_heard, facts, version) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET last_heard = CASE"
                " WHEN excluded.last_heard > gateways.last_heard THEN excluded.last_heard"
                " ELSE gateways.last_heard END,"
                " facts = COALESCE(excluded.facts, gateways.facts),"
                " version = COALESCE(excluded.version, gateways.version)",
                (gateway_id, now, text, facts.version if facts is not None else None),
            )
            db.executemany(
                "INSERT INTO gateway_buttons (device_id, gateway_id, at) VALUES (?, ?, ?)"
                " ON CONFLICT (device_id) DO UPDATE"
                " SET gateway_id = excluded.gateway_id, at = excluded.at",
                [(device_id, gateway_id, now) for device_id in sorted(moved)],
            )
        return before is None or now - before >= self.quiet_after

    def _moved(self, gateway_id: str, devices: set[str]) -> set[str]:
        """The devices whose latest event came through another gateway, or none yet."""
        if not devices:
            return set()
        marks = ", ".join("?" for _ in devices)
        known = dict(self._db.rows(
            f"SELECT device_id, gateway_id FROM gateway_buttons WHERE device_id IN ({marks})",
            sorted(devices),
        ))
        return {device for device in devices if known.get(device) != gateway_id}

    def all(self) -> dict[str, Heard]:
        return {
            gateway_id: Heard(gateway_id, last_heard, _facts(facts), version)
            for gateway_id, last_heard, facts, version in self._db.rows(
                "SELECT id, last_heard, facts, version FROM gateways"
            )
        }

    def buttons(self) -> dict[str, str]:
        """device id → the gateway its latest event came through."""
        return dict(self._db.rows("SELECT device_id, gateway_id FROM gateway_buttons"))


def _facts(text: str | None) -> GatewayFacts | None:
    return None if text is None else GatewayFacts.model_validate(json.loads(text))


def devices_of(events: list[dict[str, Any]]) -> set[str]:
    return {event["device_id"] for event in events if isinstance(event.get("device_id"), str)}


GATEWAYS_KEY = web.AppKey("gateways", Gateways)
