"""Indicators (docs/indicators.md): a button's lights, plugs, sirens and speakers, driven from
its feedback states in-process, with a clock and a scheduler the test moves (no sleeps, no
broker). What reaches a device is checked topic by topic and byte by byte against the formats
its project documents; the same formats go through a real Mosquitto in
tests/test_indicators_devices.py."""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edge.config import GatewayConfig, MqttSection
from edge.downlink.feedback import Feedback
from edge.downlink.indicator_config import IndicatorsSection
from edge.downlink.indicators import Due, Indicators, TimerThread
from edge.source import link
from edge.source.adapters import AdaptersSection
from edge.source.mqtt import Ingest, Received
from edge.source.mqtt_process import uncovered
from mashang.config import parse_toml
from mashang.registry import Button, Indicator, Registry, Resident
from mashang.topics import CLIPS

pytestmark = pytest.mark.unit

ROOT = "mashang/v1"
REPO = Path(__file__).resolve().parent.parent
AMBER = {"state": "ON", "color": {"hex": "#FFA500"}, "brightness": 200}
GREEN = {"state": "ON", "color": {"hex": "#00FF00"}, "brightness": 200}
OFF = {"state": "OFF"}
LIGHT_SET = "zigbee2mqtt/hall-light/set"


# -- a clock and a scheduler the test moves ----------------------------------------------------


class ManualTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self._due: list[Due] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    def call_later(self, delay: float, action: Callable[[], None]) -> Due:
        due = Due(self.now + delay, next(self._seq), action)
        heapq.heappush(self._due, due)
        return due

    def advance(self, seconds: float) -> None:
        until = self.now + seconds
        while self._due and self._due[0].when <= until:
            due = heapq.heappop(self._due)
            if not due.cancelled:
                self.now = due.when
                due.action()
        self.now = until


@dataclass
class Sent:
    topic: str
    payload: Any
    at: float


class Devices:
    """What the gateway published, as the devices would read it."""

    def __init__(self, time: ManualTime) -> None:
        self.time = time
        self.sent: list[Sent] = []

    def __call__(self, topic: str, payload: bytes) -> None:
        text = payload.decode()
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        self.sent.append(Sent(topic, value, self.time.now))

    def at(self, topic: str) -> list[Any]:
        return [item.payload for item in self.sent if item.topic == topic]

    def take(self) -> list[tuple[str, Any]]:
        taken = [(item.topic, item.payload) for item in self.sent]
        self.sent.clear()
        return taken


def registry(*indicators: Indicator, device_id: str = "btn-0007") -> Registry:
    return Registry(buttons=[Button(
        device_id=device_id, indicators=list(indicators),
        resident=Resident(name="张秀英", building="B3", room="1201"),
    )])


LIGHT = Indicator(kind="zigbee2mqtt-light", device="hall-light")


@dataclass
class Rig:
    time: ManualTime
    devices: Devices
    indicators: Indicators
    feedback: Feedback
    watched: list[str]
    observe: Callable[[str, bytes], None] | None

    def press(self, alert_id: str = "a-1", device_id: str = "btn-0007") -> None:
        """What the gateway does right after a press is committed."""
        self.feedback.button(device_id, alert_id, "received")

    def central(self, state: str, alert_id: str = "a-1", device_id: str = "btn-0007") -> None:
        """What the downlink does with the central's `feedback` command."""
        self.feedback.button(device_id, alert_id, state, "王管家")

    def light(self) -> list[Any]:
        return self.devices.at(LIGHT_SET)


def rig(*links: Indicator, config: IndicatorsSection | None = None,
        publish: Callable[[str, bytes], None] | None = None) -> Rig:
    time = ManualTime()
    devices = Devices(time)
    watched: list[str] = []
    observers: list[Callable[[str, bytes], None]] = []

    def watch(topics: list[str], observe: Callable[[str, bytes], None]) -> None:
        watched[:] = topics
        observers[:] = [observe]

    def publish_all(topic: str, payload: bytes) -> None:
        (publish or devices)(topic, payload)

    indicators = Indicators(
        config or IndicatorsSection(), registry(*(links or (LIGHT,))), publish=publish_all,
        watch=watch, topic_root=ROOT, zigbee2mqtt_base="zigbee2mqtt", gateway_id="gw-test",
        clock=time.clock, scheduler=time,
    )
    feedback = Feedback(publish_all, ROOT, indicators)
    devices.take()  # the newly linked devices asked for their states (see its own test)
    built = Rig(time, devices, indicators, feedback, watched, None)
    built.observe = observers[0] if observers else None
    return built


