"""Alerts belong to their gateway: an alert's identity and every change to it are keyed by
(gateway, device), so events signed with another gateway's key, for the same device, cannot
join, move, touch or close it, and the butler's acknowledgement goes back to the gateway whose
button was pressed. A database from before this rule is migrated and its open alerts go on.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_bridge.alerts.book import SCHEMA, AlertBook
from cloud_bridge.alerts.states import Listing, Step
from cloud_bridge.config import AlertsSection
from cloud_bridge.receiver.postgres import PostgresDatabase
from cloud_bridge.receiver.store import Database, EventStore, SQLiteDatabase
from mashang.signing import signed_headers, signed_poll_headers
from tests.helpers.console import (
    REGISTRY,
    ConsoleClient,
    admin_cli,
    alert_detail,
    alerts,
    enrichment,
    event,
    feedback_for,
    now_text,
    press,
    request,
    set_password,
    wait_alert,
)
from tests.helpers.support import Central, wait_for

pytestmark = pytest.mark.central

GW_A, KEY_A = "gw-a", "key-a-5d1e7f03"
GW_B, KEY_B = "gw-b", "key-b-9c2a4b68"
KEYS = {GW_A: KEY_A, GW_B: KEY_B}


# -- as a gateway ---------------------------------------------------------------------------


def send(central: Central, gateway_id: str, events: list[dict]) -> None:
    """POST /v1/ingest signed with that gateway's own key."""
    body = json.dumps({"gateway_id": gateway_id, "sent_at": now_text(), "events": events},
                      ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json"}
    headers |= signed_headers(gateway_id, KEYS[gateway_id].encode(), body)
    answer = request(f"{central.url}/v1/ingest", "POST", body, headers)
    assert answer.status == 200, (answer.status, answer.body)


def poll(central: Central, gateway_id: str, after: str = "", wait: int = 0) -> dict:
    target = f"/v1/gateways/{gateway_id}/commands?after={after}&wait={wait}"
    headers = signed_poll_headers(gateway_id, KEYS[gateway_id].encode(), target)
    answer = request(
        f"{central.url}{target}",
        headers=headers, timeout=wait + 10,
    )
    assert answer.status == 200, (answer.status, answer.body)
    return answer.body


@pytest.fixture
def central(tmp_path: Path, central_database: str | None) -> Iterator[Central]:
    """A central with two gateways, each with its own key, and the butler of 3号楼."""
    folder = tmp_path / "central"
    central = Central(folder, extra="registry_poll = 0.1", database=central_database)
    with central.config.open("a") as config:  # the file ends with its [gateways] table
        config.write("".join(f'{gateway} = "{key}"\n' for gateway, key in KEYS.items()))
    source = folder / "import.json"
    source.write_text(json.dumps(REGISTRY, ensure_ascii=False), encoding="utf-8")
    result = admin_cli("registry", "import", str(source), "--config", str(central.config))
    assert result.returncode == 0, result.stderr
    set_password(central, "b-wang", "correct horse battery")
    central.start()
    yield central
    central.kill()


def offline(device_id: str) -> dict:
    return event("button.offline", device_id, {"reason": "last_will"} | enrichment(device_id),
                 priority="normal")


def online(device_id: str) -> dict:
    return event("button.online", device_id, enrichment(device_id), priority="normal")


@pytest.mark.system
def test_another_gateways_key_cannot_touch_move_join_or_close_this_gateways_alerts(
    central: Central,
) -> None:
    cursor_a = poll(central, GW_A)["cursor"]  # the registry, first
    cursor_b = poll(central, GW_B)["cursor"]
    pressed = press("btn-0007", "a-1")
    send(central, GW_A, [pressed, offline("btn-0008")])
    help_a = wait_alert(central, "btn-0007")
    offline_a = wait_alert(central, "btn-0008")
    assert help_a["gateway_id"] == offline_a["gateway_id"] == GW_A

    # Gateway B, with its own valid key, names A's devices and A's ids.
    handled = event("alert.handled_locally", "btn-0007",
                    {"alert_id": pressed["id"], "gateway_alert_id": "a-1", "by": "值班"})
    handled["kind"] = "log"
    marker = press("btn-0501", "b-marker")
    send(central, GW_B, [press("btn-0007", "a-1", presses=2, repeat=True),
                         press("btn-0007", "a-1", action="long", presses=3, repeat=True),
                         online("btn-0008"), handled, marker])
    # Events are applied in the order they were stored: once the last is, all of B's are.
    wait_alert(central, "btn-0501")

    mine = alert_detail(central, help_a["id"])
    assert mine["alert"]["gateway_id"] == GW_A, "B's repeat moved A's alert to B"
    assert mine["alert"]["presses"] == 1, "B's repeats joined A's alert"
    assert mine["alert"]["priority"] == help_a["priority"], "B's long press raised A's alert"
    assert [s["step"] for s in mine["steps"] if s["step"] == Step.HANDLED_LOCALLY] == []
    assert not [s for s in mine["steps"] if GW_B in str(s["who"])], mine["steps"]
    assert alert_detail(central, offline_a["id"])["alert"]["state"] != "resolved", (
        "B's button.online closed A's offline alert")
    # B's events about the device are B's own alert, beside A's.
    theirs = [a for a in alerts(central, device_id="btn-0007") if a["id"] != help_a["id"]]
    assert [(a["gateway_id"], a["category"], a["presses"]) for a in theirs] == [
        (GW_B, "help", 2)]

    # The same events from A itself do what they are for: the rule is the gateway, not the
    # event.
    send(central, GW_A, [press("btn-0007", "a-1", presses=2, repeat=True), online("btn-0008")])
    wait_for(lambda: alert_detail(central, offline_a["id"])["alert"]["state"] == "resolved",
             what="A's own button.online to close A's offline alert")
    assert alert_detail(central, help_a["id"])["alert"]["presses"] == 2

    # The butler's acknowledgement goes to A's queue, for A's id of the emergency.
    console = ConsoleClient(central)
    assert console.login("b-wang").status == 200
    assert console.act(help_a["id"], "acknowledge").status == 200

    def feedback_at_a() -> list[dict]:
        return feedback_for(poll(central, GW_A, cursor_a, wait=2)["commands"], "a-1")

    [command] = wait_for(feedback_at_a, what="the feedback command in A's queue")
    assert (command["device_id"], command["state"]) == ("btn-0007", "acknowledged")
    assert feedback_for(poll(central, GW_B, cursor_b)["commands"], "a-1") == []


# -- a database from before the rule ----------------------------------------------------------


OLD_ALERT = {
    "id": "old-alert", "gateway_id": GW_A, "device_id": "btn-0007", "type": "button.press",
    "category": "help", "priority": "high", "state": "raised", "building": "B3", "presses": 1,
    "escalations": 0, "gateway_alert_id": "a-1", "data": "{}", "raised_at": 1000.0,
    "arrived_at": 1000.1, "next_escalation_at": 1060.1,
    "open_key": "help:btn-0007",  # the old form: the device alone
}


INSERT_OLD_ALERT = (f"INSERT INTO alerts ({', '.join(OLD_ALERT)})"
                    f" VALUES ({', '.join('?' for _ in OLD_ALERT)})")


@pytest.fixture
def old_database(tmp_path: Path, central_database: str | None) -> Iterator[Database]:
    """OLD_ALERT open in the oldest database of the engine: on SQLite, a file as the release
    before schema versions made it; on PostgreSQL (which came later), one at the first step
    of the alerts' schema."""
    db: Database
    if central_database is None:
        db = SQLiteDatabase(made_before_versions(tmp_path / "central.sqlite"))
    else:
        db = PostgresDatabase(central_database)
        db.migrate("alerts", [SCHEMA])
        with db.transaction() as sql:
            sql.execute(INSERT_OLD_ALERT, list(OLD_ALERT.values()))
    yield db
    db.close()


def made_before_versions(path: Path) -> Path:
    old = sqlite3.connect(path)
    old.executescript(SCHEMA)
    old.execute(INSERT_OLD_ALERT, list(OLD_ALERT.values()))
    old.commit()
    old.close()
    return path


@pytest.mark.unit
def test_an_open_alert_of_the_old_schema_is_migrated_and_still_joins_new_presses(
    old_database: Database,
) -> None:
    db = old_database
    store = EventStore(db)
    book = AlertBook(db, AlertsSection())
    assert db.rows("SELECT open_key FROM alerts") == [(f"help:{GW_A}:btn-0007",)]

    repeat = {"id": uuid.uuid4().hex, "kind": "alert", "type": "button.repeat",
              "priority": "critical", "device_id": "btn-0007",
              "data": {"alert_id": "a-1", "presses": 2}}
    store.add(GW_A, [repeat])
    _, changes = book.feed()
    assert [(change.alert.id, change.step) for change in changes] == [
        ("old-alert", Step.PRESSED), ("old-alert", Step.PRIORITY)]
    joined = book.get("old-alert")
    assert joined is not None and (joined.presses, joined.priority) == (2, "critical")
    opened = book.listing(buildings=None, which=Listing.OPEN, limit=10)
    assert [alert.id for alert in opened] == ["old-alert"]


@pytest.mark.unit
def test_two_stalls_caught_at_one_scanner_are_two_alerts_and_the_same_stall_joins(
    database: Database,
) -> None:
    store, book = EventStore(database), AlertBook(database, AlertsSection())

    def violation(stall: str) -> dict:
        return {"id": uuid.uuid4().hex, "kind": "alert", "type": "stall.violation",
                "priority": "high", "device_id": "gate-north",
                "data": {"reason": "revoked", "subject": {"kind": "stall", "id": stall}}}

    store.add(GW_A, [violation("S-017"), violation("S-022"), violation("S-017")])
    book.feed()
    opened = book.listing(buildings=None, which=Listing.OPEN, limit=10)
    assert sorted(alert.data["subject"]["id"] for alert in opened) == ["S-017", "S-022"]
