"""The broker connection in a process of its own (edge.source.mqtt_process), and the bounded
hand-off that keeps a burst with the broker instead of in the gateway's memory.

Documented behaviour under test (docs/architecture.md, "Processes" and "Memory"):
- A burst far larger than the hand-off's bound is committed whole, and every message of it
  acked: the session the gateway leaves behind holds nothing more for it.
- The MQTT process killed: the gateway says so and exits 1 for its supervisor; started again,
  every press reaches the central exactly once.
- The gateway killed: its MQTT process ends too, and does not hold on to the session.
- A stop signal sent to both processes at once (systemd stops the whole unit): the gateway
  still acks what it committed, exits 0, and loses nothing.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.buffer.outbox import EventClass, Outbox
from edge.config import RulesSection
from edge.events import now
from edge.gateway import OUTBOX_FILE
from edge.source.messages import parse_message
from edge.source.mqtt import Received
from edge.transform.pipeline import Pipeline
from edge.transform.rules import Rules
from mashang.registry import Registry
from tests.helpers.support import (
    GATEWAY_ID,
    device_topic,
    outbox_depth,
    publish,
    start_mosquitto_pub,
    wait_for,
)

ROOT = "mashang/v1"
DEAD_CENTRAL = "http://127.0.0.1:9"


def mqtt_process(gateway) -> int:
    """The pid of the gateway's MQTT process."""
    pid = gateway.proc.pid
    children = wait_for(lambda: Path(f"/proc/{pid}/task/{pid}/children").read_text().split(),
                        10, what="the MQTT process")
    return int(children[0])


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def left_in_session(broker_port: int, client_id: str) -> list[str]:
    """Resume the gateway's session as it does (MQTT 5, clean_start=False), publish a marker
    to one of its topics, and return what the broker delivered before the marker: whatever
    the gateway left unacked."""
    marker = device_topic("btn-marker", "status")
    before: list[str] = []
    done = threading.Event()

    def on_message(client, userdata, message) -> None:
        if message.topic == marker:
            done.set()
        elif not done.is_set():
            before.append(message.topic)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    client.on_message = on_message
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", broker_port, clean_start=False, properties=properties)
    client.loop_start()
    try:
        publish(broker_port, [(marker, b'{"state": "online"}')])
        assert done.wait(20), "the marker never came: the session was lost"
    finally:
        client.disconnect()
        client.loop_stop()
    return before


@pytest.mark.unit
def test_the_hand_off_holds_its_bound_and_a_larger_burst_is_all_committed(tmp_path: Path):
    outbox = Outbox(tmp_path / "outbox.sqlite", max_bytes=1 << 26, log_ttl=3600.0)
    acked: list[int] = []
    pipeline = Pipeline(Rules(RulesSection(), Registry(), None), outbox, ack=acked.append,
                        on_committed=lambda events: None, handoff_bound=50, max_group=20)
    burst = [Received((parse_message(ROOT, device_topic(f"btn-{n % 7}", "status"),
                                     b'{"state": "online", "seq": %d}' % n, now()),), n)
             for n in range(1, 1001)]
    handed: list[int] = []

    def source() -> None:
        for start in range(0, len(burst), 10):
            assert pipeline.submit(burst[start:start + 10])
            handed.append(10)

    feeding = threading.Thread(target=source, daemon=True)
    feeding.start()
    wait_for(lambda: sum(handed) >= 50, 10, what="the hand-off to fill")
    feeding.join(0.5)
    assert feeding.is_alive() and sum(handed) == 50, "the source waits at the bound"
    pipeline.start()
    feeding.join(60)
    pipeline.stop()
    try:
        assert not feeding.is_alive()
        assert acked[-1] == 1000 and acked == sorted(acked)
        assert outbox.pending(EventClass.LOG) == 1000
    finally:
        outbox.close()


