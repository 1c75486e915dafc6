"""A press reaches the central as PROTOCOL §3 describes it, signed; logs travel in batches; a
message the broker delivers twice is one event."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime

import pytest

from mashang.signing import (
    GATEWAY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    check_signature,
)
from tests.helpers.receiver import Receiver
from tests.helpers.support import (
    GATEWAY_ID,
    GATEWAY_KEY,
    device_topic,
    mosquitto_pub,
    publish,
    set_option,
    wait_for,
)

pytestmark = pytest.mark.system

PRESS_TYPES = {"button.press", "button.repeat"}


def presses(events: list[dict]) -> list[dict]:
    return [event for event in events if event["type"] in PRESS_TYPES]


def moment(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    assert parsed.tzinfo is not None, f"{text!r} has no UTC offset"
    return parsed


def test_a_press_arrives_with_the_protocols_fields(broker, central, make_gateway):
    gateway = make_gateway(central.url)
    gateway.start()
    pressed_at = "2026-11-29T12:00:00.250+08:00"
    long_press = {
        "seq": 42,
        "action": "long",
        "battery": 87,
        "ts": pressed_at,
        # Unknown fields travel upstream untouched, and the payload cannot name the device.
        "firmware": "2.1.0",
        "device_id": "btn-impostor",
        "extra": {"nested": [1, 2, {"deep": True}], "text": "帮帮我"},
    }
    before = time.time()
    publish(
        broker.port,
        [
            (device_topic("btn-0007"), json.dumps(long_press, ensure_ascii=False)),
            (device_topic("btn-0008"), json.dumps({"seq": 1, "battery": 55})),
            (device_topic("btn-0009"), json.dumps({"seq": 9, "action": "double"})),
        ],
    )
    arrived = wait_for(
        lambda: (found := presses(central.events())) and len(found) >= 3 and found,
        what="three presses at the central",
    )
    after = time.time()
    assert len(arrived) == 3
    by_device = {event["device_id"]: event for event in arrived}
    assert set(by_device) == {"btn-0007", "btn-0008", "btn-0009"}

    long_event = by_device["btn-0007"]
    assert uuid.UUID(long_event["id"])
    assert long_event["kind"] == "alert"
    assert long_event["type"] == "button.press"
    assert long_event["priority"] == "critical"
    assert moment(long_event["occurred_at"]) == moment(pressed_at)
    received = moment(long_event["received_at"]).timestamp()
    assert before - 1 <= received <= after + 1
    data = long_event["data"]
    for name, value in long_press.items():
        assert data[name] == value, f"data.{name} is {data.get(name)!r}, sent {value!r}"

    single = by_device["btn-0008"]
    assert single["kind"] == "alert"
    assert single["type"] == "button.press"
    assert single["priority"] == "high"
    assert single["data"]["seq"] == 1
    assert single["data"]["battery"] == 55
    assert single["data"]["action"] == "single"  # the default when a press does not say
    # Without a device timestamp the press happened when the gateway received it.
    assert moment(single["occurred_at"]) == moment(single["received_at"])

    double = by_device["btn-0009"]
    assert double["priority"] == "high"
    assert double["data"]["action"] == "double"

    assert len({event["id"] for event in arrived}) == 3
    assert gateway.running()


def test_requests_carry_a_valid_signature(broker, make_gateway):
    with Receiver() as receiver:
        gateway = make_gateway(receiver.url)
        gateway.start()
        publish(broker.port, [(device_topic("btn-0100"), json.dumps({"seq": 5}))])
        receiver.wait_for_events(presses, what="the press at the receiver")
        requests = receiver.requests()
        assert requests, "no request reached the receiver"
        for request in requests:
            headers = request.headers
            assert headers[GATEWAY_HEADER] == GATEWAY_ID
            assert headers["Content-Type"].split(";")[0].strip() == "application/json"
            timestamp = headers[TIMESTAMP_HEADER]
            assert timestamp.isdigit()
            assert abs(int(timestamp) - time.time()) < 300
            claimed = headers[SIGNATURE_HEADER]
            assert check_signature(GATEWAY_KEY.encode(), timestamp, request.body, claimed) is None
            # The signature covers the body and the key: anything else does not verify.
            assert check_signature(b"another key", timestamp, request.body, claimed)
            assert check_signature(GATEWAY_KEY.encode(), timestamp, request.body + b" ", claimed)
            assert request.signature_error is None
            assert request.status == 200
            assert request.payload["gateway_id"] == GATEWAY_ID
            moment(request.payload["sent_at"])
        [press] = presses(receiver.events())
        assert press["device_id"] == "btn-0100"
        assert press["data"]["seq"] == 5


def test_logs_are_batched(broker, make_gateway, tmp_path):
    with Receiver() as receiver:
        gateway = make_gateway(receiver.url)
        set_option(gateway.config, "outbox", "log_batch_size", "40")
        set_option(gateway.config, "outbox", "log_linger", "0.3")
        gateway.start()
        receiver.wait_for_events(
            lambda events: any(e["type"] == "gateway.started" for e in events),
            what="gateway.started",
        )
        devices = [f"btn-{n:04d}" for n in range(4)]
        for device in devices:
            lines = [
                json.dumps({"state": "online", "battery": 90, "rssi": -60, "n": n})
                for n in range(50)
            ]
            mosquitto_pub(broker.port, device_topic(device, "status"), lines, tmp_path)

        def statuses(events: list[dict]) -> list[dict]:
            return [e for e in events if e["device_id"] in devices and e["kind"] == "log"]

        receiver.wait_for_events(lambda events: len(statuses(events)) >= 200, what="200 logs")
        logs = statuses(receiver.events())
        assert len(logs) == 200
        assert {(e["device_id"], e["data"]["n"]) for e in logs} == {
            (device, n) for device in devices for n in range(50)
        }
        carrying = [
            request
            for request in receiver.requests()
            if any(e.get("device_id") in devices for e in request.events)
        ]
        assert all(request.status == 200 for request in carrying)
        # Batched: far fewer requests than logs, none larger than the configured size.
        assert len(carrying) <= 200 // 4, f"{len(carrying)} requests for 200 logs"
        assert max(len(request.events) for request in carrying) > 1
        assert all(len(request.events) <= 40 for request in carrying)


def test_a_message_delivered_twice_is_one_event(broker, central, make_gateway):
    gateway = make_gateway(central.url)
    gateway.start()
    topic = device_topic("btn-0200")
    twice = json.dumps({"seq": 7, "action": "single", "battery": 80})
    no_seq = json.dumps({"action": "double", "battery": 80})
    # The same topic and payload again, as the broker redelivers after a lost PUBACK.
    publish(broker.port, [(topic, twice), (topic, twice), (topic, no_seq), (topic, no_seq)])
    # A later press on the same topic: once it is in, the duplicates have been judged.
    publish(broker.port, [(topic, json.dumps({"seq": 8}))])
    wait_for(
        lambda: any(e["data"].get("seq") == 8 for e in presses(central.events())),
        what="the sentinel press",
    )
    mine = [e for e in presses(central.events()) if e["device_id"] == "btn-0200"]
    assert sorted(e["data"].get("seq", -1) for e in mine) == [-1, 7, 8]
    assert len({e["id"] for e in mine}) == 3

    # The redelivery after the first copy already went upstream is still one event.
    publish(broker.port, [(topic, twice), (topic, json.dumps({"seq": 9}))])
    wait_for(
        lambda: any(e["data"].get("seq") == 9 for e in presses(central.events())),
        what="the second sentinel",
    )
    mine = [e for e in presses(central.events()) if e["device_id"] == "btn-0200"]
    assert sorted(e["data"].get("seq", -1) for e in mine) == [-1, 7, 8, 9]
