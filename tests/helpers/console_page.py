"""The butler's console in Chromium for the console's page tests: a browser context as a
butler's phone or desk would be (permissions granted as the butler would grant them), logged
in; a registry with a building full of buttons; and device faults as the gateway sends them
(edge/transform/rules.py `_fault`)."""

from __future__ import annotations

import copy
import re
from typing import Any

from playwright.sync_api import Browser, Page, expect

from tests.helpers.console import PASSWORD, REGISTRY, enrichment, event
from tests.helpers.support import Central

PHONE = {"width": 390, "height": 844}
DESK = {"width": 1440, "height": 900}
TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d"  # every time the console shows carries its date
# The butler's browser is set to another zone than the community's (Asia/Shanghai, the
# default), so that times shown in the community's zone are the page's doing.
BROWSER_ZONE = "America/New_York"


def with_buttons(building: str, count: int, first: int = 301) -> dict[str, Any]:
    """REGISTRY and `count` more residents' buttons in `building` (btn-0301, btn-0302, …)."""
    registry = copy.deepcopy(REGISTRY)
    for number in range(first, first + count):
        registry["buttons"].append(
            {
                "device_id": f"btn-{number:04d}",
                "resident": {
                    "name": f"住户{number}",
                    "phone": f"13900{number:06d}",
                    "building": building,
                    "room": str(number),
                },
            }
        )
    return registry


def fault(event_type: str, device_id: str, registry: dict[str, Any], **extra: Any) -> dict:
    """A registered button's device fault: `button.offline` (reason last_will) or
    `button.battery_low` (battery=…), with the registry's context."""
    if event_type == "button.offline":
        extra.setdefault("reason", "last_will")
    return event(event_type, device_id, enrichment(device_id, registry) | extra, priority="normal")


def console_page(
    browser: Browser,
    central: Central,
    account: str = "b-wang",
    *,
    viewport: dict[str, int] = PHONE,
    permissions: tuple[str, ...] = (),
    url: str | None = None,
) -> Page:
    """A fresh browser context at the console (at `url`, a front for the central, if given),
    logged in and live, the prompt for sounds and notifications not yet tapped."""
    base = url or central.url
    context = browser.new_context(
        viewport=viewport, device_scale_factor=2, timezone_id=BROWSER_ZONE
    )
    if permissions:
        context.grant_permissions(list(permissions), origin=base)
    page = context.new_page()
    page.goto(f"{base}/console/")
    page.fill("#account", account)
    page.fill("#password", PASSWORD)
    page.click("#login-button")
    expect(page.locator("#alerts-view")).to_be_visible()
    expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))
    return page
