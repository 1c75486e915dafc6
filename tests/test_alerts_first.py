"""Alerts never wait behind logs (docs/architecture.md, "What is acked when").

Documented behaviour under test:
- The commit thread commits the presses that have arrived before the logs that arrived with
  them, in a transaction of their own, and tells the uplink at once; a device's messages keep
  the order it sent them in (a heartbeat before its press, a press before its repeat).
- The acks still go in arrival order, after both commits.
- The uplink's alert sender posts an alert while a log batch's request is still unanswered.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from edge.buffer.outbox import EventClass, Outbox
from edge.config import CentralSection, OutboxSection, RulesSection
from edge.events import Event, now
from edge.sink.uplink import Uplink
from edge.source.messages import parse_message
from edge.source.mqtt import Received
from edge.transform.pipeline import Pipeline, pressing_first
from edge.transform.rules import Rules, gateway_event
from mashang.registry import Registry

pytestmark = pytest.mark.unit

ROOT = "mashang/v1"


def heartbeat(device: str, seq: int) -> Received:
    topic = f"{ROOT}/buttons/{device}/status"
    payload = json.dumps({"state": "online", "battery": 80, "seq": seq}).encode()
    return Received((parse_message(ROOT, topic, payload, now()),), seq)


def press(device: str, seq: int) -> Received:
    topic = f"{ROOT}/buttons/{device}/events"
    payload = json.dumps({"seq": seq, "action": "single"}).encode()
    return Received((parse_message(ROOT, topic, payload, now()),), seq)


def test_the_devices_that_pressed_go_first_each_in_its_own_order() -> None:
    group = [heartbeat("btn-a", 1), heartbeat("btn-b", 2), press("btn-b", 3),
             heartbeat("btn-c", 4), press("btn-b", 5), heartbeat("btn-b", 6)]
    first, rest = pressing_first(group)
    assert [r.seq for r in first] == [2, 3, 5, 6]
    assert [r.seq for r in rest] == [1, 4]


def test_a_press_behind_a_queue_of_logs_is_committed_and_told_first(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite", max_bytes=1 << 26, log_ttl=3600.0)
    commits: list[list[Event]] = []
    acked: list[int] = []
    pipeline = Pipeline(Rules(RulesSection(), Registry(), None), outbox, ack=acked.append,
                        on_committed=commits.append, max_group=400)
    # Everything has arrived before the commit thread looks: one group.
    logs = [heartbeat(f"btn-{n % 40:03d}", n) for n in range(1, 301)]
    assert pipeline.submit([*logs, press("btn-999", 301), press("btn-999", 302)])
    pipeline.start()
    pipeline.stop()
    try:
        assert [e.type for e in commits[0]] == ["button.press", "button.repeat"]
        assert sum(len(events) for events in commits[1:]) == 300
        assert all(not e.is_alert for events in commits[1:] for e in events)
        assert acked == [302], "one ack, through the last message, after both commits"
        assert outbox.pending(EventClass.ALERT) == 2 and outbox.pending(EventClass.LOG) == 300
    finally:
        outbox.close()


class HoldingCentral:
    """A real HTTP central on loopback that holds every batch of logs until released, and
    answers alerts at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.logs_held = asyncio.Event()
        self.alerts: list[str] = []
        self.alert_arrived = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/ingest", self.ingest)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def ingest(self, request: web.Request) -> web.Response:
        events = (await request.json())["events"]
        if any(event["kind"] == "alert" for event in events):
            self.alerts.extend(event["type"] for event in events)
            self.alert_arrived.set()
        else:
            self.logs_held.set()
            await self.release.wait()
        return web.json_response({"accepted": [e["id"] for e in events], "duplicates": []})


async def alert_beside_a_held_log_batch(tmp_path: Path) -> tuple[list[str], bool]:
    central = HoldingCentral()
    await central.start()
    outbox = Outbox(tmp_path / "outbox.sqlite", max_bytes=1 << 26, log_ttl=3600.0)
    config = CentralSection.model_validate({"url": central.url, "key": "k"})
    uplink = Uplink(config, OutboxSection(log_linger=0.01), outbox, gateway_id="gw", key=b"k")
    try:
        async with aiohttp.ClientSession() as session:
            sending = asyncio.create_task(uplink.run(session))
            await asyncio.sleep(0)  # the senders start
            outbox.put([gateway_event("gateway.note", {}, device_id=f"dev-{n}") for n in range(20)])
            uplink.notify(False)
            await asyncio.wait_for(central.logs_held.wait(), 10)
            outbox.put([gateway_event("gateway.alarm", {}, kind="alert", priority="high")])
            uplink.notify(True)
            await asyncio.wait_for(central.alert_arrived.wait(), 10)
            still_held = not central.release.is_set()
            central.release.set()
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
        return central.alerts, still_held
    finally:
        outbox.close()
        assert central.runner is not None
        await central.runner.cleanup()


def test_an_alert_is_posted_while_a_log_batch_is_still_unanswered(tmp_path: Path) -> None:
    alerts, log_batch_still_held = asyncio.run(alert_beside_a_held_log_batch(tmp_path))
    assert alerts == ["gateway.alarm"]
    assert log_batch_still_held
