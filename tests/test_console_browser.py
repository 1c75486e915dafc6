"""The butler's console in a real browser (Debian's Chromium, driven by Playwright): log in, a
press appears live without a reload, acknowledge it, and the gateway's downlink carries the
`acknowledged` feedback for the button. Leaves a screenshot in test-artifacts/console.png."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.helpers.console import (
    PASSWORD,
    feedback_for,
    ingest,
    poll_commands,
    press,
    start_central,
)
from tests.helpers.support import Central, wait_for

pytestmark = [pytest.mark.system, pytest.mark.central]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture
def central(tmp_path: Path, central_database: str | None) -> Iterator[Central]:
    central = start_central(tmp_path / "central", accounts=("b-wang",),
                            database=central_database)
    yield central
    central.kill()


def test_a_butler_sees_a_press_live_and_acknowledges_it(central: Central, browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page.goto(f"{central.url}/console/")
    expect(page.locator("h1")).to_have_text("码上 · 楼栋管家")  # Chinese unless switched
    page.fill("#account", "b-wang")
    page.fill("#password", PASSWORD)
    page.click("#login-button")
    expect(page.locator("#who")).to_have_text("王管家")
    expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))
    page.evaluate("window.stillTheSamePage = true")  # a reload would forget this

    cursor = poll_commands(central)["cursor"]
    ingest(central, [press("btn-0008", "g-8")])
    ingest(central, [press("btn-0007", "g-7", action="long")])
    card = page.locator(".card", has_text="张秀英")
    expect(card).to_be_visible()
    expect(card).to_contain_text("3号楼 1201")
    expect(card).to_contain_text("一键呼叫 · 危急")
    expect(page.locator(".card")).to_have_count(2)
    assert page.evaluate("window.stillTheSamePage") is True
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "console.png", full_page=True)

    card.locator("button.acknowledge").click()
    expect(card).to_have_attribute("data-state", "acknowledged")
    expect(card).to_contain_text("王管家")

    def acknowledged() -> list[dict]:
        return feedback_for(poll_commands(central, after=cursor, wait=5)["commands"], "g-7")

    [feedback] = wait_for(acknowledged, what="the acknowledged feedback command")
    assert (feedback["device_id"], feedback["state"], feedback["by"]) == (
        "btn-0007",
        "acknowledged",
        "王管家",
    )

    page.click("#lang")
    expect(page.locator("h1")).to_have_text("Mashang · Butler console")
    expect(card).to_contain_text("Help call · critical")
    page.screenshot(path=ARTIFACTS / "console-en.png", full_page=True)
