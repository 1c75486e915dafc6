"""Webhooks to butlers, the duty contact and the street office: generic JSON, the WeCom group
robot (企业微信群机器人) and the DingTalk robot (钉钉自定义机器人), each robot at its own
pace, each attempt a row of `deliveries`.

Where a target's webhooks come from:
- `[[webhooks]]` entries whose `to` names the target ("butler:ID", "duty", "inspection");
- for "butler:ID", the URLs in that butler's registry entry (`Butler.webhooks`). Such a URL
  uses the format (and DingTalk secret) of the `[[webhooks]]` entry with the same `url`, else
  the format its host is known for (qyapi.weixin.qq.com: WeCom; oapi.dingtalk.com:
  DingTalk), else generic JSON.

Each endpoint has one queue (a `Lane`) and one task posting from it. For a WeCom or DingTalk
robot the pace is `notify.robot_per_minute` posts in any 60 s, counted in the database
(`pacing`); help calls go first and may use every post, anything else only while more than
`notify.robot_reserve` are left; when the next to go is a device fault and more messages wait
than the minute has posts for, the faults waiting go as one message. The butler a message is
for is @-mentioned (`vendors`). A robot's "too fast" answer silences it for the vendor's window
and costs the message nothing: it keeps its place until the robot takes it or its alert is
resolved. Other failures are retried with backoff, `notify.attempts` times at most; a permanent
answer fails at once. Formats and answers: `vendors`; words: `messages`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import aiohttp
from pydantic import AnyHttpUrl, ValidationError

from cloud_bridge.alerts.book import Alert
from cloud_bridge.alerts.clock import SYSTEM_CLOCK, Clock
from cloud_bridge.alerts.states import AlertState
from cloud_bridge.config import CentralConfig, NotifySection, WebhookFormat, guess_format
from cloud_bridge.notify.messages import Message, compose, digest, render
from cloud_bridge.notify.pacing import Pacer, Room, robot_key
from cloud_bridge.notify.vendors import Attempt, Mention, body_for, judge, url_for
from cloud_bridge.receiver.store import Database
from cloud_bridge.registry.source import RegistrySource

__all__ = ["Endpoint", "Message", "Notifier", "render"]

log = logging.getLogger(__name__)

SCHEMA = """
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

PACED: frozenset[WebhookFormat] = frozenset({"wecom", "dingtalk"})

Sleep = Callable[[float], Awaitable[None]]
# The alert a queued message is about, as it is now (None: no such alert).
AlertLookup = Callable[[str], Alert | None]


@dataclass(frozen=True)
class Endpoint:
    url: str
    format: WebhookFormat
    secret: str | None = None

    @property
    def shown(self) -> str:
        """The URL without its query: robot keys and tokens travel there, and must not be
        copied into the deliveries table or logs."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


@dataclass(eq=False)
class Waiting:
    """A message in an endpoint's queue, from its page until it was taken or given up."""

    alert_id: str
    message: Message
    arrived: int
    done: asyncio.Future[bool]
    posts: int = 0  # attempts made, "too fast" answers included (`deliveries.attempt`)
    failures: int = 0  # of those, the ones that count against notify.attempts
    not_before: float = 0.0  # a failure's backoff, by the notifier's clock

    @property
    def order(self) -> tuple[int, int, int]:
        return (*self.message.order, self.arrived)


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
class Choice:
    """What an endpoint's task does next: post `batch` within `allowed` posts a minute, or,
    with an empty batch, wait until `wake`."""

    batch: list[Waiting] = field(default_factory=list)
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
        self._db = db
        self._config = config
        self._registry = registry
        self._alerts = alerts
        self.clock = clock
        self.sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        self._lanes: dict[str, Lane] = {}
        db.migrate("deliveries", [SCHEMA])
        self.pacer = Pacer(db, clock)

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._config.notify.timeout)
        self._session = aiohttp.ClientSession(timeout=timeout)

    async def close(self) -> None:
        lanes, self._lanes = list(self._lanes.values()), {}
        for lane in lanes:
            await lane.stop()
        if self._session is not None:
            await self._session.close()

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

    async def deliver(self, alert_id: str, endpoint: Endpoint, message: Message) -> bool:
        """Queue the message for the endpoint; True once the endpoint took it, False when it
        was given up (or its alert resolved first)."""
        lane = self._lanes.get(endpoint.url)
        if lane is None:
            lane = self._lanes[endpoint.url] = Lane(self, endpoint)
        return await lane.put(alert_id, message)

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

    def backoff(self, failures: int, retry_after: float | None) -> float:
        settings = self._config.notify
        base = min(settings.backoff_max, settings.backoff_min * 2 ** (failures - 1))
        # Jitter in [base/2, base]: robots of one community do not all retry in step, and each
        # wait is still at least the one before it.
        delay: float = base * random.uniform(0.5, 1.0)
        if retry_after is not None:
            delay = max(delay, min(retry_after, settings.backoff_max))
        return round(delay, 3)

    def record(self, endpoint: Endpoint, done: Sequence[tuple[Waiting, Outcome]]) -> None:
        at = self.clock()
        with self._db.transaction() as db:
            db.executemany(
                "INSERT INTO deliveries (alert, target, url, format, attempt, status, outcome,"
                " error, retry_in, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        waiting.alert_id,
                        waiting.message.target,
                        endpoint.shown,
                        endpoint.format,
                        waiting.posts,
                        result.status,
                        result.outcome,
                        result.error,
                        result.retry_in,
                        at,
                    )
                    for waiting, result in done
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


