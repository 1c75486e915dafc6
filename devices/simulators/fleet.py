"""`mashang simulate fleet`: a city's gateways against one central, from one process.

Each simulated gateway does on the wire what `edge/` does (PROTOCOL §3, §4, §6): it posts its
devices' events in signed batches, alerts at once and ahead of logs, logs gathered for
`linger` seconds into batches of at most `batch` (a backlog grows the batches, as the outbox
does while the central is slow), retried with backoff on a transient answer; and it
long-polls its commands, each poll signed the v1.1 way with a fresh nonce. Its devices are
buttons that send a heartbeat (`button.status`, a log) every `heartbeat_every` seconds;
presses (`button.press`, an alert, each from a button that has not pressed yet, so that each
opens an alert of its own) and scans (`scan.rejected`, a log) come at fleet-wide rates.

Gateway `n` (from 1) is `{prefix}-{n:04d}` and its key is hex HMAC-SHA256(secret, its id), so
that the central's `[gateways]` table can be written for any fleet (`gateways_table`).

What it reports: events offered and accepted per second, duplicates, every error by cause,
polls answered and commands received, press → accepted (the alert's batch answered 200), and,
with a console account, press → console: when the alert reached that account's live stream
(`/v1/console/stream`), on this process's own clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import resource
import time
import urllib.parse
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from yarl import URL

from devices.simulators.butler import EventLines
from mashang.signing import signed_headers, signed_poll_headers

ALERT_BATCH = 50  # the gateway's outbox.alert_batch_size
REQUEST_TIMEOUT = 10.0  # the gateway's central.timeout
BACKOFF_MIN, BACKOFF_MAX = 0.2, 60.0  # the gateway's central.backoff_min and backoff_max
ALERT_RETRY = 1.0  # the gateway's central.alert_retry
SCAN_CODE = "HTTPS://M.DDP.CN/S/NOTAVALIDTOKEN"
PREFIX, SECRET = "fleet", "mashang-fleet"  # the defaults: gateway ids and what keys derive from


def gateway_id(prefix: str, number: int) -> str:
    return f"{prefix}-{number:04d}"


def gateway_key(secret: str, gateway: str) -> str:
    return hmac.new(secret.encode(), gateway.encode(), hashlib.sha256).hexdigest()


def gateways_table(prefix: str, count: int, secret: str) -> str:
    """The central's `[gateways]` table for gateways 1 to `count`."""
    lines = ["[gateways]"]
    for number in range(1, count + 1):
        name = gateway_id(prefix, number)
        lines.append(f'{name} = "{gateway_key(secret, name)}"')
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class FleetPlan:
    central: str
    gateways: int
    devices: int  # buttons per gateway
    seconds: float
    heartbeat_every: float = 300.0  # seconds between one button's heartbeats
    presses: float = 1.0  # per second, the whole fleet
    scans: float = 2.0  # per second, the whole fleet
    linger: float = 0.5  # the gateway's outbox.log_linger
    batch: int = 500  # the gateway's outbox.log_batch_size
    poll_wait: int = 25  # the gateway's central.poll_wait
    drain: float = 20.0  # seconds after the run to deliver what is still waiting
    prefix: str = PREFIX
    secret: str = SECRET
    console: tuple[str, str] | None = None  # (account, password)

    @property
    def offered(self) -> float:
        """Events per second the fleet makes."""
        return self.gateways * self.devices / self.heartbeat_every + self.presses + self.scans


@dataclass
class Tally:
    generated: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0  # events of batches refused for good (4xx)
    batches: int = 0  # answered 200
    errors: Counter[str] = field(default_factory=Counter)
    polls: int = 0  # answered 200
    commands: int = 0
    pressed: dict[str, float] = field(default_factory=dict)  # device → wall clock of its press
    press_accepted: list[float] = field(default_factory=list)  # seconds
    accepted_presses: set[str] = field(default_factory=set)  # devices whose press was answered
    shown: dict[str, float] = field(default_factory=dict)  # device → wall clock on the console
    console_error: str | None = None


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def make_event(kind: str, event_type: str, priority: str, device: str,
               data: dict[str, Any]) -> dict[str, Any]:
    moment = now_text()
    return {"id": str(uuid.uuid4()), "kind": kind, "type": event_type, "priority": priority,
            "device_id": device, "occurred_at": moment, "received_at": moment, "data": data}


class Backoff:
    def __init__(self) -> None:
        self.delay = BACKOFF_MIN

    def next(self) -> float:
        delay, self.delay = self.delay, min(BACKOFF_MAX, self.delay * 2)
        return delay * random.uniform(0.5, 1.0)


