"""The street office's view in a real browser (Chromium): log in at /office/ with an office
account, read a violation with its facts and a resident's report, open the stall's history,
mark the report handled with a note. Screenshots: test-artifacts/office-desktop.png (1440×900)
and test-artifacts/office-phone.png (390×844)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.helpers.console import PASSWORD, WebhookReceiver, ingest
from tests.helpers.console_page import BROWSER_ZONE, DESK, PHONE, TIME
from tests.helpers.office import OFFICE, placard, scan_events, send_report, start_office_central
from tests.helpers.support import Central

pytestmark = [pytest.mark.system, pytest.mark.central]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
TIME_RE = re.compile(TIME)


@pytest.fixture
def central(tmp_path: Path, central_database: str | None) -> Iterator[Central]:
    robot = WebhookReceiver()
    central = start_office_central(tmp_path / "central", robot, database=central_database)
    ingest(central, scan_events(placard("ST-001")))
    ingest(central, scan_events(placard("ST-001", generation=1)))
    ingest(central, scan_events(placard("ST-002")))
    send_report(central, placard("ST-001"), "food_safety", "烤串不熟，摊位占用人行道")
    yield central
    central.kill()
    robot.close()


def office_page(browser: Browser, central: Central, viewport: dict[str, int],
                account: str = OFFICE) -> Page:
    context = browser.new_context(viewport=viewport, device_scale_factor=1,
                                  timezone_id=BROWSER_ZONE)
    page = context.new_page()
    page.goto(f"{central.url}/office/")
    expect(page.locator("h1")).to_have_text("码上 · 街道办")
    page.fill("#account", account)
    page.fill("#password", PASSWORD)
    page.click("#login-button")
    return page


def test_the_office_reads_violations_and_handles_a_report(
    central: Central, browser: Browser
) -> None:
    page = office_page(browser, central, DESK)
    expect(page.locator("#who")).to_have_text("街道巡查")
    revoked = page.locator("#violation-list .card", has_text="经营许可已吊销")
    expect(revoked).to_contain_text("老王烤串（017号）")
    expect(revoked).to_contain_text("夜市")
    expect(revoked).to_contain_text("gate-north")
    expect(revoked).to_contain_text("（签到）")
    expect(revoked.locator("dd").nth(1)).to_have_text(TIME_RE)
    wrong_zone = page.locator("#violation-list .card", has_text="不在登记的区域经营")
    expect(wrong_zone).to_contain_text("张姐凉皮（022号）")
    expect(wrong_zone).to_contain_text("夜市（登记区域：河滨步道）")
    report = page.locator("#report-list .card")
    expect(report).to_have_count(1)
    expect(report).to_contain_text("烤串不熟，摊位占用人行道")
    expect(report).to_contain_text("食品安全")
    expect(report).to_have_attribute("data-state", "new")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "office-desktop.png")

    revoked.locator("button.history").click()
    expect(page.locator("#history")).to_be_visible()
    expect(page.locator("#history-title")).to_have_text("老王烤串（017号） · 摊位记录")
    expect(page.locator("#history-list li")).to_have_count(3)  # report, violation, check-in
    expect(page.locator("#history-list li.checkin")).to_contain_text("签到 · 夜市")
    page.click("#history-close")

    report.locator("select.state-select").select_option("handled")
    report.locator("textarea.note").fill("已到场，责令整改")
    report.locator("button.save").click()
    handled = page.locator("#report-list .card")
    expect(handled).to_have_attribute("data-state", "handled")
    expect(handled).to_contain_text("处理人：街道巡查（inspection）")
    page.reload()
    expect(page.locator("#report-list .card textarea.note")).to_have_value("已到场，责令整改")

    phone = office_page(browser, central, PHONE)
    expect(phone.locator("#violation-list .card")).to_have_count(2)
    expect(phone.locator("#report-list .card")).to_have_attribute("data-state", "handled")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width}px wide on a 390px phone"
    phone.screenshot(path=ARTIFACTS / "office-phone.png")


def test_a_butler_cannot_open_the_office(central: Central, browser: Browser) -> None:
    page = office_page(browser, central, PHONE, account="b-wang")
    expect(page.locator("#login-error")).to_have_text("此账号不是街道办账号。")
    expect(page.locator("#office-view")).to_be_hidden()


def test_an_office_account_logging_in_at_the_console_is_taken_to_its_view(
    central: Central, browser: Browser
) -> None:
    context = browser.new_context(viewport=PHONE, timezone_id=BROWSER_ZONE)
    page = context.new_page()
    page.goto(f"{central.url}/console/")
    page.fill("#account", OFFICE)
    page.fill("#password", PASSWORD)
    page.click("#login-button")
    page.wait_for_url(f"{central.url}/office/")
    expect(page.locator("#who")).to_have_text("街道巡查")
    context.close()
