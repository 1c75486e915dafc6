"""Webhooks to butlers, the duty contact and the street office: generic JSON, the WeCom group
robot (企业微信群机器人) and the DingTalk robot (钉钉自定义机器人), each robot at its own
pace, each attempt a row of `deliveries`.

Where a target's webhooks come from:
- `[[webhooks]]` entries whose `to` names the target ("butler:ID", "duty", "inspection");
- for "butler:ID", the URLs in that butler's registry entry (`Butler.webhooks`). Such a URL
  uses the format (and DingTalk secret) of the `[[webhooks]]` entry with the same `url`, else
  the format its host is known for (qyapi.weixin.qq.com: WeCom; oapi.dingtalk.com:
  DingTalk), else generic JSON.

Each message waits in the database's queue (`queue`: a central stopped or killed meanwhile posts
it after its restart, and of several central processes on one database exactly one posts it);
each endpoint has a `Lane` in every process, whose task claims the rows due and posts them.
For a WeCom or DingTalk robot the pace is `notify.robot_per_minute` posts in any 60 s, counted
in the database (`pacing`); help calls go first and may use every post, anything else only
while more than `notify.robot_reserve` are left; when the next to go is a device fault and more
messages wait than the minute has posts for, the faults waiting go as one message. The butler a
message is for is @-mentioned (`vendors`). A robot's "too fast" answer silences it for the
vendor's window and costs the message nothing: it keeps its place until the robot takes it or
its alert is resolved. Other failures are retried with backoff, `notify.attempts` times at
most; a permanent answer fails at once. Whoever posts a page tells the notifier's `delivered`
callback (the alert engine's, which records that the target was reached). Formats and
answers: `vendors`; words: `messages`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from pydantic import AnyHttpUrl, ValidationError

from cloud_bridge.alerts.book import Alert
from cloud_bridge.alerts.clock import SYSTEM_CLOCK, Clock
from cloud_bridge.alerts.states import AlertState
from cloud_bridge.config import CentralConfig, NotifySection, WebhookFormat, guess_format
from cloud_bridge.notify.messages import Message, compose, digest, render
from cloud_bridge.notify.pacing import Pacer, Room
from cloud_bridge.notify.queue import Endpoint, Outcome, Queued, RobotQueue
from cloud_bridge.notify.vendors import Attempt, Mention, body_for, judge, url_for
from cloud_bridge.receiver.store import Connection, Database
from cloud_bridge.registry.source import RegistrySource

__all__ = ["Endpoint", "Message", "Notifier", "render"]

log = logging.getLogger(__name__)

PACED: frozenset[WebhookFormat] = frozenset({"wecom", "dingtalk"})
# A claim outlives the post's own timeout by this much: the time to finish its rows after the
# answer, on a database that makes writers wait their turn.
LEASE_MARGIN = 10.0
# Real seconds between looks at the whole queue. Lanes wake themselves when a row of theirs is
# due or another process's lease runs out; the look is for what nobody announced (rows of an
# endpoint this process had no lane for, a notice lost while the database was away).
LOOK_SECONDS = 30.0

Sleep = Callable[[float], Awaitable[None]]
# The alert a queued message is about, as it is now (None: no such alert).
AlertLookup = Callable[[str], Alert | None]
# A message for an endpoint: (the alert it is about, the endpoint, the message).
Paged = tuple[str, Endpoint, Message]
# Told by the process that posted it, of each message an endpoint took: (alert, target, where).
Delivered = Callable[[str, str, Endpoint], Awaitable[None]]


@dataclass(frozen=True)
class Choice:
    """What an endpoint's task does next: post `batch` within `allowed` posts a minute, or,
    with an empty batch, wait until `wake`."""

    batch: list[Queued] = field(default_factory=list)
    allowed: int = 0
    wake: float = 0.0


def normalized(url: str) -> str:
    """A URL as the config's entries hold theirs, so that the same address matches."""
    try:
        return str(AnyHttpUrl(url))
    except ValidationError:
        return url


