"""The durable outbox: every event lives here, on disk, until the central has it.

SQLite in WAL mode with synchronous=FULL: a committed event survives a crash or a power cut
(given a disk that honours fsync). Writes are grouped: one transaction per batch of messages,
so one fsync serves many events. Two classes share one table: alerts are always leased before
logs. Logs expire after a TTL and are evicted, oldest first, when the outbox passes its size
cap; alerts are never evicted. Events the central refuses permanently move to `dead_letters`.

A damaged file is never trusted: `Outbox.open_checked`, at the gateway's start, runs `PRAGMA
quick_check` first; a file that fails it is moved aside whole (with its -wal and -shm) for an
operator, and a fresh outbox begins with a critical `gateway.outbox_replaced` alert.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import TypeVar

from edge.events import Event, event_id, now

__all__ = [
    "ClassDepth",
    "DeadLetter",
    "EventClass",
    "Leased",
    "Outbox",
    "OutboxError",
    "OutboxFull",
    "OutboxStats",
    "OutboxUsage",
    "Replaced",
    "check_outbox_file",
    "replaced_event",
]

log = logging.getLogger(__name__)

Result = TypeVar("Result")


class EventClass(IntEnum):
    """Stored as this number in the `class` column; alerts are always leased before logs."""

    ALERT = 0
    LOG = 1

    @property
    def label(self) -> str:
        return self.name.lower()

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    class INTEGER NOT NULL,
    created REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_class ON outbox (class, seq);
-- Kept by triggers in the same transactions, so depth is O(1) and never drifts after a crash.
CREATE TABLE IF NOT EXISTS depth (
    class INTEGER PRIMARY KEY,
    events INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO depth VALUES (0, 0, 0), (1, 0, 0);
CREATE TRIGGER IF NOT EXISTS depth_in AFTER INSERT ON outbox BEGIN
    UPDATE depth SET events = events + 1, bytes = bytes + length(NEW.body)
    WHERE class = NEW.class;
END;
CREATE TRIGGER IF NOT EXISTS depth_out AFTER DELETE ON outbox BEGIN
    UPDATE depth SET events = events - 1, bytes = bytes - length(OLD.body)
    WHERE class = OLD.class;
END;
CREATE TABLE IF NOT EXISTS dead_letters (
    id TEXT PRIMARY KEY,
    body BLOB NOT NULL,
    reason TEXT NOT NULL,
    status INTEGER,
    parked REAL NOT NULL
);
"""

# The outbox's schema versions, kept in the file's `PRAGMA user_version`: step N brings a file
# at version N-1 to N. Step 1 is the first schema, written with IF NOT EXISTS, so a file made
# before versions were kept (user_version 0) takes it as a no-op. Steps are only appended.
MIGRATIONS = [SCHEMA]


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Apply the steps the file lacks, each in its own transaction with its version number;
    a file from a newer release is refused, whole and untouched, not set aside."""
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise OutboxError(
            f"{path}: schema version {version}, newer than this gateway's {len(MIGRATIONS)}:"
            " it was written by a newer release; run that release (the file is left as is)"
        )
    for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
        db.executescript(f"BEGIN IMMEDIATE;\n{step}\n;PRAGMA user_version = {number};COMMIT;")


# The SQL condition that selects log rows.
LOG_ROWS = f"class = {int(EventClass.LOG)}"
INSERT = "INSERT OR IGNORE INTO outbox (id, class, created, body) VALUES (?, ?, ?, ?)"

# KiB of pages each connection caches (SQLite's default is 2,000): memory that fills with the
# first burst and stays. Half the default costs the writer's inserts ~1 µs an event while an
# outbox fills to 100,000 (a quarter, ~2 µs; bench/NOTES.md); the reader reads the rows just
# committed.
WRITER_CACHE_KIB = 1024
READER_CACHE_KIB = 256
# Evict down to this share of the cap, so that one eviction buys room for many commits.
EVICT_TO = 0.9
# Space left free on the outbox's filesystem, counting pages free inside the file: SQLite's WAL
# grows by up to ~4 MiB between checkpoints, and on a disk that is full to the last byte not
# even a DELETE can commit. Logs are evicted to keep it, as for the cap (tests/test_full_disk.py).
DISK_RESERVE = 8 * 1024 * 1024


class OutboxError(Exception):
    """The outbox's file refused an operation (its SQLite error is the cause)."""


class OutboxFull(OutboxError):
    """Nothing more fits: the caller must not ack what it could not save."""


