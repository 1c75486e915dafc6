"""The local safety nets (the LAN page and the duty room's webhooks) never fail on device data.

During a central outage, an unregistered press carrying `"building": "B3", "resident": "x"`
(strings where the page expected objects) once made the LAN page answer 500 and ended the
fallback's task without a word, so that a later critical press never reached the duty room.
Here: that press, then a critical one, and the second reaches the duty room's webhook; the
page answers throughout. And the duty room's "handled here" mark on the page becomes a
`alert.handled_locally` event that reaches the central's alert history once it is back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_bridge.alerts.book import AlertBook
from cloud_bridge.alerts.states import AlertState, Step
from cloud_bridge.config import AlertsSection
from cloud_bridge.receiver.store import EventStore
from edge.buffer.outbox import (
    ClassDepth,
    EventClass,
    Leased,
    OutboxFull,
    OutboxStats,
    OutboxUsage,
)
from edge.config import FallbackSection, GatewayConfig
from edge.gateway import REGISTRY_FILE
from edge.ops.facts import GatewayFacts
from edge.ops.http import NotRecorded, alert_row, render_page
from edge.ops.operations import HANDLED_LOCALLY, Operations
from edge.registry_store import RegistryStore
from edge.sink import fallback as fallback_module
from edge.sink.central import CentralHealth
from edge.sink.fallback import TEXT_LIMIT, Fallback, describe, field_of, mapping, text_of
from edge.sink.uplink import UplinkCounts
from mashang.registry import Building, Butler, Button, Community, Contact, Registry, Resident
from tests.helpers.support import (
    ADMIN_TOKEN,
    GATEWAY_ID,
    Central,
    device_topic,
    free_port,
    get_json,
    publish,
    set_option,
    wait_for,
)

PASSWORD = "duty-room-4321"
MALFORMED = {"action": "long", "building": "B3", "resident": "x"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["name", "room", "phone", "building", "id", "primary", "x"]), inner,
        max_size=4),
    max_leaves=12,
)
alerts = st.dictionaries(
    st.sampled_from(["id", "type", "priority", "device_id", "received_at", "data"]),
    json_values | st.dictionaries(
        st.sampled_from(["resident", "building", "butlers", "duty_contact", "action",
                         "unregistered", "alert_id"]), json_values, max_size=7),
    max_size=6,
)


# -- the accessors and the renderers, in-process ---------------------------------------------

@pytest.mark.unit
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alert=alerts | json_values)
def test_any_json_is_drawn_without_failing(alert):
    for personal in (False, True):
        row = alert_row(alert, personal, token=lambda alert_id: "t")
        assert row.startswith("<tr") and row.endswith("</tr>")
        # Nothing a device sent opens a tag: every "<" in the row is one of ours.
        assert not re.search(r"<(?!/?(tr|td|small|br|a|span|form|input|button)\b)", row), row
    text = describe(alert)
    assert isinstance(text, str) and "\n" not in text and len(text) < 8 * TEXT_LIMIT


@pytest.mark.unit
def test_the_accessors():
    assert text_of(None) == "" and text_of("x") == "x" and text_of(3) == "3"
    assert text_of(True) == "true" and text_of(["a", 1]) == '["a", 1]'
    assert text_of({"k": "值"}) == '{"k": "值"}'
    assert text_of("a\nb\tc") == "a b c"
    long = text_of("长" * 100_000)
    assert len(long) == TEXT_LIMIT and long.endswith("…")
    assert text_of(10**5000) == "（数字过长）"
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    assert text_of(deep)  # too deep for json.dumps: still text
    assert mapping("x") == {} and mapping(None) == {} and mapping({"a": 1}) == {"a": 1}
    assert field_of({"name": "张"}, "name") == "张"
    assert field_of("B3", "name") == "" and field_of("B3", "name", whole=True) == "B3"
    assert field_of(["B3"], "name", whole=True) == '["B3"]'


@pytest.mark.unit
def test_describe_the_malformed_press_and_a_registered_one():
    malformed = {"id": "e-1", "type": "button.press", "priority": "critical",
                 "device_id": "btn-x", "data": {**MALFORMED, "unregistered": True}}
    assert describe(malformed) == "【紧急】未登记按钮 btn-x B3 呼叫求助（长按）"
    # As the rules keep it: the device's own keys under data.device, told as its word.
    kept = {**malformed, "data": {"action": "long", "unregistered": True,
                                  "device": {"building": "B3", "resident": "x"}}}
    assert describe(kept) == ("【紧急】未登记按钮 btn-x 呼叫求助（长按） "
                              "（设备自报：building: B3，resident: x）")
    assert "设备自报：[1, 2]" in describe({"data": {"device": [1, 2]}})
    registered = {"id": "e-2", "type": "button.press", "priority": "critical",
                  "device_id": "btn-0007",
                  "data": {"action": "long", "building": {"id": "B3", "name": "3号楼"},
                           "resident": {"name": "张秀英", "room": "1201", "phone": "139"}}}
    assert describe(registered) == "【紧急】张秀英 3号楼 1201 呼叫求助（长按） 电话 139"


# -- the fallback loop, in-process (a fake outbox and HTTP session: no server) ---------------

class FakeOutbox:
    def __init__(self, rows: list[Leased]) -> None:
        self.rows = rows
        self.fail = False
        self.peeks = 0

    def peek(self, klass: EventClass, limit: int) -> list[Leased]:
        self.peeks += 1
        if self.fail:
            raise OSError("disk I/O error")
        return self.rows[:limit]


class FakeResponse:
    status = 200

    async def __aenter__(self) -> FakeResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class FakeSession:
    def __init__(self) -> None:
        self.posted: list[dict[str, Any]] = []

    def post(self, url: str, json: dict[str, Any], timeout: object) -> FakeResponse:
        # What aiohttp would do: the body must encode.
        __import__("json").dumps(json)
        self.posted.append(json)
        return FakeResponse()


def unreachable_health() -> CentralHealth:
    health = CentralHealth(clock=lambda: 1000.0)
    health.answered("/v1/ingest", None, "ClientConnectorError: refused")
    health._clock = lambda: 1100.0  # a hundred seconds later
    return health


def row(seq: int, alert_id: str, body: Any) -> Leased:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Leased(seq, alert_id, raw)


@pytest.mark.unit
def test_a_bad_alert_never_keeps_a_later_one_from_the_duty_room():
    rows = [
        row(1, "e-bad", {"id": "e-bad", "type": "button.press", "priority": "critical",
                         "device_id": "btn-x", "data": {**MALFORMED, "unregistered": True}}),
        row(2, "e-junk", b"\xff not json"),
        row(3, "e-list", ["an", "alert", "as", "a", "list"]),
        row(4, "e-huge", {"id": "e-huge", "data": {"resident": {"name": "长" * 100_000}}}),
        row(5, "e-good", {"id": "e-good", "type": "button.press", "priority": "critical",
                          "device_id": "btn-0007",
                          "data": {"resident": {"name": "张秀英"}, "action": "long"}}),
    ]
    fallback = Fallback(FallbackSection(after=1, webhooks=["http://duty.invalid/hook"]),
                        FakeOutbox(rows), unreachable_health(), "g-1")  # type: ignore[arg-type]
    session = FakeSession()
    asyncio.run(fallback._round(session))  # type: ignore[arg-type]
    texts = {post["alert"].get("id"): post["text"] for post in session.posted}
    assert set(texts) == {"e-bad", "e-junk", "e-list", "e-huge", "e-good"}
    assert "张秀英" in texts["e-good"] and "B3" in texts["e-bad"]
    assert len(texts["e-huge"]) < 4 * TEXT_LIMIT
    assert len(fallback.waiting) == 5 and all(isinstance(a, dict) for a in fallback.waiting)
    asyncio.run(fallback._round(session))  # type: ignore[arg-type]
    assert len(session.posted) == 5, "each alert is posted once"
    # The page draws what the fallback shows.
    render_page({"gateway_id": "g-1", "fallback": True, "alerts": fallback.waiting}, True)


@pytest.mark.unit
def test_the_fallback_loop_outlives_a_failing_round(monkeypatch, caplog):
    monkeypatch.setattr(fallback_module, "CHECK_INTERVAL", 0.0)
    outbox = FakeOutbox([row(1, "e-1", {"id": "e-1", "type": "button.press"})])
    outbox.fail = True
    fallback = Fallback(FallbackSection(after=1, webhooks=["http://duty.invalid/hook"]),
                        outbox, unreachable_health(), "g-1")  # type: ignore[arg-type]
    session = FakeSession()

    async def until(condition: Any) -> None:
        while not condition():
            await asyncio.sleep(0.001)

    async def scenario() -> None:
        task = asyncio.create_task(fallback.run(session))  # type: ignore[arg-type]
        await asyncio.wait_for(until(lambda: outbox.peeks >= 3 or task.done()), 10)
        assert not task.done(), "a failing round does not end the loop"
        outbox.fail = False
        await asyncio.wait_for(until(lambda: session.posted or task.done()), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert [post["alert"]["id"] for post in session.posted] == ["e-1"]
    failures = [r for r in caplog.records if "fallback round failed" in r.getMessage()]
    assert len(failures) == 1, "logged, but not every round"


# -- "handled here" up to the gateway's callback, in-process ---------------------------------

class FakeBroker:
    subscribed = threading.Event()
    connected = True


def run_as_the_pipeline_does(work: Any) -> None:
    with contextlib.suppress(Exception):  # the pipeline logs it and goes on
        work()


def make_facts(tmp_path: Path, waiting: list[dict[str, Any]],
               record: Any) -> GatewayFacts:
    depth = ClassDepth(len(waiting), 100, 5.0)
    values: dict[str, Any] = dict(
        gateway_id="g-1", broker_address="127.0.0.1:1883", broker=FakeBroker(),
        central=unreachable_health(), uplink=UplinkCounts(), outbox_usage=OutboxUsage(),
        outbox_stats=lambda: OutboxStats(depth, ClassDepth(0, 0, None), 0, 100, 1000),
        waiting_alerts=lambda limit: waiting[:limit], pipeline_full=lambda: False,
        committed_messages=lambda: 0, devices=dict, fallback_active=lambda: True,
        fallback_waiting=lambda: waiting, on_commit_thread=run_as_the_pipeline_does,
        use_registry=lambda registry: None, registry_store=RegistryStore(tmp_path / "r.json"),
        failure=lambda: None, record=record,
    )
    return GatewayFacts(**values)


def operations(facts: GatewayFacts, tmp_path: Path) -> Operations:
    config = GatewayConfig.model_validate({
        "gateway": {"id": "g-1", "data_dir": str(tmp_path)},
        "central": {"url": "http://127.0.0.1:9", "key": "k" * 32},
    })
    return Operations(facts, config)


WAITING = [{"id": "e-7", "kind": "alert", "type": "button.press", "priority": "critical",
            "device_id": "btn-0007", "data": {"alert_id": "e-7", "resident": "x"}}]


@pytest.mark.unit
def test_handled_here_is_recorded_through_the_callback_and_shown(tmp_path):
    recorded: list[tuple[str, dict]] = []
    ops = operations(make_facts(tmp_path, WAITING, lambda t, d: recorded.append((t, d))),
                     tmp_path)
    mark = ops.handle_locally("e-7", "张三", "已上门")
    assert recorded == [(HANDLED_LOCALLY, mark)]
    assert mark["alert_id"] == "e-7" and mark["gateway_alert_id"] == "e-7"
    assert mark["device_id"] == "btn-0007" and mark["by"] == "张三" and mark["note"] == "已上门"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$", mark["at"])
    assert ops.handle_locally("e-7", "李四", "") == mark, "a second tap keeps the first mark"
    assert len(recorded) == 1
    page = ops.page()
    assert page["handled"]["e-7"] == mark
    assert "已由 张三 本地处理" in render_page(page, True, lambda alert_id: "t")


@pytest.mark.unit
def test_handled_here_when_it_cannot_be_recorded(tmp_path):
    def full(event_type: str, data: dict) -> None:
        raise OutboxFull("no room")

    ops = operations(make_facts(tmp_path, WAITING, full), tmp_path)
    with pytest.raises(NotRecorded, match="发件箱已满"):
        ops.handle_locally("e-7", "值班室", "")
    assert ops.page()["handled"] == {}, "no mark shown for what was not recorded"


# -- the central's alert history, in-process -------------------------------------------------

def press(event_id: str, device_id: str, gateway_alert_id: str) -> dict[str, Any]:
    return {"id": event_id, "kind": "alert", "type": "button.press", "priority": "critical",
            "device_id": device_id, "received_at": "2026-12-01T13:51:07.000+08:00",
            "data": {"action": "long", "alert_id": gateway_alert_id, "presses": 1}}


def handled_event(event_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": event_id, "kind": "log", "type": HANDLED_LOCALLY, "priority": "normal",
            "device_id": None, "received_at": "2026-12-01T13:55:00.000+08:00", "data": data}


@pytest.mark.unit
@pytest.mark.central
def test_the_central_adds_the_mark_to_the_alerts_history(database):
    store, book = EventStore(database), AlertBook(database, AlertsSection())
    store.add("g-1", [press("e-1", "btn-1", "e-1"), press("e-2", "btn-2", "e-2")])
    _, raised = book.feed()
    first, second = (change.alert for change in raised)
    store.add("g-1", [
        handled_event("h-1", {"alert_id": "e-1", "gateway_alert_id": "e-1", "by": "张三",
                              "at": "2026-12-01T13:55:00.000+08:00", "note": "已上门"}),
        # Only the gateway's emergency id (an older gateway), and hostile values.
        handled_event("h-2", {"alert_id": None, "gateway_alert_id": "e-2", "by": ["x"],
                              "note": {"a": 1}}),
        handled_event("h-3", {"alert_id": "nobody-knows", "by": "值班室"}),
        handled_event("h-4", "not an object"),  # type: ignore[arg-type]
    ])
    _, changes = book.feed()
    assert [(c.alert.id, c.step) for c in changes] == [
        (first.id, Step.HANDLED_LOCALLY), (second.id, Step.HANDLED_LOCALLY)]
    [step] = [s for s in book.steps(first.id) if s["step"] == Step.HANDLED_LOCALLY]
    assert step["who"] == "gateway:g-1"
    assert step["detail"] == {"event": "h-1", "alert_event": "e-1", "name": "张三",
                              "at": "2026-12-01T13:55:00.000+08:00", "note": "已上门"}
    [other] = [s for s in book.steps(second.id) if s["step"] == Step.HANDLED_LOCALLY]
    assert other["detail"]["name"] is None and other["detail"]["note"] is None
    again = book.get(first.id)
    assert again is not None and again.state == AlertState.RAISED, "the mark closes nothing"
    assert again.next_escalation_at is not None


# -- the whole gateway (system) ----------------------------------------------------------------

REGISTRY = Registry(
    version=1,
    community=Community(name="康城社区", duty_contact=Contact(name="社区值班室", phone="110")),
    butlers=[Butler(id="b-wang", name="王管家", phone="13800000001")],
    buildings=[Building(id="B3", name="3号楼", primary_butler="b-wang")],
    buttons=[Button(device_id="btn-0007", resident=Resident(
        name="张秀英", phone="13900000007", building="B3", room="1201"))],
)


class DutyRoom:
    """The duty room's local webhook: an aiohttp server on 127.0.0.1, in a thread."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True, name="duty-room").start()
        assert self._ready.wait(10), "the duty room's webhook did not start"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/duty"

    def _serve(self) -> None:
        async def take(request: web.Request) -> web.Response:
            self.received.append(await request.json())
            return web.json_response({"ok": True})

        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/duty", take)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def posted(self, device_id: str) -> dict[str, Any] | None:
        return next((p for p in list(self.received)
                     if mapping(p.get("alert")).get("device_id") == device_id), None)