def without_button_feedback(sent: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(topic, payload) for topic, payload in sent if not topic.startswith(ROOT + "/buttons")]


# -- a Zigbee2MQTT light --------------------------------------------------------------------


def test_received_is_a_slow_amber_blink_that_settles_amber() -> None:
    r = rig()
    r.press()
    # https://www.zigbee2mqtt.io/guide/usage/mqtt_topics_and_messages.html#zigbee2mqtt-friendly-name-set
    assert r.light() == [AMBER]
    r.time.advance(1.0)
    assert r.light() == [AMBER, OFF]
    r.time.advance(1.0)
    assert r.light() == [AMBER, OFF, AMBER]
    r.time.advance(600.0)
    steps = r.light()
    assert len(steps) == 301, "a blink of 1 s on, 1 s off for five minutes"
    assert steps[-1] == AMBER, "then it stays amber: still received"
    assert set(map(json.dumps, steps)) == {json.dumps(AMBER), json.dumps(OFF)}


def test_acknowledged_is_steady_green_and_ends_the_blink() -> None:
    r = rig()
    r.press()
    r.time.advance(3.0)
    r.central("acknowledged")
    assert r.light()[-1] == GREEN
    count = len(r.light())
    r.time.advance(600.0)
    assert len(r.light()) == count, "steady: nothing more is sent"


def test_resolved_stays_green_a_minute_then_the_light_is_as_it_was() -> None:
    r = rig()
    assert r.watched == ["zigbee2mqtt/hall-light"]
    assert r.observe is not None
    # The light's state as Zigbee2MQTT publishes it, before the press: warm white, dimmed.
    before = {"state": "ON", "brightness": 90, "color_mode": "color_temp", "color_temp": 370,
              "color": {"x": 0.4599, "y": 0.4106}, "linkquality": 120}
    r.observe("zigbee2mqtt/hall-light", json.dumps(before).encode())
    r.press()
    # Zigbee2MQTT echoes our own commands on the same topic: never taken for "before".
    r.observe("zigbee2mqtt/hall-light", json.dumps({**AMBER, "color_mode": "xy"}).encode())
    r.central("acknowledged")
    r.central("resolved")
    assert r.light()[-1] == GREEN, "resolved: still green, for a minute"
    r.time.advance(59.0)
    assert r.light()[-1] == GREEN
    r.time.advance(1.0)
    assert r.light()[-1] == {"state": "ON", "brightness": 90, "color_temp": 370}
    r.time.advance(3600.0)
    assert r.light()[-1] == {"state": "ON", "brightness": 90, "color_temp": 370}


@pytest.mark.parametrize(("before", "restored"), [
    ({"state": "OFF", "brightness": 254}, {"state": "OFF"}),
    ({"state": "ON", "brightness": 254, "color_mode": "xy", "color": {"x": 0.7, "y": 0.3}},
     {"state": "ON", "brightness": 254, "color": {"x": 0.7, "y": 0.3}}),
    ({"state": "ON", "brightness": 10, "color_mode": "hs",
      "color": {"hue": 240, "saturation": 100, "x": 0.1, "y": 0.1}},
     {"state": "ON", "brightness": 10, "color": {"hue": 240, "saturation": 100}}),
    ({"state": "ON"}, {"state": "ON"}),
])
def test_the_light_gets_back_its_state_brightness_and_colour(before, restored) -> None:
    r = rig()
    assert r.observe is not None
    r.observe("zigbee2mqtt/hall-light", json.dumps(before).encode())
    r.press()
    r.central("resolved")
    r.time.advance(60.0)
    assert r.light()[-1] == restored


def test_a_light_the_gateway_never_heard_from_is_turned_off() -> None:
    r = rig()
    assert r.observe is not None
    r.observe("zigbee2mqtt/hall-light", b"not json")
    r.observe("zigbee2mqtt/hall-light", b'{"linkquality": 80}')  # no state: not a state
    r.press()
    r.central("acknowledged")
    r.central("resolved")
    r.time.advance(60.0)
    assert r.light()[-1] == OFF


