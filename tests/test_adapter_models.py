"""Zigbee buttons heard as their makers document them: per-model action maps applied by the
model Zigbee2MQTT's bridge names (so that a renamed button needs no listing), the bridge's
output mode checked (`gateway.misconfigured`), and battery Shelly buttons supervised by
silence rather than by their sleep-time last will.

Sources, as Zigbee2MQTT documents them:
- device pages https://www.zigbee2mqtt.io/devices/<model>.html ("Exposes: action"):
  WXKG01LM single/double/triple/quadruple/hold/release/many; WXKG11LM
  single/double/triple/quadruple/hold/release; WXKG12LM single/double/hold/release/shake;
  E1812 on/brightness_move_up/brightness_stop; TS0215A_sos emergency; ZG-101Z sos/emergency;
  SNZB-01 single/double/long;
- https://www.zigbee2mqtt.io/guide/usage/mqtt_topics_and_messages.html: `bridge/devices`
  (a retained list of `friendly_name`, `ieee_address`, `definition: {model, vendor, ...}`,
  `definition: null` for the coordinator) and `bridge/info` (retained, with `config`);
- https://www.zigbee2mqtt.io/guide/configuration/mqtt.html: `advanced.output` json (default),
  attribute, attribute_and_json; https://www.zigbee2mqtt.io/guide/configuration/ (
  `advanced.include_device_information` adds a `device` object to each state).
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from edge.config import RulesSection
from edge.events import event_id
from edge.source.adapters import (
    MODEL_ACTIONS,
    AdapterMemory,
    AdaptersSection,
    GatewayNotice,
    default_device_id,
    output_problem,
    translate,
)
from edge.source.adapters.bridge import MAX_BRIDGE_BYTES, MAX_BUTTONS, buttons_of
from edge.source.adapters.models import GUESSES
from edge.source.messages import ButtonPress, DeviceMessage, DeviceStatus
from tests.helpers.support import wait_for

ROOT = "mashang/v1"
NOW = datetime(2026, 11, 29, 12, 0, 0, 250000, tzinfo=timezone(timedelta(hours=8)))
LATER = NOW + timedelta(seconds=3)

DEVICES_TOPIC = "zigbee2mqtt/bridge/devices"
INFO_TOPIC = "zigbee2mqtt/bridge/info"
RENAMED = "Grandma button"  # a custom friendly name, not listed anywhere


def device(friendly_name: str, ieee: str, model: str | None, vendor: str = "",
           description: str = "", kind: str = "EndDevice") -> dict:
    """One entry of bridge/devices, shaped as Zigbee2MQTT publishes it."""
    definition = None if model is None else {
        "model": model, "vendor": vendor, "description": description,
        "supports_ota": False, "options": [],
        "exposes": [{"type": "enum", "name": "action", "property": "action", "access": 1,
                     "values": sorted(MODEL_ACTIONS.get(model, {}))}],
    }
    return {
        "ieee_address": ieee, "type": kind, "network_address": 29159, "supported": True,
        "disabled": False, "friendly_name": friendly_name, "description": "",
        "definition": definition, "power_source": "Battery", "model_id": "TRADFRI SHORTCUT Button",
        "interviewing": False, "interview_completed": True,
        "endpoints": {"1": {"bindings": [], "configured_reportings": [], "scenes": [],
                            "clusters": {"input": ["genBasic", "genPowerCfg"],
                                         "output": ["genOnOff", "genLevelCtrl"]}}},
    }


COORDINATOR = device("Coordinator", "0x00124b0022a1b2c3", None, kind="Coordinator")
PLUG = device("kitchen plug", "0x00158d00018255df", "ZNCZ02LM", "Xiaomi", "Mi power plug ZigBee",
              kind="Router")
REMOTE = device("hall remote", "0x000b57fffe8f1a2b", "E1743", "IKEA", "TRADFRI on/off switch")
BUTTONS = {
    "WXKG01LM": ("MiJia switch", "0x00158d0001a2b3c4", "Xiaomi"),
    "WXKG11LM": ("Aqara mini", "0x00158d0002c3d4e5", "Aqara"),
    "WXKG12LM": ("Aqara gyro", "0x00158d0003d4e5f6", "Aqara"),
    "E1812": (RENAMED, "0x000d6ffffe1f2a3b", "IKEA"),
    "TS0215A_sos": ("SOS pendant", "0xa4c138a1b2c3d4e5", "Tuya"),
    "ZG-101Z": ("SOS star", "0xa4c138f1e2d3c4b5", "Loginovo"),
    "SNZB-01": ("Sonoff button", "0x00124b0021a2b3c4", "SONOFF"),
}


def devices_list(*extra: dict) -> list[dict]:
    return [COORDINATOR, PLUG, REMOTE, *(device(name, ieee, model, vendor)
                                         for model, (name, ieee, vendor) in BUTTONS.items()),
            *extra]


def bridge_info(output: str | None = "json") -> dict:
    """bridge/info as Zigbee2MQTT publishes it (trimmed): `config` is its configuration."""
    advanced = {"last_seen": "ISO_8601", "log_level": "info", "legacy_api": False}
    if output is not None:
        advanced["output"] = output
    return {
        "version": "1.42.0", "commit": "c4b2a1d", "log_level": "info", "permit_join": False,
        "coordinator": {"type": "zStack3x0", "ieee_address": "0x00124b0022a1b2c3",
                        "meta": {"revision": 20230507, "transportrev": 2}},
        "network": {"channel": 11, "pan_id": 6754, "extended_pan_id": "0xdddddddddddddddd"},
        "restart_required": False,
        "config": {"homeassistant": False, "permit_join": False, "availability": True,
                   "mqtt": {"base_topic": "zigbee2mqtt", "server": "mqtt://127.0.0.1:1883"},
                   "serial": {"port": "/dev/ttyUSB0"}, "advanced": advanced},
    }


def memory_with_devices(config: AdaptersSection | None = None, *extra: dict) -> AdapterMemory:
    memory = AdapterMemory()
    learned = translate(DEVICES_TOPIC, json.dumps(devices_list(*extra)).encode(), NOW,
                        config or AdaptersSection(), topic_root=ROOT, retained=True,
                        repeats=memory)
    assert learned == [], "the device list is no event"
    assert memory.zigbee2mqtt.devices_known
    return memory


def run(topic: str, payload: str | bytes | dict | list, memory: AdapterMemory | None, *,
        config: AdaptersSection | None = None, at: datetime = NOW,
        retained: bool = False) -> list[DeviceMessage]:
    if isinstance(payload, dict | list):
        payload = json.dumps(payload)
    raw = payload.encode() if isinstance(payload, str) else payload
    found = translate(topic, raw, at, config or AdaptersSection(), topic_root=ROOT,
                      retained=retained, repeats=memory)
    assert found is not None, f"{topic} is an adapter topic"
    return found


def one_press(topic: str, payload: str | dict, memory: AdapterMemory | None,
              **options) -> DeviceMessage:
    found = run(topic, payload, memory, **options)
    assert len(found) == 1, found
    message = found[0]
    assert message.rejection is None, message.rejection
    assert isinstance(message.payload, ButtonPress)
    assert message.topic == f"{ROOT}/buttons/{message.device_id}/events"
    return message


def one_status(topic: str, payload: str | dict, memory: AdapterMemory | None,
               **options) -> DeviceMessage:
    found = run(topic, payload, memory, **options)
    assert len(found) == 1, found
    message = found[0]
    assert message.rejection is None, message.rejection
    assert isinstance(message.payload, DeviceStatus)
    assert message.topic == f"{ROOT}/buttons/{message.device_id}/status"
    return message


def notice(found: list[DeviceMessage]) -> DeviceMessage:
    assert len(found) == 1, found
    message = found[0]
    assert message.rejection is None
    assert isinstance(message.payload, GatewayNotice)
    assert message.payload.event == "gateway.misconfigured"
    assert (message.device_kind, message.device_id, message.channel) == (None, None, None)
    assert message.fields["reason"] == message.payload.reason
    return message


# -- the model table ------------------------------------------------------------------------

# (model, native action, canonical press or None) for every documented action value.
DOCUMENTED = [
    ("WXKG01LM", "single", "single"), ("WXKG01LM", "double", "double"),
    ("WXKG01LM", "triple", "double"), ("WXKG01LM", "quadruple", "double"),
    ("WXKG01LM", "many", "double"), ("WXKG01LM", "hold", "long"),
    ("WXKG01LM", "release", None),
    ("WXKG11LM", "single", "single"), ("WXKG11LM", "double", "double"),
    ("WXKG11LM", "triple", "double"), ("WXKG11LM", "quadruple", "double"),
    ("WXKG11LM", "hold", "long"), ("WXKG11LM", "release", None),
    ("WXKG12LM", "single", "single"), ("WXKG12LM", "double", "double"),
    ("WXKG12LM", "hold", "long"), ("WXKG12LM", "release", None),
    ("WXKG12LM", "shake", "single"),
    ("E1812", "on", "single"), ("E1812", "brightness_move_up", "long"),
    ("E1812", "brightness_stop", None),
    ("TS0215A_sos", "emergency", "long"),
    ("ZG-101Z", "sos", "long"), ("ZG-101Z", "emergency", "long"),
    ("SNZB-01", "single", "single"), ("SNZB-01", "double", "double"),
    ("SNZB-01", "long", "long"),
]


@pytest.mark.unit
def test_the_table_is_what_the_device_pages_document():
    assert {(model, native, press) for model, actions in MODEL_ACTIONS.items()
            for native, press in actions.items()} == set(DOCUMENTED)
    assert set(BUTTONS) == set(MODEL_ACTIONS)


@pytest.mark.unit
def test_every_button_model_the_install_guide_names_is_in_the_table():
    guide = (Path(__file__).parent.parent / "docs" / "install.md").read_text()
    for model in ("WXKG11LM", "WXKG12LM", "E1812", "TS0215A_sos"):
        assert model in guide, f"docs/install.md names {model}"
        assert model in MODEL_ACTIONS


@pytest.mark.unit
def test_models_never_disagree_on_a_word():
    for actions in MODEL_ACTIONS.values():
        for native, press in actions.items():
            if press is not None:
                assert GUESSES[native] == press


@pytest.mark.unit
@pytest.mark.parametrize(("model", "action", "expected"), DOCUMENTED)
def test_a_renamed_unlisted_button_is_heard_by_its_model(model, action, expected):
    memory = memory_with_devices()
    name = BUTTONS[model][0]
    # A state as Zigbee2MQTT publishes it: the action with the battery and link quality.
    state = {"action": action, "battery": 91, "linkquality": 87, "voltage": 2975}
    if expected is None:
        # The end of a hold (already counted): a report of the button, so a heartbeat.
        report = one_status(f"zigbee2mqtt/{name}", state, memory)
        assert report.device_id == default_device_id(name)
        return
    message = one_press(f"zigbee2mqtt/{name}", state, memory)
    assert message.device_id == default_device_id(name)
    assert message.payload.action == expected
    assert message.payload.battery == 91
    assert message.fields["model"] == model
    assert message.fields["adapter"] == "zigbee2mqtt"
    assert message.fields["native_topic"] == f"zigbee2mqtt/{name}"
    if action != expected:
        assert message.fields["native_action"] == action


@pytest.mark.unit
def test_an_e1812_is_no_alert_without_its_model_and_one_with_it():
    """Unknown to the gateway, the shortcut button's `on` and `brightness_move_up` were no
    press at all; the device list makes them a single and a long press."""
    memory = AdapterMemory()
    run(DEVICES_TOPIC, [COORDINATOR, PLUG], memory)  # a list without the button
    topic = f"zigbee2mqtt/{RENAMED}"
    assert run(topic, {"action": "on", "battery": 74, "linkquality": 54}, memory) == []
    run(DEVICES_TOPIC, devices_list(), memory)  # the button paired and renamed
    assert one_press(topic, {"action": "on", "battery": 74}, memory).payload.action == "single"


@pytest.mark.unit
def test_an_e1812_hold_is_one_long_press():
    memory = memory_with_devices()
    topic = f"zigbee2mqtt/{RENAMED}"
    hold = one_press(topic, {"action": "brightness_move_up", "linkquality": 54}, memory)
    assert hold.payload.action == "long"
    assert hold.fields["native_action"] == "brightness_move_up"
    released = run(topic, {"action": "brightness_stop", "linkquality": 54}, memory, at=LATER)
    assert [type(m.payload) for m in released] == [DeviceStatus], "no second press"


@pytest.mark.unit
def test_a_listed_e1812_takes_its_listed_id_and_its_models_actions():
    """The listing names the device id; the model still says what its actions mean, so its
    long press is no longer a single."""
    config = AdaptersSection(devices={RENAMED: {"device_id": "btn-0042"}})
    memory = memory_with_devices(config)
    topic = f"zigbee2mqtt/{RENAMED}"
    hold = one_press(topic, {"action": "brightness_move_up"}, memory, config=config)
    assert hold.device_id == "btn-0042" and hold.payload.action == "long"
    click = one_press(topic, {"action": "on"}, memory, config=config)
    assert click.device_id == "btn-0042" and click.payload.action == "single"
    stop = run(topic, {"action": "brightness_stop"}, memory, config=config)
    assert [m.device_id for m in stop] == ["btn-0042"]
    assert isinstance(stop[0].payload, DeviceStatus)


@pytest.mark.unit
def test_a_known_models_undocumented_action_is_still_a_press():
    # e.g. another firmware's word: a button is a button, and its press is never ignored.
    memory = memory_with_devices()
    message = one_press(f"zigbee2mqtt/{RENAMED}", {"action": "off"}, memory)
    assert message.payload.action == "single" and message.fields["native_action"] == "off"


@pytest.mark.unit
def test_unknown_models_keep_the_generic_mapping():
    memory = memory_with_devices()
    # An IKEA on/off switch (E1743) for the lights: not a help button.
    assert run("zigbee2mqtt/hall remote", {"action": "on"}, memory) == []
    assert run("zigbee2mqtt/hall remote", {"action": "brightness_move_up"}, memory) == []
    assert run("zigbee2mqtt/hall remote/availability", {"state": "offline"}, memory) == []
    assert run("zigbee2mqtt/hall remote", {"battery": 40}, memory) == []
    # Generic words of an unknown device are presses, as before.
    generic = one_press("zigbee2mqtt/hall remote", {"action": "double"}, memory)
    assert generic.payload.action == "double" and "model" not in generic.fields
    assert run("zigbee2mqtt/kitchen plug", {"state": "ON", "power": 12}, memory) == []


@pytest.mark.unit
def test_before_the_device_list_a_known_models_press_word_is_not_dropped():
    """After a restart, presses queued in the gateway's session arrive before the retained
    device list: `on` of a renamed E1812 is taken as a press rather than lost."""
    memory = AdapterMemory()
    topic = f"zigbee2mqtt/{RENAMED}"
    assert one_press(topic, {"action": "on"}, memory).payload.action == "single"
    assert one_press(topic, {"action": "brightness_move_up"}, memory).payload.action == "long"
    assert run(topic, {"action": "brightness_stop"}, memory) == []
    assert one_press(topic, {"action": "on"}, None).payload.action == "single", "no memory"
    assert run(topic, {"action": "toggle"}, memory) == [], "no model has that word"
    stamped = {"action": "on", "last_seen": "2026-11-29T12:00:00+08:00"}
    assert run(topic, stamped, memory, retained=True) == [], "a retained state is old"


@pytest.mark.unit
def test_include_device_information_names_the_model_without_a_device_list():
    state = {"action": "brightness_move_up", "battery": 74, "linkquality": 54,
             "device": {"friendlyName": "Porch", "model": "E1812", "ieeeAddr": "0x000d6ff"
                        "ffe1f2a3c", "manufacturerName": "IKEA of Sweden", "type": "EndDevice",
                        "powerSource": "Battery"}}
    memory = memory_with_devices()  # a list that does not know "Porch" (yet)
    message = one_press("zigbee2mqtt/Porch", state, memory)
    assert message.payload.action == "long" and message.fields["model"] == "E1812"
    report = one_status("zigbee2mqtt/Porch", {**state, "action": ""}, memory)
    assert report.device_id == message.device_id


@pytest.mark.unit
def test_a_renamed_button_is_supervised_under_its_press_id():
    memory = memory_with_devices()
    press_id = one_press(f"zigbee2mqtt/{RENAMED}", {"action": "on"}, memory).device_id
    away = one_status(f"zigbee2mqtt/{RENAMED}/availability", {"state": "offline"}, memory,
                      retained=True)
    assert away.device_id == press_id and away.payload.state == "offline"
    legacy = one_status(f"zigbee2mqtt/{RENAMED}/availability", "online", memory)
    assert legacy.device_id == press_id and legacy.payload.state == "online"
    report = one_status(f"zigbee2mqtt/{RENAMED}", {"battery": 12, "linkquality": 30}, memory)
    assert report.device_id == press_id and report.payload.battery == 12
    assert report.fields["model"] == "E1812"
    assert run(f"zigbee2mqtt/{RENAMED}", {"battery": 12}, memory, retained=True) == []


@pytest.mark.unit
def test_refusing_unlisted_devices_refuses_renamed_buttons_too():
    strict = AdaptersSection(accept_unlisted=False)
    memory = memory_with_devices(strict)
    topic = f"zigbee2mqtt/{RENAMED}"
    assert run(topic, {"action": "on"}, memory, config=strict) == []
    assert run(f"{topic}/availability", {"state": "offline"}, memory, config=strict) == []
    assert run(topic, {"battery": 50}, memory, config=strict) == []


@pytest.mark.unit
def test_a_new_device_list_replaces_the_old_one():
    memory = memory_with_devices()
    renamed = device("Bedroom SOS", BUTTONS["E1812"][1], "E1812", "IKEA")
    run(DEVICES_TOPIC, [COORDINATOR, renamed], memory, retained=True)
    assert one_press("zigbee2mqtt/Bedroom SOS", {"action": "on"}, memory).device_id == (
        default_device_id("Bedroom SOS"))
    assert run(f"zigbee2mqtt/{RENAMED}", {"action": "on"}, memory) == [], "the old name"


@pytest.mark.unit
def test_the_bridge_topics_are_subscribed():
    from edge.source.adapters import adapter_subscriptions

    filters = adapter_subscriptions(AdaptersSection(zigbee2mqtt_base="z2m"))
    assert filters[:4] == ["z2m/bridge/devices", "z2m/bridge/info", "z2m/+",
                           "z2m/+/availability"]
    off = adapter_subscriptions(AdaptersSection(zigbee2mqtt=False))
    assert off[0] == "shellies/+/input_event/+"


# -- the bridge's own messages --------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("output", ["json", "attribute_and_json", None])
def test_output_modes_with_json_are_fine(output):
    assert run(INFO_TOPIC, bridge_info(output), AdapterMemory(), retained=True) == []
    assert output_problem(bridge_info(output)) is None


@pytest.mark.unit
def test_attribute_output_raises_gateway_misconfigured():
    memory = AdapterMemory()
    raw = json.dumps(bridge_info("attribute"))
    message = notice(run(INFO_TOPIC, raw, memory, retained=True))
    assert "advanced.output: attribute" in message.fields["reason"]
    assert "every press is lost" in message.fields["reason"]
    assert message.fields["setting"] == "advanced.output"
    assert message.fields["value"] == "attribute"
    assert message.fields["native_topic"] == INFO_TOPIC
    assert message.fields["adapter"] == "zigbee2mqtt"
    assert message.fields["retained"] is True
    json.dumps(message.fields, allow_nan=False)  # travels as strict JSON
    # Delivered again (every reconnect): reported once; after a restart, the same event.
    assert run(INFO_TOPIC, raw, memory, retained=True, at=LATER) == []
    again = notice(run(INFO_TOPIC, raw, AdapterMemory(), retained=True, at=LATER))
    assert event_id(again.identity_key(), "message") == event_id(message.identity_key(),
                                                                 "message")
    # Fixed, then broken again: reported again.
    assert run(INFO_TOPIC, bridge_info("json"), memory) == []
    notice(run(INFO_TOPIC, raw, memory))


@pytest.mark.unit
def test_an_unknown_output_mode_is_reported_too():
    message = notice(run(INFO_TOPIC, bridge_info("xml"), None))
    assert message.fields["value"] == "xml" and "'xml'" in message.fields["reason"]


@pytest.mark.unit
def test_a_known_button_in_a_folder_that_nobody_listed_is_reported():
    """`zigbee2mqtt/+` does not reach `zigbee2mqtt/flat3/hall`: such a button is unheard
    unless listed, and the device list shows it."""
    memory = AdapterMemory()
    in_folder = device("flat3/hall", "0x000d6ffffe1f2a99", "E1812", "IKEA")
    found = run(DEVICES_TOPIC, [COORDINATOR, in_folder], memory, retained=True)
    message = notice(found)
    assert "'flat3/hall'" in message.fields["reason"]
    assert message.fields["value"] == ["flat3/hall"]
    assert run(DEVICES_TOPIC, [COORDINATOR, in_folder, PLUG], memory) == [], "once"
    listed = AdaptersSection(devices={"flat3/hall": {"device_id": "btn-0044"}})
    assert run(DEVICES_TOPIC, [COORDINATOR, in_folder], AdapterMemory(), config=listed) == []
    lamp = device("flat3/lamp", "0x0017880104a1b2c3", "9290012573A", "Philips", kind="Router")
    assert run(DEVICES_TOPIC, [COORDINATOR, lamp], AdapterMemory()) == [], "not a button"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (DEVICES_TOPIC, b"\xff\xfe", "not UTF-8"),
        (DEVICES_TOPIC, b"[{]", "not JSON"),
        (DEVICES_TOPIC, b'{"devices": []}', "JSON list"),
        (DEVICES_TOPIC, b"7" * 5000, "not JSON"),
        (DEVICES_TOPIC, b" " * (MAX_BRIDGE_BYTES + 1), "too large"),
        (INFO_TOPIC, b"[]", "JSON object"),
        (INFO_TOPIC, b"online", "not JSON"),
    ],
)
def test_bridge_junk_is_rejected_and_forgets_nothing(topic, payload, reason):
    memory = memory_with_devices()
    found = run(topic, payload, memory)
    assert len(found) == 1 and found[0].rejection and reason in found[0].rejection
    assert (found[0].device_kind, found[0].device_id, found[0].topic) == (None, None, topic)
    assert found[0].raw == payload
    assert memory.zigbee2mqtt.model_of(RENAMED) == "E1812", "the last good list stays"


@pytest.mark.unit
def test_a_bridge_list_of_odd_entries_keeps_the_buttons():
    entries = [None, 7, {"friendly_name": 5, "definition": {"model": "E1812"}},
               {"friendly_name": "a", "definition": "E1812"}, {"friendly_name": "b"},
               {"friendly_name": "c", "definition": {"model": "E1812"}}]
    assert [b.friendly_name for b in buttons_of(entries)] == ["c"]


@pytest.mark.unit
def test_the_bridges_memory_is_bounded():
    many = [{"friendly_name": f"b{i}", "definition": {"model": "E1812"}}
            for i in range(MAX_BUTTONS + 10)]
    assert len(buttons_of(many)) == MAX_BUTTONS


@pytest.mark.unit
def test_the_bridges_memory_is_safe_across_threads():
    memory = AdapterMemory()
    lists = [json.dumps(devices_list()).encode(), json.dumps([COORDINATOR]).encode()]
    errors: list[BaseException] = []

    def learn() -> None:
        try:
            for index in range(200):
                translate(DEVICES_TOPIC, lists[index % 2], NOW, AdaptersSection(),
                          topic_root=ROOT, repeats=memory)
        except BaseException as exc:
            errors.append(exc)

    def press() -> None:
        try:
            for _ in range(400):
                found = translate(f"zigbee2mqtt/{RENAMED}", b'{"action":"on"}', NOW,
                                  AdaptersSection(), topic_root=ROOT, repeats=memory)
                assert found is not None and len(found) <= 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=learn), threading.Thread(target=press)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


# -- what the rules make of a notice --------------------------------------------------------


@pytest.mark.unit
def test_the_rules_raise_the_notice_as_an_alert():
    from edge.transform.rules import Rules
    from mashang.registry import Registry

    rules = Rules(RulesSection(), Registry(), state_path=None)
    message = notice(run(INFO_TOPIC, bridge_info("attribute"), None))
    [event] = rules.evaluate(message)
    assert (event.kind, event.type, event.priority) == ("alert", "gateway.misconfigured", "high")
    assert event.device_id is None
    assert event.data["reason"] == message.fields["reason"]


# -- end to end, through a real broker ------------------------------------------------------


@pytest.mark.system
def test_a_renamed_e1812_hold_reaches_the_central_as_one_press(broker, central, make_gateway):
    """Zigbee2MQTT's retained device list names an IKEA shortcut button under a custom
    name that nobody listed; its hold, published as Zigbee2MQTT publishes it (move up, then
    stop), arrives at the central as exactly one critical button.press."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-zigbee2mqtt")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        # Zigbee2MQTT was there first: its device list waits retained on the broker.
        info = client.publish(DEVICES_TOPIC, json.dumps(devices_list()), qos=1, retain=True)
        info.wait_for_publish(10)
        gateway = make_gateway(central.url, sections={"adapters": "accept_unlisted = true\n"})
        gateway.start()

        topic = f"zigbee2mqtt/{RENAMED}"
        for action in ("brightness_move_up", "brightness_stop"):
            state = {"action": action, "battery": 74, "linkquality": 54}
            client.publish(topic, json.dumps(state), qos=1).wait_for_publish(10)
        # A later press of another button: once it is at the central, so is all before it.
        marker = "zigbee2mqtt/0x00158d0009f8e7d6"
        client.publish(marker, '{"action":"single"}', qos=1).wait_for_publish(10)
        wait_for(
            lambda: any(e.get("device_id") == default_device_id(marker.split("/")[1])
                        for e in central.events("button.press")),
            what="the later press at the central",
        )
        button_id = default_device_id(RENAMED)
        alerts = [e for e in central.events() if e.get("device_id") == button_id
                  and e["type"] in ("button.press", "button.repeat")]
        assert len(alerts) == 1, alerts
        [press] = alerts
        assert press["type"] == "button.press"
        assert press["kind"] == "alert" and press["priority"] == "critical"
        assert press["data"]["action"] == "long"
        assert press["data"]["native_action"] == "brightness_move_up"
        assert press["data"]["model"] == "E1812"
        assert press["data"]["native_topic"] == topic
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.system
def test_the_doctor_reads_the_bridges_retained_topics(tmp_path, broker):
    """`check_zigbee2mqtt` finds the output mode that loses every press, and names the known
    button models of the device list once the mode is right."""
    import paho.mqtt.client as mqtt

    from edge.config import load_config
    from edge.tools.doctor import check_zigbee2mqtt
    from tests.helpers.support import Gateway

    config = load_config(Gateway(tmp_path / "gw", broker.port, "http://127.0.0.1:9").config)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-z2m-doctor")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()

    def retain(topic: str, payload: str) -> None:
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)

    try:
        [nothing] = check_zigbee2mqtt(config, 3.0)
        assert nothing.status == "warn" and "bridge/info" in nothing.detail
        retain(INFO_TOPIC, json.dumps(bridge_info("attribute")))
        [lost] = check_zigbee2mqtt(config, 3.0)
        assert lost.status == "fail" and "every press is lost" in lost.detail
        assert lost.fix is not None and "output: json" in lost.fix
        retain(INFO_TOPIC, json.dumps(bridge_info("json")))
        [no_list] = check_zigbee2mqtt(config, 3.0)
        assert no_list.status == "warn" and "bridge/devices" in no_list.detail
        retain(DEVICES_TOPIC, json.dumps(devices_list()))
        [fine] = check_zigbee2mqtt(config, 3.0)
        assert fine.status == "ok" and "E1812" in fine.detail and "WXKG11LM" in fine.detail
    finally:
        client.disconnect()
        client.loop_stop()
