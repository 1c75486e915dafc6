"""The commit thread: messages in, rules applied, events committed as a group, then acked.

Everything that arrived together is committed in one transaction (one fsync), and only then
are the messages acked to the broker. If nothing fits on disk, nothing is acked: the broker
keeps the messages, and the thread tries again until space returns or the gateway stops.

No message can stop the thread: parsing has already made every value fit to travel, a failure
of the rules becomes a `gateway.rules_failed` event for that message alone, and an event that
still cannot be encoded is set aside alone (a press stays a press, stripped to what encodes)
while the rest of its group commits. Should the thread end all the same, `on_failure` is told
why, and the gateway stops with an error for its supervisor to restart it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
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


class _Stop(Enum):
    """Put on the queue to end the commit thread (an enum member: a type of its own)."""

    STOP = "stop"


_STOP = _Stop.STOP
# What the commit thread's queue carries: messages, work to run on it, and the stop.
_Item = Received | Callable[[], None] | _Stop


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


class Pipeline:
    def __init__(
        self,
        rules: Rules,
        outbox: Outbox,
        *,
        ack: Callable[[int, int], None],
        on_committed: Callable[[list[Event]], None],
        on_failure: Callable[[str], None] = lambda reason: None,
        max_group: int = 1000,
        tick_interval: float = 1.0,
        housekeeping_interval: float = 60.0,
        full_retry: float = 1.0,
    ) -> None:
        self._rules = rules
        self._tick_interval = tick_interval
        self._outbox = outbox
        self._ack = ack
        self._on_committed = on_committed
        self._on_failure = on_failure
        self._max_group = max_group
        self._housekeeping_interval = housekeeping_interval
        self._full_retry = full_retry
        # Bounded by the broker's receive maximum: we never hold more than it lets us have unacked.
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._deferred: list[Callable[[], None]] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervised, name="commit", daemon=True)
        self.committed_messages = 0
        self.full = False

    def start(self) -> None:
        self._thread.start()

    def submit(self, received: Received) -> None:
        """Called from the MQTT thread."""
        self._queue.put(received)

    def stop(self, timeout: float = 30.0) -> None:
        """Commit and ack what was already received, then end the thread."""
        self._stopping.set()
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def call_soon(self, work: Callable[[], None]) -> None:
        """Run work on the commit thread, between commits (the rules' state lives there)."""
        self._queue.put(work)

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
            first: _Item | None
            try:
                first = self._queue.get(timeout=wait)
            except queue.Empty:
                first = None
            if first is _STOP:
                break
            if callable(first):
                self._run_work(first)
            elif first is not None:
                group, stop = self._drain(first)
                self._commit(group)
                while self._deferred:
                    self._run_work(self._deferred.pop(0))
                if stop:
                    break
            if time.monotonic() >= next_tick:
                self._commit_events(self._tick())
                next_tick = time.monotonic() + self._tick_interval
            if time.monotonic() >= next_housekeeping:
                self._housekeeping()
                next_housekeeping = time.monotonic() + self._housekeeping_interval
        self._save_state()

    def _drain(self, first: Received) -> tuple[list[Received], bool]:
        group = [first]
        while len(group) < self._max_group:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return group, True
            if callable(item):
                # Work waits for the commit of what came before it, to keep arrival order.
                self._deferred.append(item)
                break
            group.append(item)
        return group, False

    def _commit(self, group: list[Received]) -> None:
        events = [
            event
            for received in group
            for message in received.messages
            for event in self._evaluate(message)
        ]
        if self._rules.counters_moved:
            self._save_state()  # before the commit: see Rules.counters_moved
        if not self._commit_events(events):
            log.warning("stopping with %d messages unacked; the broker keeps them", len(group))
            return
        for received in group:
            self._ack(received.mid, received.qos)
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
