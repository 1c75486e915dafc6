"""An elderly resident living alone not visited for too long raises a reminder to the butler,
on a short test interval and not before: a 待探访 card of its own, apart from calls, naming the
resident, building and room, the last visit (its date in the community's time zone) and the
days overdue, on the console and in the butler's robot message, in Chinese. The butler's
accepted visit scan of that household closes it, through any gateway of the community, with
a step saying who visited; another household's scan does not. The stall pages and reports live
on the same central."""

from __future__ import annotations

import base64
import datetime
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cloud_bridge.alerts.book import Alert
from cloud_bridge.alerts.states import AlertState, Page
from cloud_bridge.console.app import alert_view
from cloud_bridge.issuing.keys import issue_token
from cloud_bridge.notify.messages import compose, plain, render
from cloud_bridge.visits.facts import DAY, Overdue
from cloud_bridge.visits.watch import reminder_event
from mashang.registry import Registry
from tests.helpers.console import (
    REGISTRY,
    ConsoleClient,
    WebhookReceiver,
    admin_get,
    alert_detail,
    alerts,
    event,
    ingest,
    request,
    start_central,
)
from tests.helpers.support import ADMIN_TOKEN, wait_for
from tests.helpers.visits import (
    COMMUNITY,
    OTHER_GATEWAY,
    checkin,
    send,
    visits_central,
)
from tests.helpers.visits import registry as visits_registry

pytestmark = pytest.mark.central  # each test is marked unit or system itself

OVERDUE_AFTER = 3.0
KEY = Ed25519PrivateKey.generate()


def registry_with_households() -> dict:
    public = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return REGISTRY | {
        "households": [
            {"id": "H-3-1201", "building": "B3", "room": "1201", "elderly_living_alone": True},
            {"id": "H-3-0302", "building": "B3", "room": "302", "elderly_living_alone": False},
        ],
        "stalls": [{"id": "ST-9", "name": "夜市烤串", "zone": "夜市", "hours": "17:00-23:30"}],
        "code_keys": {"1": base64.b64encode(public).decode()},
    }


def visit(household: str) -> dict:
    return event("visit.checkin", "butler-phone",
                 {"result": "accepted", "subject": {"kind": "household", "id": household}},
                 priority="normal") | {"kind": "log"}


def reminders(central) -> list[dict]:
    return [e for e in central.events("visit.overdue")]


@pytest.mark.system
def test_a_reminder_fires_after_the_interval_and_not_before(tmp_path, central_database):
    central = start_central(
        tmp_path / "central",
        registry=registry_with_households(),
        extra=f"[visits]\noverdue_after = {OVERDUE_AFTER}\ncheck_interval = 0.2\n",
        database=central_database,
    )
    try:
        visited = visit("H-3-1201")
        ingest(central, [visited])
        # The visit counts from when it was scanned (its occurred_at), as the watch reads it.
        visited_at = datetime.datetime.fromisoformat(visited["occurred_at"]).timestamp()
        # Well inside the interval, the watch has run several times and raised nothing.
        while time.time() - visited_at < OVERDUE_AFTER * 0.5:
            assert reminders(central) == []
            time.sleep(0.2)
        found = wait_for(lambda: reminders(central), 15, what="an overdue-visit reminder")
        assert len(found) == 1, "one reminder, for the household living alone only"
        reminder = found[0]
        assert reminder["data"]["household"] == "H-3-1201"
        assert reminder["arrived_at"] - visited_at >= OVERDUE_AFTER
        alert = wait_for(lambda: [a for a in alerts(central, state="all")
                                  if a["type"] == "visit.overdue"], 10, what="the alert")[0]
        assert alert["building"] == "B3"
    finally:
        central.kill()


