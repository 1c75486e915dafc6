"""The outbox against an in-memory model (hypothesis stateful testing).

Every step runs on a real SQLite file and on a plain Python model of what the outbox promises:

- put: new ids are stored in arrival order; an id already held is a redelivery and is ignored;
- lease: the oldest events of one class not already in flight, in arrival order, never the other
  class (alerts and logs are leased separately, so alerts never wait behind a log backlog);
- ack deletes, release (nack) makes an event leasable again, dead_letter parks it with a reason;
- evict over the size cap and TTL expiry drop the oldest logs only, and record how many in a
  gateway.evicted log; alerts are never dropped;
- reopen (close, open the same file): leases vanish, contents stay.

After every step: the file holds exactly what the model holds, class by class and in order; the
depth counters (events and bytes) equal the model's; nothing acked reappears; and when put()
says the outbox is full, no log was left that could have made room.

TTL expiry uses real time with a short TTL; an event put between two clock readings is
"definitely expired" or "definitely fresh" only when both readings agree, and either outcome is
accepted in between (then the model follows the file).

MASHANG_OUTBOX_EXAMPLES sets the number of runs (default 60).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from edge.buffer.outbox import EventClass, Leased, Outbox, OutboxFull
from edge.events import Event

pytestmark = pytest.mark.system

ALERT, LOG = EventClass.ALERT, EventClass.LOG

CAP = 64 * 1024
TTL = 0.05
MOMENT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
EXAMPLES = int(os.environ.get("MASHANG_OUTBOX_EXAMPLES", "60"))


@dataclass
class Held:
    """What the model knows of one stored event."""

    id: str
    klass: int
    body: bytes
    put_before: float  # time.time() just before the put() that stored it
    put_after: float  # ... and just after

    def events_lost_if_dropped(self) -> int:
        """An eviction notice stands for the events it counted; any other event for itself."""
        event = json.loads(self.body)
        return event["data"]["count"] if event["type"] == "gateway.evicted" else 1


def make_event(event_id: str, is_alert: bool, pad: int) -> Event:
    return Event(
        id=event_id,
        kind="alert" if is_alert else "log",
        type="button.press" if is_alert else "scan.rejected",
        priority="critical" if is_alert else "low",
        device_id="btn-model",
        occurred_at=MOMENT,
        received_at=MOMENT,
        data={"pad": "x" * pad},
    )


class OutboxModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # In memory-backed /dev/shm where there is one: this checks logic, and fsync is free.
        self.folder = Path(tempfile.mkdtemp(prefix="outbox-model-", dir=SCRATCH))
        self.path = self.folder / "outbox.sqlite"
        self.outbox = Outbox(self.path, max_bytes=CAP, log_ttl=TTL)
        # id -> Held, per class, in arrival (= seq) order; dicts keep insertion order.
        self.held: dict[int, dict[str, Held]] = {ALERT: {}, LOG: {}}
        self.leases: dict[str, Leased] = {}
        self.acked: set[str] = set()
        self.dead: set[str] = set()
        self.notices = 0
        self.minted = 0

    def teardown(self) -> None:
        try:
            assert self.outbox.integrity_check() == "ok"
            self.outbox.close()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------

    def all_ids(self) -> set[str]:
        return set(self.held[ALERT]) | set(self.held[LOG])

    def stored(self, klass: int) -> list[Leased]:
        return self.outbox.peek(klass, 1_000_000)

    def follow_drops(
        self, reason: str, reported: int | None = None, incoming: frozenset[str] = frozenset()
    ) -> int:
        """Bring the model in line with logs the outbox dropped (eviction or TTL), checking
        that they were the oldest logs and that one gateway.evicted notice counts them.
        `incoming`: ids a successful put() just stored, left for the caller to account for."""
        alerts = [item.id for item in self.stored(ALERT) if item.id not in incoming]
        assert alerts == list(self.held[ALERT]), "an alert was evicted, expired or reordered"
        actual = [item for item in self.stored(LOG) if item.id not in incoming]
        expected = list(self.held[LOG])
        new = [item for item in actual if item.id not in self.held[LOG]]
        kept = [item.id for item in actual if item.id in self.held[LOG]]
        dropped = len(expected) - len(kept)
        assert kept == expected[dropped:], "dropped logs were not the oldest ones"
        lost = sum(self.held[LOG][item_id].events_lost_if_dropped()
                   for item_id in expected[:dropped])
        if reported is not None:
            assert reported == lost, f"reported {reported} lost, {lost} went"
        if dropped == 0:
            assert not new, "a log appeared without anything dropped"
            return 0
        assert len(new) == 1, f"expected one gateway.evicted notice, got {len(new)}"
        notice = json.loads(new[0].body)
        assert notice["type"] == "gateway.evicted", notice
        assert notice["data"] == {"reason": reason, "count": lost}, notice
        assert actual[-1].id == new[0].id, "the notice is the newest log"
        for item_id in expected[:dropped]:
            del self.held[LOG][item_id]
            self.leases.pop(item_id, None)
        moment = time.time()
        self.held[LOG][new[0].id] = Held(new[0].id, LOG, new[0].body, moment, moment)
        self.notices += 1
        return dropped

    # -- rules -----------------------------------------------------------------------------

    @rule(data=st.data(), specs=st.lists(
        st.tuples(st.booleans(), st.integers(0, 3000), st.sampled_from(["new", "dup", "acked"])),
        min_size=1, max_size=6,
    ))
    def put(self, data, specs) -> None:
        events: list[Event] = []
        for is_alert, pad, origin in specs:
            known = sorted(self.all_ids() | {e.id for e in events})
            if origin == "dup" and known:
                event_id = data.draw(st.sampled_from(known))
            elif origin == "acked" and self.acked:
                event_id = data.draw(st.sampled_from(sorted(self.acked)))
            else:
                # Ids from a counter, not uuid4: a failing run must replay exactly.
                self.minted += 1
                event_id = str(uuid.UUID(int=self.minted))
            events.append(make_event(event_id, is_alert, pad))
        top = max((item.seq for k in (ALERT, LOG) for item in self.stored(k)), default=0)
        before = time.time()
        try:
            added = self.outbox.put(events)
        except OutboxFull:
            # Nothing of the batch is stored (follow_drops would see a stray id), and the
            # outbox is full only once every log that could make room has gone.
            self.follow_drops("disk_cap")
            leftover = self.stored(LOG)
            assert len(leftover) <= 1, (
                f"put() said full while {len(leftover)} logs could still have been evicted"
            )
            return
        after = time.time()
        # What this put() stored: rows newer than any before it that carry the batch's ids.
        ids = {e.id for e in events}
        incoming = frozenset(
            item.id for k in (ALERT, LOG) for item in self.stored(k)
            if item.seq > top and item.id in ids
        )
        self.follow_drops("disk_cap", incoming=incoming)
        expected = 0
        for event in events:
            if event.id in self.all_ids() or event.id not in incoming:
                continue  # a redelivery: the first copy stands
            klass = ALERT if event.is_alert else LOG
            self.held[klass][event.id] = Held(event.id, klass, event.encode(), before, after)
            self.acked.discard(event.id)
            expected += 1
        assert added == expected, f"put() reported {added} new, the model says {expected}"

    @rule(klass=st.sampled_from([ALERT, LOG]), limit=st.integers(1, 8))
    def lease(self, klass: int, limit: int) -> None:
        batch = self.outbox.lease(klass, limit)
        free = [item_id for item_id in self.held[klass] if item_id not in self.leases]
        assert [item.id for item in batch] == free[:limit], "lease is not oldest-first"
        for item in batch:
            assert item.body == self.held[klass][item.id].body
            self.leases[item.id] = item

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def ack(self, data) -> None:
        chosen = data.draw(st.lists(st.sampled_from(sorted(self.leases)), min_size=1,
                                    unique=True))
        self.outbox.ack(self.leases[item_id].seq for item_id in chosen)
        for item_id in chosen:
            del self.leases[item_id]
            for klass in (ALERT, LOG):
                self.held[klass].pop(item_id, None)
            self.acked.add(item_id)

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def release(self, data) -> None:
        chosen = data.draw(st.lists(st.sampled_from(sorted(self.leases)), min_size=1,
                                    unique=True))
        self.outbox.release(self.leases[item_id].seq for item_id in chosen)
        for item_id in chosen:
            del self.leases[item_id]

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), status=st.sampled_from([400, 413, 422, None]))
    def dead_letter(self, data, status) -> None:
        item_id = data.draw(st.sampled_from(sorted(self.leases)))
        self.outbox.dead_letter(self.leases.pop(item_id), "refused by the model", status)
        for klass in (ALERT, LOG):
            self.held[klass].pop(item_id, None)
        self.dead.add(item_id)

    @rule()
    def evict_over_cap(self) -> None:
        over = self.outbox.stats().used_bytes > CAP
        evicted = self.outbox.evict_over_cap()
        if not over:
            assert evicted == 0, "evicted while under the cap"
        self.follow_drops("disk_cap", evicted)

    @rule()
    def expire_now(self) -> None:
        """Expire with whatever age the events have: some may be on the edge of the TTL."""
        before = time.time()
        fresh_before = {i for i, h in self.held[LOG].items() if h.put_before >= before - TTL}
        expired = self.outbox.expire_logs()
        after = time.time()
        stale = {i for i, h in self.held[LOG].items() if h.put_after < before - TTL}
        fresh = {i for i, h in self.held[LOG].items() if h.put_before >= after - TTL}
        self.follow_drops("ttl", expired)
        assert not stale & set(self.held[LOG]), "a log past its TTL was kept"
        assert fresh & fresh_before <= set(self.held[LOG]), "a log within its TTL was dropped"

    @precondition(lambda self: self.held[LOG])
    @rule()
    def expire_after_ttl(self) -> None:
        """Wait until every log is past its TTL: all go, every alert stays."""
        newest = max(h.put_after for h in self.held[LOG].values())
        time.sleep(max(0.0, newest + TTL + 0.01 - time.time()))
        self.follow_drops("ttl", self.outbox.expire_logs())
        assert len(self.held[LOG]) == 1  # only the notice that says so

    @rule()
    def reopen(self) -> None:
        self.outbox.close()
        self.outbox = Outbox(self.path, max_bytes=CAP, log_ttl=TTL)
        self.leases.clear()

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def contents_match(self) -> None:
        for klass in (ALERT, LOG):
            stored = self.stored(klass)
            assert [item.id for item in stored] == list(self.held[klass])
            assert [item.body for item in stored] == [h.body for h in self.held[klass].values()]

    @invariant()
    def depth_counters_match(self) -> None:
        stats = self.outbox.stats()
        for klass, depth in ((ALERT, stats.alerts), (LOG, stats.logs)):
            assert depth.events == len(self.held[klass]) == self.outbox.pending(klass)
            assert depth.bytes == sum(len(h.body) for h in self.held[klass].values())
        assert stats.dead_letters == len(self.dead)
        assert {letter.id for letter in self.outbox.dead_letters(10_000)} == self.dead

    @invariant()
    def nothing_acked_reappears(self) -> None:
        assert not self.acked & self.all_ids()


TestOutboxModel = OutboxModel.TestCase
TestOutboxModel.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
