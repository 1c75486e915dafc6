"""Uplink: from the outbox to the central over HTTP (PROTOCOL §3).

Two senders share one HTTP session: the alert sender sends the moment an alert is committed;
the log sender batches (size and linger) and yields to alerts. An event leaves the outbox only
when the central answered 200 for it, or when the central refused it permanently on its own
(the batch is split in halves until the refused event stands alone), in which case it is parked
in the dead-letter table.

While the central fails, an alert is tried again every `central.alert_retry` seconds (1 s),
however long the outage, so that it reaches the central within about that long of its return;
logs back off exponentially to `central.backoff_max`. Both start again at once when anything
gets through to the central (`central_reachable`: an alert, a log batch, the downlink's poll).
A Retry-After is honoured by both, to the end; nothing else makes an alert wait for the logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from edge.buffer.outbox import EventClass, Leased, Outbox, OutboxError
from edge.config import CentralSection, OutboxSection
from edge.events import isoformat, now
from edge.sink.central import Backoff, Transient, parse_retry_after
from mashang.answers import Answer, classify
from mashang.signing import signed_headers
from mashang.wire import GatewayFacts

log = logging.getLogger(__name__)

# Retrying every second for an hour must not write 3,600 warnings: the 1st, 2nd, 4th, 8th...
# failure in a row is logged as a warning, and at least one a minute (the rest at debug).
LOUD_EVERY = 60.0


@dataclass
class UplinkCounts:
    """What the uplink has done since start, for metrics."""

    sent: dict[EventClass, int] = field(
        default_factory=lambda: {EventClass.ALERT: 0, EventClass.LOG: 0}
    )
    retries: int = 0
    dead_lettered: int = 0


@dataclass
class Streak:
    """One sender's failures in a row, to log them without flooding the journal."""

    failures: int = 0
    since: float = 0.0
    last_loud: float = 0.0

    def failed(self) -> bool:
        """Count a failure; whether to log it loudly."""
        moment = time.monotonic()
        if self.failures == 0:
            self.since = moment
        self.failures += 1
        if self.failures & (self.failures - 1) == 0 or moment - self.last_loud >= LOUD_EVERY:
            self.last_loud = moment
            return True
        return False

    def ended(self) -> tuple[int, float]:
        """Delivered: (failures before it, seconds since the first), and start again."""
        ended = (self.failures, time.monotonic() - self.since)
        self.failures = 0
        return ended


def batch_body(gateway_id: str, events: list[Leased], facts: GatewayFacts | None = None) -> bytes:
    """The request body, joined from the stored event JSON without decoding it again, with the
    gateway's facts (PROTOCOL §6) when there are any."""
    head = f'{{"gateway_id":"{gateway_id}","sent_at":"{isoformat(now())}","events":['.encode()
    tail = b"]}"
    if facts is not None:
        tail = b'],"gateway":' + facts.model_dump_json(exclude_none=True).encode() + b"}"
    return head + b",".join(item.body for item in events) + tail


