"""History a person can use: the console's past alerts searched by resident, room or device,
by building, by the community's day and by kind, paged past 200 newest first, exported as CSV
with the community's local times, and only ever what the account may see (a butler their own
buildings and never a stall matter; the duty room everything)."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest

from tests.helpers.console import (
    Answer,
    ConsoleClient,
    alerts,
    enrichment,
    event,
    ingest,
    press,
    start_central,
)
from tests.helpers.support import Central, wait_for

pytestmark = [pytest.mark.system, pytest.mark.central]

SHANGHAI = "Asia/Shanghai"
B3 = {"id": "B3", "name": "3号楼"}
COLUMNS = [
    "raised", "building", "room", "resident", "kind", "type", "state",
    "acknowledged_by", "acknowledged_at", "resolved_by", "resolved_at", "reason", "note",
]
LOCAL_MINUTE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}")


def local(text: str, zone: str = SHANGHAI) -> str:
    """'2026-11-30T23:30' in a zone, as the ISO time with offset a gateway sends."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).isoformat()


def raised(item: dict[str, Any], when: str) -> dict[str, Any]:
    return item | {"received_at": when, "occurred_at": when}


def history(client: ConsoleClient, **query: str) -> Answer:
    return client.get(f"/v1/console/alerts?{urlencode({'view': 'history', **query})}")


def found(client: ConsoleClient, **query: str) -> set[tuple[str | None, str]]:
    answer = history(client, **query)
    assert answer.status == 200, answer.body
    return {(alert["device_id"], alert["type"]) for alert in answer.body["alerts"]}


def every_page(client: ConsoleClient, **query: str) -> tuple[list[dict], int]:
    """All alerts through the cursors, and how many pages it took."""
    pages, collected, cursor = 0, [], None
    while True:
        answer = history(client, **query, **({"before": cursor} if cursor else {}))
        assert answer.status == 200, answer.body
        pages += 1
        collected.extend(answer.body["alerts"])
        cursor = answer.body["next"]
        if cursor is None:
            return collected, pages


def export(client: ConsoleClient, **query: str) -> list[dict[str, str]]:
    answer = client.get(f"/v1/console/history.csv?{urlencode(query)}")
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert answer.headers["Content-Disposition"].startswith("attachment; filename=")
    assert answer.body.startswith("\ufeff"), "a BOM, so that a spreadsheet reads UTF-8"
    rows = list(csv.reader(io.StringIO(answer.body.removeprefix("\ufeff"))))
    assert rows[0] == COLUMNS
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows[1:]]


def resolve_all(central: Central, who: ConsoleClient, count: int, **said: str) -> None:
    """Resolve every open alert, once `count` of them are open."""
    def opened() -> list[dict] | None:
        found = who.get("/v1/console/alerts").body["alerts"]
        return found if len(found) >= count else None

    for alert in wait_for(opened, what=f"{count} open alerts"):
        answer = who.act(alert["id"], "resolve", **said)
        assert answer.status == 200, answer.body


# -- paging --------------------------------------------------------------------------------


def test_history_pages_past_200_newest_first_with_no_gap_or_repeat(
    tmp_path, central_database
) -> None:
    central = start_central(tmp_path / "central", accounts=("b-wang", "b-zhao", "duty"),
                            database=central_database)
    try:
        # 230 buttons of building B3 go offline at one same moment, 20 more a minute apart
        # before that, and all come back: 250 alerts in history, most of them in one tie.
        tied = local("2026-11-30T13:51")
        offline = [
            raised(event("button.offline", f"btn-h{n:03d}", {"building": B3}, "normal"),
                   tied if n < 230 else local(f"2026-11-30T12:{n - 230:02d}"))
            for n in range(250)
        ]
        ingest(central, offline)
        ingest(central, [event("button.online", f"btn-h{n:03d}", {"building": B3}, "normal")
                         for n in range(250)])
        wait_for(lambda: len(alerts(central, state="resolved")) == 250, what="250 resolved")
        expected = {alert["id"] for alert in alerts(central, state="resolved")}

        duty, wang, zhao = (ConsoleClient(central) for _ in range(3))
        for client, account in ((duty, "duty"), (wang, "b-wang"), (zhao, "b-zhao")):
            assert client.login(account).status == 200

        first = history(duty).body
        assert len(first["alerts"]) == 50 and first["next"], "50 a page by default"
        collected, pages = every_page(duty)
        assert pages == 5
        ids = [alert["id"] for alert in collected]
        assert len(ids) == len(set(ids)) == 250 and set(ids) == expected
        keys = [(alert["raised_at"], alert["id"]) for alert in collected]
        assert keys == sorted(keys, reverse=True), "newest first, one order across pages"

        big = history(duty, limit="200").body
        assert len(big["alerts"]) == 200
        rest = history(duty, limit="200", before=big["next"]).body
        assert len(rest["alerts"]) == 50 and rest["next"] is None
        assert {a["id"] for a in big["alerts"] + rest["alerts"]} == expected

        # B3's butler pages the same; B5's has no history at all.
        assert [a["id"] for a in every_page(wang, limit="120")[0]] == ids
        assert history(zhao).body == {"alerts": [], "next": None}
    finally:
        central.kill()


