"""The real central, attacked over HTTP: per-gateway keys, forged or stale signatures, replays.

Two gateways are configured, each with its own key. Every attack below must be refused (401
or 403) and must leave the central's event store exactly as it was: no attack creates an
event, and no attack makes a genuine event appear a second time.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from mashang.signing import (
    GATEWAY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature,
    signed_poll_headers,
)
from tests.helpers.support import ADMIN_TOKEN, Central, get_json, refusal_tally

pytestmark = [pytest.mark.system, pytest.mark.central]

GW_A, KEY_A = "gw-a", "key-a-4f7c1d2e9b"
GW_B, KEY_B = "gw-b", "key-b-8e3a6c0f51"
refused, count_refusals = refusal_tally("at the central")


@pytest.fixture
def two_gateway_central(tmp_path: Path, central_database: str | None):
    central = Central(tmp_path / "central", database=central_database)
    with central.config.open("a") as config:  # [gateways] is the file's last table
        config.write(f'{GW_A} = "{KEY_A}"\n{GW_B} = "{KEY_B}"\n')
    central.start()
    yield central
    central.kill()


def batch(gateway_id: str, n: int = 2) -> tuple[bytes, list[str]]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    events = [{
        "id": event_id, "kind": "alert", "type": "button.press", "priority": "critical",
        "device_id": "btn-0007", "occurred_at": "2026-11-29T12:00:00+08:00",
        "received_at": "2026-11-29T12:00:00.100+08:00", "data": {"seq": k, "action": "long"},
    } for k, event_id in enumerate(ids)]
    body = json.dumps({"gateway_id": gateway_id, "sent_at": "2026-11-29T12:00:01+08:00",
                       "events": events}).encode()
    return body, ids


def signed(gateway_id: str, key: str, body: bytes, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    return {GATEWAY_HEADER: gateway_id, TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(key.encode(), timestamp, body)}


def send(central: Central, headers: dict[str, str], body: bytes = b"", method: str = "POST",
         path: str = "/v1/ingest") -> tuple[int, dict]:
    request = urllib.request.Request(f"{central.url}{path}", data=body if method == "POST"
                                     else None, method=method)
    request.add_header("Content-Type", "application/json")
    for name, value in headers.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def stored_ids(central: Central) -> list[str]:
    return [event["id"] for event in central.events()]


def attack(central: Central, what: str, headers: dict[str, str], body: bytes,
           expected: int = 401, **kwargs) -> dict:
    before = stored_ids(central)
    status, answer = send(central, headers, body, **kwargs)
    assert status == expected, f"{what}: {status} {answer}"
    assert stored_ids(central) == before, f"{what}: the event store changed"
    refused.append(what)
    return answer


def test_forged_stale_and_borrowed_requests_create_no_events(two_gateway_central):
    central = two_gateway_central
    body_b, ids_b = batch(GW_B)
    attack(central, "A's key posting as B", signed(GW_B, KEY_A, body_b), body_b)
    body_a, ids_a = batch(GW_A)
    attack(central, "A signing a batch that names B", signed(GW_A, KEY_A, body_b), body_b,
           expected=403)
    attack(central, "a made-up signature",
           {**signed(GW_A, KEY_A, body_a), SIGNATURE_HEADER: "ab" * 32}, body_a)
    tampered = body_a.replace(b'"long"', b'"single"')
    attack(central, "a body changed after signing", signed(GW_A, KEY_A, body_a), tampered)
    attack(central, "a timestamp 301 s old", signed(GW_A, KEY_A, body_a, time.time() - 301),
           body_a)
    attack(central, "a timestamp 301 s ahead", signed(GW_A, KEY_A, body_a, time.time() + 301),
           body_a)
    attack(central, "a timestamp that is no number",
           {**signed(GW_A, KEY_A, body_a), TIMESTAMP_HEADER: "yesterday"}, body_a)
    attack(central, "an unknown gateway", signed("gw-nobody", KEY_A, body_a), body_a)
    attack(central, "no signature at all", {}, body_a)
    attack(central, "the key's name for a key", signed(GW_A, "key-a", body_a), body_a)
    # The downlink: A cannot read B's commands (its registry, its residents' feedback).
    poll_b = f"/v1/gateways/{GW_B}/commands?after=0&wait=0"
    attack(central, "A polling B's commands", signed_poll_headers(GW_A, KEY_A.encode(), poll_b),
           b"", expected=403, method="GET", path=poll_b)
    attack(central, "A's key polling as B", signed_poll_headers(GW_B, KEY_A.encode(), poll_b),
           b"", method="GET", path=poll_b)
    assert not set(ids_a + ids_b) & set(stored_ids(central))

    # The genuine requests work, each gateway with its own key.
    for gateway_id, key in ((GW_A, KEY_A), (GW_B, KEY_B)):
        body, ids = batch(gateway_id)
        status, answer = send(central, signed(gateway_id, key, body), body)
        assert status == 200 and answer["accepted"] == ids, answer
        stored = {e["id"]: e for e in central.events()}
        assert {stored[i]["gateway_id"] for i in ids} == {gateway_id}


def test_a_replayed_request_creates_nothing_even_after_a_restart(two_gateway_central):
    central = two_gateway_central
    body, ids = batch(GW_A, 3)
    headers = signed(GW_A, KEY_A, body)
    status, answer = send(central, headers, body)
    assert status == 200 and answer["accepted"] == ids
    before = stored_ids(central)
    answer = attack(central, "the same request again", headers, body)
    assert "replay" in answer["error"]

    # The signatures it saw are kept in its database: a restart forgets none of them.
    central.terminate()
    central.start()
    attack(central, "the same request after a restart of the central", headers, body)
    assert stored_ids(central) == before
    assert get_json(f"{central.url}/v1/events?limit=1", token=ADMIN_TOKEN) is not None
