"""Calls first, faults apart, in a real Chromium against a real central: a help call is on top
with the loud treatment; a building's ten offline buttons and a low battery are one quiet line
("3号楼：10 个按钮离线，1 个按钮电量低") with one action that acknowledges every one of them;
on a desk-sized screen the calls use the width. Resolving asks how the call was handled, the
reason is stored, and the history shows it, with dates, in the community's time zone; the
history is searched by resident, building and day, pages past 50 and exports CSV.
Leaves test-artifacts/console-phone.png and console-desktop.png."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, expect

from tests.helpers.console import (
    ConsoleClient,
    alerts,
    enrichment,
    event,
    ingest,
    press,
    start_central,
    wait_alert,
)
from tests.helpers.console_page import DESK, TIME, console_page, fault, with_buttons
from tests.helpers.e2e import ARTIFACTS
from tests.helpers.support import Central, wait_for

pytestmark = [pytest.mark.system, pytest.mark.central]

REGISTRY = with_buttons("B3", 10)  # btn-0301 … btn-0310 in 3号楼, b-wang's building
OFFLINE = [f"btn-{number:04d}" for number in range(301, 311)]
FAULTS = ("offline", "battery")
COMMUNITY = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def central(tmp_path: Path, central_database: str | None) -> Iterator[Central]:
    central = start_central(tmp_path / "central", registry=REGISTRY, accounts=("b-wang",),
                            database=central_database)
    yield central
    central.kill()


def visit_reminder(household: str, building: str, name: str) -> dict:
    """A `visit.overdue` reminder as the central's visit watch raises it."""
    data = {"household": household, "building": {"id": building, "name": name}, "last_visit": None}
    return event("visit.overdue", f"household:{household}", data, priority="normal")


def local(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, COMMUNITY).strftime("%Y-%m-%d %H:%M")


def test_calls_come_first_and_a_buildings_faults_are_one_line(
    central: Central, browser: Browser
) -> None:
    page = console_page(browser, central)
    faults = [fault("button.offline", device, REGISTRY) for device in OFFLINE]
    faults.append(fault("button.battery_low", "btn-0008", REGISTRY, battery=9, threshold=20))
    ingest(central, [*faults, visit_reminder("H-3-1201", "B3", "3号楼")])
    ingest(central, [press("btn-0007", "g-1", action="long")])

    call = page.locator("#call-list .card", has_text="张秀英")
    expect(call).to_be_visible()
    expect(call.locator("button.acknowledge")).to_have_text("确认，马上去")
    group = page.locator("#fault-list .group")
    expect(group).to_have_count(1)
    expect(group.locator(".group-title")).to_have_text("3号楼：10 个按钮离线，1 个按钮电量低")
    expect(page.locator("#fault-list .card")).to_have_count(0)  # no card per button
    expect(page.locator("#fault-list button.primary")).to_have_count(0)  # nothing red
    expect(page.locator("#faults-section h2")).to_have_text("设备故障")
    visit = page.locator("#visits-section .card")
    expect(visit).to_have_count(1)  # a reminder is no call either
    expect(visit).to_contain_text("住户 H-3-1201")
    expect(visit.locator("button.acknowledge")).to_have_text("知道了")
    call_box, group_box = call.bounding_box(), group.bounding_box()
    assert call_box and group_box and call_box["y"] + call_box["height"] <= group_box["y"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "console-phone.png", full_page=True)

    # One action for the group: each of its eleven alerts acknowledged, the call untouched.
    group.locator("button.acknowledge").click()

    def faults_acknowledged() -> list[dict]:
        found = [a for a in alerts(central, state="open") if a["category"] in FAULTS]
        done = [a for a in found if a["state"] == "acknowledged"]
        return done if len(done) == len(found) == 11 else []

    for acknowledged in wait_for(faults_acknowledged, what="the group's eleven alerts"):
        assert acknowledged["acknowledged_by"] == "王管家"
    assert wait_alert(central, "btn-0007")["state"] in ("raised", "notified")
    expect(group.locator(".group-head .state")).to_have_text("已确认")
    expect(call).to_have_attribute("data-state", re.compile("raised|notified"))

    # At a desk: the calls take the width, several to a row, the faults in a column beside.
    more = [press("btn-0008", "g-2"), press("btn-0301", "g-3")]
    more[1]["data"] |= enrichment("btn-0301", REGISTRY)  # one of this registry's own buttons
    ingest(central, more)
    desk = console_page(browser, central, viewport=DESK)
    cards = desk.locator("#call-list .card")
    expect(cards).to_have_count(3)
    boxes = [cards.nth(i).bounding_box() for i in range(3)]
    assert all(boxes)
    assert len({round(box["y"]) for box in boxes}) < 3, boxes  # not one narrow column
    beside = desk.locator("#fault-list .group").bounding_box()
    assert beside and beside["x"] > max(box["x"] + box["width"] for box in boxes), (beside, boxes)
    assert beside["y"] < boxes[0]["y"] + boxes[0]["height"]
    desk.screenshot(path=ARTIFACTS / "console-desktop.png", full_page=True)