# -- searching, and who sees what ------------------------------------------------------------


@pytest.fixture(scope="module")
def community(module_database, tmp_path_factory) -> Iterator[Central]:
    """Past alerts of every kind in two buildings, each raised at its own minute of
    2026-11-30 (Shanghai), all resolved by the duty room; one such central on each engine,
    shared by the module's searches."""
    central = start_central(tmp_path_factory.mktemp("community") / "central",
                            accounts=("b-wang", "b-zhao", "duty"), database=module_database)
    visit = {"household": "H-3-1201", "building": B3, "room": "1201", "last_visit": None}
    stall = {"subject": {"name": "老王烧烤"}, "building": B3, "reason": "outside_hours"}
    gateway = {"reason": "outbox_replaced", "buildings": [B3, {"id": "B5", "name": "5号楼"}],
               "buttons": 3}
    happened = [
        press("btn-0007", "g-1"),  # 张秀英, B3 1201
        press("btn-0008", "g-2"),  # 刘桂兰, B3 302
        press("btn-0501", "g-3"),  # 陈建国, B5 601
        event("button.offline", "btn-0501", enrichment("btn-0501"), "normal"),
        event("visit.overdue", "household:H-3-1201", visit, "normal"),
        event("stall.violation", "scanner-1", stall),
        event("gateway.outbox_replaced", None, gateway, "normal"),
    ]
    ingest(central, [raised(item, local(f"2026-11-30T09:{n:02d}"))
                     for n, item in enumerate(happened)])
    duty = ConsoleClient(central)
    duty.login("duty")
    resolve_all(central, duty, len(happened), reason="other", note="=HYPERLINK(\"x\")")
    wait_for(lambda: len(alerts(central, state="resolved")) == len(happened), what="resolved")
    yield central
    central.kill()


@pytest.fixture(scope="module")
def people(community: Central) -> dict[str, ConsoleClient]:
    clients = {}
    for account in ("duty", "b-wang", "b-zhao"):
        clients[account] = ConsoleClient(community)
        assert clients[account].login(account).status == 200
    return clients


def test_search_by_resident_room_device_building_and_kind(people) -> None:
    duty = people["duty"]
    assert found(duty, q="张秀英") == {("btn-0007", "button.press")}
    assert found(duty, q="秀") == {("btn-0007", "button.press")}, "any part of the name"
    assert found(duty, q="1201") == {
        ("btn-0007", "button.press"), ("household:H-3-1201", "visit.overdue")}
    assert found(duty, q="BTN-0501") == {
        ("btn-0501", "button.press"), ("btn-0501", "button.offline")}, "device id, any case"
    assert found(duty, q="nobody") == set()
    assert found(duty, building="B5") == {
        ("btn-0501", "button.press"), ("btn-0501", "button.offline")}
    assert found(duty, kind="call") == {
        ("btn-0007", "button.press"), ("btn-0008", "button.press"), ("btn-0501", "button.press")}
    assert found(duty, kind="fault") == {
        ("btn-0501", "button.offline"), (None, "gateway.outbox_replaced")}
    assert found(duty, kind="visit") == {("household:H-3-1201", "visit.overdue")}
    assert found(duty, kind="stall") == {("scanner-1", "stall.violation")}
    assert found(duty, q="btn-0501", kind="fault", building="B5", day="2026-11-30") == {
        ("btn-0501", "button.offline")}

    [gateway] = [alert for alert in history(duty, kind="fault").body["alerts"]
                 if alert["type"] == "gateway.outbox_replaced"]
    assert gateway["kind"] == "fault" and gateway["gateway_id"]
    assert gateway["gateway"] == {"buildings": [B3, {"id": "B5", "name": "5号楼"}], "buttons": 3}
    [call] = history(duty, q="张秀英").body["alerts"]
    assert (call["kind"], call["gateway"], call["resolve_reason"]) == ("call", None, "other")
    assert call["resolved_at"] and call["raised_at"]


