"""The shipped broker configuration, attacked: deploy/mosquitto.conf and deploy/mosquitto.acl on
a real Mosquitto, with a password file made by `mosquitto_passwd -b`.

- Anonymous clients and wrong passwords cannot connect, so they receive nothing.
- A device publishes only under its own id: device A cannot raise a press, a status or a last
  will as device B, nor reach the gateway through an adapter's topics under B's name, nor
  tell B's button that help is coming.
- A device reads only its own feedback, whatever filter it subscribes to.
- The gateway's account can do its whole job: the real gateway subscribes (its /healthz is
  200), a device's press reaches the real central, and the button gets its feedback.

Every refusal is checked on what arrives, not only on the broker's reason codes: a positive
control published after each attempt must arrive, and the attempt must not.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.helpers.secure_broker import Client, SecureBroker, clients
from tests.helpers.support import Gateway, refusal_tally, set_option, wait_for

pytestmark = pytest.mark.system

ROOT = "mashang/v1"
ACCOUNTS = {
    "mashang-gateway": "gw-pass-3b1f",
    "btn-a": "btn-a-pass-71c2",
    "btn-b": "btn-b-pass-0d9e",
    "gate-a": "gate-a-pass-55aa",
    "zigbee2mqtt": "z2m-pass-e4f0",
}
NOT_AUTHORIZED = 135
refused, count_refusals = refusal_tally("at the broker")


@pytest.fixture
def secure_broker(tmp_path: Path):
    broker = SecureBroker(tmp_path / "broker", ACCOUNTS)
    broker.start()
    yield broker
    broker.kill()


def events(device: str) -> str:
    return f"{ROOT}/buttons/{device}/events"


def feedback(device: str, kind: str = "buttons") -> str:
    return f"{ROOT}/{kind}/{device}/feedback"


def test_anonymous_and_wrong_passwords_get_nothing(secure_broker):
    port = secure_broker.port
    with clients(port, ACCOUNTS, "mashang-gateway", "btn-a") as (gateway, button):
        gateway.subscribe("#")
        for protocol in (mqtt.MQTTv5, mqtt.MQTTv311):
            for username, password in ((None, None), ("btn-a", "wrong"), ("nobody", "x")):
                intruder = Client(port, username, password, protocol=protocol)
                try:
                    assert not intruder.accepted, (username, protocol)
                    assert intruder.connack not in (None, 0)
                    refused.append(f"connect as {username or 'anonymous'} (MQTT {protocol})")
                finally:
                    intruder.close()
        # Anything published meanwhile reaches its rightful reader, and no one else connected.
        assert button.publish(events("btn-a"), json.dumps({"seq": 1})) == 0
        wait_for(lambda: gateway.got(events("btn-a")), 10, what="the control press")


def test_a_device_publishes_only_under_its_own_id(secure_broker, tmp_path: Path):
    port = secure_broker.port
    with clients(port, ACCOUNTS, "mashang-gateway", "btn-a", "btn-b", "gate-a") as (
        gateway, button_a, button_b, scanner_a,
    ):
        gateway.subscribe(f"{ROOT}/#", "zigbee2mqtt/#", "shellies/#", "+/events/rpc")
        button_b.subscribe(feedback("btn-b"))
        spoofs = [
            (button_a, events("btn-b"), {"seq": 1, "action": "long"}),
            (button_a, f"{ROOT}/buttons/btn-b/status", {"state": "offline"}),
            (button_a, f"{ROOT}/scanners/gate-a/scans", {"seq": 1, "code": "x"}),
            (scanner_a, f"{ROOT}/scanners/gate-b/scans", {"seq": 1, "code": "x"}),
            (scanner_a, events("btn-a"), {"seq": 1}),
            # "help is coming" on someone else's button
            (button_a, feedback("btn-b"), {"alert_id": "x", "state": "acknowledged"}),
            # the adapters' native topics, under another device's name
            (button_a, "zigbee2mqtt/btn-b", {"action": "single"}),
            (button_a, "shellies/btn-b/input_event/0", {"event": "L", "event_cnt": 1}),
            (button_a, "btn-b/events/rpc", {"method": "NotifyEvent"}),
            (button_a, f"{ROOT}/buttons/+/events", {"seq": 1}),
        ]
        for n, (client, topic, payload) in enumerate(spoofs):
            if "+" in topic:
                continue  # a wildcard is no topic to publish to: paho refuses it itself
            code = client.publish(topic, json.dumps({**payload, "spoof": n}))
            assert code == NOT_AUTHORIZED, f"{client.name} -> {topic}: PUBACK {code}"
            refused.append(f"{client.name} publishing to {topic}")
        # Controls, published after the attempts: each device's own topics work.
        assert button_a.publish(events("btn-a"), json.dumps({"seq": 2})) == 0
        assert scanner_a.publish(f"{ROOT}/scanners/gate-a/scans",
                                 json.dumps({"seq": 2, "code": "x"})) == 0
        assert gateway.publish(feedback("btn-b"), json.dumps({"state": "received"})) == 0
        wait_for(lambda: gateway.got(events("btn-a"))
                 and gateway.got(f"{ROOT}/scanners/gate-a/scans")
                 and button_b.got(feedback("btn-b")), 10, what="the controls")
        arrived = gateway.received + button_b.received
        assert not [m for m in arrived if b'"spoof"' in m[1]], "a spoofed message got through"
        assert button_b.got(feedback("btn-b")) == [json.dumps({"state": "received"}).encode()]

        # A last will under another device's name is not published either; the same will on
        # its own status is (the control).
        spoofed = die_with_will(port, gateway, "btn-a", f"{ROOT}/buttons/btn-b/status")
        own = die_with_will(port, gateway, "btn-a", f"{ROOT}/buttons/btn-a/status")

        def heard(marker: str) -> bool:
            return any(marker.encode() == payload for _, payload in gateway.received)

        # The broker handles disconnects in order: once the later, permitted will is out, the
        # earlier spoofed one would have been too.
        wait_for(lambda: heard(own), 10, what="the device's own last will")
        assert not heard(spoofed), "a last will under another device's name got through"
        refused.append("btn-a's last will on btn-b's status")


def die_with_will(port: int, watcher: Client, user: str, will_topic: str) -> str:
    """Connect as `user` with a last will on `will_topic` and die without a word (SIGKILL);
    returns the will's payload, for the caller to look for at the watcher."""
    marker = f"will-{len(watcher.received)}-{will_topic}"
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-u", user,
         "-P", ACCOUNTS[user], "-t", feedback(user), "-q", "1",
         "--will-topic", will_topic, "--will-qos", "1", "--will-payload", marker],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        assert sub.stdout is not None
        os.set_blocking(sub.stdout.fileno(), False)

        def connected() -> bool:
            # Once it prints a message of its subscription, its will is registered.
            watcher.publish(feedback(user), "ping")
            return bool(select.select([sub.stdout], [], [], 0.2)[0])

        wait_for(connected, 10, interval=0.0, what=f"{user} connected with a will")
    finally:
        sub.kill()
        sub.wait(10)
    return marker