def test_a_new_press_during_the_minute_after_resolved_shows_received_again() -> None:
    r = rig()
    r.press("a-1")
    r.central("acknowledged", "a-1")
    r.central("resolved", "a-1")
    r.time.advance(30.0)
    r.press("a-2")
    assert r.light()[-1] == AMBER
    r.time.advance(60.0)
    assert r.light()[-1] in (AMBER, OFF), "still blinking: a-2 is not resolved"
    assert GREEN not in r.light()[3:]


# -- never more than the central reached ----------------------------------------------------


def test_without_the_central_the_indicator_says_received_and_nothing_more() -> None:
    """The central out of reach: the fallback posts to the duty room, no command comes back.
    Only the press's "received" ever reaches the indicators, for hours."""
    links = (LIGHT, Indicator(kind="speaker", device="spk-1201"),
             Indicator(kind="zigbee2mqtt-siren", device="hall-siren"))
    r = rig(*links)
    r.press()
    for _ in range(12):
        r.time.advance(600.0)
        r.press()  # the resident presses again and again: a repeat of the same alert
    sent = without_button_feedback(r.devices.take())
    assert {payload["clip"] for topic, payload in sent if "speakers" in topic} == {"received"}
    assert GREEN not in [payload for topic, payload in sent if topic == LIGHT_SET]
    sirens = [payload for topic, payload in sent if topic == "zigbee2mqtt/hall-siren/set"]
    assert len(sirens) == 13, "one chime for each press, never the two of 'coming'"


def test_with_two_alerts_the_indicator_shows_the_one_nobody_acknowledged() -> None:
    r = rig()
    r.press("a-1")
    r.press("a-2")  # another button's alert, or the guard window closed: a second alert
    r.central("acknowledged", "a-1")
    assert r.light()[-1] != GREEN
    r.central("acknowledged", "a-2")
    assert r.light()[-1] == GREEN
    r.central("resolved", "a-1")
    r.time.advance(120.0)
    assert r.light()[-1] == GREEN, "a-2 is open: not put back"
    r.central("resolved", "a-2")
    r.time.advance(60.0)
    assert r.light()[-1] == OFF


Step = tuple[str, str]  # (what happens, alert id)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["press", "acknowledged", "resolved", "wait"]),
                          st.sampled_from(["a-1", "a-2", "a-3"])), max_size=30))
def test_acknowledged_is_never_shown_before_a_butler_acknowledged(steps: list[Step]) -> None:
    """Whatever happens in whatever order (presses, the central's commands, time), the light
    is green and the speaker says "coming" only while every open alert on them was
    acknowledged by a butler, and only after the command that said so."""
    r = rig(LIGHT, Indicator(kind="speaker", device="spk-1201"))
    reached: dict[str, str] = {}
    for what, alert in steps:
        before = len(r.devices.sent)
        if what == "press":
            r.press(alert)
            if reached.get(alert) in (None, "resolved"):
                reached[alert] = "received"
        elif what == "wait":
            r.time.advance(45.0)
        else:
            r.central(what, alert)
            if what == "resolved" or reached.get(alert) != "resolved":  # resolved is final
                reached[alert] = what
        open_states = {state for state in reached.values() if state != "resolved"}
        for item in r.devices.sent[before:]:
            said_coming = item.payload == GREEN or (
                isinstance(item.payload, dict) and item.payload.get("clip") == "coming")
            if said_coming:
                assert open_states == {"acknowledged"}, (steps, reached)


def test_a_duplicate_command_does_not_chime_again_but_a_press_hears_its_state_again() -> None:
    r = rig(Indicator(kind="speaker", device="spk-1201"))
    r.press()
    r.central("acknowledged")
    r.central("acknowledged")  # the central may send a command twice
    r.press()  # pressed again after the butler acknowledged: still coming
    clips = [payload["clip"] for payload in r.devices.at(f"{ROOT}/speakers/spk-1201/play")]
    assert clips == ["received", "coming", "coming"]


def test_an_indicator_trouble_never_reaches_the_press() -> None:
    def broken(topic: str, payload: bytes) -> None:
        if not topic.startswith(ROOT + "/buttons/"):
            raise OSError("broker gone")

    r = rig(publish=broken)
    r.press()  # does not raise
    r.central("acknowledged")
    r.time.advance(100.0)


def test_an_alert_no_resolve_ever_ends_is_let_go_after_release_after() -> None:
    r = rig(config=IndicatorsSection(release_after=3600.0))
    r.press()
    r.time.advance(3599.0)
    assert r.light()[-1] == AMBER
    r.time.advance(1.0)
    assert r.light()[-1] == OFF
    r.time.advance(100.0)
    assert r.light()[-1] == OFF