def test_a_butler_finds_only_their_own_buildings_and_never_a_stall(people) -> None:
    wang, zhao = people["b-wang"], people["b-zhao"]
    # The gateway's own alert names both buildings behind it: each of their butlers has it.
    assert found(wang) == {
        ("btn-0007", "button.press"), ("btn-0008", "button.press"),
        ("household:H-3-1201", "visit.overdue"), (None, "gateway.outbox_replaced")}, (
        "B3's and the gateway's, without the stall raised in B3")
    assert found(wang, kind="stall") == set()
    assert found(wang, q="陈建国") == set() and found(wang, building="B5") == set()
    assert found(zhao, q="张秀英") == set()
    assert found(zhao) == {("btn-0501", "button.press"), ("btn-0501", "button.offline"),
                           (None, "gateway.outbox_replaced")}
    assert {row["resident"] for row in export(zhao)} == {"陈建国", ""}
    assert {row["kind"] for row in export(wang)} == {"call", "visit", "fault"}


@pytest.fixture
def fresh(tmp_path, central_database) -> Iterator[tuple[Central, dict[str, ConsoleClient]]]:
    central = start_central(tmp_path / "central", accounts=("b-wang", "b-zhao", "duty"),
                            database=central_database)
    clients = {}
    for account in ("duty", "b-wang", "b-zhao"):
        clients[account] = ConsoleClient(central)
        assert clients[account].login(account).status == 200
    yield central, clients
    central.kill()


def test_a_stall_matter_is_never_in_a_butlers_list_stream_or_page(fresh) -> None:
    central, people = fresh
    stall = {"subject": {"name": "夜市小吃"}, "building": B3, "reason": "wrong_zone"}
    ingest(central, [event("stall.violation", "scanner-2", stall)])
    duty, wang = people["duty"], people["b-wang"]
    [shown] = wait_for(lambda: duty.get("/v1/console/alerts").body["alerts"], what="the stall")
    assert (shown["kind"], shown["device_id"]) == ("stall", "scanner-2")
    assert wang.get("/v1/console/alerts").body["alerts"] == []
    assert wang.get(f"/v1/console/alerts/{shown['id']}").status == 404
    assert wang.act(shown["id"], "resolve").status == 404
    with wang.stream() as live:
        wait_for(lambda: live.events, what="the butler's snapshot")
        ingest(central, [event("stall.violation", "scanner-3", stall)])
        # The stream carries changes in order: once the press is there, the stall went by.
        ingest(central, [press("btn-0008", uuid.uuid4().hex)])
        wait_for(lambda: any(a["device_id"] == "btn-0008" for a in live.alerts()),
                 what="B3's press on the butler's stream")
        assert {a["kind"] for a in live.alerts()} == {"call"}
    assert {a["device_id"] for a in duty.get("/v1/console/alerts").body["alerts"]} == {
        "scanner-2", "scanner-3", "btn-0008"}


def test_bad_parameters_are_refused_with_the_reason(community, people) -> None:
    duty = people["duty"]
    for query, named in (
        ({"day": "2026-13-01"}, "day"),
        ({"day": "yesterday"}, "day"),
        ({"day": "2026-1-5"}, "day"),
        ({"day": "9999-12-31"}, "day"),  # it ends past the calendar (it was a 500)
        ({"day": "２０２６-１１-３０"}, "day"),
        ({"kind": "fire"}, "kind"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"before": "not-a-cursor"}, "before"),
        ({"before": "WzFd"}, "before"),  # [1]: JSON, but no cursor
        ({"q": "x" * 101}, "q"),
    ):
        answer = history(duty, **query)
        assert answer.status == 400, (query, answer.status)
        assert named in answer.body["error"], (query, answer.body)
        assert duty.get(f"/v1/console/history.csv?{urlencode(query)}").status == 400
    assert ConsoleClient(community).get("/v1/console/history.csv").status == 401


