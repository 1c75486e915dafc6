"""The reference central takes only authentic, fresh, well-formed requests (PROTOCOL §3), and
shows its events only to an operator with the admin token."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import pytest

from mashang.signing import GATEWAY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from tests.helpers.support import ADMIN_TOKEN, GATEWAY_ID, GATEWAY_KEY

pytestmark = [pytest.mark.system, pytest.mark.central]


def http(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    """(status, JSON answer) of a real HTTP request; error statuses are answers too."""
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw)
        except ValueError:
            return error.code, {"raw": raw.decode(errors="replace")}


def wire_event(**changes) -> dict:
    moment = "2026-11-29T12:00:00.981+08:00"
    return {
        "id": str(uuid.uuid4()),
        "kind": "alert",
        "type": "button.press",
        "priority": "high",
        "device_id": "btn-0007",
        "occurred_at": moment,
        "received_at": moment,
        "data": {"seq": 1, "action": "single"},
        **changes,
    }


def batch(*events: dict, gateway_id: str = GATEWAY_ID) -> bytes:
    document = {"gateway_id": gateway_id, "sent_at": "2026-11-29T12:00:01.250+08:00"}
    return json.dumps({**document, "events": list(events)}).encode()


def signed(
    body: bytes,
    *,
    gateway_id: str = GATEWAY_ID,
    key: str = GATEWAY_KEY,
    timestamp: int | None = None,
) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        GATEWAY_HEADER: gateway_id,
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: signature(key.encode(), stamp, body),
        "Content-Type": "application/json",
    }


def ingest(central, body: bytes, headers: dict) -> tuple[int, dict]:
    return http(f"{central.url}/v1/ingest", body, headers)


def stored_ids(central) -> set[str]:
    return {event["id"] for event in central.events()}


def test_an_authentic_request_is_stored_once(central):
    event = wire_event()
    body = batch(event)
    first = int(time.time())
    status, answer = ingest(central, body, signed(body, timestamp=first))
    assert status == 200
    assert answer == {"accepted": [event["id"]], "duplicates": []}
    [stored] = [e for e in central.events() if e["id"] == event["id"]]
    assert stored["gateway_id"] == GATEWAY_ID
    assert stored["data"] == event["data"]
    # The same events again, in a new request: a duplicate, not a second event.
    again = batch(event)
    # (Signed at another second: the same bytes at the same second would be a replay.)
    status, answer = ingest(central, again, signed(again, timestamp=first - 1))
    assert status == 200
    assert answer == {"accepted": [], "duplicates": [event["id"]]}
    assert len([e for e in central.events() if e["id"] == event["id"]]) == 1


def refused_requests():
    """(what, body, headers, statuses): requests the central must turn away."""
    now = int(time.time())
    cases = []

    body = batch(event := wire_event())
    headers = signed(body)
    headers[SIGNATURE_HEADER] = "0" * 64
    cases.append(("bad signature", body, headers, {401}, event))

    body = batch(event := wire_event())
    cases.append(("wrong key", body, signed(body, key="not-the-key"), {401}, event))

    body = batch(event := wire_event())
    cases.append(("body not the one signed", body, signed(body + b" "), {401}, event))

    body = batch(event := wire_event())
    cases.append(("stale timestamp", body, signed(body, timestamp=now - 301), {401}, event))

    body = batch(event := wire_event())
    # A minute past the window: just past it is back inside once the loaded machine takes
    # a second or two to send it.
    cases.append(
        ("timestamp from the future", body, signed(body, timestamp=now + 360), {401}, event)
    )

    body = batch(event := wire_event())
    cases.append(("hours-old timestamp", body, signed(body, timestamp=now - 7200), {401}, event))

    body = batch(event := wire_event(), gateway_id="gw-unknown")
    headers = signed(body, gateway_id="gw-unknown", key=GATEWAY_KEY)
    cases.append(("unknown gateway", body, headers, {401}, event))

    body = batch(event := wire_event())
    cases.append(("no signature headers", body, {"Content-Type": "application/json"}, {401}, event))

    body = batch(event := wire_event(), gateway_id="gw-someone-else")
    cases.append(("body names another gateway", body, signed(body), {401, 403}, event))

    event = wire_event()
    body = batch(event)[:-5] + b"{,"
    cases.append(("bad JSON", body, signed(body), {400, 422}, event))

    event = wire_event(kind="urgent")
    body = batch(event)
    cases.append(("a kind the protocol does not have", body, signed(body), {400, 422}, event))

    event = wire_event(priority="sky-high")
    body = batch(event)
    cases.append(("an unknown priority", body, signed(body), {400, 422}, event))

    event = wire_event()
    del event["occurred_at"]
    body = batch(event)
    cases.append(("an event without occurred_at", body, signed(body), {400, 422}, event))

    # No engine's column takes it (PostgreSQL's text holds no NUL): refused on both alike.
    event = wire_event(type="button.\x00press")
    body = batch(event)
    cases.append(("a NUL character in an event's type", body, signed(body), {422}, event))

    body = json.dumps([wire_event()]).encode()
    cases.append(("a JSON array", body, signed(body), {400, 422}, json.loads(body)[0]))
    return cases


def test_bad_requests_are_refused_and_create_no_events(central):
    for what, body, headers, statuses, event in refused_requests():
        status, answer = ingest(central, body, headers)
        assert status in statuses, f"{what}: answered {status} {answer}"
        assert "error" in answer, f"{what}: the refusal gives no reason: {answer}"
        assert event["id"] not in stored_ids(central), f"{what}: created an event"
    assert central.events() == []
    assert central.running()


def test_a_replayed_request_is_refused(central):
    first, second = wire_event(), wire_event()
    body = batch(first)
    headers = signed(body)
    assert ingest(central, body, headers)[0] == 200
    # Captured and played again, byte for byte, within the timestamp window.
    status, answer = ingest(central, body, headers)
    assert status == 401, answer
    # A replay cannot smuggle new events either: a body it did not sign fails.
    other = batch(first, second)
    status, _ = ingest(central, other, headers)
    assert status == 401
    assert stored_ids(central) == {first["id"]}


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        ("Bearer wrong-token", 401),
        (f"Bearer {ADMIN_TOKEN}x", 401),
        ("Bearer ", 401),
        (f"Bearer {ADMIN_TOKEN}", 200),
    ],
)
def test_listing_events_needs_the_admin_token(central, authorization, status):
    event = wire_event()
    body = batch(event)
    assert ingest(central, body, signed(body))[0] == 200
    headers = {"Authorization": authorization} if authorization else {}
    answered, answer = http(f"{central.url}/v1/events", headers=headers)
    assert answered == status
    if status == 200:
        assert [e["id"] for e in answer["events"]] == [event["id"]]
    else:
        assert "events" not in answer
        assert event["id"] not in json.dumps(answer)
