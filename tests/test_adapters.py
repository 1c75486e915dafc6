"""Device adapters (PROTOCOL §1, last paragraph): Zigbee2MQTT and Shelly buttons' native
messages, with payloads exactly as those projects document them, become the canonical
messages a Mashang button would have sent."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from edge.events import event_id
from edge.source.adapters import (
    AdaptersSection,
    RepeatFilter,
    adapter_subscriptions,
    default_device_id,
    translate,
)
from edge.source.messages import ButtonPress, DeviceMessage, DeviceStatus
from tests.helpers.support import wait_for

ROOT = "mashang/v1"
NOW = datetime(2026, 11, 29, 12, 0, 0, 250000, tzinfo=timezone(timedelta(hours=8)))
LATER = NOW + timedelta(seconds=40)

CONFIG = AdaptersSection(
    devices={
        "bedroom-button": {"device_id": "btn-0042"},
        "Kitchen SOS": {"device_id": "btn-0043"},
        "flat3/hall": {"device_id": "btn-0044"},
        "shellybutton1-E8DB84AA1234": {"device_id": "btn-0050"},
        "shellyix3-A4CF12F454A1/input:2": {"device_id": "btn-0051"},
        "shellyplusi4-a8032ab12345": {"device_id": "btn-0060"},
    }
)


def translated(topic: str, payload: bytes | str, *, at: datetime = NOW, config=CONFIG,
               **options) -> list[DeviceMessage]:
    raw = payload.encode() if isinstance(payload, str) else payload
    found = translate(topic, raw, at, config, topic_root=ROOT, **options)
    assert found is not None, f"{topic} is an adapter topic"
    return found


def one(topic: str, payload: bytes | str, **options) -> DeviceMessage:
    found = translated(topic, payload, **options)
    assert len(found) == 1, found
    return found[0]


def press(topic: str, payload: bytes | str, **options) -> DeviceMessage:
    message = one(topic, payload, **options)
    assert message.rejection is None, message.rejection
    assert isinstance(message.payload, ButtonPress)
    assert message.channel == "events" and message.device_kind == "button"
    assert message.topic == f"{ROOT}/buttons/{message.device_id}/events"
    assert message.fields["native_topic"] == topic
    return message


def status(topic: str, payload: bytes | str, **options) -> DeviceMessage:
    message = one(topic, payload, **options)
    assert message.rejection is None, message.rejection
    assert isinstance(message.payload, DeviceStatus)
    assert message.topic == f"{ROOT}/buttons/{message.device_id}/status"
    assert message.fields["native_topic"] == topic
    return message


def rejected(topic: str, payload: bytes | str, **options) -> DeviceMessage:
    message = one(topic, payload, **options)
    assert message.rejection, f"expected a rejection, got {message.fields}"
    assert message.topic == topic, "a rejection names the topic that arrived"
    raw = payload.encode() if isinstance(payload, str) else payload
    assert message.raw == raw, "a rejection carries the bytes that arrived"
    return message


def identity_of(message: DeviceMessage) -> str:
    return event_id(message.identity_key(), "message")


# -- Zigbee2MQTT ----------------------------------------------------------------------------
# Topics and payloads: https://www.zigbee2mqtt.io/guide/usage/mqtt_topics_and_messages.html
# ("Xiaomi MiJia wireless switch (WXKG01LM)": {"action": "single"}). Action values from the
# devices' exposes pages: https://www.zigbee2mqtt.io/devices/WXKG01LM.html (single, double,
# triple, quadruple, hold, release, many), https://www.zigbee2mqtt.io/devices/SNZB-01.html
# (single, double, long), https://www.zigbee2mqtt.io/devices/ZG-101Z.html (SOS button: sos,
# emergency); battery (%) and linkquality (lqi) are published in the same state object.


@pytest.mark.unit
@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("single", "single"),
        ("double", "double"),
        ("triple", "double"),
        ("quadruple", "double"),
        ("many", "double"),
        ("hold", "long"),
        ("long", "long"),
        ("emergency", "long"),
        ("sos", "long"),
    ],
)
def test_zigbee2mqtt_actions_are_presses(action, expected):
    message = press("zigbee2mqtt/bedroom-button", json.dumps({"action": action}))
    assert message.device_id == "btn-0042"
    assert message.payload.action == expected
    assert message.fields["adapter"] == "zigbee2mqtt"
    if action != expected:
        assert message.fields["native_action"] == action
    else:
        assert "native_action" not in message.fields


@pytest.mark.unit
def test_the_documented_payload_of_a_wireless_switch():
    message = press("zigbee2mqtt/bedroom-button", '{\n  "action": "single"\n}')
    assert message.payload.action == "single"
    assert message.payload.ts is None, "occurred_at falls back to the receive time"


@pytest.mark.unit
def test_battery_and_linkquality_travel_with_the_press():
    payload = {"action": "hold", "battery": 87, "linkquality": 120, "voltage": 2995}
    message = press("zigbee2mqtt/bedroom-button", json.dumps(payload))
    assert message.payload.action == "long"
    assert message.payload.battery == 87
    assert message.fields["linkquality"] == 120
    assert message.fields["voltage"] == 2995


@pytest.mark.unit
def test_a_press_is_never_rejected_for_its_battery_reading():
    message = press("zigbee2mqtt/bedroom-button", '{"action": "single", "battery": 155.5}')
    assert message.payload.battery is None
    assert message.fields["native_battery"] == 155.5


@pytest.mark.unit
def test_button_numbers_and_names_in_actions():
    # e.g. Moes ERS-10TZBVB-AA: 1_single, 1_double, 1_hold; Aqara double rocker: single_left
    assert press("zigbee2mqtt/bedroom-button", '{"action": "1_hold"}').payload.action == "long"
    left = press("zigbee2mqtt/bedroom-button", '{"action": "double_left"}')
    assert left.payload.action == "double"


@pytest.mark.unit
@pytest.mark.parametrize("action", ["release", "hold_release", "1_release", "brightness_stop", ""])
def test_releases_are_not_presses(action):
    """`release` ends a hold; "" is what legacy_action_sensor publishes after each action."""
    payload = json.dumps({"action": action, "battery": 90, "linkquality": 60})
    report = status("zigbee2mqtt/bedroom-button", payload)  # a listed button: a report
    assert report.payload.state == "online"
    assert translated("zigbee2mqtt/0x00158d0001a2b3c4", payload) == []  # unlisted: nothing


@pytest.mark.unit
def test_a_declared_button_never_goes_unheard_an_unknown_device_does():
    assert press("zigbee2mqtt/bedroom-button", '{"action": "toggle"}').payload.action == "single"
    assert translated("zigbee2mqtt/kitchen-remote", '{"action": "toggle"}') == []
    assert translated("zigbee2mqtt/kitchen-remote", '{"action": "on_hold"}') == []


@pytest.mark.unit
def test_battery_and_linkquality_reports_of_a_listed_button_are_heartbeats():
    report = status("zigbee2mqtt/bedroom-button", '{"battery": 64, "linkquality": 87}')
    assert report.device_id == "btn-0042"
    assert report.payload.state == "online"
    assert report.payload.battery == 64
    assert report.fields["linkquality"] == 87


@pytest.mark.unit
def test_reports_of_unlisted_devices_are_ignored():
    # A light on the same network: https://www.zigbee2mqtt.io/guide/usage/mqtt_topics_and_messages.html
    light = '{"state": "ON", "brightness": 215, "color_temp": 325}'
    assert translated("zigbee2mqtt/hall-light", light) == []
    assert translated("zigbee2mqtt/hall-light/availability", '{"state":"online"}') == []


@pytest.mark.unit
def test_a_native_field_under_a_canonical_name_is_kept_aside():
    report = status("zigbee2mqtt/bedroom-button", '{"state": "ON", "battery": 50}')
    assert report.payload.state == "online"
    assert report.fields["native_state"] == "ON"


# Availability: https://www.zigbee2mqtt.io/guide/configuration/device-availability.html
# (`zigbee2mqtt/FRIENDLY_NAME/availability`, retained); {"state":"online"} in current
# versions, plain online/offline with `advanced.legacy_availability_payload: true`.


@pytest.mark.unit
@pytest.mark.parametrize(
    ("payload", "state"),
    [
        ('{"state":"online"}', "online"),
        ('{"state":"offline"}', "offline"),
        ("online", "online"),
        ("offline", "offline"),
    ],
)
def test_zigbee2mqtt_availability_in_both_forms(payload, state):
    message = status("zigbee2mqtt/bedroom-button/availability", payload, retained=True)
    assert message.device_id == "btn-0042"
    assert message.payload.state == state
    assert message.fields["retained"] is True


@pytest.mark.unit
def test_friendly_names_with_folders_and_spaces():
    assert press("zigbee2mqtt/flat3/hall", '{"action": "single"}').device_id == "btn-0044"
    away = status("zigbee2mqtt/flat3/hall/availability", '{"state":"offline"}')
    assert away.device_id == "btn-0044" and away.payload.state == "offline"
    assert press("zigbee2mqtt/Kitchen SOS", '{"action": "emergency"}').device_id == "btn-0043"


@pytest.mark.unit
def test_unlisted_devices_press_under_their_own_name():
    default = press("zigbee2mqtt/0x00158d0001a2b3c4", '{"action": "single"}')
    assert default.device_id == "0x00158d0001a2b3c4"
    renamed = press("zigbee2mqtt/Living room button", '{"action": "single"}')
    assert renamed.device_id == default_device_id("Living room button")
    assert renamed.device_id.startswith("Living-room-button-")
    strict = AdaptersSection(accept_unlisted=False)
    assert translated("zigbee2mqtt/0x00158d0001a2b3c4", '{"action":"single"}', config=strict) == []


@pytest.mark.unit
def test_zigbee2mqtt_bridge_topics_are_not_devices():
    assert translated("zigbee2mqtt/bridge/state", '{"state":"online"}') == []
    assert translated("zigbee2mqtt/bridge", "{}") == []


@pytest.mark.unit
def test_two_real_presses_with_the_same_bytes_stay_two():
    first = press("zigbee2mqtt/bedroom-button", '{"action":"single"}', at=NOW)
    second = press("zigbee2mqtt/bedroom-button", '{"action":"single"}', at=LATER)
    assert identity_of(first) != identity_of(second)
    again = press("zigbee2mqtt/bedroom-button", '{"action":"single"}', at=NOW)
    assert identity_of(again) == identity_of(first), "deterministic for one receive time"


@pytest.mark.unit
def test_last_seen_makes_a_redelivered_press_the_same_event():
    # advanced.last_seen: ISO_8601 (https://www.zigbee2mqtt.io/guide/configuration/)
    payload = '{"action":"single","battery":100,"last_seen":"2026-11-29T12:00:00.123+08:00"}'
    first = press("zigbee2mqtt/bedroom-button", payload, at=NOW)
    redelivered = press("zigbee2mqtt/bedroom-button", payload, at=LATER)
    assert identity_of(first) == identity_of(redelivered)
    assert first.payload.ts == datetime(2026, 11, 29, 4, 0, 0, 123000, tzinfo=UTC)
    epoch = press("zigbee2mqtt/bedroom-button", '{"action":"single","last_seen":1795982400123}')
    assert epoch.payload.ts == datetime.fromtimestamp(1795982400.123, UTC)


@pytest.mark.unit
def test_a_retained_action_is_old_state_not_a_press():
    # A device with `retain: true` leaves its last action on the broker.
    assert translated("zigbee2mqtt/bedroom-button", '{"action":"single"}', retained=True) == []
    stamped = '{"action":"single","last_seen":"2026-11-29T12:00:00+08:00"}'
    old = press("zigbee2mqtt/bedroom-button", stamped, retained=True)
    assert old.fields["retained"] is True, "same identity as when it was new: a duplicate"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("zigbee2mqtt/bedroom-button", b"\xff\xfe", "not UTF-8"),
        ("zigbee2mqtt/bedroom-button", b"{action: single}", "not JSON"),
        ("zigbee2mqtt/bedroom-button", b'["single"]', "JSON object"),
        ("zigbee2mqtt/bedroom-button", b"7" * 5000, "JSON object, got number"),
        ("zigbee2mqtt/bedroom-button", b" " * (64 * 1024 + 1), "too large"),
        ("zigbee2mqtt/bedroom-button/availability", b'{"state":"ON"}', "state"),
        ("zigbee2mqtt/bedroom-button/availability", b"maybe", "not JSON"),
    ],
)
def test_zigbee2mqtt_junk_is_rejected_not_raised(topic, payload, reason):
    message = rejected(topic, payload)
    assert reason in message.rejection
    assert message.device_id == "btn-0042"


# -- Shelly Gen1 ----------------------------------------------------------------------------
# https://shelly-api-docs.shelly.cloud/gen1/ (MQTT: shellies/<id>/input_event/<i> with
# {"event": "S", "event_cnt": 2}; S, SS, SSS, L, SL, LS, "" for no event; shellies/<id>/online
# true/false as last will). Payloads as devices publish them, e.g. a Shelly i3:
# https://github.com/enesbcs/Shelly_MQTT/issues/56 ({"event":"SL","event_cnt":31}...).


@pytest.mark.unit
@pytest.mark.parametrize(
    ("event", "expected"),
    [("S", "single"), ("SS", "double"), ("SSS", "double"), ("L", "long"), ("SL", "long"),
     ("LS", "long")],
)
def test_shelly_gen1_input_events_are_presses(event, expected):
    payload = json.dumps({"event": event, "event_cnt": 22})
    message = press("shellies/shellybutton1-E8DB84AA1234/input_event/0", payload)
    assert message.device_id == "btn-0050"
    assert message.payload.action == expected
    assert message.fields["event"] == event and message.fields["event_cnt"] == 22
    assert message.fields["input"] == 0
    assert message.fields["adapter"] == "shelly-gen1"


@pytest.mark.unit
def test_shelly_gen1_empty_event_is_not_a_press():
    topic = "shellies/shellyix3-A4CF12F454A1/input_event/0"
    assert translated(topic, '{"event":"","event_cnt":21}') == []


@pytest.mark.unit
def test_shelly_gen1_inputs_map_to_their_own_buttons():
    topic = "shellies/shellyix3-A4CF12F454A1/input_event/2"
    assert press(topic, '{"event":"S","event_cnt":5}').device_id == "btn-0051"
    # Input 0 of the same device is not listed: an unlisted press, under the device's name.
    other = press("shellies/shellyix3-A4CF12F454A1/input_event/0", '{"event":"S","event_cnt":6}')
    assert other.device_id == "shellyix3-A4CF12F454A1"
    assert other.fields["input"] == 0


@pytest.mark.unit
def test_shelly_gen1_event_cnt_is_the_identity():
    """Gen1 re-publishes the last event with every status update (the same event_cnt):
    https://github.com/bieniu/ha-shellies-discovery/issues/91. It must stay one event."""
    topic = "shellies/shellybutton1-E8DB84AA1234/input_event/0"
    first = press(topic, '{"event":"S","event_cnt":4}', at=NOW)
    again = press(topic, '{"event":"S","event_cnt":4}', at=LATER)
    assert identity_of(first) == identity_of(again)
    nxt = press(topic, '{"event":"S","event_cnt":5}', at=LATER)
    assert identity_of(nxt) != identity_of(first)