class Lane:
    """One endpoint's queue and the task that posts from it."""

    def __init__(self, notifier: Notifier, endpoint: Endpoint) -> None:
        self._notifier = notifier
        self._endpoint = endpoint
        self._robot = robot_key(endpoint.url) if endpoint.format in PACED else None
        self._waiting: list[Waiting] = []
        self._arrivals = count()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def put(self, alert_id: str, message: Message) -> bool:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(Waiting(alert_id, message, next(self._arrivals), done))
        self._arrived.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return await done

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._finish(list(self._waiting), False)

    async def _run(self) -> None:
        while self._waiting:
            try:
                await self._step()
            except Exception:  # the database failing: the messages wait, nothing is lost
                log.exception("webhook %s: could not deliver; trying again", self._endpoint.shown)
                await self._notifier.sleep(1.0)

    async def _step(self) -> None:
        """Post one message (or one digest of faults), or wait until one may go."""
        notifier = self._notifier
        self._arrived.clear()
        room = None
        if self._robot is not None:
            room = await asyncio.to_thread(notifier.pacer.room, self._robot)
        choice = self._choose(notifier.clock(), room)
        if not choice.batch:
            await self._nap(choice.wake - notifier.clock())
            return
        batch = await self._drop_resolved(choice.batch)
        if not batch:
            return
        post = None
        if self._robot is not None:
            post = await asyncio.to_thread(notifier.pacer.take, self._robot, choice.allowed)
            if post is None:  # another central process took the slot meanwhile
                return
        await self._send(batch, post)

    def _choose(self, now: float, room: Room | None) -> Choice:
        ready = sorted((w for w in self._waiting if w.not_before <= now), key=lambda w: w.order)
        later = min((w.not_before for w in self._waiting if w.not_before > now), default=None)
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
            return Choice([w for w in ready if w.message.is_fault], allowed)
        return Choice([best], allowed)

    async def _nap(self, seconds: float) -> None:
        """Wait that long, or until a message arrives (a call may go before what waits)."""
        sleeper = asyncio.ensure_future(self._notifier.sleep(max(0.0, seconds)))
        arrival = asyncio.ensure_future(self._arrived.wait())
        try:
            await asyncio.wait({sleeper, arrival}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            arrival.cancel()

    async def _drop_resolved(self, batch: list[Waiting]) -> list[Waiting]:
        notifier = self._notifier
        wanted = [w for w in batch if await asyncio.to_thread(notifier.wanted, w.alert_id)]
        dropped = [w for w in batch if w not in wanted]
        if dropped:
            gone = Outcome("dropped", None, "the alert was resolved first")
            await asyncio.to_thread(notifier.record, self._endpoint, [(w, gone) for w in dropped])
            self._finish(dropped, False)
        return wanted

    async def _send(self, batch: list[Waiting], post: int | None) -> None:
        notifier, endpoint = self._notifier, self._endpoint
        messages = [w.message for w in batch]
        zone, now = notifier.zone, notifier.clock()
        text = compose(messages[0], zone, now) if len(batch) == 1 else digest(messages, zone, now)
        mentions = notifier.mentions([m.target for m in messages])
        body = body_for(endpoint.format, messages[0], text, mentions)
        result = await notifier.post(endpoint, json.dumps(body, ensure_ascii=False).encode())
        for waiting in batch:
            waiting.posts += 1
        if result.outcome == "throttled":
            await self._silenced(batch, post, result)
            return
        done = [(w, self._judged(w, result)) for w in batch]
        await asyncio.to_thread(notifier.record, endpoint, done)
        for waiting, outcome in done:
            if outcome.outcome == "failed":
                log.warning(
                    "webhook %s for alert %s: %s; %s",
                    endpoint.shown,
                    waiting.alert_id,
                    result.error,
                    "refused for good, not retried"
                    if result.outcome == "failed"
                    else f"given up after {waiting.posts} attempts",
                )
        self._finish([w for w, o in done if o.outcome == "delivered"], True)
        self._finish([w for w, o in done if o.outcome == "failed"], False)

    def _judged(self, waiting: Waiting, result: Attempt) -> Outcome:
        if result.outcome != "retry":
            return Outcome.of(result, result.outcome)
        waiting.failures += 1
        if waiting.failures >= self._notifier.settings.attempts:
            return Outcome.of(result, "failed")
        delay = self._notifier.backoff(waiting.failures, result.wait)
        waiting.not_before = self._notifier.clock() + delay
        return Outcome.of(result, "retry", delay)

    async def _silenced(self, batch: list[Waiting], post: int | None, result: Attempt) -> None:
        """The robot said "too fast": nobody posts to it for the vendor's window, and the
        messages keep their places (no attempt counted against them)."""
        window = result.wait or 0.0
        notifier = self._notifier
        until = notifier.clock() + window
        if post is not None:
            await asyncio.to_thread(notifier.pacer.silence, post, until)
        for waiting in batch:
            waiting.not_before = until
        retry = Outcome.of(result, "retry", window)
        await asyncio.to_thread(notifier.record, self._endpoint, [(w, retry) for w in batch])
        log.warning(
            "robot %s says too fast (%s): leaving it alone for %.0f s, %d messages waiting",
            self._endpoint.shown,
            result.error,
            window,
            len(self._waiting),
        )

    def _finish(self, batch: Sequence[Waiting], delivered: bool) -> None:
        for waiting in batch:
            if waiting in self._waiting:
                self._waiting.remove(waiting)
            if not waiting.done.done():
                waiting.done.set_result(delivered)