class SimulatedGateway:
    def __init__(self, plan: FleetPlan, number: int, tally: Tally) -> None:
        self.plan = plan
        self.id = gateway_id(plan.prefix, number)
        self.key = gateway_key(plan.secret, self.id).encode()
        self.tally = tally
        self.logs: deque[dict[str, Any]] = deque()
        self.alerts: deque[tuple[dict[str, Any], float]] = deque()  # (event, monotonic press)
        self.alert_waiting = asyncio.Event()
        self._due = random.random()  # heartbeats owed, so that the gateways do not beat as one
        self._beats = 0
        self._presses = 0
        self._scans = 0
        base = URL(plan.central)
        self._ingest = base.with_path(base.path.rstrip("/") + "/v1/ingest")
        self._commands = f"{base.path.rstrip('/')}/v1/gateways/{self.id}/commands"
        self._origin = base.with_path("/")

    def button(self, index: int) -> str:
        return f"{self.id}-b{index:04d}"

    def owe_heartbeats(self, seconds: float) -> None:
        self._due += seconds * self.plan.devices / self.plan.heartbeat_every
        while self._due >= 1:
            self._due -= 1
            self._beats += 1
            device = self.button(self._beats % self.plan.devices)
            self.logs.append(make_event("log", "button.status", "low", device, {
                "state": "online", "battery": 87, "rssi": -70, "unregistered": True}))
            self.tally.generated += 1

    def press(self) -> bool:
        """A press of a button that has not pressed yet; False when all of them have."""
        if self._presses >= self.plan.devices:
            return False
        # From the last button down: each press is a button of its own, an alert of its own.
        device = self.button(self.plan.devices - 1 - self._presses)
        self._presses += 1
        event = make_event("alert", "button.press", "critical", device, {
            "seq": 1, "action": "single", "presses": 1, "battery": 87, "unregistered": True})
        self.tally.pressed[device] = time.time()
        self.alerts.append((event, time.monotonic()))
        self.alert_waiting.set()
        self.tally.generated += 1
        return True

    def scan(self) -> None:
        self._scans += 1
        self.logs.append(make_event("log", "scan.rejected", "low", f"{self.id}-s01", {
            "seq": self._scans, "code": SCAN_CODE, "purpose": "inspect", "result": "rejected",
            "reason": "bad_signature"}))
        self.tally.generated += 1

    # -- the uplink --------------------------------------------------------------------------

    async def send_logs(self, session: aiohttp.ClientSession, made: asyncio.Event) -> None:
        """Every `linger`, everything waiting, in batches, until the last event `made` is."""
        await asyncio.sleep(random.uniform(0, self.plan.linger))
        while True:
            last = made.is_set()
            await self._deliver_logs(session)
            if last:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(made.wait(), self.plan.linger)

    async def _deliver_logs(self, session: aiohttp.ClientSession) -> None:
        while self.logs:
            batch = [self.logs.popleft() for _ in range(min(self.plan.batch, len(self.logs)))]
            await self._deliver(session, batch, retry=None)

    async def send_alerts(self, session: aiohttp.ClientSession, until: float) -> None:
        while time.monotonic() < until or self.alerts:
            if not self.alerts:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.alert_waiting.wait(), until - time.monotonic())
                self.alert_waiting.clear()
                continue
            taken = [self.alerts.popleft() for _ in range(min(ALERT_BATCH, len(self.alerts)))]
            if await self._deliver(session, [event for event, _ in taken], retry=ALERT_RETRY):
                answered = time.monotonic()
                self.tally.press_accepted.extend(answered - pressed for _, pressed in taken)
                self.tally.accepted_presses.update(event["device_id"] for event, _ in taken)

    async def _deliver(self, session: aiohttp.ClientSession, events: list[dict[str, Any]],
                       retry: float | None) -> bool:
        """Post until the central answers for good; True when it took the batch (200)."""
        backoff = Backoff()
        while True:
            body = json.dumps({"gateway_id": self.id, "sent_at": now_text(),
                               "events": events}, ensure_ascii=False).encode()
            headers = {**signed_headers(self.id, self.key, body),
                       "Content-Type": "application/json"}
            try:
                status, answer = await exchange(session.post(
                    self._ingest, data=body, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)))
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self.tally.errors[f"ingest: {type(exc).__name__}"] += 1
            else:
                if status == 200:
                    self.tally.batches += 1
                    self.tally.accepted += len(answer["accepted"])
                    self.tally.duplicates += len(answer["duplicates"])
                    return True
                self.tally.errors[f"ingest: HTTP {status} {_code(answer)}".rstrip()] += 1
                if status not in (408, 429) and status < 500:
                    self.tally.rejected += len(events)
                    return False
            await asyncio.sleep(retry if retry is not None else backoff.next())

    # -- the downlink ------------------------------------------------------------------------

    async def poll(self, session: aiohttp.ClientSession, until: float) -> None:
        """Long-polls until `until`, each one's wait cut short to end by then."""
        await asyncio.sleep(random.uniform(0, 1))
        cursor = "0"
        while (wait := min(self.plan.poll_wait, int(until - time.monotonic()))) > 0:
            query = urllib.parse.urlencode({"after": cursor, "wait": str(wait)})
            target = f"{self._commands}?{query}"
            url = self._origin.join(URL(target, encoded=True))
            headers = signed_poll_headers(self.id, self.key, target)
            try:
                status, answer = await exchange(session.get(
                    url, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=wait + REQUEST_TIMEOUT)))
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self.tally.errors[f"poll: {type(exc).__name__}"] += 1
                await asyncio.sleep(ALERT_RETRY)
                continue
            if status != 200:
                self.tally.errors[f"poll: HTTP {status} {_code(answer)}".rstrip()] += 1
                await asyncio.sleep(ALERT_RETRY)
                continue
            self.tally.polls += 1
            self.tally.commands += len(answer["commands"])
            cursor = str(answer["cursor"])