@pytest.mark.unit
def test_repeat_filter_drops_gen1_republications():
    repeats = RepeatFilter()
    topic = "shellies/shellybutton1-E8DB84AA1234/input_event/0"
    assert len(translated(topic, '{"event":"SS","event_cnt":4}', repeats=repeats)) == 1
    assert translated(topic, '{"event":"SS","event_cnt":4}', at=LATER, repeats=repeats) == []
    assert len(translated(topic, '{"event":"SS","event_cnt":5}', repeats=repeats)) == 1
    # Another input, another device: remembered apart.
    other = "shellies/shellyix3-A4CF12F454A1/input_event/2"
    assert len(translated(other, '{"event":"SS","event_cnt":5}', repeats=repeats)) == 1


@pytest.mark.unit
def test_repeat_filter_forgets_the_oldest():
    repeats = RepeatFilter(capacity=2)
    assert not repeats.repeated("a", 0, "S", 1)
    assert not repeats.repeated("b", 0, "S", 1)
    assert not repeats.repeated("c", 0, "S", 1)
    assert not repeats.repeated("a", 0, "S", 1), "forgotten: passed on (same identity anyway)"
    assert repeats.repeated("c", 0, "S", 1)


@pytest.mark.unit
@pytest.mark.parametrize(("payload", "state"), [("true", "online"), ("false", "offline")])
def test_shelly_gen1_online(payload, state):
    message = status("shellies/shellyix3-A4CF12F454A1/online", payload, retained=True)
    assert message.device_id == "btn-0051"
    assert message.payload.state == state