class Notifier:
    def __init__(
        self,
        db: Database,
        config: CentralConfig,
        registry: RegistrySource,
        *,
        alerts: AlertLookup | None = None,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._config = config
        self._registry = registry
        self._alerts = alerts
        self.clock = clock
        self.sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        self._lanes: dict[str, Lane] = {}
        self._handed: dict[str, Endpoint] = {}  # endpoints given to `enqueue`, by key
        self._unknown: set[str] = set()  # keys of queued rows no endpoint here has
        self._delivered: Delivered | None = None
        self._look = asyncio.Event()
        self._looking: asyncio.Task[None] | None = None
        # Names this notifier's leases; a process restarted is another owner.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.queue = RobotQueue(db)
        self.pacer = Pacer(db, clock)

    async def start(self, delivered: Delivered | None = None) -> None:
        """Post from the queue from now on, what waited in it before included."""
        timeout = aiohttp.ClientTimeout(total=self._config.notify.timeout)
        self._session = aiohttp.ClientSession(timeout=timeout)
        self._delivered = delivered
        self._looking = asyncio.create_task(self._look_forever())

    async def close(self) -> None:
        if self._looking is not None:
            self._looking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._looking
        lanes, self._lanes = list(self._lanes.values()), {}
        for lane in lanes:
            await lane.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def console_url(self) -> str | None:
        url = self._config.console.public_url
        return str(url) if url else None

    @property
    def settings(self) -> NotifySection:
        return self._config.notify

    @property
    def zone(self) -> ZoneInfo:
        return self._config.central.zone

    @property
    def lease(self) -> float:
        return self._config.notify.timeout + LEASE_MARGIN

    def endpoints(self, target: str) -> list[Endpoint]:
        entries = self._config.webhooks
        found = [
            Endpoint(
                str(entry.url),
                entry.resolved_format(),
                entry.secret.get_secret_value() if entry.secret else None,
            )
            for entry in entries
            if target in entry.to
        ]
        kind, _, butler_id = target.partition(":")
        butler = self._registry.current.butler(butler_id) if kind == "butler" else None
        described = {str(entry.url): entry for entry in entries}
        for url in butler.webhooks if butler else []:
            entry = described.get(normalized(url))
            if entry is None:
                found.append(Endpoint(url, guess_format(url)))
            else:
                secret = entry.secret.get_secret_value() if entry.secret else None
                found.append(Endpoint(url, entry.resolved_format(), secret))
        unique = {endpoint.url: endpoint for endpoint in found}
        return list(unique.values())

    def mentions(self, targets: Sequence[str]) -> list[Mention]:
        """Whom messages for these targets @-mention: each butler with a phone or a WeCom user
        id in the registry."""
        found = []
        for target in dict.fromkeys(targets):
            kind, _, butler_id = target.partition(":")
            butler = self._registry.current.butler(butler_id) if kind == "butler" else None
            if butler is not None and (butler.phone or butler.wecom_userid):
                phone = butler.phone.strip() if butler.phone else None
                found.append(Mention(phone or None, butler.wecom_userid))
        return found

    async def enqueue(self, pages: Sequence[Paged]) -> list[int]:
        """Queue these messages in the database, in one transaction; their rows' ids. The
        `delivered` callback hears of each the endpoint took, from the process that posted it."""
        items = self._items(pages)
        rows = await asyncio.to_thread(self.queue.put, items, self.clock())
        for key in dict.fromkeys(key for key, _, _ in items):
            self.wake(key)
        return rows

    def queue_in(self, db: Connection, pages: Sequence[Paged]) -> list[str]:
        """`enqueue` in the caller's write transaction (the change the pages record), from a
        worker thread; the endpoints' keys, for `wake` once it has committed."""
        items = self._items(pages)
        self.queue.put_in(db, items, self.clock())
        return list(dict.fromkeys(key for key, _, _ in items))

    def _items(self, pages: Sequence[Paged]) -> list[tuple[str, str, Message]]:
        for _, endpoint, _ in pages:
            self._handed[endpoint.key] = endpoint
        return [(endpoint.key, alert_id, message) for alert_id, endpoint, message in pages]

    async def deliver_all(self, pages: Sequence[Paged]) -> list[bool]:
        """Queue these messages; for each, True once its endpoint took it, False when it was
        given up (or its alert resolved first, or this notifier closed)."""
        rows = await self.enqueue(pages)
        lanes = [self._lanes[endpoint.key] for _, endpoint, _ in pages]  # handed: known
        return list(await asyncio.gather(
            *(lane.settled(row) for lane, row in zip(lanes, rows, strict=True))))

    async def deliver(self, alert_id: str, endpoint: Endpoint, message: Message) -> bool:
        [delivered] = await self.deliver_all([(alert_id, endpoint, message)])
        return delivered

    def wake(self, key: str) -> None:
        """A row of that endpoint was queued or changed (here, or in another process)."""
        lane = self._lane(key)
        if lane is not None and self._session is not None:  # not started: start() looks
            lane.wake()

    def wake_all(self) -> None:
        """Look at the whole queue now (what was announced while the database was away)."""
        self._look.set()

    async def _look_forever(self) -> None:
        while True:
            try:
                await self._look_once()
            except Exception:  # the database failing: the rows wait, the next look tries
                log.exception("could not look at the webhooks' queue; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._look.wait(), LOOK_SECONDS)
            self._look.clear()

    async def _look_once(self) -> None:
        await asyncio.to_thread(self.queue.prune, self.clock())
        for key in await asyncio.to_thread(self.queue.endpoints):
            self.wake(key)
        for lane in list(self._lanes.values()):
            if lane.waiting:  # its rows may have been finished by another process
                lane.wake()

    def _lane(self, key: str) -> Lane | None:
        lane = self._lanes.get(key)
        if lane is not None:
            return lane
        endpoint = self._handed.get(key) or self._configured().get(key)
        if endpoint is None:
            if key not in self._unknown:
                self._unknown.add(key)
                log.warning("webhook queue: messages for an endpoint this central's config and"
                            " registry do not name (%s…); they wait for a central that does",
                            key[:8])
            return None
        lane = self._lanes[key] = Lane(self, endpoint)
        return lane

    def _configured(self) -> dict[str, Endpoint]:
        """Every endpoint the config and the registry name, by key."""
        targets = {target for entry in self._config.webhooks for target in entry.to}
        targets |= {f"butler:{butler.id}" for butler in self._registry.current.butlers}
        return {endpoint.key: endpoint for target in targets for endpoint in self.endpoints(target)}

    def wanted(self, alert_id: str) -> bool:
        """Whether a queued message is still worth posting: its alert is not resolved."""
        alert = self._alerts(alert_id) if self._alerts is not None else None
        return alert is None or alert.state is not AlertState.RESOLVED

    async def post(self, endpoint: Endpoint, body: bytes) -> Attempt:
        assert self._session is not None, "Notifier.start() first"
        url = url_for(endpoint.url, endpoint.format, endpoint.secret, self.clock())
        try:
            async with self._session.post(
                url, data=body, headers={"Content-Type": "application/json; charset=utf-8"}
            ) as response:
                text = await response.text(errors="replace")
                return judge(endpoint.format, response.status, text, response.headers.get(
                    "Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Attempt("retry", None, f"{type(exc).__name__}: {exc}"[:300])

    async def tell(self, taken: Sequence[Queued], endpoint: Endpoint) -> None:
        """Tell the `delivered` callback of messages the endpoint took."""
        if self._delivered is None:
            return
        for queued in taken:
            try:
                await self._delivered(queued.alert_id, queued.message.target, endpoint)
            except Exception:  # the database failing: the delivery itself is recorded
                log.exception("could not record the delivery of alert %s", queued.alert_id)

    def backoff(self, failures: int, retry_after: float | None) -> float:
        settings = self._config.notify
        base = min(settings.backoff_max, settings.backoff_min * 2 ** (failures - 1))
        # Jitter in [base/2, base]: robots of one community do not all retry in step, and each
        # wait is still at least the one before it.
        delay: float = base * random.uniform(0.5, 1.0)
        if retry_after is not None:
            delay = max(delay, min(retry_after, settings.backoff_max))
        return round(delay, 3)

    def deliveries(self, alert_id: str) -> list[dict[str, Any]]:
        return self.queue.deliveries(alert_id)


class Lane:
    """One endpoint's task in this process: it claims the endpoint's rows when they are due and
    posts them, and settles the waits of `Notifier.deliver` on them."""

    def __init__(self, notifier: Notifier, endpoint: Endpoint) -> None:
        self._notifier = notifier
        self._endpoint = endpoint
        self._robot = endpoint.key if endpoint.format in PACED else None
        self._woken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._waiters: dict[int, asyncio.Future[bool]] = {}
        self._open = 0  # rows waiting at the last look, for the log

    @property
    def waiting(self) -> bool:
        return bool(self._waiters)

    def wake(self) -> None:
        self._woken.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def settled(self, row: int) -> bool:
        """True once the row was delivered (by any process), False once it was given up."""
        future = self._waiters.get(row)
        if future is None:
            future = self._waiters[row] = asyncio.get_running_loop().create_future()
        return await asyncio.shield(future)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._settle(list(self._waiters), False)

    async def _run(self) -> None:
        while True:
            # Cleared before the look: a row queued during it wakes the lane for another.
            self._woken.clear()
            try:
                busy = await self._step()
            except Exception:  # the database failing: the messages wait, nothing is lost
                log.exception("webhook %s: could not deliver; trying again", self._endpoint.shown)
                await self._notifier.sleep(1.0)
                continue
            if not busy and not self._woken.is_set():
                return

    async def _step(self) -> bool:
        """Post one message (or one digest of faults), or wait until one may go; False when
        nothing of the endpoint's is open."""
        notifier = self._notifier
        queued = await asyncio.to_thread(notifier.queue.open, self._endpoint.key)
        self._open = len(queued)
        await self._settle_elsewhere(queued)
        if not queued:
            return False
        room = None
        if self._robot is not None:
            room = await asyncio.to_thread(notifier.pacer.room, self._robot)
        now = notifier.clock()
        choice = self._choose(now, room, queued)
        if not choice.batch:
            await self._nap(choice.wake - now)
            return True
        resolved = [q for q in choice.batch if not await asyncio.to_thread(notifier.wanted,
                                                                            q.alert_id)]
        if resolved:
            dropped = await asyncio.to_thread(notifier.queue.drop, self._endpoint, resolved,
                                              notifier.clock())
            self._settle([q.id for q in dropped], False)
            return True
        pace = (self._robot, choice.allowed) if self._robot is not None else None
        claim = await asyncio.to_thread(
            notifier.queue.claim, choice.batch, notifier.owner, notifier.clock(),
            notifier.lease, pace,
        )
        if claim is not None:  # else another process was first: look again
            await self._send(choice.batch, claim.post)
        return True

    def _choose(self, now: float, room: Room | None, queued: list[Queued]) -> Choice:
        ready = sorted((q for q in queued if q.due_at <= now and q.free(now)),
                       key=lambda q: q.order)
        later = min((q.opens() for q in queued if q not in ready), default=None)
        if not ready:
            assert later is not None
            return Choice(wake=later)
        best = ready[0]
        if room is None:  # an endpoint of our own, the generic JSON format: no pace to keep
            return Choice([best])
        settings = self._notifier.settings
        allowed = settings.robot_per_minute
        if not best.message.is_call:
            allowed -= settings.robot_reserve
        opens = room.opens_at(allowed)
        if opens > now:
            return Choice(wake=opens if later is None else min(opens, later))
        if best.message.is_fault and len(ready) > room.free(allowed):
            return Choice([q for q in ready if q.message.is_fault], allowed)
        return Choice([best], allowed)

    async def _nap(self, seconds: float) -> None:
        """Wait that long, or until the lane is woken (a call may go before what waits)."""
        sleeper = asyncio.ensure_future(self._notifier.sleep(max(0.0, seconds)))
        woken = asyncio.ensure_future(self._woken.wait())
        try:
            await asyncio.wait({sleeper, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            woken.cancel()

    async def _send(self, batch: list[Queued], post: int | None) -> None:
        notifier, endpoint = self._notifier, self._endpoint
        messages = [q.message for q in batch]
        zone, now = notifier.zone, notifier.clock()
        text = compose(messages[0], zone, now) if len(batch) == 1 else digest(messages, zone, now)
        mentions = notifier.mentions([m.target for m in messages])
        body = body_for(endpoint.format, messages[0], text, mentions)
        result = await notifier.post(endpoint, json.dumps(body, ensure_ascii=False).encode())
        for queued in batch:
            queued.posts += 1
        if result.outcome == "throttled":
            await self._silenced(batch, post, result)
            return
        done = [(q, self._judged(q, result)) for q in batch]
        await asyncio.to_thread(notifier.queue.finish, endpoint, notifier.owner, done,
                                notifier.clock())
        for queued, outcome in done:
            if outcome.outcome == "failed":
                log.warning(
                    "webhook %s for alert %s: %s; %s",
                    endpoint.shown,
                    queued.alert_id,
                    result.error,
                    "refused for good, not retried"
                    if result.outcome == "failed"
                    else f"given up after {queued.posts} attempts",
                )
        taken = [q for q, o in done if o.outcome == "delivered"]
        self._settle([q.id for q in taken], True)
        self._settle([q.id for q, o in done if o.outcome == "failed"], False)
        await notifier.tell(taken, endpoint)

    def _judged(self, queued: Queued, result: Attempt) -> Outcome:
        if result.outcome != "retry":
            return Outcome.of(result, result.outcome)
        queued.failures += 1
        if queued.failures >= self._notifier.settings.attempts:
            return Outcome.of(result, "failed")
        delay = self._notifier.backoff(queued.failures, result.wait)
        queued.due_at = self._notifier.clock() + delay
        return Outcome.of(result, "retry", delay)

    async def _silenced(self, batch: list[Queued], post: int | None, result: Attempt) -> None:
        """The robot said "too fast": nobody posts to it for the vendor's window, and the
        messages keep their places (no attempt counted against them)."""
        window = result.wait or 0.0
        notifier = self._notifier
        now = notifier.clock()
        until = now + window
        for queued in batch:
            queued.due_at = until
        retry = Outcome.of(result, "retry", window)
        await asyncio.to_thread(
            notifier.queue.finish, self._endpoint, notifier.owner,
            [(q, retry) for q in batch], now, None if post is None else (post, until),
        )
        log.warning(
            "robot %s says too fast (%s): leaving it alone for %.0f s, %d messages waiting",
            self._endpoint.shown,
            result.error,
            window,
            self._open,
        )

    async def _settle_elsewhere(self, queued: list[Queued]) -> None:
        """Settle the waits on rows no longer open: another process finished them."""
        open_ids = {q.id for q in queued}
        gone = [row for row in self._waiters if row not in open_ids]
        if gone:
            finished = await asyncio.to_thread(self._notifier.queue.finished, gone)
            for delivered in (True, False):
                self._settle([row for row, ok in finished.items() if ok is delivered], delivered)

    def _settle(self, rows: Sequence[int], delivered: bool) -> None:
        for row in rows:
            future = self._waiters.pop(row, None)
            if future is not None and not future.done():
                future.set_result(delivered)
