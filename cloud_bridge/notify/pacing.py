"""Each group-chat robot's pace, from the central's database: a row of `robot_posts` per post
to a robot, so that a restart does not forget the quota already used and several central
processes on one database share it (the slot is taken in the write transaction that claims
the messages for the post, cloud_bridge/notify/queue.py: writers take turns).

The vendors count posts in any 60 s (a sliding minute): a post may go when fewer than
`allowed` posts were made in the 60 s before it and no "too fast" answer silenced the robot
past now (`quiet_until`: the vendor's window from that answer).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cloud_bridge.alerts.clock import Clock
from cloud_bridge.receiver.store import Connection, Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS robot_posts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    robot TEXT NOT NULL,
    at REAL NOT NULL,
    quiet_until REAL
);
CREATE INDEX IF NOT EXISTS robot_posts_by_robot ON robot_posts (robot, at);
"""

WINDOW = 60.0
# Rows older than this can no longer count against anything (DingTalk's silence is 10 min).
KEPT = 3600.0


def robot_key(url: str) -> str:
    """A robot's name in `robot_posts`: a digest of its whole URL (WeCom robots differ only by
    the key in the query, and the key is a credential that is never stored)."""
    return hashlib.sha256(url.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Room:
    """A robot's last minute, as the database holds it at `now`."""

    now: float
    posts: tuple[float, ...]  # times of the posts within the window, oldest first
    quiet_until: float

    def free(self, allowed: int) -> int:
        if self.quiet_until > self.now:
            return 0
        return max(0, allowed - len(self.posts))

    def opens_at(self, allowed: int) -> float:
        """When a post would be within `allowed` for its minute, the robot not silenced."""
        at = self.now
        excess = len(self.posts) - allowed + 1  # posts that must leave the window first
        if excess > 0:
            at = self.posts[excess - 1] + WINDOW
        return max(at, self.quiet_until)


def room_from(rows: Sequence[tuple[float, float | None]], now: float) -> Room:
    posts = tuple(at for at, _ in rows if at > now - WINDOW)
    quiet = max((until for _, until in rows if until is not None), default=0.0)
    return Room(now, posts, quiet)


ROOM_QUERY = (
    "SELECT at, quiet_until FROM robot_posts WHERE robot = ? AND (at > ? OR quiet_until > ?)"
    " ORDER BY at"
)


class Pacer:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        db.migrate("robot_posts", [SCHEMA])

    def room(self, robot: str) -> Room:
        now = self._clock()
        return room_from(self._db.rows(ROOM_QUERY, (robot, now - WINDOW, now)), now)

    @staticmethod
    def take(db: Connection, robot: str, allowed: int, now: float) -> int | None:
        """A post to the robot now, in the caller's write transaction, if its pace allows one:
        the row's id, else None (another process took the slot since `room`)."""
        if Pacer._room(db, robot, now).opens_at(allowed) > now:
            return None
        db.execute(
            "DELETE FROM robot_posts WHERE robot = ? AND at < ?"
            " AND (quiet_until IS NULL OR quiet_until < ?)",
            (robot, now - KEPT, now),
        )
        row = db.execute(
            "INSERT INTO robot_posts (robot, at) VALUES (?, ?) RETURNING seq", (robot, now)
        ).fetchone()
        return int(row[0])

    @staticmethod
    def silence(db: Connection, post: int, until: float) -> None:
        """The robot answered that post "too fast": leave it alone until `until`."""
        db.execute("UPDATE robot_posts SET quiet_until = ? WHERE seq = ?", (until, post))

    @staticmethod
    def _room(db: Connection, robot: str, now: float) -> Room:
        return room_from(db.execute(ROOM_QUERY, (robot, now - WINDOW, now)).fetchall(), now)
