"""Proof that help arrived: after acknowledging, the butler scans the resident's household code
at the door (a scanner device through the broker, or the console's own scanner), the alert is
`arrived`, the button hears so, and press → acknowledge → arrival are on the alert's record. A
call acknowledged with nobody at the door within `alerts.arrive_within` escalates again as if
unacknowledged. Another household's code does not count, and says so.

The state machine and the deadline are checked in-process with a fake clock (no sleeps); the
whole flow with a real Mosquitto, gateway, central and scanner, and the console in Chromium."""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from cloud_bridge.alerts.book import Alert, AlertBook, LifecycleError
from cloud_bridge.alerts.engine import AlertEngine
from cloud_bridge.alerts.live import AlertBus
from cloud_bridge.alerts.states import OPEN_STATES, AlertState, Page, Step
from cloud_bridge.commands.queue import CommandQueue
from cloud_bridge.config import AlertsSection, CentralConfig
from cloud_bridge.console.arrival import NotProof, door_of, household_of
from cloud_bridge.notify.messages import render
from cloud_bridge.notify.webhooks import Notifier
from cloud_bridge.receiver.store import Database, EventStore
from cloud_bridge.registry.source import RegistrySource
from cloud_bridge.report.figures import Month, gather
from devices.simulators.scanners import SimulatedScanner
from mashang.codes import code_url
from mashang.registry import Registry
from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.helpers.console import (
    PASSWORD,
    Answer,
    ConsoleClient,
    alerts,
    ingest,
    press,
    start_central,
    steps,
    wait_alert,
)
from tests.helpers.e2e import ARTIFACTS, FeedbackLog, buttons, synced_gateway
from tests.helpers.phone_pages import COMMUNITY_ZONE, community_today, phone_registry, token
from tests.helpers.support import Broker, Central, Gateway, wait_for
from tests.test_escalation_clock import FakeClock

pytestmark = pytest.mark.central

ESCALATE_AFTER = 60.0
ARRIVE_WITHIN = 900.0
MAX_ESCALATIONS = 3
GATEWAY = "g-1"
HOUSEHOLD = "H-3-1201"  # 张秀英's, btn-0007 in the shared registry
RESIDENT = {"name": "张秀英", "household": HOUSEHOLD, "building": "B3", "room": "1201"}


# -- in-process: the book and the engine by a fake clock ----------------------------------


@dataclass
class Book:
    db: Database
    store: EventStore
    book: AlertBook
    engine: AlertEngine
    commands: CommandQueue
    clock: FakeClock

    def feed(self, gateway_id: str, event: dict) -> list:
        self.store.add(gateway_id, [{"id": uuid.uuid4().hex, **event}])
        self.clock.now = max(self.clock.now, self.store.list()[-1]["arrived_at"])
        _, changes = self.book.feed()
        return changes

    def press(self, device_id: str = "btn-0007", resident: dict | None = RESIDENT) -> Alert:
        data: dict = {"action": "single", "alert_id": uuid.uuid4().hex, "presses": 1}
        if resident is not None:
            data["resident"] = resident
        [change] = self.feed(GATEWAY, {"kind": "alert", "type": "button.press",
                                       "priority": "high", "device_id": device_id, "data": data})
        return change.alert

    def scan(self, household: str, gateway_id: str = GATEWAY, scanner: str = "butler-phone",
             result: str = "accepted", scanned_at: float | None = None) -> list:
        subject = {"kind": "household", "id": household, "generation": 1}
        event = {
            "kind": "log", "type": "visit.checkin", "priority": "normal", "device_id": scanner,
            "data": {"purpose": "visit", "result": result, "reason": "visit", "subject": subject},
        }
        if scanned_at is not None:  # held back at the gateway, delivered only now
            moment = datetime.datetime.fromtimestamp(scanned_at, datetime.UTC)
            event["received_at"] = moment.isoformat()
        return self.feed(gateway_id, event)

    def alert(self, alert_id: str) -> Alert:
        alert = self.book.get(alert_id)
        assert alert is not None
        return alert

    def steps(self, alert_id: str, step: Step) -> list[dict]:
        return [s for s in self.book.steps(alert_id) if s["step"] == step]

    def feedback(self) -> list[dict]:
        _, commands = self.commands.fetch(GATEWAY, 0)
        return [c for c in commands if c["type"] == "feedback"]


