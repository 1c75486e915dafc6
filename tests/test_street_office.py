"""The street office's role: its accounts made with `mashang office passwd`, a login through
the console's own, a view of its own at /office/ with the stalls' violations (stall name and
number, zone by name, reason in Chinese, time, scanner) and each stall's history, residents'
reports handled there (new, handled, dismissed, with a note), butlers refused, and robot
messages that carry those facts and link to the office's view.

A real central process, its real CLI, the real stall page a resident sends a report from, and
a loopback robot answering as WeCom does."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.console import (
    PASSWORD,
    ConsoleClient,
    WebhookReceiver,
    admin_cli,
    ingest,
    press,
    request,
    set_password,
)
from tests.helpers.office import (
    OFFICE,
    OFFICE_ROBOT,
    PUBLIC_URL,
    office_passwd,
    office_registry,
    placard,
    scan_events,
    send_report,
    start_office_central,
)
from tests.helpers.support import Central, wait_for

pytestmark = [pytest.mark.system, pytest.mark.central]

TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d$")


@pytest.fixture
def robot() -> Iterator[WebhookReceiver]:
    robot = WebhookReceiver()
    yield robot
    robot.close()


@pytest.fixture
def central(
    tmp_path: Path, central_database: str | None, robot: WebhookReceiver
) -> Iterator[Central]:
    central = start_office_central(tmp_path / "central", robot, database=central_database)
    yield central
    central.kill()


def office(central: Central) -> ConsoleClient:
    client = ConsoleClient(central)
    answer = client.login(OFFICE)
    assert answer.status == 200, answer.body
    return client


def robot_texts(robot: WebhookReceiver) -> list[str]:
    return [item.body["markdown"]["content"] for item in robot.at(OFFICE_ROBOT)]


def test_office_accounts_are_made_with_their_own_command(central: Central) -> None:
    # The butlers' command still knows no butler of that name...
    refused = admin_cli("butler", "passwd", OFFICE, "--config", str(central.config),
                        "--password-stdin", stdin=f"{PASSWORD}\n")
    assert refused.returncode == 1 and "no butler" in refused.stderr
    # ...and the office's refuses a butler's id, and the duty contact's.
    for name in ("b-wang", "duty"):
        result = office_passwd(central, name)
        assert result.returncode == 1 and "butler's account" in result.stderr
    assert office_passwd(central, "zhang.wei").returncode == 0
    assert ConsoleClient(central).login("zhang.wei").status == 200
    switched = admin_cli("office", "disable", "zhang.wei", "--config", str(central.config))
    assert switched.returncode == 0, switched.stderr
    assert ConsoleClient(central).login("zhang.wei").status == 401
    # A butler's account is not the office's to switch.
    other = admin_cli("office", "disable", "b-wang", "--config", str(central.config))
    assert other.returncode == 1 and "no console account" in other.stderr


def test_the_office_sees_violations_with_their_facts_and_the_stalls_history(
    central: Central,
) -> None:
    ingest(central, scan_events(placard("ST-001")))  # a check-in that holds
    ingest(central, scan_events(placard("ST-001", generation=1)))  # a revoked licence
    ingest(central, scan_events(placard("ST-002")))  # licensed for another zone
    ingest(central, [press("btn-0007", "g-1")])  # a resident's call: not the office's
    client = office(central)
    session = client.get("/v1/office/session").body
    assert (session["account"], session["name"]) == (OFFICE, "街道巡查")

    def two() -> list[dict] | None:
        found = client.get("/v1/office/violations").body["violations"]
        return found if len(found) == 2 else None

    wrong_zone, revoked = wait_for(two, what="both violations in the office's view")
    assert revoked["stall"] == {"id": "ST-001", "name": "老王烤串", "number": "017",
                                "label": "老王烤串（017号）"}
    assert (revoked["zone"], revoked["reason"], revoked["reason_words"]) == (
        "夜市", "revoked", "经营许可已吊销")
    assert revoked["scanner"] == "gate-north" and revoked["purpose_words"] == "签到"
    assert TIME.match(revoked["time"])
    assert (wrong_zone["reason_words"], wrong_zone["zone"], wrong_zone["stall_zone"]) == (
        "不在登记的区域经营", "夜市", "河滨步道")

    history = client.get("/v1/office/stalls/ST-001").body
    assert history["stall"]["zone"] == "夜市"
    assert [entry["kind"] for entry in history["entries"]] == ["violation", "checkin"]
    assert history["entries"][1]["purpose_words"] == "签到"
    assert client.get("/v1/office/stalls/NO-SUCH").status == 404

    # Nothing of a resident anywhere in what the office reads.
    everything = json.dumps([client.get(path).body for path in (
        "/v1/office/violations", "/v1/office/reports", "/v1/office/stalls/ST-001")],
        ensure_ascii=False)
    for personal in ("张秀英", "13900000007", "1201"):
        assert personal not in everything


def test_butlers_are_refused_the_office_and_the_office_the_console(central: Central) -> None:
    butler = ConsoleClient(central)
    assert butler.login("b-wang").status == 200
    for path in ("/v1/office/session", "/v1/office/violations", "/v1/office/reports",
                 "/v1/office/stalls/ST-001"):
        assert butler.get(path).status == 403, path
        assert ConsoleClient(central).get(path).status == 401, path
    change = json.dumps({"state": "handled"}).encode()
    assert butler.post("/v1/office/reports/1", change).status == 403
    client = office(central)
    assert client.get("/v1/console/alerts").status == 401
    assert client.get("/v1/console/fleet").status == 401
    # The duty room may look at the office's view too.
    set_password(central, "duty", PASSWORD)
    duty = ConsoleClient(central)
    assert duty.login("duty").status == 200
    assert duty.get("/v1/office/violations").status == 200
    assert client.get("/v1/console/fleet").status == 401
    page = request(f"{central.url}/office/")
    assert page.status == 200 and "码上 · 街道办" in page.body
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"


def test_an_office_account_a_registry_names_a_butler_still_sees_no_resident(
    central: Central, tmp_path: Path
) -> None:
    """`mashang office passwd` refuses a butler's id, but a registry imported later may give
    that id to a butler: the office's session must not then open the console as him."""
    client = office(central)
    registry = office_registry()
    registry["butlers"].append({"id": OFFICE, "name": "新管家", "phone": "13800000009"})
    registry["buildings"][1]["backup_butler"] = OFFICE
    registry["community"]["inspection_contact"]["name"] = "街道巡查二组"
    source = tmp_path / "renamed.json"
    source.write_text(json.dumps(registry, ensure_ascii=False), encoding="utf-8")
    result = admin_cli("registry", "import", str(source), "--config", str(central.config))
    assert result.returncode == 0, result.stderr
    # The central has read the new registry once the office's own name changed with it.
    wait_for(lambda: client.get("/v1/office/session").body["name"] == "街道巡查二组",
             what="the central to read the new registry")
    for path in ("/v1/console/session", "/v1/console/alerts", "/v1/report?month=2026-11"):
        assert client.get(path).status == 401, path
    fresh = ConsoleClient(central)
    assert fresh.login(OFFICE).status == 200  # still the office's account, at /office/ alone
    assert fresh.get("/v1/console/alerts").status == 401
    assert fresh.get("/v1/office/violations").status == 200


