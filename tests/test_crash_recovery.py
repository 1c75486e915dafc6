"""The gateway dies mid-stream — SIGKILL, as a power cut would, or SIGTERM from its supervisor —
and is started again: every message's event reaches the central exactly once. A gateway stopped
while the central is away takes its outbox along to the next start."""

from __future__ import annotations

import json
import signal

import pytest

from edge.buffer.outbox import Outbox
from edge.gateway import OUTBOX_FILE
from tests.helpers.support import (
    device_topic,
    mosquitto_pub,
    outbox_depth,
    start_mosquitto_pub,
    wait_for,
)

pytestmark = pytest.mark.system

BUTTONS = [f"btn-{n:04d}" for n in range(8)]
MESSAGES = 2000
PRESS_TYPES = {"button.press", "button.repeat"}


def stream() -> dict[str, list[int]]:
    """Each button's share of the seqs 0..MESSAGES-1, every seq used once."""
    shares: dict[str, list[int]] = {device: [] for device in BUTTONS}
    for seq in range(MESSAGES):
        shares[BUTTONS[seq % len(BUTTONS)]].append(seq)
    return shares


def press_events(central) -> list[dict]:
    return [
        event
        for event in central.events()
        if event["type"] in PRESS_TYPES and event["device_id"] in BUTTONS
    ]


def open_outbox(gateway) -> Outbox:
    return Outbox(gateway.data_dir / OUTBOX_FILE, max_bytes=256 * 1024 * 1024, log_ttl=7 * 86400)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_every_message_arrives_once_after_the_gateway_dies_mid_stream(
    broker, central, make_gateway, tmp_path, how
):
    gateway = make_gateway(central.url)
    gateway.start()
    shares = stream()
    publishers = [
        start_mosquitto_pub(
            broker.port,
            device_topic(device),
            [json.dumps({"seq": seq, "action": "single"}) for seq in seqs],
            tmp_path,
        )
        for device, seqs in shares.items()
    ]
    try:
        arrived_before = len(
            wait_for(
                lambda: (found := press_events(central)) and len(found) >= 150 and found,
                what="the stream under way",
            )
        )
        assert gateway.proc is not None
        gateway.proc.send_signal(how)
        status = gateway.proc.wait(30)
        for publisher in publishers:
            output, _ = publisher.communicate(timeout=60)
            assert publisher.returncode == 0, output.decode(errors="replace")
    finally:
        for publisher in publishers:
            if publisher.poll() is None:
                publisher.kill()
    if how == signal.SIGTERM:
        assert status == 0, gateway.output()[-3000:]
    assert arrived_before < MESSAGES, "the stream was over before the gateway was stopped"

    gateway.start()
    wait_for(
        lambda: len(press_events(central)) >= MESSAGES,
        timeout=90,
        what=f"all {MESSAGES} presses after the restart",
    )

    events = press_events(central)
    by_seq: dict[int, list[dict]] = {}
    for event in events:
        by_seq.setdefault(event["data"]["seq"], []).append(event)
    missing = sorted(set(range(MESSAGES)) - set(by_seq))
    doubled = {seq: [e["id"] for e in found] for seq, found in by_seq.items() if len(found) > 1}
    assert not missing, f"{len(missing)} messages lost, e.g. seq {missing[:10]}"
    assert not doubled, f"{len(doubled)} messages arrived twice: {list(doubled.items())[:5]}"
    assert len(events) == MESSAGES
    assert len({event["id"] for event in events}) == MESSAGES
    for device, seqs in shares.items():
        assert {e["data"]["seq"] for e in events if e["device_id"] == device} == set(seqs)

    wait_for(
        lambda: outbox_depth(gateway.config) == {"alerts": 0, "logs": 0, "dead_letters": 0},
        what="an empty outbox",
    )
    assert gateway.terminate() == 0
    outbox = open_outbox(gateway)
    try:
        assert outbox.integrity_check() == "ok"
    finally:
        outbox.close()


def test_sigterm_keeps_the_outbox_and_a_restart_sends_it(broker, central, make_gateway, tmp_path):
    gateway = make_gateway(central.url)
    gateway.start()
    wait_for(lambda: central.events("gateway.started"), what="gateway.started at the central")
    central.terminate()

    presses = {device: [json.dumps({"seq": n}) for n in range(100)] for device in BUTTONS[:3]}
    statuses = [json.dumps({"state": "online", "battery": 80, "n": n}) for n in range(200)]
    for device, lines in presses.items():
        mosquitto_pub(broker.port, device_topic(device), lines, tmp_path)
    mosquitto_pub(broker.port, device_topic("btn-logs", "status"), statuses, tmp_path)
    wait_for(
        lambda: (depth := outbox_depth(gateway.config))["alerts"] >= 300 and depth["logs"] >= 200,
        what="everything committed to the outbox",
    )
    assert gateway.terminate() == 0

    # What the outbox held when the gateway stopped, as the operator's tool shows it.
    outbox = open_outbox(gateway)
    try:
        stats = outbox.stats()
        assert outbox.integrity_check() == "ok"
    finally:
        outbox.close()
    assert stats.alerts.events == 300
    assert stats.logs.events >= 200  # and the gateway's own logs
    assert stats.dead_letters == 0

    central.start()
    gateway.start()

    def arrived() -> tuple[set, set]:
        events = central.events()
        alerts = {(e["device_id"], e["data"]["seq"]) for e in events if e["type"] in PRESS_TYPES}
        logs = {e["data"]["n"] for e in events if e["device_id"] == "btn-logs"}
        return alerts, logs

    wait_for(
        lambda: (found := arrived()) and len(found[0]) >= 300 and len(found[1]) >= 200,
        what="the outbox sent after the restart",
    )
    alerts, logs = arrived()
    assert alerts == {(device, n) for device in presses for n in range(100)}
    assert logs == set(range(200))
    everything = central.events()
    assert len({e["id"] for e in everything}) == len(everything)
    wait_for(
        lambda: outbox_depth(gateway.config) == {"alerts": 0, "logs": 0, "dead_letters": 0},
        what="an empty outbox",
    )
    assert gateway.terminate() == 0