@pytest.fixture
def book(tmp_path: Path, database: Database) -> Book:
    db = database
    registry = RegistrySource(db)  # none: every alert goes to duty
    commands = CommandQueue(db, registry, [GATEWAY])
    settings = AlertsSection(escalate_after=ESCALATE_AFTER, arrive_within=ARRIVE_WITHIN,
                             max_escalations=MAX_ESCALATIONS)
    clock = FakeClock()
    alert_book = AlertBook(db, settings, clock=clock)
    config = CentralConfig.model_validate({"central": {"data_dir": tmp_path}})
    engine = AlertEngine(alert_book, registry, Notifier(db, config, registry), AlertBus(),
                         commands)
    return Book(db, EventStore(db), alert_book, engine, commands, clock)


@pytest.mark.unit
def test_acknowledging_starts_the_arrival_deadline_and_no_arrival_escalates_again(
    book: Book,
) -> None:
    alert = book.press()
    book.clock.advance(20)
    assert book.book.notified(alert.id, "duty", {"channel": "webhook"}) is not None
    book.clock.advance(10)
    acknowledged = book.book.acknowledge(alert.id, "b-wang", "王管家")
    assert acknowledged is not None
    acknowledged_at = book.clock()
    assert acknowledged.alert.next_escalation_at == pytest.approx(acknowledged_at + ARRIVE_WITHIN)
    assert book.engine.escalation_delay(acknowledged.alert) == pytest.approx(ARRIVE_WITHIN)
    assert [a.id for a in book.book.escalating()] == [alert.id]  # restored after a restart

    # Just before the deadline nothing happens; at it, the call is unacknowledged again.
    book.clock.advance(ARRIVE_WITHIN - 0.5)
    assert book.book.escalate(alert.id) is None
    assert book.alert(alert.id).state is AlertState.ACKNOWLEDGED
    book.clock.advance(0.5)
    escalated = book.book.escalate(alert.id)
    assert escalated is not None
    assert escalated.state is AlertState.NOTIFIED  # as if unacknowledged: it was reached
    assert (escalated.acknowledged_by, escalated.acknowledged_at) == (None, None)
    assert escalated.escalations == 1  # the next rung is paged
    assert escalated.next_escalation_at == pytest.approx(book.clock() + ESCALATE_AFTER)
    [step] = book.steps(alert.id, Step.ESCALATED)
    assert step["detail"] == {"escalation": 1, "why": "no_arrival", "acknowledged_by": "王管家",
                              "arrive_within": ARRIVE_WITHIN}
    # The next rung reads why it is paged: taken, and nobody came (not "nobody acknowledged").
    page = render(escalated, Page.NO_ARRIVAL, "butler:b-li", None)
    assert page.notes == ("已确认但无人到场，第 1 次升级",)

    # Anyone on the ladder may take it now, and a new deadline starts.
    book.clock.advance(5)
    again = book.book.acknowledge(alert.id, "b-li", "李管家")
    assert again is not None and again.alert.acknowledged_by == "李管家"
    assert again.alert.next_escalation_at == pytest.approx(book.clock() + ARRIVE_WITHIN)


@pytest.mark.unit
def test_no_arrival_escalates_even_after_max_escalations(book: Book) -> None:
    alert = book.press()
    for _ in range(MAX_ESCALATIONS):
        book.clock.advance(ESCALATE_AFTER)
        assert book.book.escalate(alert.id) is not None
    assert book.book.acknowledge(alert.id, "b-wang", "王管家") is not None
    book.clock.advance(ARRIVE_WITHIN)
    escalated = book.book.escalate(alert.id)
    assert escalated is not None and escalated.state is AlertState.RAISED
    assert escalated.escalations == MAX_ESCALATIONS + 1  # every rung paged again
    assert escalated.next_escalation_at is None  # then it waits quietly, as before


