"""The webhooks' queue in the central's database (`robot_queue`), and the record of every
attempt (`deliveries`).

A message is a row from its page until its endpoint took it or it was given up, so that a
central stopped (or killed) meanwhile posts it after its restart, and any of several central
processes on one database may post it, exactly one of them. A process's lane claims the rows
it is about to post with a lease (`claimed_by`, `claimed_until`) in one write transaction,
together with the robot's pacing slot; it then posts, and finishes the rows (done, or due again
after a backoff) in another. A lease outlives the post's timeout: a lease still running is a
post in flight; one run out is a process that died mid-post, and any process takes the row.

Why no `SELECT … FOR UPDATE SKIP LOCKED`: every write transaction on either engine already
holds the one writers' lock (SQLite's BEGIN IMMEDIATE, PostgreSQL's advisory lock), so what the
claim reads stays true until it commits; a lease checked and set in that transaction is
exclusive as it stands, and the same SQL runs on both engines. The lease, not a row lock held
across the post, is also what lets the post happen outside any transaction.

The endpoint is kept as its digest (`Endpoint.key`): a robot's URL carries its key, a credential.
Each process finds the endpoint behind a digest in its configuration and registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cloud_bridge.config import WebhookFormat
from cloud_bridge.notify.messages import Message
from cloud_bridge.notify.pacing import Pacer, robot_key
from cloud_bridge.notify.vendors import Attempt
from cloud_bridge.receiver.store import Connection, Database

DELIVERIES_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alert TEXT NOT NULL,
    target TEXT NOT NULL,
    url TEXT NOT NULL,
    format TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status INTEGER,
    outcome TEXT NOT NULL,
    error TEXT,
    retry_in REAL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_by_alert ON deliveries (alert, seq);
"""

# The order messages go in (calls first, then by priority, then as they came) is the
# message's own (`Message.order`, then `id`): a lane reads its open rows and sorts them, as it
# also decides which faults share a digest.
QUEUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS robot_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint TEXT NOT NULL,
    alert TEXT NOT NULL,
    target TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at REAL NOT NULL,
    due_at REAL NOT NULL,
    posts INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    claimed_by TEXT,
    claimed_until REAL,
    done_at REAL,
    outcome TEXT
);
CREATE INDEX IF NOT EXISTS robot_queue_open ON robot_queue (endpoint, done_at);
CREATE INDEX IF NOT EXISTS robot_queue_done ON robot_queue (done_at);
"""

# Finished rows stay this long: a process waiting on a row another one finished reads its
# outcome there, and a message queued again meanwhile (a restart telling a report again) is
# the same row, not a second post.
KEPT = 86400.0
FINAL = frozenset({"delivered", "failed", "dropped"})
OPEN_COLUMNS = "id, alert, message, due_at, claimed_until, posts, failures"


@dataclass(eq=False)
class Queued:
    """An open row of the queue, as a lane read it."""

    id: int
    alert_id: str
    message: Message
    due_at: float
    claimed_until: float | None  # another process's lease, while it posts
    posts: int  # attempts made, "too fast" answers included (`deliveries.attempt`)
    failures: int  # of those, the ones that count against notify.attempts

    @property
    def order(self) -> tuple[int, int, int]:
        return (*self.message.order, self.id)

    def free(self, now: float) -> bool:
        return self.claimed_until is None or self.claimed_until < now

    def opens(self) -> float:
        """When a lane may take it, as far as the row says."""
        return max(self.due_at, self.claimed_until or 0.0)


@dataclass(frozen=True)
class Outcome:
    """What became of a queued message at one attempt, for `deliveries`."""

    outcome: str  # "delivered" | "retry" | "failed" | "dropped" (its alert resolved first)
    status: int | None
    error: str | None
    retry_in: float | None = None

    @classmethod
    def of(cls, attempt: Attempt, outcome: str, retry_in: float | None = None) -> Outcome:
        return cls(outcome, attempt.status, attempt.error, retry_in)


@dataclass(frozen=True)
class Endpoint:
    url: str
    format: WebhookFormat
    secret: str | None = None

    @property
    def key(self) -> str:
        """Its name in the queue."""
        return robot_key(self.url)

    @property
    def shown(self) -> str:
        """The URL without its query: robot keys and tokens travel there, and must not be
        copied into the deliveries table or logs."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


@dataclass(frozen=True)
class Claim:
    """Rows leased for one post, and the robot's post they use (None: no pace kept)."""

    post: int | None


def marks(items: Sequence[Any]) -> str:
    return ", ".join("?" for _ in items)