def auth(password: str) -> str:
    return "Basic " + base64.b64encode(f"duty:{password}".encode()).decode()


def fetch(port: int, password: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/")
    if password is not None:
        request.add_header("Authorization", auth(password))
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def post_mark(port: int, form: dict[str, str], password: str | None = PASSWORD,
              origin: str | None = None) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/handled", data=urllib.parse.urlencode(form).encode(),
        method="POST")
    if password is not None:
        request.add_header("Authorization", auth(password))
    if origin is not None:
        request.add_header("Origin", origin)
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=15) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def start_gateway(make_gateway, central_url: str, duty: DutyRoom):
    gateway = make_gateway(central_url, sections={
        "fallback": f'after = 1.0\nwebhooks = ["{duty.url}"]\n'})
    set_option(gateway.config, "http", "page_password", json.dumps(PASSWORD))
    gateway.data_dir.mkdir(parents=True, exist_ok=True)
    RegistryStore(gateway.data_dir / REGISTRY_FILE).replace(REGISTRY)
    gateway.start()
    return gateway


@pytest.mark.system
def test_a_malformed_press_then_a_critical_one_during_an_outage(broker, make_gateway):
    duty = DutyRoom()
    gateway = start_gateway(make_gateway, f"http://127.0.0.1:{free_port()}", duty)
    publish(broker.port, [(device_topic("btn-x"), json.dumps(MALFORMED))])
    malformed = wait_for(lambda: duty.posted("btn-x"), 20,
                         what="the malformed press at the duty room's webhook")
    assert "B3" in malformed["text"] and "未登记" in malformed["text"]
    for password in (None, PASSWORD):
        status, text = fetch(gateway.http_port, password)
        assert status == 200 and "btn-x" in text, text[:2000]
        assert "中心平台无法连接" in text and "连接被拒绝" in text
        # What the device said of itself (wherever the rules keep it), behind the password.
        assert ("B3" in text.split("待处理警报")[1].split("<h2>")[0]) is (password is not None)

    publish(broker.port, [(device_topic("btn-0007"), json.dumps({"seq": 1, "action": "long"}))])
    critical = wait_for(lambda: duty.posted("btn-0007"), 20,
                        what="the critical press at the duty room's webhook")
    assert critical["alert"]["priority"] == "critical" and "张秀英" in critical["text"]
    assert critical["text"].startswith("【紧急】")
    status, text = fetch(gateway.http_port, PASSWORD)
    assert status == 200 and 'href="tel:13900000007"' in text
    assert get_json(f"http://127.0.0.1:{gateway.http_port}/healthz") is not None
    assert gateway.running()
    assert "fallback round failed" not in gateway.output()
    assert "not posted to the duty room" not in gateway.output()