@pytest.mark.unit
def test_arriving_in_the_console_records_who_and_tells_the_button(book: Book) -> None:
    alert = book.press()
    book.clock.advance(30)
    book.book.acknowledge(alert.id, "b-wang", "王管家")
    book.clock.advance(240)
    change = book.book.arrive(alert.id, "b-wang", "王管家", HOUSEHOLD)
    assert change is not None and change.step is Step.ARRIVED
    arrived = change.alert
    assert arrived.state is AlertState.ARRIVED and arrived.state in OPEN_STATES
    assert (arrived.on_site_at, arrived.on_site_by) == (pytest.approx(book.clock()), "王管家")
    assert arrived.latencies()["acknowledged"] == pytest.approx(30, abs=0.01)
    assert arrived.latencies()["on_site"] == pytest.approx(270, abs=0.01)
    [step] = book.steps(alert.id, Step.ARRIVED)
    assert step["who"] == "b-wang"
    assert step["detail"] == {"via": "console", "name": "王管家", "household": HOUSEHOLD}

    # The button hears `acknowledged` again (the wire's states are fixed), saying who is there.
    assert [(c["state"], c["by"]) for c in book.feedback()] == [
        ("acknowledged", "王管家"), ("acknowledged", "王管家 · 已到达")]
    assert change.feedback_to == GATEWAY

    # No deadline any more, however long it stays open; it is resolved as any other.
    book.clock.advance(ARRIVE_WITHIN * 10)
    assert book.book.escalate(alert.id) is None and book.book.escalating() == []
    assert book.book.arrive(alert.id, "b-wang", "王管家", HOUSEHOLD) is None  # once
    assert book.book.acknowledge(alert.id, "b-li", "李管家") is None
    resolved = book.book.resolve(alert.id, "b-wang", "王管家", "arrived")
    assert resolved is not None and resolved.alert.state is AlertState.RESOLVED


@pytest.mark.unit
def test_arriving_before_acknowledging_or_at_another_door_is_refused(book: Book) -> None:
    alert = book.press()
    with pytest.raises(LifecycleError):
        book.book.arrive(alert.id, "b-wang", "王管家", HOUSEHOLD)
    book.book.acknowledge(alert.id, "b-wang", "王管家")
    with pytest.raises(LifecycleError):
        book.book.arrive(alert.id, "b-wang", "王管家", "H-3-0302")
    assert book.alert(alert.id).state is AlertState.ACKNOWLEDGED
    assert book.steps(alert.id, Step.ARRIVED) == []


@pytest.mark.unit
def test_a_scanner_at_the_door_is_an_arrival_only_for_that_household(book: Book) -> None:
    alert = book.press()
    assert book.scan(HOUSEHOLD) == []  # not acknowledged yet: a visit, no arrival
    book.clock.advance(10)
    book.book.acknowledge(alert.id, "b-wang", "王管家")

    assert book.scan("H-3-0302") == []  # another household's door
    assert book.scan(HOUSEHOLD, result="rejected") == []
    assert book.scan(HOUSEHOLD, scanned_at=alert.raised_at - 3600) == []  # before the press
    assert book.alert(alert.id).state is AlertState.ACKNOWLEDGED

    # The signed code names the door, whichever gateway the scanner reached us through.
    [change] = book.scan(HOUSEHOLD, gateway_id="g-2", scanner="door-scanner-3")
    assert change.step is Step.ARRIVED and change.alert.state is AlertState.ARRIVED
    assert change.alert.on_site_by == "王管家"  # the butler who said they were coming
    [step] = book.steps(alert.id, Step.ARRIVED)
    assert step["who"] == "scanner:door-scanner-3"
    assert step["detail"]["via"] == "scanner" and step["detail"]["scanner"] == "door-scanner-3"
    assert step["detail"]["gateway"] == "g-2"
    assert book.feedback()[-1]["by"] == "王管家 · 已到达"
    assert book.scan(HOUSEHOLD) == []  # arrived once


@pytest.mark.unit
def test_a_call_without_a_household_code_has_no_arrival_deadline(book: Book) -> None:
    alert = book.press("btn-0099", resident=None)
    acknowledged = book.book.acknowledge(alert.id, "duty", "社区值班室")
    assert acknowledged is not None and acknowledged.alert.next_escalation_at is None
    book.clock.advance(ARRIVE_WITHIN * 2)
    assert book.book.escalate(alert.id) is None


@pytest.mark.unit
def test_the_readiness_report_reads_press_to_arrival(book: Book) -> None:
    alert = book.press()
    book.clock.advance(45)
    book.book.acknowledge(alert.id, "b-wang", "王管家")
    book.clock.advance(300)
    book.scan(HOUSEHOLD, scanned_at=book.clock())  # the scan's own time is the arrival's
    on_site = book.alert(alert.id).on_site_at
    assert on_site == pytest.approx(alert.raised_at + 345, abs=0.01)
    month = datetime.datetime.fromtimestamp(alert.raised_at, COMMUNITY_ZONE).strftime("%Y-%m")
    report = gather(book.db, Registry.model_validate(phone_registry()),
                    Month.parse(month, COMMUNITY_ZONE), now=book.clock())
    assert report.arrivals_recorded
    [b3] = [group for group in report.buildings if group.id == "B3"]
    assert b3.calls.count == 1
    assert b3.calls.acknowledge_median == pytest.approx(45, abs=0.01)
    assert b3.calls.arrival_median == pytest.approx(345, abs=0.01)
    assert b3.calls.arrival_worst == b3.calls.arrival_median