def test_a_device_reads_only_its_own_feedback(secure_broker):
    port = secure_broker.port
    with clients(port, ACCOUNTS, "mashang-gateway", "btn-a", "btn-b") as (
        gateway, button_a, button_b,
    ):
        codes = button_a.subscribe(feedback("btn-b"), f"{ROOT}/#", "#", feedback("btn-a"),
                                   f"{ROOT}/scanners/+/feedback")
        button_b.subscribe(feedback("btn-b"))
        for topic in (feedback("btn-b"), feedback("gate-a", "scanners")):
            assert gateway.publish(topic, json.dumps({"secret": topic})) == 0
        assert button_b.publish(events("btn-b"), json.dumps({"seq": 1})) == 0
        # The gateway's account reads device topics; it cannot write them.
        assert gateway.publish(events("btn-b"), json.dumps({"seq": 2})) == NOT_AUTHORIZED
        refused.append(f"mashang-gateway publishing to {events('btn-b')}")
        gateway.publish(feedback("btn-a"), json.dumps({"state": "received"}))
        wait_for(lambda: button_a.got(feedback("btn-a")) and button_b.got(feedback("btn-b")),
                 10, what="each button's own feedback")
        assert button_a.topics() == {feedback("btn-a")}, button_a.topics()
        refused.extend(f"btn-a reading {topic}" for topic in
                       (feedback("btn-b"), events("btn-b"), feedback("gate-a", "scanners")))
        print(f"SUBACK codes for btn-a's filters: {codes}")


def test_the_gateway_account_does_its_whole_job(secure_broker, central, tmp_path: Path):
    gateway = Gateway(tmp_path / "gateway", secure_broker.port, central.url)
    set_option(gateway.config, "mqtt", "username", '"mashang-gateway"')
    set_option(gateway.config, "mqtt", "password", json.dumps(ACCOUNTS["mashang-gateway"]))
    gateway.start()  # healthy means subscribed: every subscription was granted
    assert "refused" not in gateway.output(), gateway.output()[-2000:]
    try:
        with clients(secure_broker.port, ACCOUNTS, "btn-a") as (button,):
            button.subscribe(feedback("btn-a"))
            assert button.publish(events("btn-a"), json.dumps({"seq": 9, "action": "long"})) == 0
            wait_for(lambda: [e for e in central.events() if e["device_id"] == "btn-a"], 30,
                     what="the press at the central")
            wait_for(lambda: button.got(feedback("btn-a")), 30, what="feedback to the button")
            assert json.loads(button.got(feedback("btn-a"))[0])["state"] == "received"
    finally:
        gateway.kill()
