"""The replay cache: each request signature (ingest) and each poll nonce is good once within
its timestamp window (PROTOCOL §3, §6).

It lives in the central's database, not in memory: every central process on that database
refuses what any of them has accepted, and a restart forgets nothing. A mark is kept until its
request's timestamp leaves the window, when the same bytes would be refused as stale anyway;
expired marks are pruned at most once a minute. A mark is committed without an fsync of its
own (5 ms a request on an SSD): a crash loses none, a power cut at most the marks since the
last durable commit, and a replayed batch is still only duplicates (events are kept by id).
"""

from __future__ import annotations

from aiohttp import web

from cloud_bridge.alerts.clock import SYSTEM_CLOCK, Clock
from cloud_bridge.receiver.store import Database
from mashang.signing import MAX_SKEW_SECONDS

SCHEMA = """
CREATE TABLE IF NOT EXISTS seen_requests (
    mark TEXT PRIMARY KEY,     -- 'ingest:' + signature, or 'poll:' + gateway + ':' + nonce
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS seen_requests_by_expiry ON seen_requests (expires);
"""

PRUNE_EVERY = 60.0


class Replays:
    def __init__(self, db: Database, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._db = db
        self._clock = clock
        self._pruned = float("-inf")
        db.migrate("replays", [SCHEMA])

    def first_use(self, mark: str, timestamp: str) -> bool:
        """True the first time `mark` is seen while its request (signed at `timestamp`, checked
        fresh by the caller) can be fresh; False for a replay. Blocking."""
        now = self._clock()
        expires = int(timestamp) + MAX_SKEW_SECONDS + 1
        with self._db.transaction(durable=False) as db:
            if now - self._pruned >= PRUNE_EVERY:
                db.execute("DELETE FROM seen_requests WHERE expires < ?", (now,))
                self._pruned = now
            cursor = db.execute(
                "INSERT INTO seen_requests (mark, expires) VALUES (?, ?)"
                " ON CONFLICT (mark) DO UPDATE SET expires = excluded.expires"
                " WHERE seen_requests.expires < ?",
                (mark, expires, now),
            )
            return cursor.rowcount == 1


REPLAYS_KEY = web.AppKey("replays", Replays)