@pytest.mark.unit
def test_the_console_checks_the_door_code_like_the_household_page() -> None:
    registry = Registry.model_validate(phone_registry())
    today = community_today()
    good = token("household", HOUSEHOLD)
    assert household_of(registry, code_url("HTTPS://M.DDP.CN", "household", good), today) \
        == HOUSEHOLD
    assert household_of(registry, f" {good.lower()}\n", today) == HOUSEHOLD  # typed, pasted
    refused = {
        code_url("HTTPS://M.DDP.CN", "stall", token("stall", "ST-001")): "摊位码",
        good[:-8] + "AAAAAAAA": "无法识别",
        token("household", HOUSEHOLD, days=-2): "已过期",
        token("household", "H-3-0302", generation=1): "已作废",
        "hello, world": "无法识别",
    }
    for text, words in refused.items():
        with pytest.raises(NotProof) as caught:
            household_of(registry, text, today)
        assert (caught.value.status, words in caught.value.words) == (400, True), text


@pytest.mark.unit
def test_another_households_code_says_whose_door_it_is_not(book: Book) -> None:
    alert = book.press()
    book.book.acknowledge(alert.id, "b-wang", "王管家")
    with pytest.raises(NotProof) as caught:
        door_of(book.alert(alert.id), "H-3-0302")
    assert (caught.value.status, caught.value.words) == (409, "这不是张秀英家的门牌码")
    door_of(book.alert(alert.id), HOUSEHOLD)  # the right door: no refusal


# -- the whole flow: a real broker, gateway, central, scanner and console ------------------


@pytest.fixture
def arrival_central(tmp_path: Path, central_database: str | None) -> Iterator[Central]:
    central = start_central(tmp_path / "central", registry=phone_registry(),
                            accounts=("b-wang",), database=central_database)
    yield central
    central.kill()


@pytest.fixture
def arrival_gateway(arrival_central: Central, make_gateway) -> Gateway:
    return synced_gateway(make_gateway, arrival_central.url, ["btn-0007"])


def scan_at_door(broker: Broker, text: str) -> dict:
    """The butler's scanner device publishes a household code, as it does at a door."""
    heard: list[dict] = []
    scanner = SimulatedScanner("butler-phone-wang", port=broker.port,
                               on_feedback=lambda device, feedback: heard.append(feedback))
    scanner.start()
    try:
        sent = scanner.scan(text, "visit")
        return wait_for(lambda: next((f for f in heard if f.get("seq") == sent["seq"]), None),
                        10, what="the scanner's beep")
    finally:
        scanner.stop()


def visits_of(central: Central, household: str) -> list[dict]:
    return [e for e in central.events("visit.checkin")
            if e["data"].get("subject", {}).get("id") == household]


