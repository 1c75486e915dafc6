"""The central's SQLite file, and its event log deduplicated by event id.

Every table of the central (events, alerts, commands, deliveries, accounts) lives in one file
behind one connection, so that a change and what it causes (an alert step and the feedback
command it queues) commit in the same transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    gateway_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    type TEXT NOT NULL,
    priority TEXT NOT NULL,
    device_id TEXT,
    arrived REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_type ON events (type, seq);
"""


class Database:
    """One connection, used from worker threads one at a time."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # The CLI (`mashang butler passwd`) writes to the same file while the central runs.
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def schema(self, script: str) -> None:
        with self._lock:
            self._db.executescript(script)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def rows(self, query: str, params: tuple | list = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(query, params).fetchall()


class EventStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.schema(SCHEMA)

    def add(self, gateway_id: str, events: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        """Store a batch in one transaction; returns (accepted ids, duplicate ids)."""
        accepted, duplicates = [], []
        arrived = time.time()
        with self._db.transaction() as db:
            for event in events:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO events"
                    " (id, gateway_id, kind, type, priority, device_id, arrived, body)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        event["id"],
                        gateway_id,
                        event["kind"],
                        event["type"],
                        event["priority"],
                        event.get("device_id"),
                        arrived,
                        json.dumps(event, ensure_ascii=False),
                    ),
                )
                (accepted if cursor.rowcount else duplicates).append(event["id"])
        return accepted, duplicates

    def list(
        self, *, after: int = 0, limit: int = 1000, event_type: str | None = None
    ) -> list[dict]:
        query = "SELECT seq, gateway_id, arrived, body FROM events WHERE seq > ?"
        params: list[Any] = [after]
        if event_type:
            query += " AND type = ?"
            params.append(event_type)
        query += " ORDER BY seq LIMIT ?"
        params.append(limit)
        return [
            {**json.loads(body), "seq": seq, "gateway_id": gateway_id, "arrived_at": arrived}
            for seq, gateway_id, arrived, body in self._db.rows(query, params)
        ]