@pytest.mark.system
def test_a_burst_larger_than_the_hand_off_is_all_committed_and_acked(
        broker, make_gateway, tmp_path: Path):
    gateway = make_gateway(DEAD_CENTRAL)  # nothing leaves the outbox: its depth is the count
    gateway.start()
    publishers = [
        start_mosquitto_pub(broker.port, device_topic(f"btn-burst-{n}", "status"),
                            [json.dumps({"state": "online", "seq": seq}) for seq in range(1500)],
                            tmp_path / "load")
        for n in range(4)
    ]
    for publisher in publishers:
        output, _ = publisher.communicate(timeout=120)
        assert publisher.returncode == 0, output.decode(errors="replace")
    wait_for(lambda: outbox_depth(gateway.config)["logs"] >= 6001, 120,
             what="the burst in the outbox")  # and the gateway.started log
    assert gateway.terminate() == 0
    assert left_in_session(broker.port, f"mashang-gateway-{GATEWAY_ID}") == []
    outbox = Outbox(gateway.data_dir / OUTBOX_FILE, max_bytes=1 << 28, log_ttl=7 * 86400)
    try:
        assert outbox.pending(EventClass.LOG) == 6001
    finally:
        outbox.close()


def presses_at(central, devices: set[str]) -> list[dict]:
    return [e for e in central.events("button.press") if e["device_id"] in devices]


@pytest.mark.system
def test_the_mqtt_process_dying_stops_the_gateway_and_loses_nothing(
        broker, central, make_gateway):
    gateway = make_gateway(central.url)
    gateway.start()
    first = {f"btn-before-{n}" for n in range(5)}
    publish(broker.port, [(device_topic(d), b'{"seq": 1}') for d in sorted(first)])
    wait_for(lambda: len(presses_at(central, first)) == 5, 20, what="the first presses")
    mqtt_pid = mqtt_process(gateway)
    os.kill(mqtt_pid, signal.SIGKILL)
    assert gateway.proc is not None
    assert gateway.proc.wait(30) == 1, "a supervisor must see the failure"
    assert "the MQTT process ended" in gateway.output()
    # Published while no gateway listens: the broker keeps them for the session.
    later = {f"btn-after-{n}" for n in range(5)}
    publish(broker.port, [(device_topic(d), b'{"seq": 1}') for d in sorted(later)])
    gateway.start()
    wait_for(lambda: len(presses_at(central, later)) == 5, 30, what="the later presses")
    assert sorted(e["device_id"] for e in presses_at(central, first | later)) == sorted(
        first | later), "each press exactly once"


@pytest.mark.system
def test_the_gateway_dying_ends_its_mqtt_process(broker, central, make_gateway):
    gateway = make_gateway(central.url)
    gateway.start()
    mqtt_pid = mqtt_process(gateway)
    gateway.kill()  # SIGKILL: no clean-up code runs in the gateway
    wait_for(lambda: not alive(mqtt_pid), 10, what="the MQTT process to end with it")
    gateway.start()
    publish(broker.port, [(device_topic("btn-next"), b'{"seq": 1}')])
    wait_for(lambda: presses_at(central, {"btn-next"}), 20, what="a press after the restart")
    assert "took our session" not in gateway.output()


@pytest.mark.system
def test_a_stop_signal_to_both_processes_still_acks_what_was_committed(
        broker, make_gateway, tmp_path: Path):
    gateway = make_gateway(DEAD_CENTRAL)
    gateway.start()
    devices = [f"btn-stop-{n}" for n in range(3)]
    publish(broker.port, [(device_topic(d, "status"), b'{"state": "online"}') for d in devices])
    wait_for(lambda: outbox_depth(gateway.config)["logs"] >= 4, 20, what="the messages")
    mqtt_pid = mqtt_process(gateway)
    os.kill(mqtt_pid, signal.SIGTERM)  # as systemd signals every process of the unit
    assert gateway.terminate() == 0
    assert not alive(mqtt_pid)
    assert "the MQTT process ended" not in gateway.output()
    assert left_in_session(broker.port, f"mashang-gateway-{GATEWAY_ID}") == []