# -- every kind's native command ------------------------------------------------------------


ALL_KINDS = (
    LIGHT,
    Indicator(kind="zigbee2mqtt-plug", device="hall-plug"),
    Indicator(kind="zigbee2mqtt-siren", device="hall-siren"),
    Indicator(kind="zigbee2mqtt-melody-siren", device="neo-siren"),
    Indicator(kind="shelly-gen1-rgbw", device="shellyrgbw2-A4CF12F45401"),
    Indicator(kind="shelly-gen1-relay", device="shelly1-A4CF12F45402", channel=1),
    Indicator(kind="shelly-gen2-light", device="shellyplusdimmer-a8032ab12303"),
    Indicator(kind="shelly-gen2-switch", device="shellyplus1-a8032ab12304"),
    Indicator(kind="speaker", device="spk-1201"),
)
SHELLY_AMBER = {"mode": "color", "red": 255, "green": 165, "blue": 0, "white": 0, "gain": 80,
                "turn": "on"}
SHELLY_GREEN = {**SHELLY_AMBER, "red": 0, "green": 255}
IAS_CHIME = {"warning": {"mode": "emergency", "level": "low", "strobe": False, "duration": 1}}
NEO_CHIME = {"melody": 5, "volume": "low", "duration": 2, "alarm": True}


def rpc(method: str, **params: object) -> dict[str, Any]:
    return {"src": "mashang-gw-test", "method": method, "params": params}


def step(r: Rig) -> dict[str, Any]:
    """What the devices got since the last step, by topic (one command each), with the RPC
    request ids checked (distinct, increasing) and left out."""
    sent = without_button_feedback(r.devices.take())
    commands: dict[str, Any] = {}
    for topic, payload in sent:
        assert topic not in commands, f"two commands on {topic} in one step"
        if topic.endswith("/rpc"):
            request_id = payload.pop("id")
            assert isinstance(request_id, int) and request_id > r.devices.__dict__.get("rpc", 0)
            r.devices.__dict__["rpc"] = request_id
        commands[topic] = payload
    return commands


