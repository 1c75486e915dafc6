"""The stall page a resident's phone opens from a placard, on a real central: licence, the
zone's and stall's names from the registry, the hours and whether the stall trades now, in
Chinese unless the browser asks for English first; a rating (empty until chosen) and a
report by category, passed to the street office; bad input refused with a 400 and the reason
in Chinese, never a 500; a form key that survives a restart and lasts the day; and a
Content-Security-Policy that forbids framing on every public page and error page."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_bridge.stalls.formkey import FormKeys
from tests.helpers.console import admin_get, request
from tests.helpers.phone_pages import form_key, get, post_form, start_phone_central, token
from tests.helpers.support import Central

pytestmark = pytest.mark.central  # each test is marked unit or system itself

ST1 = f"/S/{token('stall', 'ST-001')}"


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory, module_database: str | None,
            ) -> Iterator[Central]:
    folder = tmp_path_factory.mktemp("stall-central")
    central = start_phone_central(folder, database=module_database)
    yield central
    central.kill()


def fresh_key(central: Central, path: str = ST1) -> str:
    return form_key(get(central, path).body)


def stored(central: Central, stall_id: str) -> list[dict]:
    return admin_get(central, f"/v1/stalls/reports?stall={stall_id}")["reports"]


@pytest.mark.system
def test_a_placard_shows_the_stall_its_zone_name_and_whether_it_trades_now(central) -> None:
    answer = get(central, ST1)
    assert answer.status == 200
    page = answer.body
    assert '<html lang="zh-CN">' in page and 'name="viewport"' in page
    assert "老王烤串" in page and "017" in page and "有效" in page
    assert "河畔夜市" in page and "night-market" not in page  # the zone's name, not its id
    assert "00:00-23:59" in page and "现在是经营时间" in page
    closed = get(central, f"/S/{token('stall', 'ST-003')}").body
    assert "夜宵粥铺" in closed and "现在不在经营时间" in closed


@pytest.mark.system
@pytest.mark.parametrize(("accept", "english"), [
    ("en-US,en;q=0.9,zh-CN;q=0.8", True),
    ("zh-CN,zh;q=0.9,en;q=0.8", False),
    ("en;q=0.5, zh-TW", False),  # English is there, but not first
    ("fr-FR", False),
    (None, False),
])
def test_english_only_when_the_browser_asks_for_it_first(central, accept, english) -> None:
    page = get(central, ST1, language=accept).body
    assert ("Zone" in page and "valid" in page) is english
    assert ("区域" in page and "有效" in page) is not english


@pytest.mark.system
def test_the_page_switch_overrides_the_browser(central) -> None:
    assert "Zone" in get(central, f"{ST1}?lang=en", language="zh-CN").body
    assert "区域" in get(central, f"{ST1}?lang=zh", language="en").body


@pytest.mark.system
def test_revoked_and_forged_placards(central) -> None:
    revoked = get(central, f"/S/{token('stall', 'ST-002', generation=1)}")
    assert revoked.status == 200
    assert "已吊销" in revoked.body and "有效" not in revoked.body
    assert "可以在下面举报" in revoked.body  # a stall trading on a revoked licence
    forged = get(central, ST1[:-8] + "AAAAAAAA")
    assert forged.status == 404
    assert "无效的摊位码" in forged.body and "老王烤串" not in forged.body


@pytest.mark.system
def test_the_rating_starts_empty_and_says_so(central) -> None:
    page = get(central, ST1).body
    assert re.search(r'<select name="rating"[^>]*><option value="" selected>未评分', page)
    assert page.count(" selected") == 1 and " checked" not in page  # no category chosen
    for category in ("食品安全", "占道", "价格", "卫生", "其他"):
        assert category in page


@pytest.mark.system
@pytest.mark.parametrize(("fields", "reason"), [
    ({"rating": "²"}, "评分只能是 1 到 5 分之间的整数"),
    ({"rating": "9" * 5000}, "评分只能是 1 到 5 分之间的整数"),
    ({"rating": "3", "form_token": "².x"}, "表单密钥格式不对"),
    ({"rating": "3", "form_token": ""}, "表单密钥格式不对"),
    ({"rating": "9"}, "评分只能是 1 到 5 分之间的整数"),
    ({"category": "noise", "report": "太吵"}, "举报类别不对"),
    ({"category": "other", "report": "长" * 501}, "举报内容超过 500 字"),
    ({}, "请评分，或选择一个举报类别"),
])
def test_bad_form_input_is_a_400_in_chinese_and_keeps_what_was_typed(central, fields,
                                                                      reason) -> None:
    sent = {"form_token": fresh_key(central), **fields}
    answer = post_form(central, f"{ST1}/feedback", sent)
    assert answer.status == 400, answer.body
    assert reason in answer.body
    if "report" in fields:
        assert f">{fields['report']}</textarea>" in answer.body  # nothing to type again
    assert form_key(answer.body)  # and a fresh key to send it with


@pytest.mark.system
def test_a_post_that_is_not_the_pages_form_is_a_400_in_chinese(central) -> None:
    boundary = "b0undary"
    with_a_file = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="form_token"\r\n\r\n'
        f"{fresh_key(central)}\r\n--{boundary}\r\nContent-Disposition: form-data; "
        f'name="report"; filename="r.txt"\r\n\r\n烤串不熟\r\n--{boundary}--\r\n'
    ).encode()
    posts = {
        "a file for a field": (with_a_file, f"multipart/form-data; boundary={boundary}"),
        "broken multipart": (b"--x\r\njunk", "multipart/form-data; boundary=y"),
        "JSON": (b'{"rating": 3}', "application/json"),
    }
    for name, (body, kind) in posts.items():
        answer = request(f"{central.url}{ST1}/feedback", "POST", body, {"Content-Type": kind})
        assert answer.status == 400, name
        assert "表单" in answer.body, name
    assert "烤串不熟" not in [r["report"] for r in stored(central, "ST-001")]  # nothing stored


@pytest.mark.system
def test_a_form_key_of_another_stall_is_refused_and_keeps_the_report(central) -> None:
    other = fresh_key(central, f"/S/{token('stall', 'ST-003')}")
    answer = post_form(central, f"{ST1}/feedback",
                       {"form_token": other, "category": "price", "report": "缺斤少两"})
    assert answer.status == 403
    assert "表单不是来自本页面" in answer.body and ">缺斤少两</textarea>" in answer.body
    assert 'value="price" checked' in answer.body
    assert post_form(central, f"{ST1}/feedback", {"form_token": form_key(answer.body),
                                                  "category": "price",
                                                  "report": "缺斤少两"}).status == 303


@pytest.mark.system
def test_reports_are_stored_by_category_and_the_sender_learns_where_they_went(central) -> None:
    path = f"/S/{token('stall', 'ST-003')}"
    sends = [
        {"rating": "4", "category": "hygiene", "report": "烤串不熟，地上很脏"},
        {"category": "obstruction"},
        {"rating": "5"},
        {"report": "没选类别"},
    ]
    locations = []
    for fields in sends:
        answer = post_form(central, f"{path}/feedback", {"form_token": fresh_key(central, path),
                                                         **fields})
        assert answer.status == 303
        locations.append(answer.headers["Location"])
    assert locations == [f"{path}?sent=report", f"{path}?sent=report", f"{path}?sent=rating",
                         f"{path}?sent=report"]
    found = [(r["rating"], r["category"], r["report"]) for r in stored(central, "ST-003")]
    assert found == [(4, "hygiene", "烤串不熟，地上很脏"), (None, "obstruction", None),
                     (5, None, None), (None, "other", "没选类别")]
    notice = get(central, locations[0]).body
    assert "已转交街道办" in notice and "您的举报" in notice and "逐条核实" in notice
    assert "tel:0477-8591111" in notice  # the street patrol, for what cannot wait
    assert 'name="form_token"' not in notice  # sent once, not again by a reload
    assert "您的评分" in get(central, locations[2]).body


@pytest.mark.system
def test_floods_from_one_client_are_refused_in_chinese(central) -> None:
    source = "127.0.0.23"
    statuses = [post_form(central, f"{ST1}/feedback", {"form_token": fresh_key(central),
                                                       "rating": "5"}, source=source).status
                for _ in range(50)]
    assert set(statuses) == {303}
    refused = post_form(central, f"{ST1}/feedback", {"form_token": fresh_key(central),
                                                     "category": "other", "report": "又来了"},
                        source=source)
    assert refused.status == 429
    assert "提交得太多了" in refused.body and ">又来了</textarea>" in refused.body


@pytest.mark.system
def test_the_form_key_survives_a_restart_of_the_central(
    tmp_path: Path, central_database: str | None
) -> None:
    central = start_phone_central(tmp_path / "central", database=central_database)
    try:
        key = fresh_key(central)
        assert central.terminate() == 0
        central.start()
        answer = post_form(central, f"{ST1}/feedback", {"form_token": key, "rating": "4"})
        assert answer.status == 303, answer.body
        assert [r["rating"] for r in stored(central, "ST-001")] == [4]
    finally:
        central.kill()


@pytest.mark.unit
def test_a_form_key_lasts_its_day_and_the_next_night_until_four() -> None:
    zone = datetime.timezone(datetime.timedelta(hours=8))
    opened = datetime.datetime(2026, 12, 1, 22, 30, tzinfo=zone)
    keys = FormKeys(b"the data dir's secret")
    key = keys.issue("ST-001", opened)

    def at(day: int, hour: int, minute: int = 0) -> datetime.datetime:
        return datetime.datetime(2026, 12, day, hour, minute, tzinfo=zone)

    after_restart = FormKeys(b"the data dir's secret")
    assert after_restart.check("ST-001", key, at(1, 23, 59)) == "ok"
    assert after_restart.check("ST-001", key, at(2, 3, 59)) == "ok"
    assert after_restart.check("ST-001", key, at(2, 4, 0)) == "stale"
    assert after_restart.check("ST-001", key, at(3, 1)) == "stale"
    assert FormKeys(b"another central").check("ST-001", key, at(1, 23)) == "forged"
    assert keys.check("ST-003", key, at(1, 23)) == "forged"
    for malformed in ("², x", "².x", "1.abc", key.upper(), f"{key}0", "", "９" * 10):
        assert keys.check("ST-001", malformed, at(1, 23)) == "malformed"


@pytest.mark.system
def test_every_public_page_and_error_page_forbids_framing_and_scripts(central) -> None:
    household = f"/H/{token('household', 'H-3-1201')}"
    answers = {
        "stall": get(central, ST1),
        "stall in English": get(central, ST1, language="en"),
        "revoked stall": get(central, f"/S/{token('stall', 'ST-002')}"),
        "forged stall": get(central, ST1[:-8] + "AAAAAAAA"),
        "not a code": get(central, "/S/not-a-code"),
        "a QR cut short": get(central, "/S/"),
        "the form's address": get(central, f"{ST1}/feedback"),
        "a mangled form address": get(central, "/S/%0D%0ASet-Cookie:x/feedback"),
        "sent": get(central, f"{ST1}?sent=report"),
        "bad input": post_form(central, f"{ST1}/feedback", {"rating": "²"}),
        "forged post": post_form(central, f"/S/{token('stall', 'ST-009')}/feedback", {}),
        "redirect": post_form(central, f"{ST1}/feedback", {"form_token": fresh_key(central),
                                                           "rating": "3"}),
        "household": get(central, household),
        "forged household": get(central, household[:-8] + "AAAAAAAA"),
        "household cut short": get(central, "/H/"),
        "expired household": get(central, f"/H/{token('household', 'H-3-1201', days=-2)}"),
    }
    assert {name: a.status for name, a in answers.items()} == {
        "stall": 200, "stall in English": 200, "revoked stall": 200, "forged stall": 404,
        "not a code": 404, "a QR cut short": 404, "the form's address": 303,
        "a mangled form address": 303, "sent": 200,
        "bad input": 400, "forged post": 404, "redirect": 303, "household": 200,
        "forged household": 404, "household cut short": 404, "expired household": 410,
    }
    assert "Set-Cookie" not in answers["a mangled form address"].headers
    for name, answer in answers.items():
        policy = answer.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy, name
        assert "default-src 'none'" in policy and "unsafe-inline" not in policy, name
        assert "<script" not in str(answer.body or ""), name
