"""The central's SQLite file, and its event log deduplicated by event id.

Every table of the central (events, alerts, commands, deliveries, accounts) lives in one file
behind one connection, so that a change and what it causes (an alert step and the feedback
command it queues) commit in the same transaction.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
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


# A write of /healthz's: one row, rewritten.
HEALTH_SCHEMA = "CREATE TABLE IF NOT EXISTS health (id INTEGER PRIMARY KEY, at REAL NOT NULL);"
HEALTH_WAIT = 2.0  # seconds a health write waits for the write lock before calling it locked
MIN_FREE_BYTES = 16 * 1024 * 1024


class Database:
    """One connection, used from worker threads one at a time."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # The CLI (`mashang butler passwd`) writes to the same file while the central runs.
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._lock = threading.Lock()
        opened = path.stat()
        self._identity = (opened.st_dev, opened.st_ino)
        self.migrate("health", [HEALTH_SCHEMA])

    def write_problem(self) -> str | None:
        """None when a write to the database commits now, else why not (for /healthz).

        The central's connection, opened at its start, may still write to a file since removed
        (lost at the next start) or made read-only (its WAL takes writes until a checkpoint
        fails): the file at the path is checked first, then a row is written through a
        connection of its own, which a lock held too long or a full disk fails."""
        path = self._path
        try:
            now = path.stat()
        except FileNotFoundError:
            return f"the database {path} is gone (its file or folder was removed)"
        except OSError as exc:
            return f"the database {path} cannot be reached: {exc.strerror}"
        if (now.st_dev, now.st_ino) != self._identity:
            return f"the database {path} was replaced under the running central: restart it"
        # access(2), not the mode bits: it knows read-only mounts and immutable files, root too.
        # (No test open of the file: closing it would drop SQLite's POSIX locks on it.)
        if not os.access(path, os.W_OK):
            return f"the database {path} is readonly for the central"
        free = shutil.disk_usage(path.parent).free
        if free < MIN_FREE_BYTES:
            return f"the disk of {path} is full ({free // 1024} KiB free)"
        try:
            probe = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=rw", uri=True,
                                    timeout=HEALTH_WAIT, isolation_level=None)
            try:
                probe.execute("PRAGMA synchronous=NORMAL")  # a probe needs no fsync
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("INSERT OR REPLACE INTO health (id, at) VALUES (1, ?)",
                              (time.time(),))
                probe.execute("COMMIT")
            finally:
                probe.close()
        except sqlite3.Error as exc:
            return f"the database {path} takes no write: {exc}"
        return None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def migrate(self, component: str, steps: Sequence[str]) -> None:
        """Bring a component's tables to version len(steps), applying each missing step once,
        in order, each in its own transaction with the new version number.

        Step 1 is the component's first schema, written with IF NOT EXISTS, so that a file made
        before versions were kept takes it as a no-op and goes on from there. Steps are only
        ever appended: a released step never changes.
        """
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions"
                " (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            row = self._db.execute(
                "SELECT version FROM schema_versions WHERE component = ?", (component,)
            ).fetchone()
            version = row[0] if row else 0
            if version > len(steps):
                raise RuntimeError(
                    f"{component}: the database is at schema version {version}, newer than"
                    f" this program's {len(steps)}; run the newer release"
                )
            for number, step in enumerate(steps[version:], start=version + 1):
                try:
                    self._db.executescript(
                        f"BEGIN IMMEDIATE;\n{step}\n;"
                        f"INSERT OR REPLACE INTO schema_versions VALUES ('{component}', {number});"
                        "COMMIT;"
                    )
                except sqlite3.Error as exc:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise RuntimeError(f"{component}: schema step {number} failed: {exc}") from exc

    def version(self, component: str) -> int:
        rows = self.rows("SELECT version FROM schema_versions WHERE component = ?", (component,))
        return rows[0][0] if rows else 0

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """`durable=False`: a commit without its own fsync, for what a power cut may lose but a
        crash may not (the WAL's next durable commit carries it to the disk too)."""
        with self._lock:
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")

    def rows(self, query: str, params: tuple | list = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(query, params).fetchall()


class EventStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate("events", [SCHEMA])

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