@contextmanager
def sqlite_errors() -> Iterator[None]:
    """What the file refuses comes out as the outbox's own error, never sqlite3's."""
    try:
        yield
    except sqlite3.Error as exc:
        raise OutboxError(str(exc)) from exc


@dataclass
class OutboxUsage:
    """Handed in by whoever watches the outbox (metrics), told by the outbox what it dropped:
    logs expired (`ttl`) or evicted over the size cap (`disk_cap`), counted once committed."""

    evicted: dict[str, int] = field(default_factory=dict)

    def dropped(self, reason: str, count: int) -> None:
        if count:
            self.evicted[reason] = self.evicted.get(reason, 0) + count


@dataclass(frozen=True, slots=True)
class Leased:
    seq: int
    id: str
    body: bytes


@dataclass(frozen=True, slots=True)
class ClassDepth:
    events: int
    bytes: int
    oldest_age: float | None


@dataclass(frozen=True, slots=True)
class OutboxStats:
    alerts: ClassDepth
    logs: ClassDepth
    dead_letters: int
    used_bytes: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    reason: str
    status: int | None
    parked: float
    body: bytes


class Outbox:
    """Thread-safe: the commit thread puts, the uplink leases and acks.

    Two connections to the file: the writer (puts, deletes, eviction, under `_lock`) and a
    reader (leases, peeks, depth, under `_read_lock`). WAL lets the reader see every committed
    transaction without waiting for the writer, so an alert is leased while a group of logs is
    still being fsynced. `_leased` belongs to the reader's side: an acked row leaves it only
    after its delete has committed, so no lease can see the row again and find it free."""

    def __init__(self, path: Path, *, max_bytes: int, log_ttl: float,
                 usage: OutboxUsage | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self.log_ttl = log_ttl
        self.usage = usage or OutboxUsage()
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._leased: set[int] = set()
        self._db = self._connect(path)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            migrate(self._db, path)
            self._page_size: int = self._db.execute("PRAGMA page_size").fetchone()[0]
            self._reader = self._connect(path)
            self._reader.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")
        except sqlite3.Error as exc:
            self._db.close()  # let go of the file: open_checked may move it aside
            raise OutboxError(f"{path}: {exc}") from exc

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        try:
            return sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                   timeout=30)
        except sqlite3.Error as exc:
            raise OutboxError(f"{path}: {exc}") from exc

    @classmethod
    def open_checked(cls, path: Path, *, max_bytes: int, log_ttl: float,
                     usage: OutboxUsage | None = None) -> tuple[Outbox, Replaced | None]:
        """The gateway's outbox at start-up, checked before it is trusted.

        A file that fails `check_outbox_file`, or that SQLite finds damaged on opening, is
        moved whole (with its -wal and -shm) into a folder beside it named for the moment,
        e.g. `outbox.damaged-20261201T075500Z/`, and kept there for an operator. A fresh
        outbox is started, and a critical `gateway.outbox_replaced` alert, saying what was
        found and where the copy is, is committed in it before this returns: the alert is
        durable before anything else runs."""

        def opened() -> Outbox:
            return cls(path, max_bytes=max_bytes, log_ttl=log_ttl, usage=usage)

        reason = check_outbox_file(path)
        if reason is None:
            try:
                return opened(), None
            except OutboxError as exc:
                cause = exc.__cause__
                if not (isinstance(cause, sqlite3.Error) and is_damage(cause)):
                    raise
                reason = f"{cause} ({cause.sqlite_errorname})"
        replaced = set_aside(path, reason)
        log.error("outbox %s is damaged (%s): moved it, with its -wal and -shm, to %s (%d "
                  "bytes) and started a fresh outbox; %s", path, reason, replaced.moved_to,
                  replaced.size, UNTRUSTED)
        outbox = opened()
        outbox.put([replaced_event(replaced)])
        return outbox, replaced

    def close(self) -> None:
        with self._lock, self._read_lock, sqlite_errors():
            self._reader.close()
            self._db.close()

    # -- writing ---------------------------------------------------------------------------

    def put(self, events: Sequence[Event]) -> int:
        """Commit events in one transaction; returns how many were new (ids already held are
        redeliveries). Raises OutboxFull, having stored nothing, when nothing more fits."""
        if not events:
            return 0
        created = time.time()
        rows = [(e.id, EventClass.ALERT if e.is_alert else EventClass.LOG, created, e.encode())
                for e in events]
        with self._lock, sqlite_errors():
            try:
                # The eviction too can meet a full disk (tests/test_full_disk.py).
                if self._over_cap():
                    self._evict_locked()
                    if self._used_bytes() > self.max_bytes:
                        raise OutboxFull(
                            f"outbox holds {self._used_bytes()} bytes, cap {self.max_bytes}"
                        )
                return self._transaction(lambda db: db.executemany(INSERT, rows).rowcount)
            except OutboxError as exc:
                if "full" in str(exc):
                    raise OutboxFull(str(exc)) from exc.__cause__
                raise

    def expire_logs(self) -> int:
        """Drop logs older than the TTL; returns how many (recorded as a gateway.evicted event)."""
        cutoff = time.time() - self.log_ttl
        with self._lock, sqlite_errors():
            return self._drop_logs("ttl", "created < ?", (cutoff,))

    def evict_over_cap(self) -> int:
        with self._lock, sqlite_errors():
            return self._evict_locked() if self._over_cap() else 0

    def _disk_short(self) -> int:
        """Bytes to free inside the file so that DISK_RESERVE stays free on the filesystem."""
        free_pages: int = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        inside = free_pages * self._page_size
        return max(0, DISK_RESERVE - shutil.disk_usage(self.path.parent).free - inside)

    def _over_cap(self) -> bool:
        return self._used_bytes() > self.max_bytes or self._disk_short() > 0

    def _evict_locked(self) -> int:
        """Drop the oldest logs until the outbox is back under its cap; alerts are kept.

        Pages are freed only as whole pages empty, so the size is measured again after each
        round instead of trusting one estimate: put() must not say "full" while a log is left
        that could make room (found by tests/test_outbox_model.py)."""
        target = int(self.max_bytes * EVICT_TO)

        def drop(db: sqlite3.Connection) -> int:
            dropped = 0
            while (excess := max(self._used_bytes() - target, self._disk_short())) > 0:
                depth = self._depth_locked()
                if depth[EventClass.LOG].events == 0:
                    break
                used = self._used_bytes()
                held = depth[EventClass.ALERT].events + depth[EventClass.LOG].events
                per_event = max(1, used // held)
                count = min(depth[EventClass.LOG].events, excess // per_event + 1)
                dropped += delete_logs(
                    db, f"seq IN (SELECT seq FROM outbox WHERE {LOG_ROWS} ORDER BY seq LIMIT ?)",
                    (count,),
                )
            record_eviction(db, "disk_cap", dropped)
            return dropped

        return self._counted("disk_cap", self._transaction(drop))

    def _drop_logs(self, reason: str, where: str, params: tuple[object, ...]) -> int:
        def drop(db: sqlite3.Connection) -> int:
            dropped = delete_logs(db, where, params)
            record_eviction(db, reason, dropped)
            return dropped

        return self._counted(reason, self._transaction(drop))

    def _counted(self, reason: str, dropped: int) -> int:
        self.usage.dropped(reason, dropped)
        return dropped

    # -- reading and acknowledging ---------------------------------------------------------

    def lease(self, klass: EventClass, limit: int) -> list[Leased]:
        """The oldest events of a class not already in flight, oldest first."""
        with self._read_lock, sqlite_errors():
            rows = self._reader.execute(
                "SELECT seq, id, body FROM outbox WHERE class = ? ORDER BY seq LIMIT ?",
                (klass, limit + len(self._leased)),
            ).fetchall()
            batch = [Leased(*row) for row in rows if row[0] not in self._leased][:limit]
            self._leased.update(item.seq for item in batch)
            return batch

    def peek(self, klass: EventClass, limit: int) -> list[Leased]:
        """The oldest events of a class, leased or not, for display: nothing changes."""
        with self._read_lock, sqlite_errors():
            rows = self._reader.execute(
                "SELECT seq, id, body FROM outbox WHERE class = ? ORDER BY seq LIMIT ?",
                (klass, limit),
            ).fetchall()
        return [Leased(*row) for row in rows]

    def ack(self, seqs: Iterable[int]) -> None:
        """The central has these: delete them."""
        seqs = list(seqs)
        with self._lock, sqlite_errors():
            self._transaction(
                lambda db: db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
            )
        self.release(seqs)

    def release(self, seqs: Iterable[int]) -> None:
        """Not sent after all (or deleted): leave them for the next lease."""
        with self._read_lock:
            self._leased.difference_update(seqs)

    def dead_letter(self, item: Leased, reason: str, status: int | None) -> None:
        def park(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO dead_letters (id, body, reason, status, parked)"
                " VALUES (?, ?, ?, ?, ?)",
                (item.id, item.body, reason, status, time.time()),
            )
            db.execute("DELETE FROM outbox WHERE seq = ?", (item.seq,))

        with self._lock, sqlite_errors():
            self._transaction(park)
        self.release([item.seq])

    # -- inspection ------------------------------------------------------------------------

    def pending(self, klass: EventClass) -> int:
        """Events of a class held, in flight or not (the depth table: no count is run)."""
        with self._read_lock, sqlite_errors():
            rows = self._reader.execute("SELECT events FROM depth WHERE class = ?",
                                        (klass,)).fetchall()
        return int(rows[0][0]) if rows else 0

    def stats(self) -> OutboxStats:
        """Read on the reader's side: never waits for a commit (the gateway's facts read it on
        the loop, the metrics on every scrape)."""
        with self._read_lock, sqlite_errors():
            depth = self._depth_locked(self._reader)
            dead = self._reader.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
            return OutboxStats(depth[EventClass.ALERT], depth[EventClass.LOG], dead,
                               self._used_bytes(self._reader), self.max_bytes)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self._lock, sqlite_errors():
            rows = self._db.execute(
                "SELECT id, reason, status, parked, body FROM dead_letters ORDER BY parked LIMIT ?",
                (limit,),
            ).fetchall()
        return [DeadLetter(*row) for row in rows]

    def integrity_check(self) -> str:
        with self._lock, sqlite_errors():
            verdict: str = self._db.execute("PRAGMA integrity_check").fetchone()[0]
            return verdict

    def _depth_locked(self, db: sqlite3.Connection | None = None) -> dict[EventClass, ClassDepth]:
        """Through `db` (the writer by default), whose lock the caller holds."""
        db = db or self._db
        result = {}
        for number, events, size in db.execute("SELECT class, events, bytes FROM depth").fetchall():
            klass = EventClass(number)
            oldest = db.execute(
                "SELECT created FROM outbox WHERE class = ? ORDER BY seq LIMIT 1", (klass,)
            ).fetchone()
            result[klass] = ClassDepth(events, size, time.time() - oldest[0] if oldest else None)
        return result

    def _used_bytes(self, db: sqlite3.Connection | None = None) -> int:
        db = db or self._db
        pages: int = db.execute("PRAGMA page_count").fetchone()[0]
        free: int = db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self._page_size

    def _transaction(self, work: Callable[[sqlite3.Connection], Result]) -> Result:
        """Run `work` in one write transaction; an SQLite error comes out as OutboxError."""
        with sqlite_errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._db)
                self._db.execute("COMMIT")
            except BaseException:
                # SQLite may already have rolled back by itself (on SQLITE_FULL, for one), and
                # a COMMIT that failed on a full disk leaves the transaction open: close it, or
                # the next BEGIN fails for good (tests/test_full_disk.py).
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return result


def delete_logs(db: sqlite3.Connection, where: str, params: tuple[object, ...]) -> int:
    """Delete the logs matching `where`; returns how many events that loses. An earlier
    gateway.evicted notice among them counts for the events it stood for, so the central's
    tally of what was lost stays whole however often notices are evicted in turn."""
    notices: int
    carried: int
    notices, carried = db.execute(
        "SELECT count(*), coalesce(sum(json_extract(body, '$.data.count')), 0) FROM outbox"
        f" WHERE {LOG_ROWS} AND {where} AND json_extract(body, '$.type') = 'gateway.evicted'",
        params,
    ).fetchone()
    deleted = db.execute(f"DELETE FROM outbox WHERE {LOG_ROWS} AND {where}", params).rowcount
    return deleted - notices + carried


def record_eviction(db: sqlite3.Connection, reason: str, count: int) -> None:
    if count:
        notice = evicted_event(reason, count)
        db.execute(INSERT, (notice.id, EventClass.LOG, time.time(), notice.encode()))


def evicted_event(reason: str, count: int) -> Event:
    moment = now()
    return Event(
        id=event_id(f"gateway.evicted\n{moment.timestamp()}", reason),
        kind="log",
        type="gateway.evicted",
        priority="normal",
        device_id=None,
        occurred_at=moment,
        received_at=moment,
        data={"reason": reason, "count": count},
    )


# -- start-up: a damaged file is moved aside, never trusted -----------------------------------

# quick_check lists at most this many problems. The limit bounds the report, and how much of a
# badly damaged file is read before giving up; it does not shorten the check of a healthy file,
# which reads every page in use whatever the limit (timed in docs/reliability.md).
QUICK_CHECK_ROWS = 5
REASON_CHARS = 800
# SQLite's primary result codes that condemn the file itself. Busy, locked, full, read-only or
# cannot-open say nothing about the file: those are raised, and nothing is moved.
DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_IOERR})
# Moved before the database: a WAL left beside a fresh file would be replayed into it.
SIDE_FILES = ("-wal", "-shm")
# Seconds the check waits for a lock another connection holds, as the outbox itself does.
CHECK_BUSY_TIMEOUT = 30.0
UNTRUSTED = ("the events in the damaged file were not sent and cannot be trusted or read "
             "reliably; an operator may salvage what is readable from the copy by hand "
             "(docs/reliability.md)")