def test_the_export_holds_local_times_reasons_and_safe_cells(people) -> None:
    rows = export(people["duty"], kind="call")
    assert [row["raised"] for row in rows] == [
        "2026-11-30 09:02", "2026-11-30 09:01", "2026-11-30 09:00"]
    first = rows[-1]
    assert (first["building"], first["room"], first["resident"]) == ("3号楼", "1201", "张秀英")
    assert (first["kind"], first["type"], first["state"]) == ("call", "button.press", "resolved")
    assert (first["resolved_by"], first["reason"]) == ("社区值班室", "other")
    assert LOCAL_MINUTE.fullmatch(first["resolved_at"])
    assert first["acknowledged_by"] == first["acknowledged_at"] == ""
    # A note that a spreadsheet would run as a formula is written as text.
    assert first["note"] == "'=HYPERLINK(\"x\")"
    [visit] = export(people["duty"], kind="visit")
    assert (visit["room"], visit["resident"]) == ("1201", "")
    assert len(export(people["duty"])) == len(every_page(people["duty"])[0])


# -- the community's day ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "late", "early"),
    [
        # 23:30 in New York is already the next day in UTC ...
        ("America/New_York", "2026-11-30T23:30", "2026-12-01T00:30"),
        # ... and 00:30 in Shanghai is still the day before.
        (SHANGHAI, "2026-11-30T23:30", "2026-12-01T00:30"),
    ],
)
def test_a_day_is_the_communitys_day(
    tmp_path, central_database, zone: str, late: str, early: str
) -> None:
    late_at, early_at = local(late, zone), local(early, zone)
    utc_days = {datetime.fromisoformat(t).astimezone(UTC).date() for t in (late_at, early_at)}
    assert len(utc_days) == 1, "both alerts fall on one UTC day: only the local day parts them"
    central = start_central(
        tmp_path / "central", extra=f'time_zone = "{zone}"', accounts=("b-wang",),
        database=central_database,
    )
    try:
        butler = ConsoleClient(central)
        assert butler.login("b-wang").status == 200
        assert butler.get("/v1/console/session").body["time_zone"] == zone
        ingest(central, [raised(press("btn-0007", "g-late"), late_at),
                         raised(press("btn-0008", "g-early"), early_at)])
        resolve_all(central, butler, 2)

        assert found(butler, day="2026-11-30") == {("btn-0007", "button.press")}
        assert found(butler, day="2026-12-01") == {("btn-0008", "button.press")}
        assert found(butler, day="2026-12-02") == set()
        [row] = export(butler, day="2026-11-30")
        assert (row["raised"], row["resident"], row["reason"]) == (
            "2026-11-30 23:30", "张秀英", "arrived")
        assert [row["raised"] for row in export(butler)] == [
            "2026-12-01 00:30", "2026-11-30 23:30"]
        csv_answer = butler.get("/v1/console/history.csv?day=2026-12-01")
        assert 'filename="alerts-2026-12-01.csv"' in csv_answer.headers["Content-Disposition"]
    finally:
        central.kill()


def test_the_open_list_answers_as_before_with_the_new_fields(fresh) -> None:
    central, people = fresh
    ingest(central, [press("btn-0501", uuid.uuid4().hex)])
    zhao = people["b-zhao"]
    listed = wait_for(lambda: zhao.get("/v1/console/alerts").body["alerts"] and
                      zhao.get("/v1/console/alerts").body, what="B5's open alert")
    assert set(listed) == {"alerts"}, "no paging on the open list"
    [alert] = listed["alerts"]
    assert (alert["kind"], alert["gateway"], alert["resolve_reason"]) == ("call", None, None)
    assert alert["state"] in ("raised", "notified") and alert["resident"]["name"] == "陈建国"
    assert zhao.act(alert["id"], "resolve", "mistaken").status == 200
    assert zhao.get("/v1/console/alerts").body == {"alerts": []}
    [past] = history(zhao).body["alerts"]
    assert (past["id"], past["resolve_reason"]) == (alert["id"], "mistaken")