@pytest.mark.unit
def test_a_sleeping_shelly_button1_is_not_offline():
    """A battery Button1 sleeps between presses and may leave `online: false` behind each
    time: that is no offline alert after every press. Supervision is by silence (its presses,
    battery reports and `true` still count as heard)."""
    topic = "shellies/shellybutton1-E8DB84AA1234/online"
    assert translated(topic, "false", retained=True) == []
    assert translated(topic, "false") == []
    assert status(topic, "true").payload.state == "online"
    assert status(topic, "true").device_id == "btn-0050"
    assert "true or false" in rejected(topic, "maybe").rejection


@pytest.mark.unit
def test_shelly_online_concerns_every_mapped_input():
    found = translated("shellies/shellyix3-A4CF12F454A1/online", "false")
    assert [m.device_id for m in found] == ["btn-0051"]
    assert all(m.payload.state == "offline" for m in found)
    assert translated("shellies/shelly1-10521C454394/online", "true") == [], "not listed"


@pytest.mark.unit
def test_shelly_button1_battery():
    # shellies/shellybutton1-<id>/sensor/battery: the charge in %, a plain number
    message = status("shellies/shellybutton1-E8DB84AA1234/sensor/battery", "87")
    assert message.payload.battery == 87 and message.payload.state == "online"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("shellies/shellybutton1-E8DB84AA1234/input_event/0", b'{"event":5}', "event"),
        ("shellies/shellybutton1-E8DB84AA1234/input_event/0", b'{"event":"X"}', "'X'"),
        ("shellies/shellybutton1-E8DB84AA1234/input_event/0", b"S", "not JSON"),
        ("shellies/shellybutton1-E8DB84AA1234/input_event/0", b'"S"', "JSON object"),
        ("shellies/shellybutton1-E8DB84AA1234/online", b"yes", "true or false"),
        ("shellies/shellybutton1-E8DB84AA1234/sensor/battery", b"-3", "battery"),
    ],
)
def test_shelly_gen1_junk_is_rejected(topic, payload, reason):
    assert reason in rejected(topic, payload).rejection