class RobotQueue:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate("deliveries", [DELIVERIES_SCHEMA])
        db.migrate("robot_queue", [QUEUE_SCHEMA])

    def put(self, items: Sequence[tuple[str, str, Message]], now: float) -> list[int]:
        """Rows for these (endpoint, alert, message), in one transaction (a lane that looks
        sees them together)."""
        with self._db.transaction() as db:
            return self.put_in(db, items, now)

    @staticmethod
    def put_in(db: Connection, items: Sequence[tuple[str, str, Message]], now: float
               ) -> list[int]:
        """`put` in the caller's write transaction (the change that causes the messages, so
        that both commit or neither): a new row each, or the open row already holding the
        same message for the same endpoint."""
        return [RobotQueue._put(db, *item, now) for item in items]

    @staticmethod
    def _put(db: Connection, endpoint: str, alert_id: str, message: Message, now: float) -> int:
        text = message.dumps()
        found = db.execute(
            "SELECT id FROM robot_queue WHERE endpoint = ? AND done_at IS NULL AND alert = ?"
            " AND target = ? AND message = ?",
            (endpoint, alert_id, message.target, text),
        ).fetchone()
        if found is not None:
            return int(found[0])
        row = db.execute(
            "INSERT INTO robot_queue (endpoint, alert, target, message, created_at, due_at,"
            " posts, failures) VALUES (?, ?, ?, ?, ?, ?, 0, 0) RETURNING id",
            (endpoint, alert_id, message.target, text, now, now),
        ).fetchone()
        return int(row[0])

    def open(self, endpoint: str) -> list[Queued]:
        rows = self._db.rows(
            f"SELECT {OPEN_COLUMNS} FROM robot_queue WHERE endpoint = ? AND done_at IS NULL",
            (endpoint,),
        )
        return [
            Queued(id, alert, Message.loads(text), due_at, until, posts, failures)
            for id, alert, text, due_at, until, posts, failures in rows
        ]

    def endpoints(self) -> list[str]:
        """The endpoints that have open rows."""
        return [row[0] for row in self._db.rows(
            "SELECT DISTINCT endpoint FROM robot_queue WHERE done_at IS NULL")]

    def finished(self, ids: Sequence[int]) -> dict[int, bool]:
        """Of these rows, the finished ones: True for those delivered."""
        rows = self._db.rows(
            f"SELECT id, outcome FROM robot_queue WHERE id IN ({marks(ids)})"
            " AND done_at IS NOT NULL",
            list(ids),
        )
        return {int(id): outcome == "delivered" for id, outcome in rows}

    def claim(
        self,
        batch: Sequence[Queued],
        owner: str,
        now: float,
        lease: float,
        pace: tuple[str, int] | None,
    ) -> Claim | None:
        """The batch's rows leased to `owner` for one post, with a post of the robot's pace
        (`pace`: the robot and the posts it allows a minute) when it keeps one; None when
        another process was first to a row or to the slot."""
        ids = [queued.id for queued in batch]
        with self._db.transaction() as db:
            free = db.execute(
                f"SELECT COUNT(*) FROM robot_queue WHERE id IN ({marks(ids)})"
                " AND done_at IS NULL AND (claimed_until IS NULL OR claimed_until < ?)",
                (*ids, now),
            ).fetchone()[0]
            if free != len(ids):
                return None
            post = None
            if pace is not None:
                post = Pacer.take(db, *pace, now)
                if post is None:
                    return None
            db.execute(
                "UPDATE robot_queue SET claimed_by = ?, claimed_until = ?"
                f" WHERE id IN ({marks(ids)})",
                (owner, now + lease, *ids),
            )
            return Claim(post)

    def drop(self, endpoint: Endpoint, batch: Sequence[Queued], now: float) -> list[Queued]:
        """Rows whose alert was resolved before they went: finished unposted, unless another
        process holds them; those dropped."""
        gone = Outcome("dropped", None, "the alert was resolved first")
        with self._db.transaction() as db:
            dropped = [
                queued for queued in batch
                if db.execute(
                    "UPDATE robot_queue SET done_at = ?, outcome = ? WHERE id = ?"
                    " AND done_at IS NULL AND (claimed_until IS NULL OR claimed_until < ?)",
                    (now, gone.outcome, queued.id, now),
                ).rowcount
            ]
            self._record(db, endpoint, [(queued, gone) for queued in dropped], now)
        return dropped

    def finish(
        self,
        endpoint: Endpoint,
        owner: str,
        done: Sequence[tuple[Queued, Outcome]],
        now: float,
        silence: tuple[int, float] | None = None,
    ) -> None:
        """After a post: each row finished, or due again at its `due_at`; its lease ended; the
        attempt recorded; `silence`: (the post, until when) the robot said "too fast"."""
        with self._db.transaction() as db:
            db.executemany(
                "UPDATE robot_queue SET posts = ?, failures = ?, due_at = ?, done_at = ?,"
                " outcome = ?, claimed_by = NULL, claimed_until = NULL"
                " WHERE id = ? AND claimed_by = ?",
                [
                    (
                        queued.posts,
                        queued.failures,
                        queued.due_at,
                        now if result.outcome in FINAL else None,
                        result.outcome,
                        queued.id,
                        owner,
                    )
                    for queued, result in done
                ],
            )
            if silence is not None:
                Pacer.silence(db, *silence)
            self._record(db, endpoint, done, now)

    def prune(self, now: float) -> None:
        with self._db.transaction(durable=False) as db:
            db.execute("DELETE FROM robot_queue WHERE done_at < ?", (now - KEPT,))

    @staticmethod
    def _record(
        db: Connection, endpoint: Endpoint, done: Sequence[tuple[Queued, Outcome]], now: float
    ) -> None:
        db.executemany(
            "INSERT INTO deliveries (alert, target, url, format, attempt, status, outcome,"
            " error, retry_in, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    queued.alert_id,
                    queued.message.target,
                    endpoint.shown,
                    endpoint.format,
                    queued.posts,
                    result.status,
                    result.outcome,
                    result.error,
                    result.retry_in,
                    now,
                )
                for queued, result in done
            ],
        )

    def deliveries(self, alert_id: str) -> list[dict[str, Any]]:
        names = (
            "target",
            "url",
            "format",
            "attempt",
            "status",
            "outcome",
            "error",
            "retry_in",
            "at",
        )
        rows = self._db.rows(
            f"SELECT {', '.join(names)} FROM deliveries WHERE alert = ? ORDER BY seq", (alert_id,)
        )
        return [dict(zip(names, row, strict=True)) for row in rows]