@dataclass(frozen=True, slots=True)
class Replaced:
    """A damaged outbox moved aside at start-up, and a fresh one begun in its place."""

    reason: str  # what quick_check, or opening the file, said
    moved_to: Path  # the folder holding the damaged file with its -wal and -shm
    size: int  # bytes moved


def is_damage(exc: sqlite3.Error) -> bool:
    return exc.sqlite_errorcode & 0xFF in DAMAGE_CODES


def check_outbox_file(path: Path) -> str | None:
    """What is wrong with the outbox file at `path`, or None when it passes `PRAGMA
    quick_check` (or does not exist yet).

    Read-only: it moves, writes and creates nothing, and may run beside a running gateway,
    whose last commit it sees. Raises OutboxError when the file cannot be checked now (busy,
    no permission): that is no verdict on the file."""
    if not path.exists():
        return None
    # With no WAL beside it the file is whole, and no gateway has it open (an open outbox
    # always has its WAL): read it as immutable, which creates no -wal or -shm. With a WAL (a
    # running gateway, or one killed), read the file and its WAL as a reader does.
    access = "mode=ro" if Path(f"{path}{SIDE_FILES[0]}").exists() else "immutable=1"
    db: sqlite3.Connection | None = None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?{access}", uri=True,
                             timeout=CHECK_BUSY_TIMEOUT)
        rows = db.execute(f"PRAGMA quick_check({QUICK_CHECK_ROWS})").fetchall()
    except sqlite3.Error as exc:
        if is_damage(exc):
            return f"{exc} ({exc.sqlite_errorname})"
        raise OutboxError(f"{path} cannot be checked: {exc}") from exc
    finally:
        if db is not None:
            db.close()
    lines = [line for row in rows for line in str(row[0]).splitlines()
             if line and not line.startswith("*** in database")]
    if lines == ["ok"]:
        return None
    reason = "; ".join(lines) or "quick_check gave no verdict"
    return reason if len(reason) <= REASON_CHARS else reason[:REASON_CHARS - 1] + "…"