@pytest.mark.system
@pytest.mark.central
def test_handled_here_reaches_the_centrals_alert_history(broker, make_gateway, tmp_path,
                                                         central_database):
    duty = DutyRoom()
    central_port = free_port()  # nothing listens there yet: the central is down
    gateway = start_gateway(make_gateway, f"http://127.0.0.1:{central_port}", duty)
    publish(broker.port, [(device_topic("btn-0007"), json.dumps({"seq": 1, "action": "long"}))])
    wait_for(lambda: duty.posted("btn-0007"), 20, what="the press at the duty room")

    _, public = fetch(gateway.http_port)
    assert 'action="/handled"' not in public, "no button without the page password"
    _, text = fetch(gateway.http_port, PASSWORD)
    found = re.search(r'name="alert" value="([^"]+)"><input type="hidden" name="token" '
                      r'value="([0-9a-f]+)"', text)
    assert found, text[:3000]
    alert_id, token = found.groups()
    form = {"alert": alert_id, "token": token, "by": "张三"}
    assert post_mark(gateway.http_port, form, password=None) == 401
    assert post_mark(gateway.http_port, form, password="wrong") == 401
    assert post_mark(gateway.http_port, {**form, "token": "0" * 64}) == 403
    assert post_mark(gateway.http_port, form, origin="http://evil.example") == 403
    assert post_mark(gateway.http_port, form) == 303
    _, text = fetch(gateway.http_port, PASSWORD)
    assert "已由 张三 本地处理" in text
    _, public = fetch(gateway.http_port)
    assert "已在本地处理" in public and "张三" not in public

    # The central comes back: the alert arrives, then the mark, into the alert's history.
    central = Central(tmp_path / "central", port=central_port, database=central_database)
    central.start()
    try:
        [mark] = wait_for(lambda: central.events(HANDLED_LOCALLY), 30,
                          what="the mark at the central")
        assert mark["data"]["alert_id"] == alert_id and mark["data"]["by"] == "张三"

        def history() -> list[dict] | None:
            listing = get_json(f"{central.url}/v1/alerts?state=all", token=ADMIN_TOKEN)
            for alert in (listing or {}).get("alerts", []):
                if alert["device_id"] == "btn-0007":
                    shown = get_json(f"{central.url}/v1/alerts/{alert['id']}", token=ADMIN_TOKEN)
                    steps = [s for s in shown["steps"] if s["step"] == "handled_locally"]
                    if steps:
                        return [shown["alert"], *steps]
            return None

        alert, step = wait_for(history, 30, what="the handled_locally step")
        assert step["detail"]["name"] == "张三" and step["who"] == f"gateway:{GATEWAY_ID}"
        assert alert["state"] != "resolved", "handled here does not close the alert"
    finally:
        central.kill()


ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.mark.system
def test_the_lan_page_on_a_phone(broker, make_gateway, browser):
    """The duty room's phone (390×844): header row, tap to call, and "handled here" with the
    browser's own POST (its Origin and basic auth). Leaves test-artifacts/lanpage-phone.png."""
    duty = DutyRoom()
    gateway = start_gateway(make_gateway, f"http://127.0.0.1:{free_port()}", duty)
    publish(broker.port, [
        (device_topic("btn-x"), json.dumps(MALFORMED)),
        (device_topic("btn-0007"), json.dumps({"seq": 1, "action": "long"})),
    ])
    wait_for(lambda: duty.posted("btn-0007") and duty.posted("btn-x"), 20,
             what="both presses at the duty room")
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2,
        http_credentials={"username": "值班", "password": PASSWORD})
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{gateway.http_port}/?login")
    table = page.locator("table.alerts")
    assert table.locator("th").all_inner_texts() == ["级别", "类型", "住户", "楼栋/房间",
                                                     "电话", "时间", "处理"]
    row = table.locator("tr", has_text="张秀英")
    # Tap to call, in view on a phone without swiping the table sideways.
    assert row.locator('td:nth-child(3) a[href="tel:13900000007"]').is_visible()
    assert row.locator('td:nth-child(5) a[href="tel:13900000007"]').count() == 1
    assert "紧急" in row.inner_text() and "3号楼 1201" in row.inner_text()
    assert "btn-x" in table.inner_text() and "B3" in table.inner_text()
    assert "设备自报" in table.inner_text()
    assert "中心平台无法连接" in page.inner_text("body")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "lanpage-phone.png", full_page=True)
    row.locator('input[name="by"]').fill("李四")
    row.locator("button").click()
    page.wait_for_url(re.compile(r"/\?login#a-"))
    marked = page.locator("table.alerts tr", has_text="张秀英")
    assert "已由 李四 本地处理" in marked.inner_text()
    page.screenshot(path=ARTIFACTS / "lanpage-phone-handled.png", full_page=True)
    context.close()