def test_each_kind_gets_its_own_documented_command_for_each_state() -> None:
    r = rig(*ALL_KINDS)
    r.press()
    # Documented formats: Zigbee2MQTT `set` (guide/usage/mqtt_topics_and_messages), the
    # IAS warning and Neo NAS-AB02B2 melody of their device pages, Shelly Gen1 RGBW2
    # color/set and relay/command (shelly-api-docs gen1), Gen2 RPC over MQTT (gen2
    # RPCChannels, Light.Set, Switch.Set).
    assert step(r) == {
        LIGHT_SET: AMBER,
        "zigbee2mqtt/hall-plug/set": {"state": "ON"},
        "zigbee2mqtt/hall-siren/set": IAS_CHIME,
        "zigbee2mqtt/neo-siren/set": NEO_CHIME,
        "shellies/shellyrgbw2-A4CF12F45401/color/0/set": SHELLY_AMBER,
        "shellies/shelly1-A4CF12F45402/relay/1/command": "on",
        "shellyplusdimmer-a8032ab12303/rpc": rpc("Light.Set", id=0, on=True, brightness=100),
        "shellyplus1-a8032ab12304/rpc": rpc("Switch.Set", id=0, on=True),
        f"{ROOT}/speakers/spk-1201/play": {"command": "play", "clip": "received"},
    }
    r.time.advance(1.0)  # the lights' blink: off after a second
    assert step(r) == {
        LIGHT_SET: OFF,
        "shellies/shellyrgbw2-A4CF12F45401/color/0/set": {"turn": "off"},
        "shellyplusdimmer-a8032ab12303/rpc": rpc("Light.Set", id=0, on=False),
    }
    r.time.advance(1.0)  # the lights back on, the relays' slower blink off
    assert step(r) == {
        LIGHT_SET: AMBER,
        "zigbee2mqtt/hall-plug/set": {"state": "OFF"},
        "shellies/shellyrgbw2-A4CF12F45401/color/0/set": SHELLY_AMBER,
        "shellies/shelly1-A4CF12F45402/relay/1/command": "off",
        "shellyplusdimmer-a8032ab12303/rpc": rpc("Light.Set", id=0, on=True, brightness=100),
        "shellyplus1-a8032ab12304/rpc": rpc("Switch.Set", id=0, on=False),
    }
    r.central("acknowledged")
    assert step(r) == {
        LIGHT_SET: GREEN,
        "zigbee2mqtt/hall-plug/set": {"state": "ON"},
        "zigbee2mqtt/hall-siren/set": IAS_CHIME,
        "zigbee2mqtt/neo-siren/set": NEO_CHIME,
        "shellies/shellyrgbw2-A4CF12F45401/color/0/set": SHELLY_GREEN,
        "shellies/shelly1-A4CF12F45402/relay/1/command": "on",
        "shellyplusdimmer-a8032ab12303/rpc": rpc("Light.Set", id=0, on=True, brightness=100),
        "shellyplus1-a8032ab12304/rpc": rpc("Switch.Set", id=0, on=True),
        f"{ROOT}/speakers/spk-1201/play": {"command": "play", "clip": "coming"},
    }
    r.time.advance(2.0)  # the IAS siren's second chime
    assert step(r) == {"zigbee2mqtt/hall-siren/set": IAS_CHIME}
    r.time.advance(1.0)  # the melody siren's, after its two-second melody
    assert step(r) == {"zigbee2mqtt/neo-siren/set": NEO_CHIME}
    r.time.advance(600.0)
    assert step(r) == {}
    r.central("resolved")
    assert step(r) == {}, "resolved: as it is, for a minute"
    r.time.advance(59.0)
    assert step(r) == {}
    r.time.advance(1.0)
    # Nothing reported a state: each is turned off; the chimes and the speaker need nothing.
    assert step(r) == {
        LIGHT_SET: OFF,
        "zigbee2mqtt/hall-plug/set": {"state": "OFF"},
        "shellies/shellyrgbw2-A4CF12F45401/color/0/set": {"turn": "off"},
        "shellies/shelly1-A4CF12F45402/relay/1/command": "off",
        "shellyplusdimmer-a8032ab12303/rpc": rpc("Light.Set", id=0, on=False),
        "shellyplus1-a8032ab12304/rpc": rpc("Switch.Set", id=0, on=False),
    }


def test_a_resolve_without_acknowledge_stops_the_blink_on_amber_never_green() -> None:
    r = rig()
    r.press()
    r.time.advance(1.0)
    assert r.light()[-1] == OFF
    r.central("resolved")
    assert r.light()[-1] == AMBER
    r.time.advance(60.0)
    assert r.light()[-1] == OFF
    assert GREEN not in r.light()
    r.central("acknowledged")  # late, after the resolve: the alert is over
    assert GREEN not in r.light()


def test_newly_linked_devices_are_asked_for_their_state_once() -> None:
    r = rig()
    r.indicators.use_registry(registry(*ALL_KINDS))
    # Zigbee2MQTT `get` (guide/usage/mqtt_topics_and_messages#zigbee2mqtt-friendly-name-get),
    # Shelly Gen1 `command` `update`, Gen2 `command` `status_update` (their MQTT pages).
    assert r.devices.take() == [
        ("zigbee2mqtt/hall-plug/get", {"state": ""}),
        ("shellies/shellyrgbw2-A4CF12F45401/command", "update"),
        ("shellies/shelly1-A4CF12F45402/command", "update"),
        ("shellyplusdimmer-a8032ab12303/command", "status_update"),
        ("shellyplus1-a8032ab12304/command", "status_update"),
    ], "the hall light was linked already"
    r.indicators.use_registry(registry(*ALL_KINDS))
    assert r.devices.take() == []


