"""The commit thread: messages in, rules applied, events committed as a group, then acked.

Everything that arrived together is committed at once, and only then are the messages acked to
the broker. The devices that pressed go first: their messages (every one of them, in order)
are judged and committed in a transaction of their own, and their alerts are on their way to
the central before the rest of the group is judged, which then commits in a second
transaction (each transaction one fsync). If nothing fits on disk, nothing is acked: the
broker keeps the messages, and the thread tries again until space returns or the gateway
stops.

The hand-off from the source is bounded (`Inbox`): a burst waits with the broker, not in the
gateway's memory.

No message can stop the thread: parsing has already made every value fit to travel, a failure
of the rules becomes a `gateway.rules_failed` event for that message alone, and an event that
still cannot be encoded is set aside alone (a press stays a press, stripped to what encodes)
while the rest of its group commits. Should the thread end all the same, `on_failure` is told
why, and the gateway stops with an error for its supervisor to restart it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from enum import Enum

from edge.buffer.outbox import Outbox, OutboxFull
from edge.events import Event
from edge.source.messages import DeviceMessage
from edge.source.mqtt import Received
from edge.transform.rules import Rules, make_event

log = logging.getLogger(__name__)

# What encoding an event's JSON can raise (parsing should have left nothing that does).
UNENCODABLE = (TypeError, ValueError, OverflowError, RecursionError)
# Messages the source may hand over before it waits for the commit thread to take them, and
# (by default) the most the thread takes into one group: together they bound what a burst
# costs in memory, whatever the broker sends (docs/architecture.md, "Memory").
HANDOFF_BOUND = 250


class _Stop(Enum):
    """Put on the queue to end the commit thread (an enum member: a type of its own)."""

    STOP = "stop"


_STOP = _Stop.STOP
# What the commit thread is handed: messages, work to run on it, and the stop.
_Item = Received | Callable[[], None] | _Stop
# What the commit thread takes at once: a group of messages, a work item, the stop, or nothing.
_Taken = list[Received] | Callable[[], None] | _Stop | None


def encodable(event: Event) -> Event:
    """The event itself if it encodes, else the same event (same id, kind, type and priority:
    a press stays a press) with only what the gateway knows for sure: the reason."""
    try:
        event.encode()
        return event
    except UNENCODABLE as exc:
        log.error("event %s (%s) could not be encoded, sent without its data: %s: %s",
                  event.id, event.type, type(exc).__name__, exc)
        reason = f"the event could not be encoded: {type(exc).__name__}: {exc}"[:500]
        return replace(event, occurred_at=event.received_at,
                       data={"invalid": {"data": reason.encode(errors="replace").decode()}})


def urgent(message: DeviceMessage) -> bool:
    """A press (valid or not), or a notice the gateway raises itself (an adapter's)."""
    return message.channel == "events" or message.device_kind is None


def pressing_first(group: Sequence[Received]) -> tuple[list[Received], list[Received]]:
    """(what goes first: the urgent messages and every message of a device that pressed in
    this group; the rest), each in arrival order, so that a device's messages keep the order
    it sent them in."""
    pressing = {message.device_id for received in group for message in received.messages
                if urgent(message) and message.device_id is not None}
    first: list[Received] = []
    rest: list[Received] = []
    for received in group:
        ahead = any(urgent(message) or message.device_id in pressing
                    for message in received.messages)
        (first if ahead else rest).append(received)
    return first, rest


class Inbox:
    """The hand-off to the commit thread, in arrival order: messages, work to run between two
    commits, and the stop. At most `bound` messages wait to be taken: the source waits for
    room (and the MQTT process, and the broker's socket, wait behind it)."""

    def __init__(self, bound: int) -> None:
        self._bound = bound
        self._items: deque[_Item] = deque()
        self._messages = 0
        self._changed = threading.Condition()
        self._closed = False

    def put_messages(self, batch: Sequence[Received]) -> bool:
        """Waits while the inbox is full; False when the commit thread is stopping (the
        messages were not taken: they stay unacked, with the broker)."""
        with self._changed:
            while self._messages >= self._bound and not self._closed:
                self._changed.wait()
            if self._closed:
                return False
            self._items.extend(batch)
            self._messages += len(batch)
            self._changed.notify_all()
            return True

    def put(self, item: Callable[[], None] | _Stop) -> None:
        with self._changed:
            self._items.append(item)
            if item is _STOP:
                self._closed = True
            self._changed.notify_all()

    def take(self, limit: int, timeout: float) -> _Taken:
        """What arrived first: up to `limit` messages (stopping before any other item, so that
        work waits for the commit of what came before it), or a work item, or the stop; None
        after `timeout` seconds with nothing."""
        with self._changed:
            if not self._items:
                self._changed.wait(timeout)
            if not self._items:
                return None
            first = self._items[0]
            if not isinstance(first, Received):
                self._items.popleft()
                return first
            group: list[Received] = []
            while self._items and len(group) < limit:
                item = self._items[0]
                if not isinstance(item, Received):
                    break
                group.append(item)
                self._items.popleft()
            self._messages -= len(group)
            self._changed.notify_all()
            return group


class Pipeline:
    def __init__(
        self,
        rules: Rules,
        outbox: Outbox,
        *,
        ack: Callable[[int], None],
        on_committed: Callable[[list[Event]], None],
        on_failure: Callable[[str], None] = lambda reason: None,
        max_group: int = HANDOFF_BOUND,
        handoff_bound: int = HANDOFF_BOUND,
        tick_interval: float = 1.0,
        housekeeping_interval: float = 60.0,
        full_retry: float = 1.0,
    ) -> None:
        self._rules = rules
        self._tick_interval = tick_interval
        self._outbox = outbox
        # Acks are cumulative: ack(seq) says every message up to `seq` is committed. A group
        # that could not commit is never followed by the ack of a later one.
        self._ack = ack
        self._on_committed = on_committed
        self._on_failure = on_failure
        self._max_group = max_group
        self._housekeeping_interval = housekeeping_interval
        self._full_retry = full_retry
        self._inbox = Inbox(handoff_bound)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervised, name="commit", daemon=True)
        self.committed_messages = 0
        self.full = False

    def start(self) -> None:
        self._thread.start()

    def submit(self, batch: Sequence[Received]) -> bool:
        """Called from the source's thread; waits while the hand-off is full. False once the
        pipeline is stopping: those messages stay unacked, with the broker."""
        return self._inbox.put_messages(batch)

    def stop(self, timeout: float = 30.0) -> None:
        """Commit and ack what was already received, then end the thread."""
        self._stopping.set()
        self._inbox.put(_STOP)
        self._thread.join(timeout)

    def call_soon(self, work: Callable[[], None]) -> None:
        """Run work on the commit thread, between commits (the rules' state lives there)."""
        self._inbox.put(work)

    def _supervised(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            log.critical("the commit thread ended: %s: %s", type(exc).__name__, exc, exc_info=exc)
            self._on_failure(f"commit thread ended: {type(exc).__name__}: {exc}")

    def _run(self) -> None:
        next_tick = time.monotonic() + self._tick_interval
        next_housekeeping = time.monotonic() + self._housekeeping_interval
        while True:
            wait = max(0.0, min(next_tick, next_housekeeping) - time.monotonic())
            taken = self._inbox.take(self._max_group, wait)
            if taken is _STOP:
                break
            if isinstance(taken, list):
                self._commit(taken)
            elif taken is not None:
                self._run_work(taken)
            if time.monotonic() >= next_tick:
                self._commit_events(self._tick())
                next_tick = time.monotonic() + self._tick_interval
            if time.monotonic() >= next_housekeeping:
                self._housekeeping()
                next_housekeeping = time.monotonic() + self._housekeeping_interval
        self._save_state()

    def _commit(self, group: list[Received]) -> None:
        for part in pressing_first(group):
            if not part:
                continue
            events = [event for received in part for message in received.messages
                      for event in self._evaluate(message)]
            if self._rules.counters_moved:
                self._save_state()  # before the commit: see Rules.counters_moved
            if not self._commit_events(events):
                log.warning("stopping with %d messages unacked; the broker keeps them",
                            len(group))
                return
        self._ack(group[-1].seq)
        self.committed_messages += len(group)

    def _commit_events(self, events: list[Event]) -> bool:
        """Commit, waiting out a full disk; False only when stopping before it could."""
        if not events:
            return True
        while True:
            try:
                self._outbox.put(events)
                break
            except UNENCODABLE:
                events = [encodable(event) for event in events]
            except OutboxFull as exc:
                if not self.full:
                    log.error("outbox full, not acking MQTT until space returns: %s", exc)
                self.full = True
                if self._stopping.wait(self._full_retry):
                    return False
        if self.full:
            log.info("outbox has room again; acking resumes")
            self.full = False
        self._on_committed(events)
        return True

    def _run_work(self, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception:
            log.exception("work on the commit thread failed")

    def _evaluate(self, message: DeviceMessage) -> list[Event]:
        try:
            return self._rules.evaluate(message)
        except Exception as exc:
            # A bug in the rules must not lose a press: forward the message as it came.
            log.exception("rules failed on a message from %s", message.topic)
            is_press = message.channel == "events"
            return [
                make_event(
                    message,
                    "alert" if is_press else "log",
                    "gateway.rules_failed",
                    "critical" if is_press else "normal",
                    {"error": f"{type(exc).__name__}: {exc}"},
                )
            ]

    def _tick(self) -> list[Event]:
        try:
            return self._rules.tick()
        except Exception:
            log.exception("supervision tick failed")
            return []

    def _save_state(self) -> None:
        try:
            self._rules.save_state()
        except OSError as exc:
            log.error("could not save device state: %s", exc)

    def _housekeeping(self) -> None:
        self._save_state()
        try:
            expired = self._outbox.expire_logs()
            evicted = self._outbox.evict_over_cap()
        except Exception:
            log.exception("outbox housekeeping failed")
            return
        if expired or evicted:
            log.warning("outbox: %d logs expired, %d evicted over the size cap", expired, evicted)