@pytest.mark.system
def test_the_stall_page_and_the_street_offices_reports(tmp_path, central_database):
    central = start_central(tmp_path / "central", registry=registry_with_households(),
                            database=central_database)
    try:
        expires = datetime.date.today() + datetime.timedelta(days=10)
        token = issue_token(KEY, 1, "stall", "ST-9", 1, expires)
        page = request(f"{central.url}/S/{token}")
        assert page.status == 200
        assert "夜市烤串" in page.body
        form_token = page.body.split('name="form_token" value="')[1].split('"')[0]
        answer = request(
            f"{central.url}/S/{token}/feedback", "POST",
            f"form_token={form_token}&rating=2&report=%E5%8D%A0%E9%81%93".encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert answer.status in (200, 303)
        reports = admin_get(central, "/v1/stalls/reports?stall=ST-9")["reports"]
        assert [(r["rating"], r["report"]) for r in reports] == [(2, "占道")]
        refused = request(f"{central.url}/v1/stalls/reports")
        assert refused.status == 401
        assert ADMIN_TOKEN not in str(refused.body)
    finally:
        central.kill()


# -- the 待探访 card: its facts, its words, what closes it -------------------------------------

WEEK = 7 * DAY


def reminder_alert(household_id: str, last_visit: float | None, due_at: float,
                   now: float) -> Alert:
    """The alert the book makes of the watch's reminder for that household, raised `now`."""
    registry = Registry.model_validate(visits_registry())
    household = registry.household(household_id)
    assert household is not None
    body = reminder_event(household, registry, Overdue(last_visit, due_at), now, COMMUNITY)
    return Alert(
        id="a-1", gateway_id="central", device_id=body["device_id"], type=body["type"],
        category="visit", priority="normal", state=AlertState.RAISED, building="B3",
        presses=0, escalations=0, gateway_alert_id=None, data=body["data"], raised_at=now,
        arrived_at=now,
    )


def robot_text(alert: Alert, now: float) -> str:
    message = render(alert, Page.RAISED, "butler:b-wang", "https://mashang.example")
    return plain(compose(message, COMMUNITY, now))


@pytest.mark.unit
def test_the_reminder_names_the_resident_room_last_visit_and_days_overdue():
    # 07:30 on 20 November in the community is still the 19th in UTC: the date is the
    # community's, whatever zone the central's host keeps.
    visited = datetime.datetime(2026, 11, 20, 7, 30, tzinfo=COMMUNITY).timestamp()
    now = visited + 11 * DAY + 3600
    alert = reminder_alert("H-3-1201", visited, visited + WEEK, now)
    data = alert.data
    assert (data["resident"]["name"], data["room"], data["building"]) == (
        "张秀英", "1201", {"id": "B3", "name": "3号楼"})
    assert (data["last_visit_date"], data["days_overdue"]) == ("2026-11-20", 4)

    # The console counts the days to the moment it is asked.
    view = alert_view(alert, {"B3": "3号楼"}, COMMUNITY, now + DAY)
    assert view["kind"] == "visit"
    assert view["resident"]["name"] == "张秀英" and view["resident"]["room"] == "1201"
    assert view["visit"] == {"last_visit_at": visited, "last_visit_date": "2026-11-20",
                             "days_since_visit": 12, "due_at": visited + WEEK,
                             "days_overdue": 5}

    lines = robot_text(alert, now).splitlines()
    assert lines[0] == "【待探访】张秀英 · 3号楼 1201"
    assert "上次探访: 2026-11-20（11 天前）" in lines
    assert "逾期: 4 天" in lines
    assert "未登记" not in "".join(lines) and "visit" not in lines[0]


@pytest.mark.unit
def test_a_household_never_visited_and_without_a_named_resident_says_so():
    watched = datetime.datetime(2026, 11, 1, 9, 0, tzinfo=COMMUNITY).timestamp()
    alert = reminder_alert("H-3-1205", None, watched + WEEK, watched + WEEK)
    text = robot_text(alert, watched + WEEK)
    assert text.splitlines()[0] == "【待探访】住户 H-3-1205 · 3号楼 1205"
    assert "上次探访: 无记录" in text and "逾期: 今天到期" in text
    assert alert_view(alert, {}, COMMUNITY, watched + WEEK)["visit"]["last_visit_date"] is None


def overdue_extra(receiver: WebhookReceiver | None = None) -> str:
    extra = "[visits]\noverdue_after = 2.0\ncheck_interval = 0.5\n"
    if receiver is not None:
        extra += (f'[[webhooks]]\nurl = "{receiver.url}/cgi-bin/webhook/send?key=wang"\n'
                  'format = "wecom"\nto = ["butler:b-wang"]\n')
    return extra


def open_reminders(central, *households: str) -> dict[str, dict] | None:
    """household → its open reminder, once each of them has one."""
    found = {a["data"]["household"]: a for a in alerts(central, state="open")
             if a["type"] == "visit.overdue"}
    return found if all(h in found for h in households) else None


@pytest.mark.system
def test_the_butler_reads_who_where_and_since_when_on_the_console_and_from_the_robot(
    tmp_path, central_database
):
    receiver = WebhookReceiver()
    central = visits_central(tmp_path / "central", extra=overdue_extra(receiver),
                             database=central_database)
    try:
        three_days_ago = datetime.datetime.now(COMMUNITY) - datetime.timedelta(days=3, hours=1)
        send(central, [checkin("H-3-1201", at=three_days_ago)])
        wait_for(lambda: open_reminders(central, "H-3-1201", "H-3-1205"), 20,
                 what="both of 3号楼's reminders")

        butler = ConsoleClient(central)
        butler.login("b-wang")
        shown = {a["device_id"]: a for a in butler.get("/v1/console/alerts").body["alerts"]}
        assert set(shown) == {"household:H-3-1201", "household:H-3-1205"}, "5号楼's is b-zhao's"
        card = shown["household:H-3-1201"]
        assert card["kind"] == "visit"
        assert (card["resident"]["name"], card["resident"]["room"], card["building"]["name"]) == (
            "张秀英", "1201", "3号楼")
        visit = card["visit"]
        assert visit["last_visit_date"] == three_days_ago.date().isoformat()
        assert visit["days_since_visit"] == 3
        assert isinstance(visit["days_overdue"], int)

        def robot(words: str) -> list[str]:
            return [r.body["text"]["content"] for r in receiver.at("/cgi-bin/webhook/send")
                    if words in r.body["text"]["content"]]

        [said] = wait_for(lambda: robot("张秀英"), 20, what="the robot's message")
        lines = said.splitlines()
        assert lines[0] == "【待探访】张秀英 · 3号楼 1201"
        assert f"上次探访: {three_days_ago.date().isoformat()}（3 天前）" in lines
        assert any(line.startswith("逾期: ") for line in lines)
        [other] = wait_for(lambda: robot("H-3-1205"), 20, what="the other reminder's message")
        assert other.splitlines()[0] == "【待探访】住户 H-3-1205 · 3号楼 1205"
        assert "上次探访: 无记录" in other
    finally:
        central.kill()
        receiver.close()


@pytest.mark.system
def test_an_accepted_visit_through_any_gateway_closes_its_reminder_and_no_other(
    tmp_path, central_database
):
    central = visits_central(tmp_path / "central", extra=overdue_extra(),
                             database=central_database)
    try:
        reminders = wait_for(lambda: open_reminders(central, "H-3-1201", "H-3-1205"), 20,
                             what="both of 3号楼's reminders")
        kept, closed = reminders["H-3-1201"]["id"], reminders["H-3-1205"]["id"]

        # A refused scan of 1201, then the visit of the household next door: 1205's alone
        # closes, and once it has, the book has read past both.
        send(central, [checkin("H-3-1201", result="rejected"), checkin("H-3-1205")])
        wait_for(lambda: alert_detail(central, closed)["alert"]["state"] == "resolved", 20,
                 what="1205's reminder closed by its visit")
        assert alert_detail(central, kept)["alert"]["state"] != "resolved"

        # The butler's scan of 1201 reaches the central through the community's other gateway:
        # the reminder is the household's, not a gateway's, and it closes.
        send(central, [checkin("H-3-1201", scanner="wang-phone")], gateway=OTHER_GATEWAY)
        wait_for(lambda: alert_detail(central, kept)["alert"]["state"] == "resolved", 20,
                 what="1201's reminder closed by the visit through the other gateway")
        detail = alert_detail(central, kept)
        alert = detail["alert"]
        assert (alert["resolve_reason"], alert["resolved_by"]) == ("arrived", "wang-phone")
        [visited] = [step for step in detail["steps"] if step["step"] == "note"]
        assert visited["who"] == f"gateway:{OTHER_GATEWAY}"
        assert visited["detail"]["scanner"] == "wang-phone"
        assert visited["detail"]["gateway"] == OTHER_GATEWAY

        butler = ConsoleClient(central)
        butler.login("b-wang")
        ids = {a["id"] for a in butler.get("/v1/console/alerts").body["alerts"]}
        assert kept not in ids and closed not in ids
    finally:
        central.kill()
