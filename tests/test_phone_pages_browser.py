"""The pages a resident's phone opens from a placard or a door code, in a real browser
(Debian's Chromium, driven by Playwright) at a phone's 390×844: rate and report a stall and
see where the report went; open a household's code. Leaves screenshots in test-artifacts/
(stall-phone.png, stall-sent-phone.png, household-phone.png)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.helpers.console import admin_get
from tests.helpers.phone_pages import start_phone_central, token
from tests.helpers.support import Central

pytestmark = [pytest.mark.system, pytest.mark.central]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory, module_database: str | None,
            ) -> Iterator[Central]:
    folder = tmp_path_factory.mktemp("phone-central")
    central = start_phone_central(folder, database=module_database)
    yield central
    central.kill()


def phone(browser: Browser) -> Page:
    return browser.new_page(viewport=PHONE, device_scale_factor=2, locale="zh-CN",
                            is_mobile=True, has_touch=True)


def fits_the_screen(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_a_resident_rates_and_reports_a_stall_on_a_phone(central: Central,
                                                         browser: Browser) -> None:
    page = phone(browser)
    page.goto(f"{central.url}/S/{token('stall', 'ST-001')}")
    expect(page.locator("h1")).to_have_text("老王烤串")
    expect(page.locator("dl")).to_contain_text("河畔夜市")
    expect(page.locator("dl")).to_contain_text("现在是经营时间")
    rating = page.locator("#rating")
    expect(rating).to_have_value("")
    expect(rating.locator("option:checked")).to_have_text("未评分（可不评）")
    assert fits_the_screen(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "stall-phone.png", full_page=True)

    rating.select_option("2")
    page.get_by_label("占道").check()
    page.fill("#report", "摊位占用人行道，推婴儿车过不去")
    page.click("#send")
    sent = page.locator("#sent")
    expect(sent).to_contain_text("已转交街道办")
    expect(sent).to_contain_text("逐条核实")
    expect(page.locator("form")).to_have_count(0)
    assert fits_the_screen(page)
    page.screenshot(path=ARTIFACTS / "stall-sent-phone.png", full_page=True)

    [report] = admin_get(central, "/v1/stalls/reports?stall=ST-001")["reports"]
    assert (report["rating"], report["category"], report["report"]) == (
        2, "obstruction", "摊位占用人行道，推婴儿车过不去")


def test_a_door_code_opened_on_a_phone(central: Central, browser: Browser) -> None:
    page = phone(browser)
    page.goto(f"{central.url}/H/{token('household', 'H-3-1201')}")
    expect(page.locator("h1")).to_have_text("3号楼 · 住户码")
    contacts = page.locator("#contacts")
    expect(contacts).to_contain_text("王管家")
    expect(contacts).to_contain_text("社区值班室")
    expect(page.locator('a[href="tel:13800000001"]')).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("张秀英")
    assert fits_the_screen(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "household-phone.png", full_page=True)