def set_aside(path: Path, reason: str) -> Replaced:
    """Move the outbox file, its -wal and -shm into a new folder beside it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = path.with_name(f"{path.stem}.damaged-{stamp}")
    number = 1
    while folder.exists():
        number += 1
        folder = path.with_name(f"{path.stem}.damaged-{stamp}-{number}")
    moved = 0
    try:
        folder.mkdir()
        for name in [*(path.name + suffix for suffix in SIDE_FILES), path.name]:
            source = path.with_name(name)
            try:
                size = source.stat().st_size
                source.rename(folder / name)
            except FileNotFoundError:
                continue
            moved += size
        for directory in (folder, path.parent):
            fsync_directory(directory)
    except OSError as exc:
        raise OutboxError(f"{path} is damaged ({reason}) and could not be moved aside to "
                          f"{folder}: {exc}") from exc
    return Replaced(reason, folder, moved)


def fsync_directory(directory: Path) -> None:
    """So that the renames survive a power cut."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def replaced_event(replaced: Replaced) -> Event:
    moment = now()
    return Event(
        id=event_id(f"{replaced.moved_to}\n{moment.timestamp()}", "gateway.outbox_replaced"),
        kind="alert",
        type="gateway.outbox_replaced",
        priority="critical",
        device_id=None,
        occurred_at=moment,
        received_at=moment,
        data={
            "reason": replaced.reason,
            "moved_to": str(replaced.moved_to),
            "size": replaced.size,
            "events": UNTRUSTED,
        },
    )
