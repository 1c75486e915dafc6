"""Crash consistency: SIGKILL the gateway at many moments under a steady stream, restart it each
time, and prove that every message the broker took reached the central exactly once.

Real processes throughout: Mosquitto (persistent session), the real central behind a real
HTTP hop (tests/helpers/central_proxy.py) and the gateway, killed with SIGKILL (no clean-up
code runs).
A paho publisher sends button presses (alerts) and scans (logs) all along, across the kills.
Each round picks the next moment in turn:

    random          any moment of a running gateway
    wal_grew        the instant an outbox commit lands in the WAL file: the events are saved,
                    the broker has not yet had its PUBACK, so it will deliver them again
    startup         while starting: opening the outbox, connecting, taking redeliveries
    before_forward  an uplink request in flight, not yet at the central
    after_central   the central has stored the batch and answered 200; the gateway has not
                    seen the answer, so the events are still in its outbox (sent again later)
    after_answer    the 200 written back to the gateway, killed at once (racing the delete)

After every kill, `PRAGMA integrity_check` on the outbox must say ok. At the end the checker
(tests/helpers/crash_checker.py) maps each published message's seq to the event id PROTOCOL §2 fixes
for it and requires every one at the central exactly once, with no strays. The central must
also have answered "duplicates" at least once: the after_central window was really crossed.

MASHANG_CRASH_ROUNDS sets the number of rounds (default 30; 200 for the long run);
MASHANG_CRASH_SEED replays a run's random choices (the seed is printed).
"""

from __future__ import annotations

import json
import os
import queue
import random
import threading
import time
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge.gateway import OUTBOX_FILE
from tests.helpers.central_proxy import CentralProxy
from tests.helpers.crash_checker import Published, check_exactly_once, integrity
from tests.helpers.support import Gateway, outbox_depth, wait_for

pytestmark = pytest.mark.system

ROUNDS = int(os.environ.get("MASHANG_CRASH_ROUNDS", "30"))
MODES = ["random", "wal_grew", "startup", "before_forward", "after_central", "after_answer"]
RATE = 120.0  # messages per second, presses and scans alternating
ROOT = "mashang/v1"


class SteadyPublisher(threading.Thread):
    """Publishes presses and scans at a steady rate with QoS 1 until stopped; `acked()` is
    every message the broker acknowledged, which is every message the gateway must deliver."""

    def __init__(self, port: int, rate: float, seed: int) -> None:
        super().__init__(name="steady-publisher", daemon=True)
        self._rng = random.Random(seed)
        self._interval = 1.0 / rate
        self._stopping = threading.Event()
        self._bursts: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._sent: list[tuple[mqtt.MQTTMessageInfo, Published]] = []
        self._seq: Counter[str] = Counter()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=f"crash-publisher-{os.getpid()}")
        self._client.max_inflight_messages_set(200)
        self._client.max_queued_messages_set(0)
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def burst(self, count: int) -> None:
        self._bursts.put(count)

    def stop(self) -> list[Published]:
        self._stopping.set()
        self.join(30)
        for info, _ in self._sent:
            info.wait_for_publish(30)
        self._client.disconnect()
        self._client.loop_stop()
        return self.acked()

    def acked(self) -> list[Published]:
        return [message for info, message in self._sent if info.is_published()]

    def run(self) -> None:
        n = 0
        while not self._stopping.is_set():
            count = 1
            while not self._bursts.empty():
                count += self._bursts.get()
            for _ in range(count):
                self._publish_one(n)
                n += 1
            self._stopping.wait(self._interval)

    def _publish_one(self, n: int) -> None:
        if n % 2 == 0:
            device = f"btn-{n // 2 % 5:04d}"
            topic = f"{ROOT}/buttons/{device}/events"
            fields = {"action": self._rng.choice(["single", "double", "long"])}
        else:
            device = f"gate-{n // 2 % 3}"
            topic = f"{ROOT}/scanners/{device}/scans"
            fields = {"code": f"HTTPS://M.DDP.CN/S/NOT0A0TOKEN{n}", "purpose": "checkin"}
        self._seq[device] += 1
        payload = json.dumps({"seq": self._seq[device], **fields}).encode()
        info = self._client.publish(topic, payload, qos=1)
        self._sent.append((info, Published(topic, payload)))


def kill_when_wal_grows(gateway: Gateway, wal: Path, limit: float = 10.0) -> bool:
    """SIGKILL the instant the outbox's WAL file is written (a commit landing)."""
    def stamp() -> int:
        try:
            return wal.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    before = stamp()
    deadline = time.monotonic() + limit
    while stamp() == before:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    gateway.kill()
    return True


def test_sigkill_at_any_moment_loses_nothing_and_doubles_nothing(broker, central, make_gateway,
                                                                capsys):
    seed = int(os.environ.get("MASHANG_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    kills: Counter[str] = Counter()
    with CentralProxy(central.url) as proxy:
        gateway = make_gateway(proxy.url, sections={"rules": "guard_window = 5.0"})
        outbox = gateway.data_dir / OUTBOX_FILE
        wal = outbox.with_name(OUTBOX_FILE + "-wal")
        gateway.start()  # the broker keeps a session for it from now on
        publisher = SteadyPublisher(broker.port, RATE, seed)
        publisher.start()
        try:
            for number in range(ROUNDS):
                mode = MODES[number % len(MODES)]
                if not gateway.running():
                    gateway.start(wait_ready=mode != "startup")
                if mode == "random":
                    time.sleep(rng.uniform(0.0, 0.5))
                    gateway.kill()
                elif mode == "wal_grew":
                    publisher.burst(rng.randrange(20, 200))
                    assert kill_when_wal_grows(gateway, wal), "no commit within 10 s"
                elif mode == "startup":
                    time.sleep(rng.uniform(0.0, 0.8))
                    gateway.kill()
                else:
                    armed = proxy.arm(mode, gateway.kill)
                    assert armed.fired.wait(20), (
                        f"seed {seed}, round {number}: {mode}: no uplink request within 20 s\n"
                        + gateway.output()[-3000:]
                    )
                assert not gateway.running()
                kills[mode] += 1
                assert integrity(outbox) == "ok", f"round {number} ({mode}): outbox damaged"
        finally:
            proxy.disarm()
            published = publisher.stop()

        if not gateway.running():
            gateway.start()

        def settled():
            verdict = check_exactly_once(published, central.events())
            return verdict if not verdict.missing else None

        try:
            verdict = wait_for(settled, 120, interval=0.5, what="every message at the central")
        except AssertionError:
            verdict = check_exactly_once(published, central.events())
            raise AssertionError(f"seed {seed}: {verdict.explain()}") from None
        assert verdict.ok, f"seed {seed}: {verdict.explain()}"
        wait_for(lambda: outbox_depth(gateway.config) == {"alerts": 0, "logs": 0,
                                                           "dead_letters": 0},
                 60, interval=0.5, what="an empty outbox with no dead letters")
        assert proxy.duplicates_seen() > 0, "the central never saw a batch twice"
        gateway.terminate()
        assert integrity(outbox) == "ok"
    with capsys.disabled():
        print(f"\ncrash rounds survived: {sum(kills.values())} {dict(kills)}; seed {seed}; "
              f"{len(published)} messages published, {verdict.held} device events at the "
              f"central, 0 lost, 0 doubled; central answered {proxy.duplicates_seen()} "
              "duplicates")
