"""Poll signatures v1.1 (PROTOCOL §6): a command poll is signed over a fresh nonce, its method,
path and query; the project's central refuses the v1 form, a changed query and a nonce it has
seen, and remembers the nonces (and ingest signatures) in its database: across a restart, and
across central processes on one database.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud_bridge.receiver.replays import PRUNE_EVERY, Replays
from cloud_bridge.receiver.store import Database
from mashang.signing import MAX_SKEW_SECONDS, NONCE_HEADER, signed_headers, signed_poll_headers
from tests.helpers.console import event, now_text, request
from tests.helpers.support import GATEWAY_ID, GATEWAY_KEY, Central

pytestmark = pytest.mark.central

KEY = GATEWAY_KEY.encode()
TARGET = f"/v1/gateways/{GATEWAY_ID}/commands?after=0&wait=0"
# Each engine's durability setting, as a connection has it outside a transaction (full).
DURABILITY = {"sqlite": ("PRAGMA synchronous", [(2,)]),
              "postgresql": ("SHOW synchronous_commit", [("on",)])}


def poll(central: Central, headers: dict[str, str], target: str = TARGET):
    return request(f"{central.url}{target}", headers=headers)


@pytest.mark.system
def test_a_v1_poll_is_refused_with_the_reason(central: Central) -> None:
    answer = poll(central, signed_headers(GATEWAY_ID, KEY, b""))
    assert answer.status == 401
    assert answer.body["code"] == "missing_nonce"
    assert NONCE_HEADER in answer.body["error"] and "v1.1" in answer.body["error"]
    headers = signed_poll_headers(GATEWAY_ID, KEY, TARGET) | {NONCE_HEADER: "not-hex"}
    assert poll(central, headers).body["code"] == "bad_nonce"
    assert poll(central, signed_poll_headers(GATEWAY_ID, KEY, TARGET)).status == 200


@pytest.mark.system
def test_a_poll_whose_query_was_changed_is_refused(central: Central) -> None:
    headers = signed_poll_headers(GATEWAY_ID, KEY, TARGET)
    answer = poll(central, headers, TARGET.replace("wait=0", "wait=1"))
    assert (answer.status, answer.body["code"]) == (401, "bad_signature")


@pytest.mark.system
def test_a_replayed_poll_is_refused_even_after_a_restart(central: Central) -> None:
    headers = signed_poll_headers(GATEWAY_ID, KEY, TARGET)
    assert poll(central, headers).status == 200
    again = poll(central, headers)
    assert (again.status, again.body["code"]) == (401, "replayed")
    central.terminate()
    central.start()
    after_restart = poll(central, headers)
    assert (after_restart.status, after_restart.body["code"]) == (401, "replayed")
    # Killed outright, too: the nonce was committed before the poll was answered.
    fresh = signed_poll_headers(GATEWAY_ID, KEY, TARGET)
    assert poll(central, fresh).status == 200
    central.kill()
    central.start()
    after_kill = poll(central, fresh)
    assert (after_kill.status, after_kill.body["code"]) == (401, "replayed")
    assert "refused a command poll" in central.output()
    assert poll(central, signed_poll_headers(GATEWAY_ID, KEY, TARGET)).status == 200


@pytest.mark.system
def test_processes_on_one_database_share_the_replay_cache(central: Central, tmp_path: Path) -> None:
    other = Central(tmp_path / "other", database=central.database)
    # The same data folder (the same SQLite file) and database as the first, on another port.
    config = other.config.read_text().replace(str(tmp_path / "other"), str(tmp_path / "central"))
    other.config.write_text(config)
    other.start()
    try:
        headers = signed_poll_headers(GATEWAY_ID, KEY, TARGET)
        assert poll(central, headers).status == 200
        replayed = poll(other, headers)
        assert (replayed.status, replayed.body["code"]) == (401, "replayed")
        assert poll(other, signed_poll_headers(GATEWAY_ID, KEY, TARGET)).status == 200
        # An ingest signature accepted by one process is refused by the other.
        body = json.dumps({"gateway_id": GATEWAY_ID, "sent_at": now_text(),
                           "events": [{**event("button.status", "btn-0007", {"state": "online"},
                                               priority="low"), "kind": "log"}]}).encode()
        signed = {"Content-Type": "application/json", **signed_headers(GATEWAY_ID, KEY, body)}
        assert request(f"{other.url}/v1/ingest", "POST", body, signed).status == 200
        again = request(f"{central.url}/v1/ingest", "POST", body, signed)
        assert (again.status, again.body["code"]) == (401, "replayed")
    finally:
        other.kill()


@pytest.mark.unit
def test_marks_are_kept_for_their_window_and_then_pruned(database: Database) -> None:
    now = [1_000_000.0]
    db = database
    replays = Replays(db, clock=lambda: now[0])
    stamp = str(int(now[0]))
    assert replays.first_use("poll:gw:aa", stamp)
    assert not replays.first_use("poll:gw:aa", stamp)
    assert replays.first_use("poll:gw:bb", stamp)  # another nonce
    now[0] += MAX_SKEW_SECONDS + PRUNE_EVERY + 2  # past the window: the marks are pruned
    assert replays.first_use("poll:gw:cc", str(int(now[0])))
    rows = db.rows("SELECT mark FROM seen_requests ORDER BY mark")
    assert rows == [("poll:gw:cc",)]
    # Marks skip their own fsync; every other write of the central keeps its full one.
    query, full = DURABILITY[db.engine]
    assert db.rows(query) == full
