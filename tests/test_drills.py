"""Drills: an operator schedules a drill press for a button; when due the central presses it
itself, the butler's console shows it (a press, `drill: true`: 演练), it escalates until
acknowledged like a real one, the real button gets no feedback, a drill scheduled before a
restart still fires after it, and the month's report counts it apart from real calls."""

from __future__ import annotations

import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from tests.helpers.console import (
    ConsoleClient,
    admin_cli,
    alert_detail,
    poll_commands,
    request,
    start_central,
    steps,
)
from tests.helpers.console_page import DESK, console_page
from tests.helpers.e2e import ARTIFACTS
from tests.helpers.support import ADMIN_TOKEN, wait_for

pytestmark = [pytest.mark.system, pytest.mark.central]

ZONE = ZoneInfo("Asia/Shanghai")  # the central's default community time zone
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}


def schedule(central, device_id: str, seconds_from_now: float, **extra) -> tuple[int, dict]:
    moment = datetime.fromtimestamp(time.time() + seconds_from_now, ZONE).isoformat()
    body = json.dumps({"device_id": device_id, "at": moment, **extra}).encode()
    answer = request(f"{central.url}/v1/drills", "POST", body, ADMIN)
    return answer.status, answer.body


def drill_alert(live, device_id: str) -> dict:
    return wait_for(lambda: next((a for a in live.alerts() if a["device_id"] == device_id),
                                 None), what=f"the drill for {device_id} on the console")


def month_of(moment: float) -> str:
    return datetime.fromtimestamp(moment, ZONE).strftime("%Y-%m")


def test_a_drill_reaches_the_butler_is_acknowledged_and_counted_apart(tmp_path, central_database):
    central = start_central(tmp_path / "central", accounts=("b-wang", "b-zhao"),
                            database=central_database)
    try:
        wang = ConsoleClient(central)
        assert wang.login("b-wang").status == 200
        with wang.stream() as live:
            status, drill = schedule(central, "btn-0007", 1, note="十一月演练")
            assert status == 201, drill
            shown = drill_alert(live, "btn-0007")
        assert (shown["type"], shown["kind"], shown["drill"]) == ("button.press", "call", True)
        detail = alert_detail(central, shown["id"])
        assert detail["alert"]["data"]["drill"] is True
        assert detail["alert"]["data"]["drill_id"] == drill["id"]
        assert wang.act(shown["id"], "acknowledge").status == 200
        # The resident did not press: nothing tells the button that help is coming.
        assert not [c for c in poll_commands(central)["commands"] if c["type"] == "feedback"]
        assert steps(central, shown["id"], "feedback") == []

        month = month_of(shown["raised_at"])
        report = wang.get(f"/v1/report?month={month}")
        assert report.status == 200, report.body
        b3 = next(g for g in report.body["buildings"] if g["id"] == "B3")
        assert (b3["drills"]["count"], b3["drills"]["unacknowledged"]) == (1, 0)
        assert b3["drills"]["acknowledge_median"] is not None
        assert b3["calls"]["count"] == 0
        chart = request(f"{central.url}{report.body['charts']['calls']}", headers=wang.headers())
        assert chart.status == 200 and chart.headers["Content-Type"] == "image/png"

        zhao = ConsoleClient(central)
        assert zhao.login("b-zhao").status == 200
        theirs = zhao.get(f"/v1/report?month={month}").body
        assert [g["id"] for g in theirs["buildings"]] == ["B5"] and theirs["stalls"] is None
        assert request(f"{central.url}/v1/report?month={month}").status == 401
        assert wang.get("/v1/report?month=2026-13").status == 400
    finally:
        central.terminate()


def test_an_unacknowledged_drill_escalates_like_a_press(tmp_path, central_database):
    central = start_central(tmp_path / "central", extra="[alerts]\nescalate_after = 1.0\n",
                            database=central_database)
    try:
        status, drill = schedule(central, "btn-0501", 0)
        assert status == 201, drill
        alert = wait_for(lambda: next((a for a in alerts_of(central, "btn-0501")
                                       if a["escalations"] >= 1), None), what="an escalation")
        assert alert["data"]["drill"] is True
        assert steps(central, alert["id"], "escalated")
    finally:
        central.terminate()


def alerts_of(central, device_id: str) -> list[dict]:
    answer = request(f"{central.url}/v1/alerts?device_id={device_id}", headers=ADMIN)
    return answer.body["alerts"]