@pytest.mark.system
def test_a_real_scan_at_the_door_marks_the_call_arrived_and_the_button_hears_it(
    broker: Broker, arrival_central: Central, arrival_gateway: Gateway,
) -> None:
    central = arrival_central
    wang = ConsoleClient(central)
    assert wang.login("b-wang").status == 200
    feedback = FeedbackLog()
    with buttons(broker.port, ["btn-0007"], feedback) as pressable:
        pressable["btn-0007"].press("long")
        received = feedback.wait("btn-0007", "received")
        alert = wait_alert(central, "btn-0007")
        assert wang.act(alert["id"], "acknowledge").status == 200
        feedback.wait("btn-0007", "acknowledged")

        # Another household's code at this scanner: a visit there, and no arrival here.
        other = code_url("HTTPS://M.DDP.CN", "household", token("household", "H-3-0302", 2))
        assert scan_at_door(broker, other)["result"] == "accepted"
        wait_for(lambda: visits_of(central, "H-3-0302"), 10, what="the other visit")

        door = code_url("HTTPS://M.DDP.CN", "household", token("household", HOUSEHOLD))
        assert scan_at_door(broker, door)["result"] == "accepted"
        arrived = wait_alert(central, "btn-0007", lambda a: a["state"] == "arrived")

        def arrival_words() -> list:
            return [f for f in feedback.of("btn-0007", "acknowledged") if "已到达" in (f.by or "")]

        [words] = wait_for(arrival_words, 20, what="the arrival at the button")
        assert (words.alert_id, words.by) == (received.alert_id, "王管家 · 已到达")

    assert visits_of(central, HOUSEHOLD), "the scan is still the household's visit in the log"
    [step] = steps(central, arrived["id"], "arrived")
    assert step["who"] == "scanner:butler-phone-wang" and step["detail"]["via"] == "scanner"
    # The record of this call: press → acknowledge → arrival, in order.
    assert arrived["raised_at"] < arrived["acknowledged_at"] < arrived["on_site_at"]
    assert [s["step"] for s in steps(central, arrived["id"])
            if s["step"] in ("raised", "acknowledged", "arrived")] == \
        ["raised", "acknowledged", "arrived"]
    # The scan of the other household's door left no trace on this call.
    assert all(s["detail"].get("household") != "H-3-0302" for s in steps(central, arrived["id"]))
    # Still open until resolved: the butler is there, the call is not over.
    open_calls = [a for a in alerts(central, state="open") if a["category"] == "help"]
    assert [(a["id"], a["state"]) for a in open_calls] == [(arrived["id"], "arrived")]


@pytest.mark.system
def test_the_console_scanner_typed_code_marks_arrival_and_refuses_another_door(
    broker: Broker, arrival_central: Central, arrival_gateway: Gateway, browser: Browser,
) -> None:
    central = arrival_central
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page.goto(f"{central.url}/console/")
    page.fill("#account", "b-wang")
    page.fill("#password", PASSWORD)
    page.click("#login-button")
    expect(page.locator("#who")).to_have_text("王管家")

    feedback = FeedbackLog()
    with buttons(broker.port, ["btn-0007"], feedback) as pressable:
        pressable["btn-0007"].press("long")
        card = page.locator(".card", has_text="张秀英")
        expect(card).to_be_visible()
        expect(card.locator("button.arrive")).to_have_count(0)  # not before acknowledging
        card.locator("button.acknowledge").click()
        expect(card).to_have_attribute("data-state", "acknowledged")

        # The phone has no camera here: the butler types (or pastes) the code's text.
        card.locator("button.arrive").click()
        entry = card.locator("input.door-code")
        other = code_url("HTTPS://M.DDP.CN", "household", token("household", "H-3-0302", 2))
        entry.fill(other)
        card.locator("button.door-send").click()
        expect(card).to_contain_text("这不是张秀英家的门牌码")
        expect(card).to_have_attribute("data-state", "acknowledged")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "arrival-phone-wrong-door.png", full_page=True)

        entry = card.locator("input.door-code")
        entry.fill(code_url("HTTPS://M.DDP.CN", "household", token("household", HOUSEHOLD)))
        card.locator("button.door-send").click()
        expect(card).to_have_attribute("data-state", "arrived")
        expect(card).to_contain_text("管家已到")
        expect(card.locator("button.resolve")).to_be_visible()  # open until resolved
        page.screenshot(path=ARTIFACTS / "arrival-phone.png", full_page=True)

        words = wait_for(lambda: [f for f in feedback.of("btn-0007", "acknowledged")
                                  if f.by == "王管家 · 已到达"], 20, what="the button's words")
        assert words
    [alert] = [a for a in alerts(central, device_id="btn-0007") if a["category"] == "help"]
    [step] = steps(central, alert["id"], "arrived")
    assert step["who"] == "b-wang" and step["detail"]["via"] == "console"


@pytest.mark.system
def test_the_arrive_api_says_why_a_code_does_not_count(
    broker: Broker, arrival_central: Central, arrival_gateway: Gateway,
) -> None:
    central = arrival_central
    wang = ConsoleClient(central)
    assert wang.login("b-wang").status == 200
    with buttons(broker.port, ["btn-0007"]) as pressable:
        pressable["btn-0007"].press()
        alert = wait_alert(central, "btn-0007")
    door = token("household", HOUSEHOLD)
    early = arrive(wang, alert["id"], {"code": door})
    assert (early.status, early.body["error"]) == (409, "请先接单，再扫码确认到达")
    assert wang.act(alert["id"], "acknowledge").status == 200
    for body, status in (({"code": "not a code"}, 400), ({}, 400), ({"code": ""}, 400),
                         ({"code": token("household", "H-3-0302", 2)}, 409)):
        answer = arrive(wang, alert["id"], body)
        assert answer.status == status, (body, answer.body)
        assert answer.body["error"]
    assert wang.get(f"/v1/console/alerts/{alert['id']}").body["alert"]["state"] == "acknowledged"
    arrived = arrive(wang, alert["id"], {"code": door})
    assert (arrived.status, arrived.body["alert"]["state"]) == (200, "arrived")
    assert arrived.body["alert"]["on_site_by"] == "王管家"