@pytest.mark.unit
def test_other_gen1_topics_are_not_adapter_messages():
    assert translate("shellies/announce", b"{}", NOW, CONFIG) is None
    assert translate("shellies/shelly1-10521C454394/relay/0", b"on", NOW, CONFIG) is None


# -- Shelly Gen2+ ---------------------------------------------------------------------------
# https://shelly-api-docs.shelly.cloud/gen2/General/Notifications (NotifyEvent frame, MQTT
# topic <prefix>/events/rpc) and https://shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/Input
# (button events btn_down, btn_up, single_push, double_push, triple_push, long_push);
# <prefix>/online true/false: https://shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/Mqtt


def notify_event(*events: dict, ts: float = 1631266595.43) -> str:
    return json.dumps({
        "src": "shellyplusi4-a8032ab12345",
        "dst": "shellyplusi4-a8032ab12345/events",
        "method": "NotifyEvent",
        "params": {"ts": ts, "events": list(events)},
    })


def input_event(event: str, channel: int = 0, ts: float = 1631266595.43) -> dict:
    return {"component": f"input:{channel}", "id": channel, "event": event, "ts": ts}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("event", "expected"),
    [("single_push", "single"), ("double_push", "double"), ("triple_push", "double"),
     ("long_push", "long")],
)
def test_shelly_gen2_notify_event_pushes_are_presses(event, expected):
    message = press("shellyplusi4-a8032ab12345/events/rpc", notify_event(input_event(event)))
    assert message.device_id == "btn-0060"
    assert message.payload.action == expected
    assert message.payload.ts == datetime.fromtimestamp(1631266595.43, UTC)
    assert message.fields["component"] == "input:0" and message.fields["input"] == 0
    assert message.fields["event"] == event
    assert message.fields["native_ts"] == 1631266595.43
    assert message.fields["src"] == "shellyplusi4-a8032ab12345"
    assert message.fields["adapter"] == "shelly-gen2"


