"""The downlink (PROTOCOL §4): a persistent command queue per gateway.

The cursor is the queue position of the last command a gateway has seen; a fetch returns every
command after it. A gateway fetching with no cursor (or 0) is new or has lost its state: it is
given the current registry first. Commands are kept after they are fetched, so a gateway that
crashes before acting on one fetches it again from its older cursor. The long-poll that serves
the queue over HTTP is `commands.routes`; the relay of registry imports is `commands.relay`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from typing import Any

from cloud_bridge.receiver.store import Connection, Database
from cloud_bridge.registry.source import RegistrySource

SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    gateway_id TEXT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    fetched_at REAL
);
CREATE INDEX IF NOT EXISTS commands_by_gateway ON commands (gateway_id, seq);
CREATE TABLE IF NOT EXISTS registry_sent (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    digest TEXT NOT NULL
);
"""

MAX_BATCH = 200


def feedback_command(device_id: str, alert_id: str, state: str, by: str | None) -> dict:
    return {
        "id": uuid.uuid4().hex,
        "type": "feedback",
        "device_id": device_id,
        "alert_id": alert_id,
        "state": state,
        "by": by,
    }


def enqueue(db: Connection, gateway_id: str, command: dict[str, Any]) -> None:
    """Queue inside the caller's transaction, so a command exists exactly when its cause does."""
    db.execute(
        "INSERT INTO commands (gateway_id, id, type, body, created_at) VALUES (?, ?, ?, ?, ?)",
        (
            gateway_id,
            command["id"],
            command["type"],
            json.dumps(command, ensure_ascii=False),
            time.time(),
        ),
    )


class CommandQueue:
    def __init__(self, db: Database, registry: RegistrySource, gateways: list[str]) -> None:
        self._db = db
        self._registry = registry
        self._gateways = gateways
        self._signals: dict[str, asyncio.Event] = {}
        self.closing = False
        db.migrate("commands", [SCHEMA])

    # -- the registry snapshot ---------------------------------------------------------------

    def _registry_command(self) -> dict[str, Any]:
        registry = self._registry.for_gateways().model_dump(mode="json")
        digest = hashlib.sha256(json.dumps(registry, sort_keys=True).encode()).hexdigest()
        return {
            "id": f"registry-{registry['version']}-{digest[:12]}",
            "type": "registry.replace",
            "registry": registry,
        }

    def queue_registry(self) -> list[str]:
        """Queue `registry.replace` for every gateway if the registry differs from the one
        last queued (also across restarts: an import made while the central was down)."""
        if not self._registry.exists:
            return []
        command = self._registry_command()
        with self._db.transaction() as db:
            row = db.execute("SELECT digest FROM registry_sent WHERE id = 1").fetchone()
            if row and row[0] == command["id"]:
                return []
            # Another process may have changed the registry since this one read it, and queued
            # the newer one already: the older must not follow it to the gateways.
            stored = db.execute("SELECT version FROM registry WHERE id = 1").fetchone()
            if stored and stored[0] > self._registry.current.version:
                return []
            db.execute(
                "INSERT INTO registry_sent (id, digest) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET digest = excluded.digest", (command["id"],)
            )
            for gateway_id in self._gateways:
                enqueue(db, gateway_id, command)
        return list(self._gateways)

    def _ensure_registry(self, db: Connection, gateway_id: str) -> None:
        if not self._registry.exists:
            return
        command = self._registry_command()
        queued = db.execute(
            "SELECT 1 FROM commands WHERE gateway_id = ? AND id = ?", (gateway_id, command["id"])
        ).fetchone()
        if not queued:
            enqueue(db, gateway_id, command)

    # -- fetching ----------------------------------------------------------------------------

    def fetch(self, gateway_id: str, after: int) -> tuple[int, list[dict[str, Any]]]:
        """(new cursor, commands after `after`), registry snapshots first, older ones dropped."""
        with self._db.transaction() as db:
            (newest,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM commands").fetchone()
            if after > newest:  # a cursor from a queue this central no longer has: start over
                after = 0
            if after == 0:
                self._ensure_registry(db, gateway_id)
            rows = db.execute(
                "SELECT seq, body FROM commands WHERE gateway_id = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (gateway_id, after, MAX_BATCH),
            ).fetchall()
            if rows:
                db.execute(
                    "UPDATE commands SET fetched_at = ? WHERE gateway_id = ? AND seq > ?"
                    " AND seq <= ? AND fetched_at IS NULL",
                    (time.time(), gateway_id, after, rows[-1][0]),
                )
        commands = [json.loads(body) for _, body in rows]
        registries = [c for c in commands if c["type"] == "registry.replace"]
        others = [c for c in commands if c["type"] != "registry.replace"]
        # Only the newest snapshot matters: each one replaces the whole registry.
        return (rows[-1][0] if rows else after), registries[-1:] + others

    def signal(self, gateway_id: str) -> asyncio.Event:
        return self._signals.setdefault(gateway_id, asyncio.Event())

    def wake(self, gateway_id: str) -> None:
        signal = self._signals.pop(gateway_id, None)
        if signal is not None:
            signal.set()

    def wake_all(self) -> None:
        for gateway_id in list(self._signals):
            self.wake(gateway_id)

    def close(self) -> None:
        """Let every long-poll answer now, so that shutdown does not wait for them."""
        self.closing = True
        self.wake_all()