def test_resolving_asks_how_and_the_history_shows_it(central: Central, browser: Browser) -> None:
    page = console_page(browser, central)
    ingest(central, [press("btn-0007", "g-1"), press("btn-0008", "g-2")])
    first = page.locator("#call-list .card", has_text="张秀英")
    second = page.locator("#call-list .card", has_text="刘桂兰")
    expect(second).to_be_visible()

    first.locator("button.resolve").click()
    reasons = first.locator(".reasons button")
    expect(reasons).to_have_text(["到场处理", "误按", "电话确认", "其他"])
    first.locator("button.cancel-resolve").click()  # changed their mind
    expect(first.locator("button.acknowledge")).to_be_visible()

    first.locator("button.resolve").click()
    first.locator("button.reason-other").click()
    first.locator("button.confirm-other").click()  # "other" says why, or nothing is sent
    expect(first).to_contain_text("请写一句说明")
    assert wait_alert(central, "btn-0007")["state"] != "resolved"
    first.locator("textarea.note").fill("家属已经接走")
    first.locator("button.confirm-other").click()
    expect(first).to_have_count(0)

    second.locator("button.resolve").click()
    second.locator("button.reason-mistaken").click()  # one tap
    expect(second).to_have_count(0)

    butler = ConsoleClient(central)
    butler.login("b-wang")
    stored = {
        a["resident"]["name"]: a
        for a in butler.get("/v1/console/alerts?view=history").body["alerts"]
    }
    assert (stored["张秀英"]["resolve_reason"], stored["张秀英"]["resolve_note"]) == (
        "other",
        "家属已经接走",
    )
    assert stored["刘桂兰"]["resolve_reason"] == "mistaken"

    page.click("#tab-history")
    shown = page.locator("#history-list .card", has_text="张秀英")
    expect(shown).to_contain_text("处理方式：其他（家属已经接走）")
    resolved_at = stored["张秀英"]["resolved_at"]
    expect(shown).to_contain_text(f"王管家 {local(resolved_at)} 已处理")  # Shanghai, dated
    expect(shown).to_contain_text(f"呼叫 {local(stored['张秀英']['raised_at'])}")
    expect(page.locator("#history-list .card", has_text="刘桂兰")).to_contain_text("处理方式：误按")
    said = shown.inner_text()
    assert len(re.findall(TIME, said)) == len(re.findall(r"\d\d:\d\d", said)) >= 2  # all dated


def resolved_calls(central: Central, butler: ConsoleClient, device: str, count: int) -> None:
    """`count` calls of one button, each resolved (as arrived) before the next is pressed."""
    for number in range(count):
        ingest(central, [press(device, f"g-{device}-{number}")])
        alert = wait_alert(central, device, lambda a: a["state"] != "resolved")
        assert butler.act(alert["id"], "resolve").status == 200


