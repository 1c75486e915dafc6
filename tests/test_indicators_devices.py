"""Indicators through a real Mosquitto (docs/indicators.md): the registry at the central links
a button to a light, a plug, two sirens, Shelly lights and relays and a LAN speaker; a press,
a butler's acknowledge and resolve make the real gateway send each device its own command,
checked topic by topic and byte by byte against the device's documented format:

- Zigbee2MQTT `set`:
  https://www.zigbee2mqtt.io/guide/usage/mqtt_topics_and_messages.html#zigbee2mqtt-friendly-name-set
  (lights' `state`/`brightness`/`color`, https://www.zigbee2mqtt.io/guide/usage/exposes.html#light;
  the IAS `warning` of https://www.zigbee2mqtt.io/devices/HS2WD-E.html; the Neo siren's
  `melody`/`volume`/`duration`/`alarm`, https://www.zigbee2mqtt.io/devices/NAS-AB02B2.html)
- Shelly Gen1 RGBW2 `color/0/set` and relay `relay/0/command`:
  https://shelly-api-docs.shelly.cloud/gen1/#shelly-rgbw2-color-mqtt ,
  https://shelly-api-docs.shelly.cloud/gen1/#shelly1-shelly1pm-mqtt
- Shelly Gen2 RPC over MQTT (`{prefix}/rpc`, a request frame with `id`, `src`, `method`,
  `params`): https://shelly-api-docs.shelly.cloud/gen2/General/RPCChannels#mqtt ,
  https://shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/Light#lightset ,
  https://shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/Switch#switchset

It also measures (prints, does not assert) press → indicator command and acknowledge →
indicator command through the broker.
"""

from __future__ import annotations

import copy
import json
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edge.registry_store import RegistryStore
from mashang.registry import Registry
from tests.helpers.console import (
    REGISTRY,
    ConsoleClient,
    WebhookReceiver,
    start_central,
    wait_alert,
)
from tests.helpers.e2e import wait_gateway_registry
from tests.helpers.support import GATEWAY_ID, Broker, Central, free_port, publish, wait_for

pytestmark = pytest.mark.system

ROOT = "mashang/v1"
AMBER = {"state": "ON", "color": {"hex": "#FFA500"}, "brightness": 200}
GREEN = {"state": "ON", "color": {"hex": "#00FF00"}, "brightness": 200}
SHELLY_AMBER = {"mode": "color", "red": 255, "green": 165, "blue": 0, "white": 0, "gain": 80,
                "turn": "on"}
SHELLY_GREEN = {**SHELLY_AMBER, "red": 0, "green": 255}
IAS_CHIME = {"warning": {"mode": "emergency", "level": "low", "strobe": False, "duration": 1}}
NEO_CHIME = {"melody": 5, "volume": "low", "duration": 2, "alarm": True}
SRC = f"mashang-{GATEWAY_ID}"

INDICATORS = [
    {"kind": "zigbee2mqtt-light", "device": "1201/hall light"},
    {"kind": "zigbee2mqtt-plug", "device": "1201-plug"},
    {"kind": "zigbee2mqtt-siren", "device": "1201-siren"},
    {"kind": "zigbee2mqtt-melody-siren", "device": "1201-neo"},
    {"kind": "shelly-gen1-rgbw", "device": "shellyrgbw2-A4CF12F45401"},
    {"kind": "shelly-gen1-relay", "device": "shelly1-A4CF12F45402"},
    {"kind": "shelly-gen2-light", "device": "shellyplusdimmer-a8032ab12303"},
    {"kind": "shelly-gen2-switch", "device": "shellyplus1-a8032ab12304"},
    {"kind": "speaker", "device": "spk-1201"},
]
LIGHT_SET = "zigbee2mqtt/1201/hall light/set"
COMMAND_FILTERS = ["zigbee2mqtt/+/set", "zigbee2mqtt/+/+/set", "shellies/+/color/+/set",
                   "shellies/+/relay/+/command", "+/rpc", f"{ROOT}/speakers/+/play",
                   f"{ROOT}/buttons/+/feedback"]
# Quick enough for a test: put back 2 s after the resolve (a minute by default).
SECTIONS = {f"indicators.kinds.{i['kind']}": "restore_after = 2.0" for i in INDICATORS}


