"""Recovery in seconds: however long the central was away, an alert waiting on disk reaches it
within seconds of its return, and anything that gets through to the central (a poll, a batch)
starts the waiting senders at once.

The system test makes the central unreachable (connections refused), presses a button, lets
the failures pile up, and restores the central right after one of the gateway's tries: the
worst moment for any retry schedule. The unit tests pin down the parts: the alert's fixed retry
interval, the log's backoff, the wake-up on the central's return, and the quiet log."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request

import pytest

from edge.buffer.outbox import EventClass, Outbox
from edge.config import CentralSection, OutboxSection
from edge.sink.central import Backoff, CentralHealth
from edge.sink.uplink import Streak, Uplink
from tests.helpers.receiver import Receiver
from tests.helpers.support import device_topic, outbox_depth, publish, set_option, wait_for

# How long the central stays away before it may come back, at the least: with the old
# exponential backoff (0.2 s doubling, cap 60 s) every try after this was followed by a wait
# of at least 12.8 s (the eighth delay or later: 0.1 × 2^7 with jitter at its low end).
FAILING_FOR = 15.0
# A behaviour bound, not a benchmark (bench's `recovery` figure measures it, median and worst
# of 5 after a 75 s outage): the alert tries every central.alert_retry (1 s) now, so it takes
# about a second; the old backoff took 12.8 s or more here, and up to backoff_max (60 s).
WITHIN = 10.0


def uplink_retries(gateway) -> float:
    """The gateway's own count of failed uplink tries (mashang_uplink_retries_total)."""
    url = f"http://127.0.0.1:{gateway.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith("mashang_uplink_retries_total "):
            return float(line.split()[1])
    raise AssertionError("/metrics has no mashang_uplink_retries_total")


def started_with_long_backoff(make_gateway, receiver: Receiver):
    """A gateway whose exponential backoff (from 0.2 s to 60 s) would grow long in an outage,
    started and heard from at the receiver."""
    gateway = make_gateway(receiver.url)
    set_option(gateway.config, "central", "backoff_min", "0.2")
    set_option(gateway.config, "central", "backoff_max", "60.0")
    gateway.start()
    receiver.wait_for_events(
        lambda events: any(e["type"] == "gateway.started" for e in events),
        what="gateway.started",
    )
    return gateway


@pytest.mark.system
def test_an_alert_held_through_a_long_outage_arrives_within_seconds_of_the_return(
    broker, make_gateway
):
    """Central unreachable for over 15 s with a press waiting, then restored right after one
    of the gateway's tries: the alert must be at the central within 10 s of the return (one
    clock: this process's monotonic time of the restore and of the receiver's arrival). The
    old uplink backed the alert off exponentially and, configured as here (backoff_min 0.2,
    backoff_max 60), could not try again for 12.8 s or more."""
    with Receiver() as receiver:
        gateway = started_with_long_backoff(make_gateway, receiver)

        receiver.refuse()
        publish(broker.port, [(device_topic("btn-0900"), json.dumps({"seq": 1}))])
        pressed = time.monotonic()
        wait_for(lambda: outbox_depth(gateway.config)["alerts"] == 1, 20,
                 what="the press held in the outbox")
        wait_for(lambda: uplink_retries(gateway) >= 2, 20, what="the alert tried and retried")
        time.sleep(max(0.0, pressed + FAILING_FOR - time.monotonic()))

        # The central comes back the moment after a try: the gateway has just begun to wait.
        tries = uplink_retries(gateway)
        wait_for(lambda: uplink_retries(gateway) > tries, 70, 0.01, what="one more try")
        restored = time.monotonic()
        receiver.recover()

        [alert] = receiver.wait_for_events(
            lambda events: [e for e in events if e.get("device_id") == "btn-0900"],
            timeout=90, what="the held alert at the central",
        )
        arrived = min(r.arrived for r in receiver.requests()
                      if r.status == 200 and alert["id"] in r.ids)
        assert arrived - restored < WITHIN, (
            f"the held alert arrived {arrived - restored:.1f} s after the central's return"
        )
        assert alert["kind"] == "alert"
        assert all(r.signature_error is None for r in receiver.requests())
        assert gateway.running()