async def exchange(sending: Any) -> tuple[int, Any]:
    """A request's status and answer: its JSON on a 200, else its text (the refusal's)."""
    async with sending as response:
        status = response.status
        return status, await response.json() if status == 200 else await response.text()


def _code(answer: Any) -> str:
    """The refusal's stable code (PROTOCOL §3's 401 answers), when it has one."""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        return str(json.loads(answer).get("code") or "")
    return ""


# -- the console -----------------------------------------------------------------------------


async def watch_console(session: aiohttp.ClientSession, plan: FleetPlan, tally: Tally,
                        ready: asyncio.Event) -> None:
    """Logs in and follows the live stream; notes when each button's alert first shows."""
    assert plan.console is not None
    account, password = plan.console
    base = plan.central.rstrip("/")
    try:
        async with session.post(f"{base}/v1/console/login",
                                json={"account": account, "password": password}) as login:
            if login.status != 200:
                raise RuntimeError(f"console login answered {login.status}")
            cookie = login.headers["Set-Cookie"].split(";")[0]
        async with session.get(f"{base}/v1/console/stream", headers={"Cookie": cookie},
                               timeout=aiohttp.ClientTimeout(total=None)) as stream:
            if stream.status != 200:
                raise RuntimeError(f"console stream answered {stream.status}")
            async for name, data in server_sent_events(stream.content):
                moment = time.time()
                for alert in data if name == "snapshot" else [data] if name == "alert" else []:
                    device = alert.get("device_id") if isinstance(alert, dict) else None
                    if device in tally.pressed:
                        tally.shown.setdefault(device, moment)
                ready.set()
    except (aiohttp.ClientError, RuntimeError, ValueError, KeyError) as exc:
        tally.console_error = f"{type(exc).__name__}: {exc}"
    finally:
        ready.set()


async def server_sent_events(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str, Any]]:
    lines = EventLines()
    async for raw in content:
        found = lines.feed(raw.decode())
        if found is not None:
            yield found


# -- the run ---------------------------------------------------------------------------------


async def heartbeats(fleet: list[SimulatedGateway], linger: float, until: float) -> None:
    """The buttons beat whether or not their gateway's sender is waiting on the central, as
    they publish to its broker while its outbox holds what the central has not taken."""
    last = time.monotonic()
    while last < until:
        await asyncio.sleep(min(linger, until - last))
        now = time.monotonic()
        for gateway in fleet:
            gateway.owe_heartbeats(now - last)
        last = now


async def paced(rate: float, until: float, act: Callable[[], object]) -> None:
    """Call `act()` `rate` times a second until `until`."""
    if rate <= 0:
        return
    next_at = time.monotonic()
    while (now := time.monotonic()) < until:
        if now >= next_at:
            act()
            next_at += 1 / rate
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