@pytest.mark.unit
@pytest.mark.parametrize("event", ["btn_down", "btn_up", "toggle_on"])
def test_shelly_gen2_button_edges_are_not_presses(event):
    frame = notify_event(input_event(event))
    assert translated("shellyplusi4-a8032ab12345/events/rpc", frame) == []


@pytest.mark.unit
def test_shelly_gen2_ts_is_the_identity():
    frame = notify_event(input_event("single_push"))
    first = press("shellyplusi4-a8032ab12345/events/rpc", frame, at=NOW)
    redelivered = press("shellyplusi4-a8032ab12345/events/rpc", frame, at=LATER)
    assert identity_of(first) == identity_of(redelivered)
    later = notify_event(input_event("single_push", ts=1631266601.02), ts=1631266601.02)
    assert identity_of(press("shellyplusi4-a8032ab12345/events/rpc", later)) != identity_of(first)


@pytest.mark.unit
def test_shelly_gen2_several_events_in_one_frame():
    frame = notify_event(
        input_event("btn_down", 1), input_event("single_push", 1), input_event("long_push", 3),
        {"component": "sys", "event": "scheduled_restart", "time_ms": 996, "ts": 1631266595.43},
    )
    found = translated("shellyplusi4-a8032ab12345/events/rpc", frame)
    assert [(m.payload.action, m.fields["input"]) for m in found] == [("single", 1), ("long", 3)]
    assert len({identity_of(m) for m in found}) == 2