def registry_with(indicators: list[dict[str, Any]]) -> dict[str, Any]:
    registry = copy.deepcopy(REGISTRY)
    registry["buttons"][0]["indicators"] = indicators  # btn-0007, 张秀英, 3号楼 1201
    return registry


@dataclass(frozen=True)
class Heard:
    topic: str
    payload: Any
    at: float


class Devices:
    """A real MQTT client subscribed where the devices listen, recording what they are told."""

    def __init__(self, port: int) -> None:
        self.heard: list[Heard] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-devices")
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        self._client.subscribe([(topic, 1) for topic in COMMAND_FILTERS])
        assert self._subscribed.wait(10)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        text = bytes(msg.payload).decode()
        try:
            payload: Any = json.loads(text)
        except ValueError:
            payload = text
        with self._lock:
            self.heard.append(Heard(msg.topic, payload, time.time()))

    def at(self, topic: str, since: float = 0.0) -> list[Heard]:
        with self._lock:
            return [h for h in self.heard if h.topic == topic and h.at >= since]

    def first(self, topic: str, since: float, what: Any = None) -> Heard:
        def found() -> Heard | None:
            return next((h for h in self.at(topic, since) if what in (None, h.payload)), None)

        return wait_for(found, 20, what=f"{what or 'a command'} on {topic}")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def devices(broker: Broker) -> Iterator[Devices]:
    listening = Devices(broker.port)
    yield listening
    listening.close()


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    central = start_central(tmp_path / "central", registry=registry_with(INDICATORS),
                            accounts=("b-wang",))
    yield central
    central.kill()


def started(make_gateway, central_url: str, sections: dict[str, str]):
    gateway = make_gateway(central_url, sections=sections)
    gateway.start()
    wait_gateway_registry(gateway, ["btn-0007"])
    wait_for(lambda: "watching" in gateway.output(), 20, what="the indicators' state topics")
    time.sleep(0.5)  # the SUBACK, and the retained states it brings
    return gateway


def rpc(heard: Heard, method: str, **params: object) -> None:
    assert heard.payload.pop("id") > 0
    assert heard.payload == {"src": SRC, "method": method, "params": params}


