"""The central's alert lifecycle (raised → notified → acknowledged → resolved), one open alert
per button, and the downlink that carries its feedback and the registry to the gateway."""

from __future__ import annotations

import json
import statistics
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.console import (
    REGISTRY,
    ConsoleClient,
    admin_cli,
    alert_detail,
    alerts,
    event,
    feedback_for,
    ingest,
    pages,
    poll_commands,
    press,
    start_central,
    steps,
    wait_alert,
)
from tests.helpers.support import Central, wait_for

pytestmark = [pytest.mark.system, pytest.mark.central]


@pytest.fixture
def central(tmp_path: Path, central_database: str | None) -> Iterator[Central]:
    central = start_central(tmp_path / "central", accounts=("b-wang", "duty"),
                            database=central_database)
    yield central
    central.kill()


def test_presses_of_one_button_fold_into_one_open_alert(central: Central) -> None:
    first = press("btn-0007", "g-1")
    ingest(central, [first])
    ingest(central, [press("btn-0007", "g-1", presses=2, repeat=True)])
    # The gateway's guard window passed: a new press of its own, still the same emergency here.
    ingest(central, [press("btn-0007", "g-2")])
    alert = wait_alert(central, "btn-0007", lambda a: a["presses"] == 3)

    # A batch the gateway sends again (its answer was lost) is a duplicate, not a fourth press.
    assert ingest(central, [first])["duplicates"] == [first["id"]]
    ingest(central, [press("btn-0007", "g-2", presses=2, repeat=True)])
    alert = wait_alert(central, "btn-0007", lambda a: a["presses"] >= 4)
    assert alert["presses"] == 4
    assert len(alerts(central, device_id="btn-0007")) == 1
    assert alert["state"] in ("raised", "notified")
    assert alert["gateway_alert_id"] == "g-2"
    assert [s["step"] for s in steps(central, alert["id"])].count("pressed") == 3
    # Only the raise paged anyone: its ladder's first rung, the building's primary butler.
    assert pages(central, alert["id"], 1) == [["butler:b-wang"]]


def test_a_long_press_raises_the_open_alerts_priority(central: Central) -> None:
    ingest(central, [press("btn-0008", "g-1")])
    wait_alert(central, "btn-0008")
    ingest(central, [press("btn-0008", "g-1", action="long", presses=2, repeat=True)])
    alert = wait_alert(central, "btn-0008", lambda a: a["priority"] == "critical")
    [raised] = steps(central, alert["id"], "priority")
    assert raised["detail"] == {"from": "high", "to": "critical"}
    # A higher priority pages the current rung again.
    assert len(pages(central, alert["id"], 2)) == 2


def test_acknowledge_and_resolve_are_recorded_and_sent_to_the_button(central: Central) -> None:
    first = poll_commands(central)
    assert first["commands"][0]["type"] == "registry.replace"  # a new gateway: the registry first
    cursor = first["cursor"]

    ingest(central, [press("btn-0007", "g-7")])
    alert = wait_alert(central, "btn-0007")
    butler = ConsoleClient(central)
    assert butler.login("b-wang").status == 200
    answer = butler.act(alert["id"], "acknowledge")
    assert answer.status == 200 and answer.body["alert"]["state"] == "acknowledged"
    assert butler.act(alert["id"], "acknowledge").status == 200  # twice is still once

    polled = poll_commands(central, after=cursor, wait=10)
    [acknowledged] = feedback_for(polled["commands"], "g-7")
    assert acknowledged == {
        "id": acknowledged["id"],
        "type": "feedback",
        "device_id": "btn-0007",
        "alert_id": "g-7",
        "state": "acknowledged",
        "by": "王管家",
    }

    # A long-poll already waiting answers as soon as the butler resolves.
    answers: list[dict] = []
    waiting = threading.Thread(
        target=lambda: answers.append(poll_commands(central, after=polled["cursor"], wait=20))
    )
    waiting.start()
    assert butler.act(alert["id"], "resolve").status == 200
    waiting.join(30)
    [resolved] = feedback_for(answers[0]["commands"], "g-7")
    assert resolved["state"] == "resolved" and resolved["by"] == "王管家"

    detail = alert_detail(central, alert["id"])
    assert detail["alert"]["state"] == "resolved"
    recorded = [(s["step"], s["who"]) for s in detail["steps"]]
    assert ("acknowledged", "b-wang") in recorded and ("resolved", "b-wang") in recorded
    assert [s["step"] for s in detail["steps"]].count("acknowledged") == 1
    times = detail["alert"]
    assert times["raised_at"] <= times["arrived_at"] <= times["acknowledged_at"]
    assert times["acknowledged_at"] <= times["resolved_at"]
    assert butler.act(alert["id"], "acknowledge").status == 409  # resolved is final

    # Once resolved, the next press is a new alert.
    ingest(central, [press("btn-0007", "g-8")])
    wait_for(lambda: len(alerts(central, device_id="btn-0007")) == 2, what="a second alert")


