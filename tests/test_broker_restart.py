"""The broker is killed and restarted on the same port under the running gateway: the gateway
reconnects, subscribes again, and loses nothing that was published before."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.helpers.support import device_topic, get_json, mosquitto_pub, wait_for

pytestmark = pytest.mark.system

PRESS_TYPES = {"button.press", "button.repeat"}


def presses_of(central, devices: set[str]) -> dict[tuple[str, int], list[str]]:
    """(device, seq) → the ids of the events the central holds for that press."""
    found: dict[tuple[str, int], list[str]] = {}
    for event in central.events():
        if event["type"] in PRESS_TYPES and event["device_id"] in devices:
            found.setdefault((event["device_id"], event["data"]["seq"]), []).append(event["id"])
    return found


def publish_presses(broker, devices: list[str], seqs: range, folder) -> set[tuple[str, int]]:
    for device in devices:
        lines = [json.dumps({"seq": seq}) for seq in seqs]
        mosquitto_pub(broker.port, device_topic(device), lines, folder)
    return {(device, seq) for device in devices for seq in seqs}


def persisting(broker) -> None:
    """Make sure the broker really saves its state. Started as root, Mosquitto drops to the
    `mosquitto` user, which cannot write in the test's folder: persistence then fails with
    "Permission denied" in its log. Staying root (`user root`) keeps it working."""
    conf = broker.folder / "mosquitto.conf"
    text = conf.read_text()
    if os.geteuid() == 0 and not any(line.startswith("user ") for line in text.splitlines()):
        broker.kill()
        conf.write_text(text + "user root\n")
        broker.start()
    database = broker.folder / "mosquitto.db"
    wait_for(database.exists, what=f"mosquitto saving its state to {database}")


def healthy(gateway) -> bool:
    return get_json(f"http://127.0.0.1:{gateway.http_port}/healthz") is not None


def test_messages_queued_in_the_broker_survive_its_restart(broker, central, make_gateway, tmp_path):
    persisting(broker)
    gateway = make_gateway(central.url)
    gateway.start()
    devices = [f"btn-q{n}" for n in range(4)]
    before = publish_presses(broker, devices, range(0, 50), tmp_path)
    wait_for(lambda: set(presses_of(central, set(devices))) >= before, what="the first presses")

    # The gateway stalls (not reading from the broker); presses pile up in the broker for it.
    assert gateway.proc is not None
    os.kill(gateway.proc.pid, signal.SIGSTOP)
    try:
        queued = publish_presses(broker, devices, range(50, 200), tmp_path)
        # Every publisher has its PUBACKs: the next save of the broker's state holds them all.
        published = time.time()
        # Mosquitto writes its state every autosave_interval: wait until it has these too.
        database = broker.folder / "mosquitto.db"
        wait_for(
            lambda: database.exists() and database.stat().st_mtime > published + 0.1,
            what="mosquitto saving the queued presses",
        )
        broker.kill()
        broker.start()
    finally:
        os.kill(gateway.proc.pid, signal.SIGCONT)

    gateway.wait_healthy()
    after = publish_presses(broker, devices, range(200, 260), tmp_path)
    expected = before | queued | after
    wait_for(
        lambda: set(presses_of(central, set(devices))) >= expected,
        timeout=60,
        what="every press, queued before the restart or published after it",
    )
    found = presses_of(central, set(devices))
    assert set(found) == expected
    doubled = {key: ids for key, ids in found.items() if len(ids) > 1}
    assert not doubled, f"presses that became two events: {list(doubled.items())[:5]}"
    assert gateway.running()


def test_the_gateway_subscribes_again_to_a_broker_that_lost_its_state(
    broker, central, make_gateway, tmp_path
):
    gateway = make_gateway(central.url)
    gateway.start()
    devices = ["btn-r0", "btn-r1"]
    before = publish_presses(broker, devices, range(0, 20), tmp_path)
    wait_for(lambda: set(presses_of(central, set(devices))) >= before, what="the first presses")

    broker.kill()
    wait_for(lambda: not healthy(gateway), what="the gateway noticing the broker is gone")
    # Restarted with nothing of its past: no session, no subscription for the gateway.
    (broker.folder / "mosquitto.db").unlink(missing_ok=True)
    broker.start()
    wait_for(lambda: healthy(gateway), what="the gateway subscribed again")

    after = publish_presses(broker, devices, range(20, 120), tmp_path)
    wait_for(
        lambda: set(presses_of(central, set(devices))) >= before | after,
        timeout=60,
        what="the presses published after the restart",
    )
    found = presses_of(central, set(devices))
    assert set(found) == before | after
    assert all(len(ids) == 1 for ids in found.values())

    # And once more: every reconnect renews the subscriptions.
    broker.kill()
    wait_for(lambda: not healthy(gateway), what="the gateway noticing the second restart")
    (broker.folder / "mosquitto.db").unlink(missing_ok=True)
    broker.start()
    wait_for(lambda: healthy(gateway), what="the gateway subscribed a second time")
    last = publish_presses(broker, devices, range(120, 140), tmp_path)
    wait_for(
        lambda: set(presses_of(central, set(devices))) >= before | after | last,
        what="the presses after the second restart",
    )
    assert gateway.running()
