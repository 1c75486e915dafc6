"""The whole loop with real processes: a simulated help button on a Mosquitto broker, the real
gateway, the central and a butler's console in Chromium.

The central's registry (imported with `mashang registry import`) reaches the gateway only by the
downlink's `registry.replace` command. A press travels button → MQTT → gateway (enriched from
that registry, committed, `received` back to the button) → signed HTTP → central → the console's
live stream; the butler's acknowledge and resolve travel back central → downlink → gateway →
MQTT → the button's feedback topic. Leaves test-artifacts/button-to-butler.png.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.helpers.console import (
    PASSWORD,
    REGISTRY,
    ConsoleClient,
    alerts,
    enrichment,
    start_central,
    wait_alert,
)
from tests.helpers.e2e import ARTIFACTS, FeedbackLog, buttons, synced_gateway
from tests.helpers.support import Broker, Central, Gateway, wait_for

pytestmark = [pytest.mark.system, pytest.mark.central]

REGISTERED = [button["device_id"] for button in REGISTRY["buttons"]]
UNKNOWN = "btn-9999"


@pytest.fixture
def central(tmp_path: Path, central_database: str | None) -> Iterator[Central]:
    central = start_central(tmp_path / "central", accounts=("b-wang", "b-zhao", "duty"),
                            database=central_database)
    yield central
    central.kill()


@pytest.fixture
def gateway(central: Central, make_gateway) -> Gateway:
    return synced_gateway(make_gateway, central.url, REGISTERED)


def central_event(central: Central, device_id: str, event_type: str = "button.press") -> dict:
    def found() -> list[dict]:
        return [e for e in central.events(event_type) if e.get("device_id") == device_id]

    [event] = wait_for(found, what=f"the central's {event_type} of {device_id}")
    return event


def test_a_press_reaches_the_butler_and_the_button_hears_back(
    broker: Broker, central: Central, gateway: Gateway, browser: Browser
) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page.goto(f"{central.url}/console/")
    page.fill("#account", "b-wang")
    page.fill("#password", PASSWORD)
    page.click("#login-button")
    expect(page.locator("#who")).to_have_text("王管家")
    expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))
    expect(page.locator(".card")).to_have_count(0)
    page.evaluate("window.stillTheSamePage = true")  # a reload would forget this

    feedback = FeedbackLog()
    with buttons(broker.port, ["btn-0007"], feedback) as pressable:
        pressed_at = time.time()
        pressable["btn-0007"].press("long")

        # The page shows who, where and how urgent, without a reload.
        card = page.locator(".card", has_text="张秀英")
        expect(card).to_be_visible()
        shown_at = time.time()
        expect(card).to_contain_text("3号楼 1201")
        expect(card).to_contain_text("一键呼叫 · 危急")
        expect(page.locator(".card")).to_have_count(1)
        assert page.evaluate("window.stillTheSamePage") is True

        # "Your call is recorded": the gateway's `received`, once its commit is done.
        received = feedback.wait("btn-0007", "received")
        alert = wait_alert(central, "btn-0007")
        assert received.alert_id == alert["gateway_alert_id"]

        clicked_at = time.time()
        card.locator("button.acknowledge").click()
        expect(card).to_have_attribute("data-state", "acknowledged")
        expect(card).to_contain_text("王管家")
        acknowledged = feedback.wait("btn-0007", "acknowledged")
        assert (acknowledged.alert_id, acknowledged.by) == (received.alert_id, "王管家")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "button-to-butler.png", full_page=True)

        resolved_clicked_at = time.time()
        card.locator("button.resolve").click()
        card.locator("button.reason-arrived").click()  # how it was handled: one tap
        expect(page.locator(".card")).to_have_count(0)  # off the open list
        resolved = feedback.wait("btn-0007", "resolved")
        assert (resolved.alert_id, resolved.by) == (received.alert_id, "王管家")
        assert page.evaluate("window.stillTheSamePage") is True

    # The button heard each state once, in the order they happened.
    assert [item.state for item in feedback.of("btn-0007")] == [
        "received",
        "acknowledged",
        "resolved",
    ]
    final = alerts(central, device_id="btn-0007")[0]
    assert (final["state"], final["acknowledged_by"], final["resolved_by"]) == (
        "resolved",
        "王管家",
        "王管家",
    )
    print(
        "\nbutton → butler loop (ms, this run):"
        f" press→LED received {(received.at - pressed_at) * 1000:.0f},"
        f" press→card seen by the test {(shown_at - pressed_at) * 1000:.0f},"
        f" acknowledge→LED {(acknowledged.at - clicked_at) * 1000:.0f},"
        f" resolve→LED {(resolved.at - resolved_clicked_at) * 1000:.0f}"
    )


def test_the_gateway_enriches_presses_and_never_drops_an_unknown_one(
    broker: Broker, central: Central, gateway: Gateway
) -> None:
    duty, wang, zhao = ConsoleClient(central), ConsoleClient(central), ConsoleClient(central)
    for client, account in ((duty, "duty"), (wang, "b-wang"), (zhao, "b-zhao")):
        assert client.login(account).status == 200

    feedback = FeedbackLog()
    with (
        duty.stream() as live,
        buttons(broker.port, ["btn-0008", UNKNOWN], feedback) as pressable,
    ):
        wait_for(lambda: live.events, what="the duty console's snapshot")
        pressable["btn-0008"].press()
        pressable[UNKNOWN].press()

        # Registered: the gateway added the resident, the building and its butlers.
        registered = central_event(central, "btn-0008")
        data = registered["data"]
        expected = enrichment("btn-0008")
        resident = data["resident"]
        assert {key: resident.get(key) for key in expected["resident"]} == expected["resident"]
        assert data["building"] == expected["building"]
        assert data["butlers"] == expected["butlers"]
        assert "unregistered" not in data
        assert (data["action"], data["presses"], data["battery"]) == ("single", 1, 90)
        assert registered["priority"] == "high"

        # Unknown: still an alert, marked unregistered, with the community duty contact.
        unknown = central_event(central, UNKNOWN)
        assert unknown["kind"] == "alert"
        assert unknown["data"]["unregistered"] is True
        assert unknown["data"]["duty_contact"] == REGISTRY["community"]["duty_contact"]
        assert "resident" not in unknown["data"]

        # Both buttons are told their call is recorded.
        assert feedback.wait("btn-0008", "received").alert_id == data["alert_id"]
        assert feedback.wait(UNKNOWN, "received").alert_id == unknown["data"]["alert_id"]

        # The duty room sees the unregistered call live, and both in its list.
        def unregistered_live() -> list[dict]:
            return [a for a in live.alerts() if a.get("device_id") == UNKNOWN]

        seen = wait_for(unregistered_live, what="the unregistered alert on the duty stream")[0]
        assert seen["unregistered"] is True and seen["resident"] is None
        assert seen["category"] == "help"

    duty_list = {a["device_id"]: a for a in duty.get("/v1/console/alerts").body["alerts"]}
    assert duty_list[UNKNOWN]["unregistered"] is True
    assert duty_list["btn-0008"]["resident"]["name"] == "刘桂兰"
    assert duty_list["btn-0008"]["building"]["name"] == "3号楼"

    # The building's butler sees the registered press with the resident; another building's
    # butler sees neither.
    wang_list = {a["device_id"]: a for a in wang.get("/v1/console/alerts").body["alerts"]}
    assert wang_list["btn-0008"]["resident"]["name"] == "刘桂兰"
    assert UNKNOWN not in wang_list
    assert zhao.get("/v1/console/alerts").body["alerts"] == []