def test_every_kind_hears_its_own_documented_command_through_mosquitto(
    broker: Broker, central: Central, devices: Devices, make_gateway
) -> None:
    # The devices' states from before the press: a Shelly keeps its relay's retained on the
    # broker; Zigbee2MQTT (retain off, its default) answers the gateway's `get`, as it does.
    retained = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-retained")
    retained.connect("127.0.0.1", broker.port)
    retained.loop_start()
    retained.publish("shellies/shelly1-A4CF12F45402/relay/0", "on", qos=1,
                     retain=True).wait_for_publish(10)
    states = {
        "1201/hall light": {"state": "ON", "brightness": 90, "color_mode": "color_temp",
                            "color_temp": 370, "linkquality": 120},
        "1201-plug": {"state": "ON", "power": 11.5, "linkquality": 90},
    }
    asked: list[tuple[str, Any]] = []
    listening = threading.Event()

    def answer(client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        name = msg.topic.removeprefix("zigbee2mqtt/").removesuffix("/get")
        asked.append((name, json.loads(msg.payload)))
        client.publish(f"zigbee2mqtt/{name}", json.dumps(states[name]), qos=1)

    retained.on_message = answer
    retained.on_subscribe = lambda *args: listening.set()
    retained.subscribe([("zigbee2mqtt/+/get", 1), ("zigbee2mqtt/+/+/get", 1)])
    assert listening.wait(10)
    try:
        started(make_gateway, central.url, SECTIONS)
        wait_for(lambda: sorted(asked) == sorted((name, {"state": ""}) for name in states), 20,
                 what="the gateway's get")
    finally:
        retained.disconnect()
        retained.loop_stop()

    pressed = time.time()
    publish(broker.port, [(f"{ROOT}/buttons/btn-0007/events", '{"seq": 1, "action": "long"}')])
    received = {
        LIGHT_SET: AMBER,
        "zigbee2mqtt/1201-plug/set": {"state": "ON"},
        "zigbee2mqtt/1201-siren/set": IAS_CHIME,
        "zigbee2mqtt/1201-neo/set": NEO_CHIME,
        "shellies/shellyrgbw2-A4CF12F45401/color/0/set": SHELLY_AMBER,
        "shellies/shelly1-A4CF12F45402/relay/0/command": "on",
        f"{ROOT}/speakers/spk-1201/play": {"command": "play", "clip": "received"},
    }
    for topic, payload in received.items():
        assert devices.first(topic, pressed).payload == payload, topic
    rpc(devices.first("shellyplusdimmer-a8032ab12303/rpc", pressed), "Light.Set", id=0,
        on=True, brightness=100)
    rpc(devices.first("shellyplus1-a8032ab12304/rpc", pressed), "Switch.Set", id=0, on=True)
    # The blink: a second later the light is off, and on again after another.
    off = devices.first(LIGHT_SET, pressed, {"state": "OFF"})
    assert 0.8 <= off.at - devices.first(LIGHT_SET, pressed).at <= 2.0
    assert devices.at(f"{ROOT}/buttons/btn-0007/feedback")[0].payload["state"] == "received"

    alert = wait_alert(central, "btn-0007")
    butler = ConsoleClient(central)
    assert butler.login("b-wang").status == 200
    acknowledged = time.time()
    assert butler.act(alert["id"], "acknowledge").status == 200
    coming = {
        LIGHT_SET: GREEN,
        "zigbee2mqtt/1201-plug/set": {"state": "ON"},
        "shellies/shellyrgbw2-A4CF12F45401/color/0/set": SHELLY_GREEN,
        "shellies/shelly1-A4CF12F45402/relay/0/command": "on",
        f"{ROOT}/speakers/spk-1201/play": {"command": "play", "clip": "coming"},
    }
    first_coming = {topic: devices.first(topic, acknowledged, payload).at
                    for topic, payload in coming.items()}
    early = [h.payload for topic in coming for h in devices.at(topic, pressed)
             if h.at < acknowledged]
    for said_coming in (GREEN, SHELLY_GREEN, coming[f"{ROOT}/speakers/spk-1201/play"]):
        assert said_coming not in early, "coming, before a butler acknowledged"
    for siren, chime in (("zigbee2mqtt/1201-siren/set", IAS_CHIME),
                         ("zigbee2mqtt/1201-neo/set", NEO_CHIME)):
        wait_for(lambda s=siren: len(devices.at(s, acknowledged)) == 2, 20,
                 what=f"two chimes on {siren}")
        assert [h.payload for h in devices.at(siren, acknowledged)] == [chime, chime]
    time.sleep(2.5)  # the relays' slower blink would have toggled by now: it must not
    for topic, payload in coming.items():
        assert [h.payload for h in devices.at(topic, first_coming[topic])] == [payload], topic

    resolved = time.time()
    assert butler.act(alert["id"], "resolve").status == 200
    wait_for(lambda: devices.at(f"{ROOT}/buttons/btn-0007/feedback", resolved), 20,
             what="resolved at the button")
    # Two seconds later (restore_after here) each is back as it was: the light warm white at
    # 90, the relay and the plug on; the others, never heard from, off.
    restored = {
        LIGHT_SET: {"state": "ON", "brightness": 90, "color_temp": 370},
        "zigbee2mqtt/1201-plug/set": {"state": "ON"},
        "shellies/shelly1-A4CF12F45402/relay/0/command": "on",
        "shellies/shellyrgbw2-A4CF12F45401/color/0/set": {"turn": "off"},
    }
    for topic, payload in restored.items():
        heard = devices.first(topic, resolved, payload)
        assert heard.at - resolved >= 1.5, f"{topic}: put back before its time"
        assert [h.payload for h in devices.at(topic, resolved)] == [payload], topic
    rpc(devices.first("shellyplusdimmer-a8032ab12303/rpc", resolved), "Light.Set", id=0,
        on=False)
    rpc(devices.first("shellyplus1-a8032ab12304/rpc", resolved), "Switch.Set", id=0, on=False)
    for chimes in ("zigbee2mqtt/1201-siren/set", "zigbee2mqtt/1201-neo/set",
                   f"{ROOT}/speakers/spk-1201/play"):
        assert devices.at(chimes, resolved) == [], f"{chimes}: nothing to put back"
    feedback = [h.payload["state"] for h in devices.at(f"{ROOT}/buttons/btn-0007/feedback")]
    assert feedback == ["received", "acknowledged", "resolved"]


def test_a_zigbee2mqtt_press_and_a_butler_acknowledge_turn_the_linked_light(
    broker: Broker, tmp_path: Path, devices: Devices, make_gateway
) -> None:
    """An Aqara button on Zigbee2MQTT, its light on Zigbee2MQTT too: amber at the press, green
    when the butler acknowledges. Five rounds, to measure through the real broker."""
    central = start_central(tmp_path / "central-z2m", accounts=("b-wang",),
                            registry=registry_with([INDICATORS[0]]))
    try:
        adapters = '[adapters.devices."1201/bedside button"]\ndevice_id = "btn-0007"\n'
        started(make_gateway, central.url, {"adapters": adapters})
        butler = ConsoleClient(central)
        assert butler.login("b-wang").status == 200
        to_received, to_acknowledged = [], []
        for round_ in range(5):
            pressed = time.time()
            # Zigbee2MQTT's own state message of an Aqara WXKG11LM pressed once
            # (https://www.zigbee2mqtt.io/devices/WXKG11LM.html, `action`).
            state = {"action": "single", "battery": 91, "linkquality": 112, "voltage": 3005}
            publish(broker.port, [("zigbee2mqtt/1201/bedside button", json.dumps(state))])
            amber = devices.first(LIGHT_SET, pressed, AMBER)
            to_received.append(amber.at - pressed)
            alert = wait_alert(central, "btn-0007",
                               lambda a: a["state"] in ("raised", "notified"))
            clicked = time.time()
            assert butler.act(alert["id"], "acknowledge").status == 200
            green = devices.first(LIGHT_SET, clicked, GREEN)
            to_acknowledged.append(green.at - clicked)
            before = [h.payload for h in devices.at(LIGHT_SET, pressed) if h.at < clicked]
            assert GREEN not in before, f"round {round_}: green before the acknowledge"
            resolving = time.time()
            assert butler.act(alert["id"], "resolve").status == 200
            # The gateway closes the emergency once it hears: the next press is a new one.
            devices.first(f"{ROOT}/buttons/btn-0007/feedback", resolving,
                          {"alert_id": alert["gateway_alert_id"], "state": "resolved",
                           "by": "王管家"})
    finally:
        central.kill()
    ms = [value * 1000 for value in to_received]
    ack_ms = [value * 1000 for value in to_acknowledged]
    print(f"\nindicator latency through Mosquitto (ms, 5 rounds): press→received command "
          f"median {statistics.median(ms):.0f} max {max(ms):.0f}; acknowledge→command median "
          f"{statistics.median(ack_ms):.0f} max {max(ack_ms):.0f}")


def test_with_the_central_out_of_reach_the_light_says_received_and_nothing_more(
    broker: Broker, devices: Devices, make_gateway
) -> None:
    """The central does not answer; the duty room hears of the press through the local
    fallback; the light and the speaker say "received", and nothing more, for as long as that
    lasts (here: 8 s, past the blink and the duty room's post)."""
    duty = WebhookReceiver()
    try:
        gateway = make_gateway(f"http://127.0.0.1:{free_port()}", sections={
            "fallback": f'after = 1.0\nwebhooks = ["{duty.url}/duty"]\n'})
        gateway.data_dir.mkdir(parents=True, exist_ok=True)
        registry = Registry.model_validate(registry_with([INDICATORS[0], INDICATORS[-1]]))
        RegistryStore(gateway.data_dir / "registry.json").replace(registry)
        gateway.start()
        wait_for(lambda: "watching" in gateway.output(), 20, what="the indicators")
        pressed = time.time()
        publish(broker.port, [(f"{ROOT}/buttons/btn-0007/events", '{"seq": 1}')])
        wait_for(lambda: duty.at("/duty"), 30, what="the press at the duty room")
        time.sleep(8)
        light = [h.payload for h in devices.at(LIGHT_SET, pressed)]
        assert light[0] == AMBER and len(light) >= 5, light
        assert {json.dumps(p) for p in light} == {json.dumps(AMBER), json.dumps({"state": "OFF"})}
        clips = [h.payload["clip"] for h in devices.at(f"{ROOT}/speakers/spk-1201/play")]
        assert clips == ["received"]
        states = [h.payload["state"] for h in devices.at(f"{ROOT}/buttons/btn-0007/feedback")]
        assert states == ["received"]
    finally:
        duty.close()
