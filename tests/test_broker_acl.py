"""The shipped broker configuration, attacked: deploy/mosquitto.conf and deploy/mosquitto.acl on
a real Mosquitto, with a password file made by `mosquitto_passwd -b`.

- Anonymous clients and wrong passwords cannot connect, so they receive nothing.
- A device publishes only under its own id: device A cannot raise a press, a status or a last
  will as device B, nor reach the gateway through an adapter's topics under B's name, nor
  tell B's button that help is coming.
- A device reads only its own feedback, whatever filter it subscribes to.
- Each account has exactly its role (edge/tools/broker_acl.py renders the blocks): a scanner
  cannot publish as a button, not even under its own id, nor a button as a scanner; the
  Zigbee2MQTT bridge publishes only zigbee2mqtt/...; a Shelly only under its own prefix; the
  gateway's account publishes feedback and no device topic at all; each reads only its own.
- The gateway's account can do its whole job: the real gateway subscribes (its /healthz is
  200), presses of a Mashang button, a Zigbee button and a Shelly reach the real central, and
  the button gets its feedback.

Every refusal is checked on what arrives, not only on the broker's reason codes: a positive
control published after each attempt must arrive, and the attempt must not. The broker's ACL
is deploy/mosquitto.acl as shipped, the test's device blocks as rendered, and one account of
the test's own, `acl-observer`, that reads every topic: what it does not see was not published.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.helpers.secure_broker import Client, SecureBroker, clients
from tests.helpers.support import Gateway, refusal_tally, set_option, wait_for

pytestmark = pytest.mark.system

ROOT = "mashang/v1"
GEN1 = "shellybutton1-E8DB84AA1234"
GEN2 = "shellyplusi4-a8032ab12345"
OBSERVER = "acl-observer"
ACCOUNTS = {
    "mashang-gateway": "gw-pass-3b1f",
    "btn-a": "btn-a-pass-71c2",
    "btn-b": "btn-b-pass-0d9e",
    "gate-a": "gate-a-pass-55aa",
    "zigbee2mqtt": "z2m-pass-e4f0",
    GEN1: "gen1-pass-9c3d",
    GEN2: "gen2-pass-27b8",
    OBSERVER: "observer-pass-6e01",
}
# The device accounts' roles: their blocks, as rendered, go after the shipped file's gateway
# and Zigbee2MQTT blocks.
DEVICES = [
    ("button", "btn-a"),
    ("button", "btn-b"),
    ("scanner", "gate-a"),
    ("shelly-gen1", GEN1),
    ("shelly-gen2", GEN2),
]
# Test only: the account that sees whatever the broker accepted.
OBSERVER_ACL = f"\n# -- test only: reads every topic\nuser {OBSERVER}\ntopic read #\n"
NOT_AUTHORIZED = 135
refused, count_refusals = refusal_tally("at the broker")


@pytest.fixture
def secure_broker(tmp_path: Path):
    broker = SecureBroker(tmp_path / "broker", ACCOUNTS, DEVICES, OBSERVER_ACL)
    broker.start()
    yield broker
    broker.kill()


def events(device: str) -> str:
    return f"{ROOT}/buttons/{device}/events"


def feedback(device: str, kind: str = "buttons") -> str:
    return f"{ROOT}/{kind}/{device}/feedback"


def status(device: str, kind: str = "buttons") -> str:
    return f"{ROOT}/{kind}/{device}/status"


def scans(device: str) -> str:
    return f"{ROOT}/scanners/{device}/scans"


# A topic each account may publish on: its control after each of its refused attempts.
OWN = {
    "btn-a": events("btn-a"),
    "btn-b": events("btn-b"),
    "gate-a": scans("gate-a"),
    "zigbee2mqtt": "zigbee2mqtt/btn-zb",
    GEN1: f"shellies/{GEN1}/input_event/0",
    GEN2: f"{GEN2}/events/rpc",
    "mashang-gateway": feedback("btn-a"),
}


def refuse_each(observer: Client, attempts: list[tuple[Client, str]]) -> None:
    """Each attempt is refused ("not authorized") and does not arrive at the observer, which
    reads every topic. After each, the same client publishes on a topic of its own and that
    control must arrive: the broker handles one client's messages in order, so an attempt it
    had let through would have reached the observer first."""
    for client, topic in attempts:
        marker = uuid.uuid4().hex
        spoof = json.dumps({"spoof": marker}).encode()
        code = client.publish(topic, spoof)
        assert code == NOT_AUTHORIZED, f"{client.name} -> {topic}: PUBACK {code}"
        own, control = OWN[client.name], json.dumps({"control": marker}).encode()
        assert client.publish(own, control) == 0, f"{client.name}'s control on {own}"

        def arrived(own: str = own, control: bytes = control) -> bool:
            return control in observer.got(own)

        wait_for(arrived, 10, what=f"{client.name}'s control after {topic}")
        assert spoof not in [payload for _, payload in observer.received], (
            f"{client.name}'s publish to {topic} got through")
        refused.append(f"{client.name} publishing to {topic}")


def nothing_spoofed_arrived(*watchers: Client) -> None:
    for watcher in watchers:
        leaked = [m for m in watcher.received if b'"spoof"' in m[1]]
        assert not leaked, f"{watcher.name} received {leaked}"


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


def test_a_scanner_cannot_publish_as_a_button(secure_broker):
    with clients(secure_broker.port, ACCOUNTS, OBSERVER, "gate-a") as (observer, scanner):
        observer.subscribe("#")
        refuse_each(observer, [
            # under its own id, which a role-blind `pattern` line would have granted
            (scanner, events("gate-a")),
            (scanner, status("gate-a")),
            # as another button
            (scanner, events("btn-a")),
            (scanner, status("btn-a")),
            # nor through the adapters' native topics under its own name
            (scanner, "zigbee2mqtt/gate-a"),
            (scanner, "shellies/gate-a/input_event/0"),
            (scanner, "gate-a/events/rpc"),
        ])
        assert scanner.publish(status("gate-a", "scanners"), json.dumps({"state": "online"})) == 0
        wait_for(lambda: observer.got(status("gate-a", "scanners")), 10, what="its own status")
        nothing_spoofed_arrived(observer)


def test_a_button_cannot_publish_on_scanner_topics(secure_broker):
    with clients(secure_broker.port, ACCOUNTS, OBSERVER, "btn-a") as (observer, button):
        observer.subscribe("#")
        refuse_each(observer, [
            (button, scans("btn-a")),
            (button, status("btn-a", "scanners")),
            (button, scans("gate-a")),
            (button, status("gate-a", "scanners")),
            # its own feedback is the gateway's to write ("help is coming")
            (button, feedback("btn-a")),
            # the adapters' native topics under its own name
            (button, "zigbee2mqtt/btn-a"),
            (button, "shellies/btn-a/input_event/0"),
            (button, "btn-a/events/rpc"),
            (button, "btn-a/online"),
        ])
        assert button.publish(status("btn-a"), json.dumps({"state": "online"})) == 0
        wait_for(lambda: observer.got(status("btn-a")), 10, what="its own status")
        nothing_spoofed_arrived(observer)


def test_the_zigbee2mqtt_bridge_publishes_only_its_native_topics(secure_broker):
    with clients(secure_broker.port, ACCOUNTS, OBSERVER, "zigbee2mqtt") as (observer, bridge):
        observer.subscribe("#")
        refuse_each(observer, [
            (bridge, events("zigbee2mqtt")),
            (bridge, events("btn-a")),
            (bridge, status("btn-a")),
            (bridge, scans("gate-a")),
            (bridge, feedback("btn-a")),
            (bridge, f"shellies/{GEN1}/input_event/0"),
            (bridge, "shellies/zigbee2mqtt/input_event/0"),
            (bridge, f"{GEN2}/events/rpc"),
            (bridge, "zigbee2mqtt2/btn-zb"),  # no prefix match beyond its own level
        ])
        for topic in ("zigbee2mqtt/btn-zb/availability", "zigbee2mqtt/bridge/state"):
            assert bridge.publish(topic, "online") == 0
            wait_for(lambda topic=topic: observer.got(topic), 10, what=topic)
        nothing_spoofed_arrived(observer)


def test_the_gateway_account_publishes_feedback_and_commands_and_no_device_topic(
        secure_broker):
    with clients(secure_broker.port, ACCOUNTS, OBSERVER, "mashang-gateway", "btn-b", "gate-a",
                 "zigbee2mqtt", GEN2) as (observer, gateway, button_b, scanner, bridge, gen2):
        observer.subscribe("#")
        for device in (button_b, scanner, bridge, gen2):
            device.subscribe("#")  # each would see an attempt on its own topics
        refuse_each(observer, [
            (gateway, events("btn-a")),
            (gateway, status("btn-a")),
            (gateway, events("mashang-gateway")),
            (gateway, status("mashang-gateway")),
            (gateway, scans("gate-a")),
            (gateway, status("gate-a", "scanners")),
            (gateway, scans("mashang-gateway")),
            (gateway, "zigbee2mqtt/btn-a"),
            (gateway, "zigbee2mqtt/bridge/request/permit_join"),
            (gateway, f"shellies/{GEN1}/input_event/0"),
            (gateway, f"shellies/{GEN1}/online"),
            (gateway, f"{GEN2}/events/rpc"),
            (gateway, f"{GEN2}/online"),
            (gateway, f"{GEN2}/status/switch:0"),  # a Shelly's state is the Shelly's word
        ])
        # Controls: its feedback reaches the button and the scanner, and the commands of
        # the indicators in a resident's flat (docs/indicators.md) reach those devices.
        assert gateway.publish(feedback("btn-b"), json.dumps({"state": "received"})) == 0
        assert gateway.publish(feedback("gate-a", "scanners"), json.dumps({"beep": "ok"})) == 0
        commands = [("zigbee2mqtt/hall-light/set", {"state": "ON"}),
                    (f"shellies/{GEN1}/relay/0/command", "on"),
                    (f"{GEN2}/rpc", {"id": 1, "method": "Switch.Set"}),
                    (f"{ROOT}/speakers/spk-1/play", {"command": "play", "clip": "received"})]
        for topic, body in commands:
            payload = body if isinstance(body, str) else json.dumps(body)
            assert gateway.publish(topic, payload) == 0, topic
        wait_for(lambda: button_b.got(feedback("btn-b"))
                 and scanner.got(feedback("gate-a", "scanners"))
                 and all(observer.got(topic) for topic, _ in commands), 10,
                 what="the feedback and the indicators' commands")
        nothing_spoofed_arrived(observer, button_b, scanner, bridge, gen2)


def test_a_shelly_publishes_only_under_its_own_prefix(secure_broker):
    with clients(secure_broker.port, ACCOUNTS, OBSERVER, GEN1, GEN2) as (observer, gen1, gen2):
        observer.subscribe("#")
        refuse_each(observer, [
            (gen1, "shellies/shellybutton1-000000000000/input_event/0"),
            (gen1, f"{GEN1}/events/rpc"),  # Gen2 topics under its id are no Gen1's
            (gen1, f"shellies/{GEN1}-x/input_event/0"),
            (gen1, "shellies/announce"),
            (gen1, events(GEN1)),
            (gen1, f"zigbee2mqtt/{GEN1}"),
            (gen2, "shellyplusi4-000000000000/events/rpc"),
            (gen2, f"{GEN2}-x/events/rpc"),
            (gen2, f"shellies/{GEN2}/input_event/0"),
            (gen2, f"shellies/{GEN1}/input_event/0"),
            (gen2, events(GEN2)),
            (gen2, status("btn-a")),
            (gen2, f"zigbee2mqtt/{GEN2}"),
        ])
        # Controls: each one's own native topics.
        own = [(gen1, f"shellies/{GEN1}/online"), (gen1, f"shellies/{GEN1}/sensor/battery"),
               (gen2, f"{GEN2}/online"), (gen2, f"{GEN2}/rpc"), (gen2, f"{GEN2}/status/input:0")]
        for client, topic in own:
            assert client.publish(topic, "true") == 0, topic
        wait_for(lambda: all(observer.got(topic) for _, topic in own), 10, what="their own")
        nothing_spoofed_arrived(observer)


def test_each_account_reads_only_its_own_topics(secure_broker):
    readers = {  # account -> what it may read
        "btn-a": [feedback("btn-a")],
        "gate-a": [feedback("gate-a", "scanners")],
        "zigbee2mqtt": ["zigbee2mqtt/#"],
        GEN1: [f"shellies/{GEN1}/#"],
        GEN2: [f"{GEN2}/#"],
    }
    names = ["mashang-gateway", "btn-b", *readers]
    with clients(secure_broker.port, ACCOUNTS, *names) as opened:
        by_name = {client.name: client for client in opened}
        for name in readers:
            by_name[name].subscribe("#")
        # Everyone's topics, each from its rightful publisher and accepted; every publish
        # waits for its PUBACK, so the broker has routed each before the next.
        published = [
            ("btn-a", events("btn-a")), ("btn-a", status("btn-a")), ("btn-b", events("btn-b")),
            ("gate-a", scans("gate-a")), ("gate-a", status("gate-a", "scanners")),
            ("mashang-gateway", feedback("btn-a")), ("mashang-gateway", feedback("btn-b")),
            ("mashang-gateway", feedback("gate-a", "scanners")),
            # feedback of the other role under a reader's own id: not its to read
            ("mashang-gateway", feedback("gate-a")),
            ("mashang-gateway", feedback("btn-a", "scanners")),
            ("zigbee2mqtt", "zigbee2mqtt/btn-zb"), ("zigbee2mqtt", "zigbee2mqtt/bridge/state"),
            (GEN1, f"shellies/{GEN1}/input_event/0"), (GEN1, f"shellies/{GEN1}/online"),
            (GEN2, f"{GEN2}/events/rpc"), (GEN2, f"{GEN2}/online"), (GEN2, f"{GEN2}/rpc"),
        ]
        for name, topic in published:
            assert by_name[name].publish(topic, json.dumps({"from": name})) == 0, (name, topic)
        # Controls, last: one message each reader may read; once it has it, it has whatever
        # of the above the broker would have given it.
        last = {"btn-a": ("mashang-gateway", feedback("btn-a")),
                "gate-a": ("mashang-gateway", feedback("gate-a", "scanners")),
                "zigbee2mqtt": ("zigbee2mqtt", "zigbee2mqtt/bridge/state"),
                GEN1: (GEN1, f"shellies/{GEN1}/online"), GEN2: (GEN2, f"{GEN2}/online")}
        for name, topic in last.values():
            assert by_name[name].publish(topic, "last") == 0
        for reader, (_, topic) in last.items():
            wait_for(lambda r=reader, t=topic: b"last" in by_name[r].got(t), 10,
                     what=f"{reader}'s control")
        for reader, allowed in readers.items():
            got = by_name[reader].topics()
            assert all(any(mqtt.topic_matches_sub(f, t) for f in allowed) for t in got), (
                reader, got)
            refused.extend(f"{reader} reading {topic}" for _, topic in published
                           if not any(mqtt.topic_matches_sub(f, topic) for f in allowed))


def test_the_gateway_account_does_its_whole_job(secure_broker, central, tmp_path: Path):
    gateway = Gateway(tmp_path / "gateway", secure_broker.port, central.url)
    set_option(gateway.config, "mqtt", "username", '"mashang-gateway"')
    set_option(gateway.config, "mqtt", "password", json.dumps(ACCOUNTS["mashang-gateway"]))
    gateway.start()  # healthy means subscribed: every subscription was granted
    assert "refused" not in gateway.output(), gateway.output()[-2000:]
    try:
        with clients(secure_broker.port, ACCOUNTS, "btn-a", "zigbee2mqtt", GEN2) as (
            button, bridge, gen2,
        ):
            button.subscribe(feedback("btn-a"))
            assert button.publish(events("btn-a"), json.dumps({"seq": 9, "action": "long"})) == 0
            # The adapters' native topics, read through the gateway's account too.
            assert bridge.publish("zigbee2mqtt/btn-zb", json.dumps({"action": "single"})) == 0
            assert gen2.publish(f"{GEN2}/events/rpc", json.dumps({
                "src": GEN2, "dst": f"{GEN2}/events", "method": "NotifyEvent",
                "params": {"ts": 1631266595.43, "events": [
                    {"component": "input:0", "id": 0, "event": "single_push",
                     "ts": 1631266595.43}]},
            })) == 0
            for device in ("btn-a", "btn-zb", GEN2):
                wait_for(lambda device=device: [e for e in central.events()
                                                if e["device_id"] == device], 30,
                         what=f"{device}'s press at the central")
            wait_for(lambda: button.got(feedback("btn-a")), 30, what="feedback to the button")
            assert json.loads(button.got(feedback("btn-a"))[0])["state"] == "received"
    finally:
        gateway.kill()