def arrive(client: ConsoleClient, alert_id: str, body: dict) -> Answer:
    return client.post(f"/v1/console/alerts/{alert_id}/arrive", json.dumps(body).encode())


@pytest.mark.system
def test_a_running_central_escalates_an_acknowledged_call_nobody_arrived_at(
    tmp_path: Path, central_database: str | None,
) -> None:
    """The engine's own timer, restarted by the acknowledgement, on a short `arrive_within`."""
    central = start_central(tmp_path / "central", accounts=("b-wang",),
                            extra="[alerts]\nescalate_after = 30.0\narrive_within = 1.0\n",
                            database=central_database)
    try:
        ingest(central, [press("btn-0007", uuid.uuid4().hex)])
        alert = wait_alert(central, "btn-0007")
        wang = ConsoleClient(central)
        assert wang.login("b-wang").status == 200
        assert wang.act(alert["id"], "acknowledge").status == 200

        again = wait_alert(central, "btn-0007", lambda a: a["escalations"] == 1)
        assert again["state"] in ("raised", "notified") and again["acknowledged_by"] is None
        [step] = steps(central, alert["id"], "escalated")
        assert step["detail"]["why"] == "no_arrival"
        assert step["detail"]["acknowledged_by"] == "王管家"
        # The next rung (the backup butler) is paged, as for an unacknowledged call.
        paged = wait_for(lambda: [s for s in steps(central, alert["id"], "paged")
                                  if s["detail"]["escalation"] == 1], 10, what="the next rung")
        assert paged[0]["detail"]["targets"] == ["butler:b-li"]
    finally:
        central.kill()


# Chromium on Linux has no BarcodeDetector (it reads QR codes on Android, ChromeOS and macOS):
# this stand-in reads what the test holds up, from Chromium's own fake camera's frames.
STAND_IN_DETECTOR = """
window.BarcodeDetector = class {
  async detect(video) {
    if (!(video instanceof HTMLVideoElement) || !video.srcObject) throw new TypeError("no frame");
    return window.heldUp ? [{ format: "qr_code", rawValue: window.heldUp }] : [];
  }
};
"""


@pytest.fixture
def camera_browser() -> Iterator[Browser]:
    fake_camera = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=CHROMIUM_ARGS + fake_camera)
        yield browser
        browser.close()


@pytest.mark.system
def test_the_console_camera_reads_the_door_code_where_the_phone_can(
    broker: Broker, arrival_central: Central, arrival_gateway: Gateway, camera_browser: Browser,
) -> None:
    central = arrival_central
    context = camera_browser.new_context(viewport={"width": 390, "height": 844},
                                         permissions=["camera"])
    context.add_init_script(STAND_IN_DETECTOR)
    page = context.new_page()
    page.goto(f"{central.url}/console/")
    page.fill("#account", "b-wang")
    page.fill("#password", PASSWORD)
    page.click("#login-button")
    expect(page.locator("#who")).to_have_text("王管家")
    with buttons(broker.port, ["btn-0007"]) as pressable:
        pressable["btn-0007"].press()
        card = page.locator(".card", has_text="张秀英")
        card.locator("button.acknowledge").click()
        expect(card).to_have_attribute("data-state", "acknowledged")

        card.locator("button.arrive").click()  # the camera opens at once
        camera = page.locator(".door-camera video")
        expect(camera).to_be_visible()
        wait_for(lambda: camera.evaluate("(video) => video.videoWidth") > 0, 10,
                 what="frames from the camera")
        door = code_url("HTTPS://M.DDP.CN", "household", token("household", HOUSEHOLD))
        page.evaluate("(code) => { window.heldUp = code; }", door)

        expect(card).to_have_attribute("data-state", "arrived")
        expect(page.locator(".door-camera")).to_have_count(0)  # the camera is let go
        assert page.evaluate("window.heldUp") == door
    context.close()
