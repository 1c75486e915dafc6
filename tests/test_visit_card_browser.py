"""The 待探访 card in a real Chromium on a butler's phone (390×844), against a real central: an
overdue visit is its own quiet card in the visits section, never a call, naming the resident,
building and room, the last visit's date in the community's time zone and the days overdue;
the butler's accepted visit scan, through either gateway, takes it off the page live. The 探访
tab lists the month's visits of the butler's residents living alone.
Leaves test-artifacts/visit-card-phone.png and visit-list-phone.png."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.helpers.console import alerts
from tests.helpers.console_page import console_page
from tests.helpers.e2e import ARTIFACTS
from tests.helpers.visits import COMMUNITY, OTHER_GATEWAY, checkin, send, visits_central

pytestmark = [pytest.mark.system, pytest.mark.central]

OVERDUE = "[visits]\noverdue_after = 2.0\ncheck_interval = 0.5\n"


def test_the_visit_card_says_who_where_and_since_when_and_goes_when_visited(
    tmp_path: Path, central_database: str | None, browser: Browser
) -> None:
    central = visits_central(tmp_path / "central", extra=OVERDUE, database=central_database)
    try:
        visited = datetime.now(COMMUNITY) - timedelta(days=3, hours=1)
        send(central, [checkin("H-3-1201", at=visited)])
        page = console_page(browser, central)

        card = page.locator("#visits-section .card", has_text="张秀英")
        expect(card).to_be_visible(timeout=20_000)
        expect(page.locator("#visits-section h2")).to_have_text("待探访")
        expect(card.locator(".badge")).to_have_text("待探访 · 提醒")
        expect(card.locator(".place")).to_have_text("3号楼 1201")
        expect(card).to_contain_text(f"上次探访 {visited.date().isoformat()}（3 天前）")
        expect(card).to_contain_text(re.compile(r"已逾期 \d+ 天|今天到期"))
        expect(card.locator("button.acknowledge")).to_have_text("知道了")  # quiet, not a call
        expect(page.locator("#call-list .card")).to_have_count(0)
        expect(page.locator("#empty")).to_be_visible()
        never = page.locator("#visits-section .card", has_text="住户 H-3-1205")
        expect(never).to_contain_text("没有探访记录")
        expect(page.locator("#visits-section .card", has_text="601")).to_have_count(0)  # b-zhao's
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "visit-card-phone.png", full_page=True)

        # The butler's scan at 1201 reaches the central through the other gateway: this card
        # leaves the page (a later reminder, from this visit on, would be a card of its own).
        [reminder] = [a for a in alerts(central, state="open")
                      if a["data"].get("household") == "H-3-1201"]
        shown = page.locator(f"#alert-{reminder['id']}")
        expect(shown).to_have_count(1)
        send(central, [checkin("H-3-1201")], gateway=OTHER_GATEWAY)
        expect(shown).to_have_count(0)
        expect(never).to_be_visible()

        # The month's list: 1201 visited today (and three days ago, if that is this month too).
        today = datetime.now(COMMUNITY)
        this_month = sum(1 for moment in (visited, today)
                         if (moment.year, moment.month) == (today.year, today.month))
        page.click("#tab-visits")
        expect(page.locator("#visits-month")).to_have_value(today.strftime("%Y-%m"))
        expect(page.locator("#visits-of-b-wang h3")).to_have_text("王管家：2 户独居老人")
        row = page.locator("#visits-H-3-1201")
        expect(row).to_contain_text("张秀英 · 3号楼 1201")
        expect(row).to_contain_text(f"上次探访 {today.date().isoformat()}（今天）")
        expect(row).to_contain_text(f"当月探访 {this_month} 次")
        expect(page.locator("#visits-H-3-1205")).to_contain_text("没有探访记录")
        expect(page.locator("#visits-H-5-0601")).to_have_count(0)
        page.screenshot(path=ARTIFACTS / "visit-list-phone.png", full_page=True)

        # Last month, as the month picker asks for it.
        last = (today.replace(day=1) - timedelta(days=1))
        page.fill("#visits-month", last.strftime("%Y-%m"))
        page.dispatch_event("#visits-month", "change")
        expected = 1 if (visited.year, visited.month) == (last.year, last.month) else 0
        expect(row).to_contain_text(f"当月探访 {expected} 次")
    finally:
        central.kill()