def test_a_drill_scheduled_while_the_central_is_down_fires_once_it_runs(tmp_path, central_database):
    central = start_central(tmp_path / "central", database=central_database)
    central.terminate()
    at = datetime.fromtimestamp(time.time() + 2, ZONE).strftime("%Y-%m-%d %H:%M:%S")
    scheduled = admin_cli("drill", "--button", "btn-0008", "--at", at,
                          "--config", str(central.config))
    assert scheduled.returncode == 0, scheduled.stderr
    drill_id = scheduled.stdout.split()[1].rstrip(":")
    listed = admin_cli("drill", "--list", "--config", str(central.config))
    assert f"{drill_id}\tbtn-0008" in listed.stdout and "scheduled" in listed.stdout
    central.start()
    try:
        alert = wait_for(lambda: next(iter(alerts_of(central, "btn-0008")), None),
                         what="the drill fired after the start")
        assert alert["data"]["drill_id"] == drill_id
        drills = request(f"{central.url}/v1/drills", headers=ADMIN).body["drills"]
        assert [(d["id"], d["state"]) for d in drills] == [(drill_id, "fired")]
    finally:
        central.terminate()


def test_a_drill_pending_across_a_restart_presses_once(tmp_path, central_database):
    central = start_central(tmp_path / "central", database=central_database)
    status, drill = schedule(central, "btn-0007", 2)
    assert status == 201, drill
    central.terminate()
    central.start()
    try:
        wait_for(lambda: alerts_of(central, "btn-0007"), what="the drill after the restart")
        assert [e["id"] for e in central.events("button.press")] == [drill["id"]]
        assert len(alerts_of(central, "btn-0007")) == 1
    finally:
        central.terminate()


def test_bad_drills_are_refused_with_the_reason(tmp_path, central_database):
    central = start_central(tmp_path / "central", database=central_database)
    try:
        status, body = schedule(central, "btn-9999", 1)
        assert (status, body["error"]) == (400, "no button 'btn-9999' in the registry")
        status, body = schedule(central, "btn-0007", -7200)
        assert status == 400 and "has passed" in body["error"]
        answer = request(f"{central.url}/v1/drills", "POST",
                         b'{"device_id": "btn-0007", "at": "tomorrow"}', ADMIN)
        assert answer.status == 400 and "YYYY-MM-DD HH:MM" in answer.body["error"]
        # A time that is in no year of the community's calendar (it was a 500).
        answer = request(f"{central.url}/v1/drills", "POST",
                         b'{"device_id": "btn-0007", "at": "0001-01-01"}', ADMIN)
        assert answer.status == 400 and "calendar" in answer.body["error"]
        unsigned = request(f"{central.url}/v1/drills", "POST", b'{"device_id": "btn-0007"}',
                           {"Content-Type": "application/json"})
        assert unsigned.status == 401
        assert request(f"{central.url}/v1/drills", headers=ADMIN).body["drills"] == []
    finally:
        central.terminate()


def test_the_report_page_shows_the_drill_apart_with_its_charts(tmp_path, central_database, browser):
    central = start_central(tmp_path / "central", accounts=("b-wang",),
                            database=central_database)
    try:
        wang = ConsoleClient(central)
        assert wang.login("b-wang").status == 200
        with wang.stream() as live:
            assert schedule(central, "btn-0007", 0)[0] == 201
            shown = drill_alert(live, "btn-0007")
        page = console_page(browser, central, viewport=DESK)
        # On the butler's console the call says it is a drill, before anyone acts on it.
        expect(page.locator(f"#alert-{shown['id']} .drill")).to_have_text("演练")
        assert wang.act(shown["id"], "acknowledge").status == 200
        page.goto(f"{central.url}/report/?month={month_of(shown['raised_at'])}")
        row = page.locator("#buildings tr", has_text="3号楼")
        expect(row.locator("td").nth(0)).to_have_text("0")  # real calls
        expect(row.locator("td.drill").nth(0)).to_have_text("1")  # the drill
        expect(page.locator("#butlers")).to_contain_text("王管家")
        expect(page.locator("#stalls-section")).to_be_hidden()  # a butler's report
        charts = page.locator("#charts img")
        expect(charts).to_have_count(3)
        for index in range(3):
            expect(charts.nth(index)).to_have_js_property("complete", True)
            assert charts.nth(index).evaluate("image => image.naturalWidth") > 400
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report-desktop.png"), full_page=True)
        page.context.close()
    finally:
        central.terminate()


def test_the_report_page_without_a_login_says_to_log_in(tmp_path, central_database, browser):
    central = start_central(tmp_path / "central", database=central_database)
    try:
        page = browser.new_page()
        page.goto(f"{central.url}/report/")
        expect(page.locator("#notice")).to_contain_text("请先登录")
        expect(page.locator("#figures")).to_be_hidden()
        page.close()
    finally:
        central.terminate()
