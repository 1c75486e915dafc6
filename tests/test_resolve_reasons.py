"""Resolving an alert says why: a one-tap reason (到场处理 arrived, 误按 mistaken, 电话确认
phoned, other) and an optional note, which "other" needs. The reason is stored on the alert and
in its resolve step, answered by the console and the operators' API and shown in history; a
resolve without a good reason is refused with the reason and changes nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_bridge.alerts.book import SCHEMA, AlertBook
from cloud_bridge.config import AlertsSection
from cloud_bridge.receiver.store import Database
from tests.helpers.console import (
    ConsoleClient,
    alert_detail,
    event,
    ingest,
    press,
    start_central,
    steps,
    wait_alert,
)
from tests.helpers.support import Central, wait_for

pytestmark = pytest.mark.central

B3 = {"id": "B3", "name": "3号楼"}


@pytest.fixture
def central(tmp_path: Path, central_database: str | None) -> Iterator[Central]:
    central = start_central(tmp_path / "central", accounts=("b-wang",), database=central_database)
    yield central
    central.kill()


@pytest.fixture
def butler(central: Central) -> ConsoleClient:
    butler = ConsoleClient(central)
    assert butler.login("b-wang").status == 200
    return butler


def raise_press(central: Central, device_id: str = "btn-0007") -> dict:
    ingest(central, [press(device_id, uuid.uuid4().hex)])
    return wait_alert(central, device_id, lambda a: a["state"] != "resolved")


@pytest.mark.system
@pytest.mark.parametrize(
    ("reason", "note"),
    [("arrived", None), ("mistaken", "孙子按着玩"), ("phoned", None), ("other", "邻居已送医")],
)
def test_the_reason_is_stored_answered_and_in_history(
    central: Central, butler: ConsoleClient, reason: str, note: str | None
) -> None:
    alert = raise_press(central)
    answer = butler.act(alert["id"], "resolve", reason, note)
    assert answer.status == 200, answer.body
    shown = answer.body["alert"]
    assert (shown["state"], shown["resolve_reason"], shown["resolve_note"]) == (
        "resolved", reason, note)

    # In the alert's own resolve step, and in the operators' API.
    [resolved] = steps(central, alert["id"], "resolved")
    assert (resolved["who"], resolved["detail"]["reason"], resolved["detail"]["note"]) == (
        "b-wang", reason, note)
    stored = alert_detail(central, alert["id"])["alert"]
    assert (stored["resolve_reason"], stored["resolve_note"]) == (reason, note)

    # And in the butler's history and the alert's page.
    [listed] = butler.get("/v1/console/alerts?view=history").body["alerts"]
    assert (listed["id"], listed["resolve_reason"], listed["resolve_note"]) == (
        alert["id"], reason, note)
    page = butler.get(f"/v1/console/alerts/{alert['id']}").body
    assert page["alert"]["resolve_reason"] == reason


@pytest.mark.system
def test_a_resolve_without_a_good_reason_is_refused_and_changes_nothing(
    central: Central, butler: ConsoleClient
) -> None:
    alert = raise_press(central)
    path = f"/v1/console/alerts/{alert['id']}/resolve"
    refused = {
        b"": "JSON",
        b"not json": "JSON",
        b"[]": "object",
        b"{}": "reason",
        json.dumps({"reason": "done"}).encode(): "reason",
        json.dumps({"reason": None}).encode(): "reason",
        json.dumps({"reason": "other"}).encode(): "note",
        json.dumps({"reason": "other", "note": "   "}).encode(): "note",
        json.dumps({"reason": "arrived", "note": "长" * 501}).encode(): "note",
        json.dumps({"reason": "arrived", "note": 7}).encode(): "note",
    }
    for body, named in refused.items():
        answer = butler.post(path, body)
        assert answer.status == 400, (body, answer.status, answer.body)
        assert named in answer.body["error"], (body, answer.body)
    current = alert_detail(central, alert["id"])
    assert current["alert"]["state"] in ("raised", "notified")
    assert [s for s in current["steps"] if s["step"] == "resolved"] == []

    # At the limit is fine; whitespace around the note is not kept.
    answer = butler.post(path, json.dumps({"reason": "other", "note": f" {'长' * 500} "}).encode())
    assert answer.status == 200, answer.body
    assert answer.body["alert"]["resolve_note"] == "长" * 500


@pytest.mark.system
def test_acknowledge_needs_no_body_and_a_closing_event_gives_no_reason(
    central: Central, butler: ConsoleClient
) -> None:
    alert = raise_press(central)
    acknowledged = butler.post(f"/v1/console/alerts/{alert['id']}/acknowledge", b"")
    assert acknowledged.status == 200, acknowledged.body
    assert acknowledged.body["alert"]["state"] == "acknowledged"
    assert acknowledged.body["alert"]["resolve_reason"] is None

    # The button came back: its offline reminder closes by the gateway's event, with no reason.
    ingest(central, [event("button.offline", "btn-0008", {"building": B3}, "normal")])
    offline = wait_alert(central, "btn-0008")
    ingest(central, [event("button.online", "btn-0008", {"building": B3}, "normal")])
    closed = wait_for(
        lambda: (found := alert_detail(central, offline["id"]))["alert"]["state"] == "resolved"
        and found,
        what="the offline reminder to close",
    )
    assert (closed["alert"]["resolve_reason"], closed["alert"]["resolve_note"]) == (None, None)
    [resolved] = [s for s in closed["steps"] if s["step"] == "resolved"]
    assert resolved["detail"]["event"] == "button.online" and resolved["detail"]["reason"] is None


@pytest.mark.unit
def test_a_database_from_before_reasons_keeps_its_alerts_and_takes_reasons(
    database: Database,
) -> None:
    db = database
    db.migrate("alerts", [SCHEMA])  # as the release before resolve reasons left it
    with db.transaction() as sql:
        sql.execute(
            "INSERT INTO alerts (id, gateway_id, device_id, type, category, priority, state,"
            " building, presses, escalations, data, raised_at, arrived_at, open_key) VALUES"
            " ('a-old', 'gw-1', 'btn-1', 'button.offline', 'offline', 'normal', 'raised',"
            " 'B3', 0, 0, '{}', 1.0, 1.0, 'offline:btn-1')"
        )
    book = AlertBook(db, AlertsSection())
    old = book.get("a-old")
    assert old is not None and (old.resolve_reason, old.resolve_note) == (None, None)
    change = book.resolve("a-old", "b-wang", "王管家", "phoned", "电话里说没事")
    assert change is not None
    again = book.get("a-old")
    assert again is not None
    assert (again.state, again.resolve_reason, again.resolve_note) == (
        "resolved", "phoned", "电话里说没事")
    # Opening it again changes nothing more.
    version = db.version("alerts")
    AlertBook(db, AlertsSection())
    assert db.version("alerts") == version