def test_a_report_reaches_the_office_robot_and_is_handled_with_a_note(
    central: Central, robot: WebhookReceiver
) -> None:
    send_report(central, placard("ST-001"), "food_safety", "烤串不熟，摊位占用人行道")
    [text] = wait_for(lambda: robot_texts(robot) or None, what="the report at the office robot")
    for fact in ("【居民举报】老王烤串（017号）", "区域: 夜市", "类别: 食品安全",
                 "烤串不熟，摊位占用人行道", f"[打开街道办页面]({PUBLIC_URL}/office/)"):
        assert fact in text, (fact, text)

    client = office(central)
    [report] = client.get("/v1/office/reports").body["reports"]
    facts = (report["state"], report["category_words"], report["zone"])
    assert facts == ("new", "食品安全", "夜市")
    assert "client" not in report and "127.0.0.1" not in json.dumps(report)
    path = f"/v1/office/reports/{report['id']}"

    def post(body: object, *, csrf: bool = True):
        raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        return client.post(path, raw, csrf=csrf)

    for bad, word in (({"state": "done"}, "state"), ({"state": "handled", "note": "长" * 501},
                      "note"), (b"not json", "JSON"), ({"note": "x"}, "state")):
        answer = post(bad)
        assert answer.status == 400 and word in answer.body["error"], (bad, answer.body)
    assert post({"state": "handled"}, csrf=False).status == 403
    assert client.post("/v1/office/reports/999", b'{"state": "handled"}').status == 404

    answer = post({"state": "handled", "note": "已到场，责令整改"})
    assert answer.status == 200, answer.body
    changed = answer.body["report"]
    assert (changed["state"], changed["note"]) == ("handled", "已到场，责令整改")
    assert changed["state_by"] == "街道巡查（inspection）"
    [listed] = client.get("/v1/office/reports").body["reports"]
    assert (listed["state"], listed["note"]) == ("handled", "已到场，责令整改")
    history = client.get("/v1/office/stalls/ST-001").body["entries"]
    assert [entry["kind"] for entry in history] == ["report"]
    assert post({"state": "dismissed", "note": ""}).body["report"]["note"] is None
    # Told once: handling it does not tell the robot again.
    assert len(robot_texts(robot)) == 1


def test_a_violation_message_names_the_stall_zone_reason_and_links_the_office(
    central: Central, robot: WebhookReceiver
) -> None:
    ingest(central, scan_events(placard("ST-001", days=-1)))  # an expired licence
    [text] = wait_for(lambda: robot_texts(robot) or None, what="the violation at the robot")
    for fact in ("【摊位违规】老王烤串（017号）", "原因: 经营许可已过期", "区域: 夜市",
                 "签到设备: gate-north", f"[打开街道办页面]({PUBLIC_URL}/office/)"):
        assert fact in text, (fact, text)
    assert re.search(r"时间: \d\d:\d\d", text), text
    assert "未登记的设备" not in text and "/console/" not in text


def test_a_strangers_report_stays_words_in_the_office_robots_markdown(
    central: Central, robot: WebhookReceiver
) -> None:
    """The stall page is public: what anyone types there must not become, in the office's
    group chat, a heading, a link dressed as the office's own, an image or an @-mention."""
    forged_link = "[打开街道办页面](http://phish.example/office/)"
    words = f"好吃\n### 【紧急】请重新登录\n{forged_link} ![x](http://phish.example/p.png) <@all>"
    send_report(central, placard("ST-001"), "other", words)
    [text] = wait_for(lambda: robot_texts(robot) or None, what="the report at the office robot")
    assert "phish.example" in text  # the words are told, as words
    for live in ("](http://phish", "![", "<@", "\n### 【紧急】"):
        assert live not in text, (live, text)
    assert text.count(f"[打开街道办页面]({PUBLIC_URL}/office/)") == 1
    assert text.count("\n") == text.count("\n- ") + 2  # no line but the message's own