class Uplink:
    def __init__(
        self,
        central: CentralSection,
        outbox_config: OutboxSection,
        outbox: Outbox,
        *,
        gateway_id: str,
        key: bytes,
        facts: Callable[[], GatewayFacts] | None = None,
    ) -> None:
        self._central = central
        self._facts = facts
        self._outbox_config = outbox_config
        self._outbox = outbox
        self._gateway_id = gateway_id
        self._key = key
        self._url = f"{central.base_url}/v1/ingest"
        self._wake = {EventClass.ALERT: asyncio.Event(), EventClass.LOG: asyncio.Event()}
        self._alerts_done = asyncio.Event()
        # Set whenever the central is known to be back (it took a batch, or CentralHealth saw
        # any request get through): a log sender in backoff starts again at once instead of
        # sleeping out its delay.
        self._central_back = asyncio.Event()
        # When the central last refused our credentials was logged (monotonic; 0: never).
        self._auth_logged = 0.0
        # The central's Retry-After holds for both senders and for any wake-up: no request
        # before this monotonic time.
        self._not_before = 0.0
        # Each class's previous batch's delete, still running while the next batch is posted.
        self._acks: dict[EventClass, asyncio.Future[None] | None] = {
            EventClass.ALERT: None, EventClass.LOG: None}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.counts = UplinkCounts()

    def notify(self, has_alert: bool) -> None:
        """Thread-safe: the commit thread says there is something new to send."""
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._wake_up, has_alert)

    def _wake_up(self, has_alert: bool) -> None:
        if has_alert:
            self._wake[EventClass.ALERT].set()
        self._wake[EventClass.LOG].set()

    def central_reachable(self) -> None:
        """Thread-safe (for `CentralHealth.on_reachable`): the central answers again; both
        senders stop waiting out their retry delay and try now (a Retry-After still holds)."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing waits any more
            loop.call_soon_threadsafe(self._back)

    def _back(self) -> None:
        self._wake[EventClass.ALERT].set()
        self._central_back.set()

    async def run(self, session: aiohttp.ClientSession) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.gather(self._sender(session, EventClass.ALERT),
                             self._sender(session, EventClass.LOG))

    async def _sender(self, session: aiohttp.ClientSession, klass: EventClass) -> None:
        wake = self._wake[klass]
        is_log = klass == EventClass.LOG
        limit = (
            self._outbox_config.log_batch_size if is_log else self._outbox_config.alert_batch_size
        )
        backoff = Backoff(self._central.backoff_min, self._central.backoff_max)
        streak = Streak()
        while True:
            wake.clear()
            if is_log:
                await self._linger()
            batch = await self._lease(klass, limit)
            if not batch:
                if not is_log:  # every alert was delivered (or is being deleted)
                    self._alerts_done.set()
                await wake.wait()
                continue
            if not is_log:
                self._alerts_done.clear()
            try:
                await self._deliver(session, klass, batch)
            except Transient as exc:
                self._outbox.release(item.seq for item in batch)
                self.counts.retries += 1
                if exc.retry_after:
                    self._not_before = max(self._not_before, time.monotonic() + exc.retry_after)
                delay = self._retry_delay(is_log, backoff, exc.retry_after)
                log.log(
                    logging.WARNING if streak.failed() else logging.DEBUG,
                    "%s batch not delivered (%s); retrying in %.1f s (%d in a row)",
                    klass.label,
                    exc,
                    delay,
                    streak.failures,
                )
                await self._sleep_unless_woken(wake, delay, interruptible=not is_log,
                                               told=exc.retry_after is not None)
            else:
                backoff.reset()
                self._central_back.set()
                failures, seconds = streak.ended()
                if failures:
                    log.info("%s batch delivered after %d failed tries over %.0f s",
                             klass.label, failures, seconds)

    async def _lease(self, klass: EventClass, limit: int) -> list[Leased]:
        """Alerts are leased on the loop: a few rows read on the outbox's reader connection,
        which no commit holds up, where a hop to a worker thread is what an alert would wait
        for on a busy machine. Logs, hundreds of rows at a time, are read off the loop."""
        if klass == EventClass.ALERT:
            return self._outbox.lease(klass, limit)
        return await asyncio.to_thread(self._outbox.lease, klass, limit)

    def _retry_delay(self, is_log: bool, backoff: Backoff, retry_after: float | None) -> float:
        """Logs back off exponentially; an alert tries again at the short fixed interval,
        however long the outage, so that it never waits long after the central's return.
        The central's Retry-After is a floor for both."""
        if is_log:
            return backoff.next_delay(retry_after)
        every = min(self._central.alert_retry, self._central.backoff_max)
        return max(every, retry_after or 0.0)

    async def _linger(self) -> None:
        """Logs wait for a full batch or the linger time, and always for the alerts."""
        if self._outbox.pending(EventClass.LOG) < self._outbox_config.log_batch_size:
            await asyncio.sleep(self._outbox_config.log_linger)
        if self._outbox.pending(EventClass.ALERT) > 0:  # the alert sender says when none waits
            self._alerts_done.clear()
            self._wake[EventClass.ALERT].set()
            await self._alerts_done.wait()

    async def _sleep_unless_woken(
        self, wake: asyncio.Event, delay: float, interruptible: bool, told: bool = False
    ) -> None:
        if not interruptible:
            if told:  # the central's Retry-After is honoured to the end
                await asyncio.sleep(delay)
                return
            # Logs keep to their backoff, unless the central is back meanwhile (an alert got
            # through, or any other request did).
            self._central_back.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._central_back.wait(), delay)
            return
        # A new alert, or the central's return, tries at once: its delay is the one the user
        # feels. (A Retry-After still holds: `_post` waits it out.)
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), delay)
        wake.set()

    async def _deliver(
        self, session: aiohttp.ClientSession, klass: EventClass, batch: list[Leased]
    ) -> None:
        status, reason, retry_after = await self._post(session, batch)
        answer = classify(status)
        # Only the contract's 200 says that every event of the batch is safe: another 2xx
        # (a proxy's, say) is retried rather than trusted.
        if status == 200:
            seqs = [item.seq for item in batch]
            # Deleted while the next batch is leased and posted (its rows stay leased until
            # then, so they are not sent again): neither a drain nor the next alert waits for
            # a delete's fsync.
            await self._settle_ack(klass)
            self._acks[klass] = asyncio.ensure_future(self._ack(seqs))
            self.counts.sent[klass] += len(batch)
            return
        if answer is Answer.REFUSED:
            if len(batch) == 1:
                log.error(
                    "central refused event %s permanently (%s %s); dead-lettered",
                    batch[0].id,
                    status,
                    reason,
                )
                await asyncio.to_thread(self._outbox.dead_letter, batch[0], reason, status)
                self.counts.dead_lettered += 1
                return
            middle = len(batch) // 2
            await self._deliver(session, klass, batch[:middle])
            await self._deliver(session, klass, batch[middle:])
            return
        if answer is Answer.UNAUTHORIZED and (
            not self._auth_logged or time.monotonic() - self._auth_logged >= LOUD_EVERY
        ):
            # Loud, but once a minute: alerts are tried again every second.
            self._auth_logged = time.monotonic()
            log.error(
                "central refused our credentials or clock (%s %s): check central.key and "
                "the time; events are kept",
                status,
                reason,
            )
        raise Transient(f"HTTP {status} {reason}".strip(), retry_after)

    async def _ack(self, seqs: list[int]) -> None:
        """Delete what the central confirmed. A full disk can refuse even a DELETE: the events
        are then released, to go again (the central answers duplicates) once the outbox can
        let them go; raising anything else here ended the sender for good, silently
        (found by tests/test_full_disk.py)."""
        try:
            await asyncio.to_thread(self._outbox.ack, seqs)
        except OutboxError as exc:
            self._outbox.release(seqs)
            raise Transient(f"outbox could not let delivered events go: {exc}") from exc

    async def _settle_ack(self, klass: EventClass) -> None:
        """Wait for the class's previous batch's delete (raising what it raised)."""
        previous, self._acks[klass] = self._acks[klass], None
        if previous is not None:
            await previous

    async def _post(
        self, session: aiohttp.ClientSession, batch: list[Leased]
    ) -> tuple[int, str, float | None]:
        """The central's status, the start of its answer, and its Retry-After if any."""
        while (wait := self._not_before - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        body = batch_body(self._gateway_id, batch, self._facts() if self._facts else None)
        headers = signed_headers(self._gateway_id, self._key, body)
        headers["Content-Type"] = "application/json"
        timeout = aiohttp.ClientTimeout(
            total=self._central.timeout, sock_connect=self._central.connect_timeout
        )
        try:
            async with session.post(self._url, data=body, headers=headers, timeout=timeout) as resp:
                text = (await resp.text(errors="replace"))[:500]
                return resp.status, text, parse_retry_after(resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Transient(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