def more_files() -> None:
    """Each gateway holds a poll and up to two posts open: raise the soft limit to the hard."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def drive(plan: FleetPlan) -> dict[str, Any]:
    more_files()
    tally = Tally()
    fleet = [SimulatedGateway(plan, number, tally) for number in range(1, plan.gateways + 1)]
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        console = None
        if plan.console is not None:
            ready = asyncio.Event()
            console = asyncio.create_task(watch_console(session, plan, tally, ready))
            await ready.wait()  # the snapshot is in: every press after it shows as a change
        started = time.monotonic()
        until = started + plan.seconds
        presses = iter(random.sample(fleet, len(fleet)) * plan.devices)

        def press() -> None:
            for gateway in presses:
                if gateway.press():
                    return

        made = asyncio.Event()

        async def make() -> None:
            await asyncio.gather(heartbeats(fleet, plan.linger, until),
                                 paced(plan.presses, until, press),
                                 paced(plan.scans, until, lambda: random.choice(fleet).scan()))
            made.set()

        work = [asyncio.create_task(coroutine) for gateway in fleet for coroutine in (
            gateway.send_logs(session, made), gateway.send_alerts(session, until),
            gateway.poll(session, until))]
        work.append(asyncio.create_task(make()))
        _, late = await asyncio.wait(work, timeout=plan.seconds + plan.drain)
        for task in late:
            task.cancel()
        await asyncio.gather(*work, return_exceptions=True)
        finished = time.monotonic()
        if console is not None:
            await _wait_shown(tally, deadline=time.monotonic() + plan.drain)
            console.cancel()
            await asyncio.gather(console, return_exceptions=True)
    unsent = sum(len(gateway.logs) + len(gateway.alerts) for gateway in fleet)
    return summary(plan, tally, finished - started, unsent)


async def _wait_shown(tally: Tally, deadline: float) -> None:
    """Until every press the central took is on the console (or the stream failed)."""
    while (tally.accepted_presses - tally.shown.keys() and tally.console_error is None
           and time.monotonic() < deadline):
        await asyncio.sleep(0.05)


def percentiles(samples: list[float]) -> dict[str, float] | None:
    """n, p50, p99 and max in milliseconds (nearest rank)."""
    if not samples:
        return None
    ordered = sorted(samples)

    def rank(share: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, -int(-share * len(ordered)) - 1))] * 1000

    return {"n": len(ordered), "p50": rank(0.5), "p99": rank(0.99), "max": ordered[-1] * 1000}


def summary(plan: FleetPlan, tally: Tally, elapsed: float, unsent: int) -> dict[str, Any]:
    to_console = [tally.shown[device] - tally.pressed[device] for device in tally.shown]
    return {
        "gateways": plan.gateways, "devices": plan.devices, "seconds": plan.seconds,
        "elapsed": round(elapsed, 3),
        "offered_per_s": round(tally.generated / plan.seconds, 1),
        "accepted_per_s": round(tally.accepted / elapsed, 1),
        "generated": tally.generated, "accepted": tally.accepted,
        "duplicates": tally.duplicates, "rejected": tally.rejected, "unsent": unsent,
        "batches": tally.batches, "errors": dict(tally.errors),
        "polls": tally.polls, "commands": tally.commands,
        "presses": len(tally.pressed),
        "press_to_accepted_ms": percentiles(tally.press_accepted),
        "press_to_console_ms": percentiles(to_console) if plan.console else None,
        # Answered 200 and never shown (a press whose answer timed out may show all the same).
        "console_missed": (len(tally.accepted_presses - tally.shown.keys())
                           if plan.console else None),
        "console_error": tally.console_error,
        "cpu_seconds": round(time.process_time(), 2),  # the simulator's own, on this machine
    }


def report_lines(result: dict[str, Any]) -> Iterator[str]:
    """The run in words, for people."""
    yield (f"{result['gateways']} gateways x {result['devices']} devices, {result['seconds']:g} s"
           f" (+{result['elapsed'] - result['seconds']:.1f} s to deliver what waited)")
    yield (f"events: {result['generated']:,} made ({result['offered_per_s']:,.0f}/s), "
           f"{result['accepted']:,} accepted ({result['accepted_per_s']:,.0f}/s), "
           f"{result['duplicates']:,} duplicates, {result['rejected']:,} rejected, "
           f"{result['unsent']:,} never sent")
    yield (f"batches answered: {result['batches']:,}; polls answered: {result['polls']:,}, "
           f"commands received: {result['commands']:,}; the simulator used "
           f"{result['cpu_seconds']:.1f} s of CPU")
    for cause, count in sorted(result["errors"].items()):
        yield f"error: {cause}: {count:,}"
    for name, key in (("press -> accepted", "press_to_accepted_ms"),
                      ("press -> console", "press_to_console_ms")):
        figures = result.get(key)
        if figures:
            yield (f"{name}: p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms, "
                   f"max {figures['max']:.1f} ms (n={figures['n']})")
    if result.get("console_missed"):
        yield f"presses accepted but not seen on the console: {result['console_missed']}"
    if result.get("console_error"):
        yield f"console: {result['console_error']}"


def run_fleet(plan: FleetPlan) -> dict[str, Any]:
    return asyncio.run(drive(plan))