def test_shelly_states_are_read_back_and_restored() -> None:
    r = rig(*ALL_KINDS)
    assert sorted(r.watched) == [
        "shellies/shelly1-A4CF12F45402/relay/1",
        "shellies/shellyrgbw2-A4CF12F45401/color/0/status",
        "shellyplus1-a8032ab12304/status/switch:0",
        "shellyplusdimmer-a8032ab12303/status/light:0",
        "zigbee2mqtt/hall-light",
        "zigbee2mqtt/hall-plug",
    ]
    assert r.observe is not None
    # As the devices publish them (Gen1 relay and color status; Gen2 generic status).
    r.observe("shellies/shelly1-A4CF12F45402/relay/1", b"on")
    r.observe("shellies/shellyrgbw2-A4CF12F45401/color/0/status", json.dumps(
        {"ison": True, "mode": "color", "red": 10, "green": 20, "blue": 30, "white": 0,
         "gain": 40, "effect": 0, "power": 1.2, "overpower": False}).encode())
    r.observe("shellyplus1-a8032ab12304/status/switch:0",
              b'{"id":0,"source":"button","output":true,"apower":8.2}')
    r.observe("shellyplusdimmer-a8032ab12303/status/light:0",
              b'{"id":0,"source":"UI","output":true,"brightness":35}')
    r.observe("zigbee2mqtt/hall-plug", b'{"state":"ON","power":12}')
    r.press()
    r.central("resolved")
    r.devices.take()
    r.time.advance(60.0)
    restored = dict(without_button_feedback(r.devices.take()))
    assert restored["shellies/shelly1-A4CF12F45402/relay/1/command"] == "on"
    assert restored["shellies/shellyrgbw2-A4CF12F45401/color/0/set"] == {
        "mode": "color", "red": 10, "green": 20, "blue": 30, "white": 0, "gain": 40,
        "turn": "on"}
    assert restored["shellyplus1-a8032ab12304/rpc"]["params"] == {"id": 0, "on": True}
    assert restored["shellyplusdimmer-a8032ab12303/rpc"]["params"] == {
        "id": 0, "on": True, "brightness": 35}
    assert restored["zigbee2mqtt/hall-plug/set"] == {"state": "ON"}
    assert restored[LIGHT_SET] == OFF  # never heard from


# -- the registry and the configuration -----------------------------------------------------


def test_a_registry_replace_moves_the_links_and_the_watched_topics() -> None:
    r = rig()
    desk = Indicator(kind="zigbee2mqtt-light", device="desk-lamp")
    r.press("a-1")
    r.indicators.use_registry(registry(desk))
    assert r.watched == ["zigbee2mqtt/desk-lamp"]
    # The hall light still shows a-1 to its end; what comes next reaches the desk lamp too.
    r.central("acknowledged", "a-1")
    assert r.light()[-1] == GREEN
    assert r.devices.at("zigbee2mqtt/desk-lamp/set") == [GREEN]
    r.press("a-2")
    assert r.devices.at("zigbee2mqtt/desk-lamp/set") == [GREEN, AMBER]
    assert r.light()[-1] == GREEN, "a-2 is not the hall light's"
    r.central("resolved", "a-1")
    r.time.advance(60.0)
    assert r.light()[-1] == OFF
    assert r.devices.at("zigbee2mqtt/desk-lamp/set")[-1] in (AMBER, OFF), "a-2 still open"
    r.indicators.use_registry(Registry())
    assert r.watched == []


def test_existing_registries_stay_valid_and_indicators_are_checked() -> None:
    old = {"buttons": [{"device_id": "btn-1", "resident": {"name": "x", "building": "B"}}]}
    assert Registry.model_validate(old).buttons[0].indicators == []
    for bad in ({"kind": "zigbee2mqtt-lamp", "device": "x"},
                {"kind": "zigbee2mqtt-light", "device": "hall/#"},
                {"kind": "zigbee2mqtt-light", "device": "/hall"},
                {"kind": "speaker", "device": "卧室 音箱"},
                {"kind": "shelly-gen1-relay", "device": "shelly1-x", "channel": -1}):
        button = {**old["buttons"][0], "indicators": [bad]}
        with pytest.raises(ValidationError):
            Registry.model_validate({"buttons": [button]})
    twice = {**old["buttons"][0], "indicators": [{"kind": "speaker", "device": "s"}] * 2}
    with pytest.raises(ValidationError, match="named twice"):
        Registry.model_validate({"buttons": [twice]})