def test_the_history_is_searched_and_paged(central: Central, browser: Browser) -> None:
    butler = ConsoleClient(central)
    butler.login("b-wang")
    resolved_calls(central, butler, "btn-0008", 52)  # 刘桂兰, 3号楼 302
    resolved_calls(central, butler, "btn-0007", 3)  # 张秀英, 3号楼 1201

    page = console_page(browser, central)
    page.click("#tab-history")
    cards = page.locator("#history-list .card")
    expect(cards).to_have_count(50)
    more = page.locator("#history-more")
    expect(more).to_have_text("更多")
    more.click()
    expect(cards).to_have_count(55)
    expect(more).to_be_hidden()
    ids = page.eval_on_selector_all("#history-list .card", "cards => cards.map(c => c.id)")
    assert len(set(ids)) == 55  # the second page follows the first, nothing twice

    page.fill("#history-q", "张秀英")
    page.click("#history-form button[type=submit]")
    expect(cards).to_have_count(3)
    for i in range(3):
        expect(cards.nth(i)).to_contain_text("张秀英")

    today = datetime.now(COMMUNITY).date()
    page.fill("#history-day", (today - timedelta(days=1)).isoformat())
    page.click("#history-form button[type=submit]")
    expect(cards).to_have_count(0)
    expect(page.locator("#history-empty")).to_have_text("没有符合条件的记录")
    page.fill("#history-day", today.isoformat())
    page.select_option("#history-building", label="3号楼")
    page.click("#history-form button[type=submit]")
    expect(cards).to_have_count(3)

    # The export link carries the same search; the butler's session downloads it.
    link = page.locator("#history-csv")
    expect(link).to_have_attribute("href", re.compile(r"^/v1/console/history\.csv\?"))
    href = link.get_attribute("href")
    assert href and "q=%E5%BC%A0%E7%A7%80%E8%8B%B1" in href and f"day={today}" in href
    answer = page.request.get(f"{central.url}{href}")
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.text().lstrip("\ufeff"))))
    assert len(rows) == 1 + 3 and all("张秀英" in ",".join(row) for row in rows[1:])


def test_the_duty_room_sees_a_silent_gateway_and_stall_matters_apart(
    tmp_path: Path, central_database: str | None, browser: Browser
) -> None:
    central = start_central(tmp_path / "quiet", extra="silent_after = 1.0", accounts=("duty",),
                            database=central_database)
    try:
        page = console_page(browser, central, "duty")
        group = page.locator("#fault-list .group", has_text="gw-test")
        expect(group.locator(".group-title")).to_have_text("网关 gw-test 没有消息")
        expect(group).to_contain_text("3号楼、5号楼，共 3 个按钮失去联系")
        page.click("#tab-fleet")
        gateway = page.locator("#fleet-list .gateway").first
        expect(gateway).to_have_id("gateway-gw-test")
        expect(gateway.locator(".state")).to_have_text("没有消息")
        expect(gateway).to_contain_text("从未收到消息")
        page.screenshot(path=ARTIFACTS / "console-fleet.png", full_page=True)

        # A stall violation is the duty room's, quiet, and never a call.
        ingest(central, [event("stall.violation", "scanner-night-market", {"reason": "zone"})])
        page.click("#tab-open")
        expect(page.locator("#stalls-section .card")).to_contain_text("扫码点 scanner-night-market")
        expect(page.locator("#call-list .card")).to_have_count(0)
        page.click("#tab-fleet")

        ingest(central, [press("btn-0007", "g-1")])  # heard again
        expect(gateway.locator(".state")).to_have_text("正常", timeout=40_000)
        expect(gateway).to_contain_text(re.compile(rf"最后消息 {TIME}"))
        page.click("#tab-open")
        expect(group).to_have_count(0)
        expect(page.locator("#call-list .card")).to_have_count(1)
    finally:
        central.kill()