def test_an_unknown_button_still_raises_an_alert_for_the_duty_contact(central: Central) -> None:
    ingest(central, [press("btn-9999", "g-x")])
    alert = wait_alert(central, "btn-9999")
    assert alert["building"] is None and alert["data"]["unregistered"] is True
    assert pages(central, alert["id"], 1) == [["duty"]]

    duty, butler = ConsoleClient(central), ConsoleClient(central)
    duty.login("duty")
    butler.login("b-wang")
    assert [a["id"] for a in duty.get("/v1/console/alerts").body["alerts"]] == [alert["id"]]
    assert butler.get("/v1/console/alerts").body["alerts"] == []


def test_an_offline_reminder_is_quiet_and_closes_when_the_button_returns(
    central: Central,
) -> None:
    building = {"id": "B3", "name": "3号楼"}
    offline = {"reason": "last_will", "battery": 15, "building": building}
    ingest(central, [event("button.offline", "btn-0008", offline, priority="normal")])
    alert = wait_alert(central, "btn-0008")
    assert (alert["category"], alert["priority"], alert["next_escalation_at"]) == (
        "offline",
        "normal",
        None,
    )
    assert pages(central, alert["id"], 1) == [["butler:b-wang"]]
    # A press while the button's offline reminder is open is its own emergency.
    ingest(central, [press("btn-0008", "g-1")])
    wait_for(lambda: len(alerts(central, device_id="btn-0008")) == 2, what="a help alert")

    ingest(central, [event("button.online", "btn-0008", {"building": building}, "normal")])
    closed = wait_for(
        lambda: alert_detail(central, alert["id"])["alert"]["state"] == "resolved",
        what="the offline reminder to close",
    )
    assert closed
    [help_alert] = alerts(central, device_id="btn-0008", state="open")
    assert help_alert["category"] == "help"


def test_an_import_sends_the_new_registry_to_the_gateway(central: Central, tmp_path: Path) -> None:
    cursor = poll_commands(central)["cursor"]
    rows = tmp_path / "buttons.csv"
    rows.write_text(
        "device_id,name,phone,household,building,room,primary_butler,backup_butler\n"
        "btn-0009,周玉梅,13900000009,H-5-101,B5,101,,\n"
        "btn-0701,吴振华,13900000701,,B7,201,b-li,b-wang\n",
        encoding="utf-8",
    )
    imported = admin_cli("registry", "import", str(rows), "--config", str(central.config))
    assert imported.returncode == 0, imported.stderr

    polled = poll_commands(central, after=cursor, wait=20)
    [replace] = polled["commands"]
    registry = replace["registry"]
    assert replace["type"] == "registry.replace"
    assert registry["version"] == REGISTRY["version"] + 1
    devices = {button["device_id"] for button in registry["buttons"]}
    assert {"btn-0007", "btn-0009", "btn-0701"} <= devices
    assert {"id": "B7", "name": "B7", "primary_butler": "b-li", "backup_butler": "b-wang"} in (
        registry["buildings"]
    )
    assert all(butler["webhooks"] == [] for butler in registry["butlers"])

    exported = admin_cli("registry", "export", "--config", str(central.config), "--format", "csv")
    assert "btn-0701,吴振华,13900000701,,B7,201,b-li,b-wang" in exported.stdout.splitlines()
    as_json = admin_cli("registry", "export", "--config", str(central.config))
    assert json.loads(as_json.stdout)["version"] == registry["version"]

    # A row naming a building nobody looks after is refused whole; nothing changes.
    bad = tmp_path / "bad.csv"
    bad.write_text("device_id,name,building\nbtn-0900,某人,B9\n", encoding="utf-8")
    refused = admin_cli("registry", "import", str(bad), "--config", str(central.config))
    assert refused.returncode == 1 and "B9" in refused.stderr
    assert poll_commands(central, after=polled["cursor"])["commands"] == []


def test_fifty_presses_from_fifty_buttons_reach_the_live_stream(central: Central) -> None:
    duty = ConsoleClient(central)
    duty.login("duty")
    with duty.stream() as live:
        wait_for(lambda: live.events, what="the stream's snapshot")
        for n in range(50):
            ingest(central, [press(f"btn-load-{n:02d}", f"g-{n}")])
        wait_for(
            lambda: len({a["device_id"] for a in live.alerts()}) >= 50,
            what="fifty alerts on the live stream",
        )
    pushed = [a for a in alerts(central, state="open") if a["device_id"].startswith("btn-load-")]
    assert len(pushed) == 50
    wait_for(lambda: all(a["pushed_at"] for a in alerts(central, state="open")), what="pushes")
    latencies = sorted(a["latency"]["console"] for a in alerts(central, state="open"))
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, round(0.99 * len(latencies)))]
    print(f"press→console, central side, 50 buttons: p50 {p50:.3f} s, p99 {p99:.3f} s")