@pytest.mark.unit
def test_shelly_gen2_status_notifications_are_not_presses():
    # NotifyStatus example from the Notifications page
    frame = {"src": "shellypro4pm-f008d1d8b8b8", "dst": "user_1", "method": "NotifyStatus",
             "params": {"ts": 1631186545.04, "switch:0": {"id": 0, "output": True,
                                                         "source": "button"}}}
    assert translated("shellypro4pm-f008d1d8b8b8/events/rpc", json.dumps(frame)) == []


@pytest.mark.unit
@pytest.mark.parametrize(("payload", "state"), [("true", "online"), ("false", "offline")])
def test_shelly_gen2_online(payload, state):
    message = status("shellyplusi4-a8032ab12345/online", payload, retained=True)
    assert message.device_id == "btn-0060" and message.payload.state == state


@pytest.mark.unit
@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"NotifyEvent", "not JSON"),
        (b'{"method":"NotifyEvent","params":{"ts":1}}', "params.events"),
        (b'{"method":"NotifyEvent","params":[]}', "params.events"),
    ],
)
def test_shelly_gen2_junk_is_rejected(payload, reason):
    message = rejected("shellyplusi4-a8032ab12345/events/rpc", payload)
    assert reason in message.rejection and message.device_id == "btn-0060"


@pytest.mark.unit
def test_mashang_topics_are_not_adapter_topics():
    assert translate(f"{ROOT}/buttons/btn-1/events", b"{}", NOW, CONFIG) is None
    assert translate(f"{ROOT}/buttons/btn-1/status", b"{}", NOW, CONFIG) is None
    assert translate("zigbee2mqtt/x", b"{}", NOW, AdaptersSection(enabled=False)) is None


# -- configuration and subscriptions --------------------------------------------------------


@pytest.mark.unit
def test_default_subscriptions():
    assert adapter_subscriptions(AdaptersSection()) == [
        "zigbee2mqtt/bridge/devices",
        "zigbee2mqtt/bridge/info",
        "zigbee2mqtt/+",
        "zigbee2mqtt/+/availability",
        "shellies/+/input_event/+",
        "+/events/rpc",
    ]
    assert adapter_subscriptions(AdaptersSection(enabled=False)) == []