@pytest.mark.system
def test_a_command_poll_getting_through_starts_the_log_backlog_at_once(broker, make_gateway):
    """Logs may back off to backoff_max (60 s), but the first request that gets through to the
    central after an outage, here the command poll (which retries every second while the
    central fails), starts them at once: with only logs waiting, restored right after a log
    try that had failed for 15 s, the backlog must be arriving within 10 s (the log's own
    backoff was 12.8 s or more). Needs `CentralHealth.on_reachable(uplink.central_reachable)`
    in edge/gateway.py."""
    with Receiver() as receiver:
        gateway = started_with_long_backoff(make_gateway, receiver)

        receiver.refuse()
        statuses = [(device_topic("btn-0901", "status"),
                     json.dumps({"state": "online", "battery": 80, "n": n})) for n in range(5)]
        publish(broker.port, statuses)
        began = time.monotonic()
        wait_for(lambda: outbox_depth(gateway.config)["logs"] >= 5, 20,
                 what="the logs held in the outbox")
        time.sleep(max(0.0, began + FAILING_FOR - time.monotonic()))
        tries = uplink_retries(gateway)
        wait_for(lambda: uplink_retries(gateway) > tries, 70, 0.01, what="one more log try")
        restored = time.monotonic()
        receiver.recover()

        receiver.wait_for_events(
            lambda events: len([e for e in events if e.get("device_id") == "btn-0901"]) >= 5,
            timeout=90, what="the held logs at the central",
        )
        arrived = min(r.arrived for r in receiver.requests()
                      if r.status == 200 and any(e.get("device_id") == "btn-0901"
                                                 for e in r.events))
        assert arrived - restored < WITHIN, (
            f"the log backlog began {arrived - restored:.1f} s after the central's return"
        )


# -- the parts --------------------------------------------------------------------------------


def central(**options: object) -> CentralSection:
    return CentralSection.model_validate({"url": "http://127.0.0.1:9", "key": "k", **options})


def make_uplink(tmp_path, **options: object) -> tuple[Uplink, Outbox]:
    outbox = Outbox(tmp_path / "outbox.sqlite", max_bytes=1 << 26, log_ttl=3600.0)
    uplink = Uplink(central(**options), OutboxSection(), outbox, gateway_id="gw", key=b"k")
    return uplink, outbox


@pytest.mark.unit
def test_the_central_coming_back_is_told_once_per_return():
    health = CentralHealth()
    told: list[int] = []
    health.on_reachable(lambda: told.append(1))

    def broken() -> None:
        raise RuntimeError("a subscriber's bug")

    health.on_reachable(broken)
    health.answered("/v1/ingest", 200, None)
    assert told == [], "reachable from the start is no return"
    health.answered("/v1/ingest", None, "ClientConnectorError: refused")
    health.answered("/v1/gateways/gw/commands", None, "ClientConnectorError: refused")
    assert told == []
    # A poll's request reaching the central after refused connections: it is back.
    health.answered("/v1/gateways/gw/commands", None, None)
    assert told == [1]
    health.answered("/v1/ingest", None, None)
    health.answered("/v1/ingest", 200, None)
    assert told == [1], "told on the return only, not for every success"
    # An HTTP error stands until an answer says otherwise: a request sent is not a return.
    health.answered("/v1/ingest", 503, None)
    health.answered("/v1/ingest", None, None)
    assert told == [1]
    health.answered("/v1/ingest", 200, None)
    assert told == [1, 1]
    assert health.check(60).ok


@pytest.mark.unit
def test_an_alert_retries_at_its_fixed_interval_however_long_it_failed(tmp_path):
    uplink, outbox = make_uplink(tmp_path, backoff_min=0.2, backoff_max=60.0, alert_retry=1.0)
    try:
        backoff = Backoff(0.2, 60.0)
        alert = [uplink._retry_delay(False, backoff, None) for _ in range(40)]
        assert alert == [1.0] * 40
        # The central's Retry-After is a floor, for alerts too.
        assert uplink._retry_delay(False, backoff, 7.5) == 7.5
        assert uplink._retry_delay(False, backoff, 0.2) == 1.0
        logs = [uplink._retry_delay(True, backoff, None) for _ in range(40)]
        assert logs[0] <= 0.2 and 30.0 <= logs[-1] <= 60.0, "logs back off to backoff_max"
    finally:
        outbox.close()


@pytest.mark.unit
def test_the_central_back_wakes_both_senders_but_not_a_retry_after(tmp_path):
    uplink, outbox = make_uplink(tmp_path)

    async def scenario() -> None:
        uplink._loop = asyncio.get_running_loop()
        alert_wake, log_wake = uplink._wake[EventClass.ALERT], uplink._wake[EventClass.LOG]
        alert = asyncio.create_task(uplink._sleep_unless_woken(alert_wake, 60.0, True))
        log = asyncio.create_task(uplink._sleep_unless_woken(log_wake, 60.0, False))
        told = asyncio.create_task(uplink._sleep_unless_woken(log_wake, 60.0, False, told=True))
        await asyncio.sleep(0)
        # From another thread, as CentralHealth may be fed from one.
        thread = threading.Thread(target=uplink.central_reachable)
        thread.start()
        thread.join()
        await asyncio.wait_for(asyncio.gather(alert, log), 5)
        await asyncio.sleep(0.01)
        assert not told.done(), "a Retry-After is waited out to the end"
        told.cancel()

    try:
        asyncio.run(scenario())
    finally:
        outbox.close()


@pytest.mark.unit
def test_failures_in_a_row_are_logged_sparingly():
    streak = Streak()
    loud = [n + 1 for n in range(300) if streak.failed()]
    assert loud == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert streak.ended()[0] == 300
    assert streak.failed(), "a new streak is logged at once"