def test_state_maps_are_overridden_key_by_key(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[gateway]\nid = "gw"\ndata_dir = "/tmp/x"\n[central]\nurl = "http://127.0.0.1:1"\n'
        '[indicators.kinds.zigbee2mqtt-light.acknowledged]\n'
        'send = [{state = "ON", color = {hex = "#00C000"}, brightness = 254}]\n'
        '[indicators.kinds.zigbee2mqtt-light.received]\nblink_every = 0.5\n'
        '[indicators.kinds.zigbee2mqtt-light]\nrestore_after = 120\n'
        '[indicators.kinds.zigbee2mqtt-melody-siren.received]\n'
        'send = [{melody = 9, volume = "medium", duration = 1, alarm = true}]\n',
        encoding="utf-8",
    )
    config = GatewayConfig.model_validate(parse_toml(path)).indicators
    light = config.kind_map("zigbee2mqtt-light")
    assert light.show("acknowledged").send == [
        {"state": "ON", "color": {"hex": "#00C000"}, "brightness": 254}]
    received = light.show("received")
    assert (received.send, received.blink, received.blink_every, received.blink_for) == (
        [AMBER], OFF, 0.5, 300.0), "only blink_every changed"
    assert light.restore_after == 120 and light.off == OFF
    assert config.kind_map("zigbee2mqtt-melody-siren").show("received").send[0]["melody"] == 9
    assert config.kind_map("zigbee2mqtt-siren").show("received").send == [IAS_CHIME]


@pytest.mark.parametrize("kinds", [
    {"zigbee2mqtt-lamp": {}},
    {"shelly-gen1-relay": {"received": {"send": [{"turn": "on"}]}}},
    {"speaker": {"acknowledged": {"send": ["Coming!"]}}},
    {"zigbee2mqtt-light": {"received": {"send": ["ON"]}}},
    {"zigbee2mqtt-light": {"received": {"blink_every": 0}}},
    {"zigbee2mqtt-light": {"received": {"sned": []}}},
])
def test_state_map_mistakes_are_errors(kinds) -> None:
    with pytest.raises(ValidationError):
        IndicatorsSection.model_validate({"kinds": kinds})


def test_indicators_can_be_turned_off() -> None:
    r = rig(config=IndicatorsSection(enabled=False))
    r.press()
    assert r.light() == [] and r.watched == []


# -- the gateway's MQTT side ----------------------------------------------------------------


def test_ingest_watches_state_topics_and_subscribes_only_to_uncovered_ones() -> None:
    delivered: list[Received | None] = []
    ingest = Ingest(MqttSection(), client_id="t", topic_root=ROOT, deliver=delivered.extend,
                    adapters=AdaptersSection())
    observed: list[tuple[str, bytes]] = []
    topics = ["zigbee2mqtt/hall-light", "zigbee2mqtt/flat3/hall light",
              "shellies/shelly1-A4CF12F45402/relay/1"]
    ingest.watch(topics, lambda topic, payload: observed.append((topic, payload)))
    extra = uncovered(ingest.device_topics(), topics)
    # zigbee2mqtt/+ (unlisted devices' presses) already brings the one-level name.
    assert extra == ["zigbee2mqtt/flat3/hall light", "shellies/shelly1-A4CF12F45402/relay/1"]
    for seq, (topic, payload) in enumerate(((topics[0], b'{"state":"ON"}'), (topics[2], b"on"))):
        delivered.append(ingest._received(link.Message(seq, time.time(), False, topic, payload)))
    assert observed == [(topics[0], b'{"state":"ON"}'), (topics[2], b"on")]
    # Acked in order like any message; a light's state is no event, nor a rejection.
    assert [(r.messages, r.seq) for r in delivered if r] == [((), 0), ((), 1)]
    assert uncovered(ingest.device_topics(), topics[:1]) == []


def test_the_timer_thread_runs_due_actions_and_skips_cancelled_ones() -> None:
    now = [0.0]
    timers = TimerThread(clock=lambda: now[0])
    ran: list[str] = []
    done = threading.Event()
    cancelled = timers.call_later(0.0, lambda: ran.append("cancelled"))
    cancelled.cancel()
    timers.call_later(0.0, lambda: ran.append("first"))
    timers.call_later(0.0, lambda: (ran.append("second"), done.set()))
    assert done.wait(5)
    timers.close()
    assert ran == ["first", "second"]


# -- the speaker's clips --------------------------------------------------------------------


@pytest.mark.parametrize("clip", sorted(CLIPS))
def test_the_clips_exist_after_setup_as_wav_of_one_to_three_seconds(clip: str) -> None:
    path = REPO / "devices" / "clips" / f"{clip}.wav"
    assert path.exists(), f"{path} is missing: ./scripts/setup makes it (espeak-ng)"
    with wave.open(str(path)) as sound:
        seconds = sound.getnframes() / sound.getframerate()
        assert sound.getnchannels() == 1 and sound.getsampwidth() == 2
    assert 1.0 <= seconds <= 3.0, f"{clip}: {seconds:.2f} s"