@pytest.mark.unit
def test_listed_devices_add_their_status_topics_without_overlaps():
    filters = adapter_subscriptions(CONFIG)
    assert "zigbee2mqtt/flat3/hall" in filters, "a folder name is not under zigbee2mqtt/+"
    assert "zigbee2mqtt/flat3/hall/availability" in filters
    assert "zigbee2mqtt/bedroom-button" not in filters, "covered by zigbee2mqtt/+"
    assert "zigbee2mqtt/bedroom-button/availability" not in filters, "covered as well"
    assert "shellies/shellyix3-A4CF12F454A1/online" in filters
    assert "shellyplusi4-a8032ab12345/online" in filters
    assert len(filters) == len(set(filters))
    for narrow in filters:
        for wide in filters:
            if wide != narrow:
                same = len(wide.split("/")) == len(narrow.split("/")) and all(
                    w in ("+", n) for w, n in zip(wide.split("/"), narrow.split("/"), strict=True)
                )
                assert not same, f"{wide} covers {narrow}"


@pytest.mark.unit
def test_only_listed_devices_when_unlisted_are_refused():
    strict = AdaptersSection(
        accept_unlisted=False, shelly_gen2=False,
        zigbee2mqtt_base="z2m", devices={"bedroom-button": {"device_id": "btn-0042"}},
    )
    assert adapter_subscriptions(strict) == [
        "z2m/bridge/devices",
        "z2m/bridge/info",
        "z2m/bedroom-button",
        "z2m/bedroom-button/availability",
        "shellies/bedroom-button/input_event/+",
        "shellies/bedroom-button/online",
        "shellies/bedroom-button/sensor/battery",
    ]
    assert press("z2m/bedroom-button", '{"action":"single"}', config=strict).device_id == "btn-0042"


@pytest.mark.unit
@pytest.mark.parametrize(
    "section",
    [
        {"zigbee2mqtt_base": "zigbee2mqtt/#"},
        {"zigbee2mqtt_base": "/zigbee2mqtt"},
        {"zigbe2mqtt_base": "zigbee2mqtt"},
        {"devices": {"btn": {"device_id": "has space"}}},
        {"devices": {"btn": {"device": "btn-1"}}},
        {"devices": {"btn": {"device_id": "btn-1", "kind": "scanner"}}},
        {"devices": {"shellyix3-A4CF12F454A1/input:1": {}}},
        {"devices": {"a": {"device_id": "btn-1"}, "b": {"device_id": "btn-1"}}},
        {"devices": {"kitchen/+": {}}},
    ],
)
def test_configuration_mistakes_are_errors(section):
    with pytest.raises(ValidationError):
        AdaptersSection.model_validate(section)


# -- end to end, through a real broker ------------------------------------------------------


@pytest.mark.system
def test_a_zigbee2mqtt_press_reaches_the_central(broker, central, make_gateway):
    """A Zigbee2MQTT button's hold, published as Zigbee2MQTT publishes it, arrives at the
    central as a critical button.press of the device id it is mapped to; its availability
    going offline arrives as button.offline."""
    import paho.mqtt.client as mqtt

    adapters = (
        "accept_unlisted = true\n"
        '[adapters.devices."bedroom-button"]\n'
        'device_id = "btn-0042"\n'
    )
    gateway = make_gateway(central.url, sections={"adapters": adapters})
    gateway.start()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-zigbee2mqtt")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        state = {"action": "hold", "battery": 87, "linkquality": 120, "voltage": 2995}
        info = client.publish("zigbee2mqtt/bedroom-button", json.dumps(state), qos=1)
        info.wait_for_publish(10)
        alert = wait_for(
            lambda: next(iter(central.events("button.press")), None),
            what="the Zigbee2MQTT press at the central",
        )
        assert alert["device_id"] == "btn-0042"
        assert alert["kind"] == "alert" and alert["priority"] == "critical"
        assert alert["data"]["action"] == "long"
        assert alert["data"]["native_action"] == "hold"
        assert alert["data"]["native_topic"] == "zigbee2mqtt/bedroom-button"
        assert alert["data"]["battery"] == 87 and alert["data"]["linkquality"] == 120

        info = client.publish(
            "zigbee2mqtt/bedroom-button/availability", '{"state":"offline"}', qos=1, retain=True
        )
        info.wait_for_publish(10)
        offline = wait_for(
            lambda: next(iter(central.events("button.offline")), None),
            what="button.offline at the central",
        )
        assert offline["device_id"] == "btn-0042"
    finally:
        client.disconnect()
        client.loop_stop()
