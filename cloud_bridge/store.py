"""The central's event store: SQLite, deduplicated by event id."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
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


class EventStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, gateway_id: str, events: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        """Store a batch in one transaction; returns (accepted ids, duplicate ids)."""
        accepted, duplicates = [], []
        arrived = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for event in events:
                    cursor = self._db.execute(
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
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
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
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        return [
            {**json.loads(body), "seq": seq, "gateway_id": gateway_id, "arrived_at": arrived}
            for seq, gateway_id, arrived, body in rows
        ]
