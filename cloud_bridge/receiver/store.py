"""The central's database, and its event log deduplicated by event id.

Every table of the central (events, alerts, commands, deliveries, accounts) lives in one
database, so that a change and what it causes (an alert step and the feedback command it
queues) commit in the same transaction. Two engines stand behind one interface: an SQLite file
in the data folder (the default: one community, nothing to install) and PostgreSQL
(`central.database`, cloud_bridge/receiver/postgres.py), where several central processes share
one database. The SQL in the modules is the subset both engines speak, with `?` placeholders.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from mashang.config import Unavailable

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


VERSIONS_SCHEMA = ("CREATE TABLE IF NOT EXISTS schema_versions"
                   " (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
VERSION_OF = "SELECT version FROM schema_versions WHERE component = ?"

# A write of /healthz's: one row, rewritten.
HEALTH_SCHEMA = "CREATE TABLE IF NOT EXISTS health (id INTEGER PRIMARY KEY, at REAL NOT NULL);"
HEALTH_WRITE = ("INSERT INTO health (id, at) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET at = excluded.at")
HEALTH_WAIT = 2.0  # seconds a health write waits for the write lock before calling it locked
MIN_FREE_BYTES = 16 * 1024 * 1024
INSERT_CHUNK = 500  # events per INSERT statement (8 parameters each; SQLite allows 32,766)


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What a transaction hands its work: sqlite3's own, or PostgreSQL's behind the same face."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...
    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Cursor: ...


# What another central process changed, as `announce` sent it: (topic, payload).
Listener = Callable[[str, str], None]


class Database(ABC):
    """The interface every part of the central uses; the engines below implement it."""

    engine: str
    # True where several central processes may share the database (see announce_changes).
    shared: bool = False

    @abstractmethod
    def transaction(self, *, durable: bool = True) -> AbstractContextManager[Connection]:
        """One write transaction; writers on the database take their turn, one at a time, so
        that what a transaction reads stays true until it commits.

        `durable=False`: a commit without its own flush to disk, for what a power cut may lose
        but a crash may not."""

    @abstractmethod
    def rows(self, query: str, params: tuple | list = ()) -> list[tuple]:
        """A read outside any write transaction."""

    def migrate(self, component: str, steps: Sequence[str]) -> None:
        """Bring a component's tables to version len(steps), applying each missing step once,
        in order, each in its own transaction with the new version number.

        Step 1 is the component's first schema, written with IF NOT EXISTS, so that a database
        made before versions were kept takes it as a no-op and goes on from there. Steps are
        only ever appended: a released step never changes.
        """
        version = self._schema_version(component)
        if version > len(steps):
            raise newer_schema(component, version, len(steps))
        for number, step in enumerate(steps[version:], start=version + 1):
            self._apply_step(component, number, step)

    @abstractmethod
    def _schema_version(self, component: str) -> int:
        """The component's version (0: none yet), the versions' table made if missing."""

    @abstractmethod
    def _apply_step(self, component: str, number: int, step: str) -> None:
        """One schema step and its version number, in one transaction."""

    @abstractmethod
    def write_problem(self) -> str | None:
        """None when a write to the database commits now, else why not (for /healthz)."""

    @abstractmethod
    def close(self) -> None: ...

    @property
    @abstractmethod
    def shown(self) -> str:
        """Where the database is, for logs and `mashang doctor`: never a password."""

    def version(self, component: str) -> int:
        rows = self.rows(VERSION_OF, (component,))
        return rows[0][0] if rows else 0

    def versions(self) -> dict[str, int]:
        return dict(self.rows("SELECT component, version FROM schema_versions"))

    @abstractmethod
    def announce_changes(self, table: str, topic: str, column: str) -> None:
        """From now on, every row written to `table` is announced to the other central
        processes when its transaction commits, as (topic, the row's `column`)."""

    @abstractmethod
    def listen(self, listener: Listener) -> None:
        """Hear what other processes announce, on a thread of the engine's."""


class StorageError(Unavailable, RuntimeError):
    """The database cannot be opened or brought to this release's schema: the central cannot
    start, and says why in one line."""


def newer_schema(component: str, version: int, known: int) -> StorageError:
    return StorageError(
        f"{component}: the database is at schema version {version}, newer than"
        f" this program's {known}; run the newer release"
    )


class SQLiteDatabase(Database):
    """One connection, used from worker threads one at a time."""

    engine = "sqlite"

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

    @property
    def shown(self) -> str:
        return str(self._path)

    # One central process per file: nobody else to tell, nobody to hear.
    def announce_changes(self, table: str, topic: str, column: str) -> None:
        pass

    def listen(self, listener: Listener) -> None:
        pass

    def write_problem(self) -> str | None:
        """The central's connection, opened at its start, may still write to a file since removed
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
                probe.execute(HEALTH_WRITE, (time.time(),))
                probe.execute("COMMIT")
            finally:
                probe.close()
        except sqlite3.Error as exc:
            return f"the database {path} takes no write: {exc}"
        return None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _schema_version(self, component: str) -> int:
        with self._lock:
            self._db.execute(VERSIONS_SCHEMA)
            row = self._db.execute(VERSION_OF, (component,)).fetchone()
        return row[0] if row else 0

    def _apply_step(self, component: str, number: int, step: str) -> None:
        with self._lock:
            try:
                self._db.executescript(
                    f"BEGIN IMMEDIATE;\n{step}\n;"
                    f"INSERT INTO schema_versions VALUES ('{component}', {number})"
                    " ON CONFLICT (component) DO UPDATE SET version = excluded.version;"
                    "COMMIT;"
                )
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StorageError(f"{component}: schema step {number} failed: {exc}") from exc

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[Connection]:
        # durable=False: the WAL's next durable commit carries it to the disk too.
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


def storable(value: Any) -> Any:
    """The event as both engines can keep it: NUL (which PostgreSQL's text and JSON refuse) and
    lone surrogates (which have no UTF-8) in its strings become U+FFFD and "?", so that a
    device's odd bytes cost their own characters, never the event (a press still counts)."""
    if isinstance(value, str):
        value = value.replace("\x00", "\ufffd")
        try:
            value.encode()
        except UnicodeEncodeError:
            value = value.encode(errors="replace").decode()
        return value
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


def stored_form(event: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The event as kept and its JSON text; the walk of `storable` only for the rare event whose
    text holds a NUL (JSON writes it as \\u0000) or does not encode, not for every one."""
    text = json.dumps(event, ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        pass
    else:
        if "\\u0000" not in text:
            return event, text
    event = storable(event)
    return event, json.dumps(event, ensure_ascii=False)


class EventStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate("events", [SCHEMA])

    def add(self, gateway_id: str, events: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        """Store a batch in one transaction; returns (accepted ids, duplicate ids)."""
        arrived = time.time()
        kept = [stored_form(event) for event in events]
        rows = [
            (event["id"], gateway_id, event["kind"], event["type"], event["priority"],
             event.get("device_id"), arrived, text)
            for event, text in kept
        ]
        new: set[str] = set()
        with self._db.transaction() as db:
            # One statement per chunk, not per event: on PostgreSQL each is a round trip.
            # Two processes may be handed the same batch at once: the unique id decides.
            for start in range(0, len(rows), INSERT_CHUNK):
                chunk = rows[start:start + INSERT_CHUNK]
                marks = ", ".join("(?, ?, ?, ?, ?, ?, ?, ?)" for _ in chunk)
                new.update(row[0] for row in db.execute(
                    "INSERT INTO events"
                    " (id, gateway_id, kind, type, priority, device_id, arrived, body)"
                    f" VALUES {marks} ON CONFLICT (id) DO NOTHING RETURNING id",
                    [value for row in chunk for value in row],
                ).fetchall())
        accepted, duplicates = [], []
        for event, _ in kept:  # a repeat within the batch is a duplicate of its first
            if event["id"] in new:
                new.discard(event["id"])
                accepted.append(event["id"])
            else:
                duplicates.append(event["id"])
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
