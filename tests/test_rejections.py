"""Bad device input is never dropped silently, and never costs another message.

- What is not a JSON object at all becomes one `gateway.rejected` log event (reason, topic,
  first 512 bytes of the payload) at the central; so does a status message with bad fields.
- On a button's events topic, a JSON object with fields the gateway cannot use is still a
  press (PROTOCOL §6, "when in doubt, a press"): an alert whose `data.invalid` names each bad
  field with the reason, the bad values kept as sent.
- A device id that cannot name a device (longer than the central keeps, or holding control or
  bidirectional-override characters) is refused at ingest with a rejection that names no
  device, never parked in the dead letters at the central.
- The gateway goes on delivering presses after all of it."""

from __future__ import annotations

import json

import pytest

from tests.helpers.support import device_topic, publish, wait_for

pytestmark = pytest.mark.system

# (device id, payload, words the reason must contain) — one device per kind of bad input.
BAD_INPUT: list[tuple[str, bytes, list[str]]] = [
    ("btn-badjson", b'{"seq": 1, "action": "single"', ["JSON"]),
    ("btn-notjson", b"help me!", ["JSON"]),
    ("btn-empty", b"", ["JSON"]),
    ("btn-notutf8", b'{"seq": 4, "note": "\xff\xfe\xc3\x28"}', ["UTF-8"]),
    ("btn-huge", json.dumps({"seq": 5, "pad": "x" * (70 * 1024)}).encode(), ["large"]),
    ("btn-array", json.dumps([{"seq": 6, "action": "single"}]).encode(), ["object"]),
    ("btn-number", b"42", ["object"]),
    ("btn-null", b"null", ["object"]),
    ("btn-deep", b"[" * 50000 + b"]" * 50000, []),
]
# (device id, payload, the fields `data.invalid` must name) — presses all the same.
BAD_FIELDS: list[tuple[str, bytes, set[str]]] = [
    ("btn-battery", json.dumps({"seq": 2, "battery": "lots"}).encode(), {"battery"}),
    ("btn-action", json.dumps({"seq": 3, "action": "triple"}).encode(), {"action"}),
    ("btn-seq", json.dumps({"seq": "first", "action": "single"}).encode(), {"seq"}),
    ("btn-ts", b'{"ts": "0001-01-01T00:00:00+01:00", "battery": -1e309}', {"ts", "battery"}),
    ("btn-nested", b'{"seq": {"a": [1]}, "x": "\\ud800", "deep": ' + b"[" * 40 + b"]" * 40
     + b"}", {"seq", "x", "deep"}),
]


def excerpt(payload: bytes) -> str:
    """What the protocol asks for: the first 512 bytes, shown as text."""
    return payload[:512].decode("utf-8", errors="replace")


def test_each_kind_of_bad_input_is_one_rejected_event(broker, central, make_gateway):
    gateway = make_gateway(central.url)
    gateway.start()
    publish(broker.port, [(device_topic(device), payload) for device, payload, _ in BAD_INPUT])
    # A bad status message, on another channel, is rejected the same way.
    bad_status = json.dumps({"state": "sleeping"}).encode()
    publish(broker.port, [(device_topic("btn-status", "status"), bad_status)])
    publish(broker.port, [(device_topic(device), payload) for device, payload, _ in BAD_FIELDS])
    # After all that, a valid press still goes through.
    publish(broker.port, [(device_topic("btn-good"), json.dumps({"seq": 1, "action": "long"}))])

    press = wait_for(
        lambda: [e for e in central.events() if e["device_id"] == "btn-good"],
        what="the valid press after the bad input",
    )
    assert [(e["type"], e["priority"]) for e in press] == [("button.press", "critical")]
    assert gateway.running()

    cases = [*BAD_INPUT, ("btn-status", bad_status, ["state"])]
    rejected = wait_for(
        lambda: (
            (found := central.events("gateway.rejected")) and len(found) >= len(cases) and found
        ),
        what="every rejection",
    )
    assert len(rejected) == len(cases), [e["device_id"] for e in rejected]
    by_device = {event["device_id"]: event for event in rejected}
    for device, payload, words in cases:
        event = by_device.get(device)
        assert event is not None, f"no gateway.rejected for {device}"
        channel = "status" if device == "btn-status" else "events"
        assert event["kind"] == "log"
        data = event["data"]
        assert data["topic"] == device_topic(device, channel)
        assert data["payload"] == excerpt(payload), device
        assert isinstance(data["reason"], str) and data["reason"], device
        for word in words:
            assert word.lower() in data["reason"].lower(), f"{device}: {data['reason']!r}"
    # Nothing about the bad input became a press, or anything but the rejection.
    devices = {device for device, _, _ in cases}
    others = [e for e in central.events() if e["device_id"] in devices]
    assert {e["type"] for e in others} == {"gateway.rejected"}

    presses = {e["device_id"]: e for e in central.events("button.press")}
    for device, _, fields in BAD_FIELDS:
        event = presses.get(device)
        assert event is not None, f"{device}: its press was lost"
        assert event["kind"] == "alert"
        assert set(event["data"]["invalid"]) == fields, (device, event["data"]["invalid"])
    assert presses["btn-action"]["data"]["action"] == "single"
    assert presses["btn-action"]["data"]["device"]["action"] == "triple", "kept as sent"
    assert presses["btn-ts"]["occurred_at"] == presses["btn-ts"]["received_at"]


@pytest.mark.parametrize(("device", "why"), [
    ("b" * 200, "200 characters"),
    ("btn-\u202e7000", "U+202E"),
    ("btn-\u200b7", "U+200B"),
])
def test_a_device_id_that_cannot_name_a_device_is_refused_at_ingest(
        broker, central, make_gateway, device: str, why: str):
    gateway = make_gateway(central.url)
    gateway.start()
    publish(broker.port, [(device_topic(device), json.dumps({"seq": 1, "action": "long"})),
                          (device_topic("btn-good"), json.dumps({"seq": 1}))])
    wait_for(lambda: central.events("button.press"), what="the good press")
    [refused] = wait_for(lambda: central.events("gateway.rejected"), what="the refusal")
    assert refused["device_id"] is None, "the refused id stands nowhere as a device"
    assert why in refused["data"]["reason"]
    assert [e["device_id"] for e in central.events("button.press")] == ["btn-good"]
    assert "dead letter" not in gateway.output()


def test_the_gateway_keeps_going_after_a_burst_of_bad_input(broker, central, make_gateway):
    gateway = make_gateway(central.url)
    gateway.start()
    burst = [(device_topic(f"btn-{n:03d}"), b"\x00\xff" + bytes([n % 256]) * n) for n in range(200)]
    publish(broker.port, burst)
    publish(broker.port, [(device_topic("btn-after"), json.dumps({"seq": 77}))])
    wait_for(
        lambda: any(e["device_id"] == "btn-after" for e in central.events("button.press")),
        what="the press after the burst",
    )
    rejected = wait_for(
        lambda: (found := central.events("gateway.rejected")) and len(found) >= 200 and found,
        what="200 rejections",
    )
    assert len(rejected) == 200
    assert {e["device_id"] for e in rejected} == {f"btn-{n:03d}" for n in range(200)}
    assert gateway.running()
    assert gateway.terminate() == 0
