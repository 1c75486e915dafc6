"""Webhooks as the robots expect them, through a running central: WeCom's text message that
@-mentions the butler by phone, DingTalk's markdown message with `at.atMobiles`, posted to a
URL signed with its timestamp, generic JSON; retried with backoff; every attempt recorded with
its status; a message not yet delivered when the central is killed (SIGKILL) delivered after its
restart, and a post cut short by a kill taken again, once, when its lease runs out (on
PostgreSQL by another central process serving meanwhile). (Pacing, throttling, coalescing and
the vendors' errcodes, by a virtual clock: test_robot_delivery.py.)"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

import pytest
from aiohttp import web

from cloud_bridge.receiver.store import Database
from tests.helpers.console import (
    REGISTRY,
    Received,
    WebhookReceiver,
    alert_detail,
    ingest,
    press,
    start_central,
    steps,
    wait_alert,
)
from tests.helpers.support import Central, wait_for

pytestmark = [pytest.mark.system, pytest.mark.central]

DINGTALK_SECRET = "SEC0123456789abcdef"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(
        script={
            "/flaky": [(503, {"error": "busy"}), (500, {"error": "oops"})],
            # mashang.answers.classify: a status the contract does not name (404) is transient.
            "/gone": [(404, {"error": "no such hook"})] * 4,
            "/refused": [(400, {"error": "bad request"})],
            # WeCom answers "system busy" (errcode -1) with HTTP 200: transient.
            "/zhao-robot": [(200, {"errcode": -1, "errmsg": "system busy"})],
        }
    )
    yield receiver
    receiver.close()


@pytest.fixture
def central(
    tmp_path: Path, receiver: WebhookReceiver, central_database: str | None
) -> Iterator[Central]:
    url = receiver.url
    registry = copy.deepcopy(REGISTRY)
    zhao = next(b for b in registry["butlers"] if b["id"] == "b-zhao")
    zhao["webhooks"] = [f"{url}/zhao-robot?key=zhao-key"]
    extra = (
        "[notify]\nattempts = 4\nbackoff_min = 0.05\nbackoff_max = 0.4\n"
        f'[[webhooks]]\nurl = "{url}/cgi-bin/webhook/send?key=wecom-key"\nformat = "wecom"\n'
        'to = ["butler:b-wang"]\n'
        f'[[webhooks]]\nurl = "{url}/robot/send?access_token=ding-token"\nformat = "dingtalk"\n'
        f'secret = "{DINGTALK_SECRET}"\nto = "butler:b-wang"\n'
        f'[[webhooks]]\nurl = "{url}/flaky"\nto = ["duty"]\n'
        f'[[webhooks]]\nurl = "{url}/gone"\nto = ["duty"]\n'
        f'[[webhooks]]\nurl = "{url}/refused"\nto = ["duty"]\n'
        # Describes the URL in b-zhao's registry entry: it is a WeCom robot.
        f'[[webhooks]]\nurl = "{url}/zhao-robot?key=zhao-key"\nformat = "wecom"\n'
    )
    central = start_central(
        tmp_path / "central", registry=registry, extra=extra, database=central_database
    )
    yield central
    central.kill()


def deliveries(central: Central, alert_id: str, path: str) -> list[dict]:
    return [d for d in alert_detail(central, alert_id)["deliveries"] if d["url"].endswith(path)]


def test_wecom_and_dingtalk_robots_get_their_own_formats(
    central: Central, receiver: WebhookReceiver
) -> None:
    ingest(central, [press("btn-0007", "g-1", action="long")])
    [wecom] = wait_for(lambda: receiver.at("/cgi-bin/webhook/send"), what="the WeCom robot")
    [ding] = wait_for(lambda: receiver.at("/robot/send"), what="the DingTalk robot")

    # 王管家 has a phone and no WeCom user id: a text message that mentions that phone.
    assert wecom.query == {"key": "wecom-key"}
    assert set(wecom.body) == {"msgtype", "text"} and wecom.body["msgtype"] == "text"
    assert set(wecom.body["text"]) == {"content", "mentioned_mobile_list"}
    assert wecom.body["text"]["mentioned_mobile_list"] == ["13800000001"]
    content = wecom.body["text"]["content"]
    for fact in ("张秀英", "3号楼", "1201", "13900000007", "危急", "长按"):
        assert fact in content

    assert set(ding.body) == {"msgtype", "markdown", "at"} and ding.body["msgtype"] == "markdown"
    assert set(ding.body["markdown"]) == {"title", "text"}
    assert ding.body["at"] == {"atMobiles": ["13800000001"], "isAtAll": False}
    assert "张秀英" in ding.body["markdown"]["title"]
    assert "13900000007" in ding.body["markdown"]["text"]
    assert "@13800000001" in ding.body["markdown"]["text"]
    # DingTalk's 加签: timestamp in ms, sign = urlencode(base64(HMAC-SHA256(secret, ts\nsecret))).
    assert set(ding.query) == {"access_token", "timestamp", "sign"}
    assert ding.query["access_token"] == "ding-token"
    timestamp = int(ding.query["timestamp"])
    assert abs(timestamp - time.time() * 1000) < 3600 * 1000  # DingTalk's own tolerance
    expected = base64.b64encode(
        hmac.new(
            DINGTALK_SECRET.encode(), f"{timestamp}\n{DINGTALK_SECRET}".encode(), hashlib.sha256
        ).digest()
    ).decode()
    assert ding.query["sign"] == expected
    assert f"sign={quote_plus(expected)}" in ding.raw_query

    alert = wait_alert(central, "btn-0007", lambda a: a["state"] == "notified")
    recorded = alert_detail(central, alert["id"])["deliveries"]
    assert sorted((d["format"], d["attempt"], d["status"], d["outcome"]) for d in recorded) == [
        ("dingtalk", 1, 200, "delivered"),
        ("wecom", 1, 200, "delivered"),
    ]
    # Robot keys and tokens are credentials: the record keeps the URL without its query.
    assert all("key" not in d["url"] and "token" not in d["url"] for d in recorded)
    reached = steps(central, alert["id"], "notified")
    assert {s["who"] for s in reached} == {"butler:b-wang"}


def test_failed_deliveries_are_retried_with_backoff_and_recorded(
    central: Central, receiver: WebhookReceiver
) -> None:
    ingest(central, [press("btn-9999", "g-9")])  # unregistered: the duty contact's hooks
    alert = wait_alert(central, "btn-9999")
    flaky = wait_for(
        lambda: (found := deliveries(central, alert["id"], "/flaky")) and len(found) == 3 and found,
        what="three attempts at /flaky",
    )
    assert [(d["attempt"], d["status"], d["outcome"]) for d in flaky] == [
        (1, 503, "retry"),
        (2, 500, "retry"),
        (3, 200, "delivered"),
    ]
    first_wait, second_wait = flaky[0]["retry_in"], flaky[1]["retry_in"]
    assert 0 < first_wait <= second_wait and flaky[2]["retry_in"] is None
    assert len(receiver.at("/flaky")) == 3
    body = receiver.at("/flaky")[-1].body
    assert body["event"] == "alert.raised" and body["target"] == "duty"
    assert body["alert"]["device_id"] == "btn-9999" and body["alert"]["data"]["unregistered"]

    # A 404 is not a status the contract names, so it is transient: retried until the attempts
    # (4) run out, the last one recorded as failed.
    gone = wait_for(
        lambda: (found := deliveries(central, alert["id"], "/gone")) and len(found) == 4 and found,
        what="four attempts at /gone",
    )
    assert [(d["attempt"], d["status"], d["outcome"]) for d in gone] == [
        (1, 404, "retry"),
        (2, 404, "retry"),
        (3, 404, "retry"),
        (4, 404, "failed"),
    ]
    assert len(receiver.at("/gone")) == 4

    # A 400 is final (the same body can never succeed): one attempt, recorded as failed.
    [refused] = wait_for(
        lambda: deliveries(central, alert["id"], "/refused"), what="the /refused attempt"
    )
    assert (refused["attempt"], refused["status"], refused["outcome"]) == (1, 400, "failed")
    assert len(receiver.at("/refused")) == 1


def test_a_butlers_own_robot_from_the_registry_is_retried_past_a_busy_answer(
    central: Central, receiver: WebhookReceiver
) -> None:
    ingest(central, [press("btn-0501", "g-5")])
    alert = wait_alert(central, "btn-0501", lambda a: a["state"] == "notified")
    attempts = deliveries(central, alert["id"], "/zhao-robot")
    assert [(d["format"], d["attempt"], d["outcome"]) for d in attempts] == [
        ("wecom", 1, "retry"),
        ("wecom", 2, "delivered"),
    ]
    assert "errcode -1" in attempts[0]["error"] and 0 < attempts[0]["retry_in"] <= 0.4
    assert all(item.body["msgtype"] == "text" for item in receiver.at("/zhao-robot"))
    last = receiver.at("/zhao-robot")[-1].body["text"]
    assert "陈建国" in last["content"] and last["mentioned_mobile_list"] == ["13800000003"]


def duty_hook(receiver: WebhookReceiver, notify: str) -> str:
    """A central's config: this [notify] section, and the duty contact's one webhook."""
    return f'[notify]\n{notify}\n[[webhooks]]\nurl = "{receiver.url}/duty"\nto = ["duty"]\n'


def test_a_message_not_yet_delivered_when_the_central_is_killed_is_delivered_after_restart(
    tmp_path: Path, central_database: str | None
) -> None:
    receiver = WebhookReceiver(script={"/duty": [(503, {"error": "busy"})]})
    # The second attempt 4 to 8 s after the first: the central is killed before it.
    extra = duty_hook(receiver, "backoff_min = 8\nbackoff_max = 8")
    central = start_central(tmp_path / "central", extra=extra, database=central_database)
    try:
        ingest(central, [press("btn-9999", "g-9")])  # unregistered: the duty contact's hook
        alert = wait_alert(central, "btn-9999")
        [first] = wait_for(lambda: deliveries(central, alert["id"], "/duty"), what="an attempt")
        assert first["outcome"] == "retry"
        central.kill()
        central.start()

        attempts = wait_for(
            lambda: (found := deliveries(central, alert["id"], "/duty"))
            and found[-1]["outcome"] != "retry" and found,
            timeout=30,
            what="the attempt after the restart",
        )
        assert [(d["attempt"], d["status"], d["outcome"]) for d in attempts] == [
            (1, 503, "retry"),
            (2, 200, "delivered"),
        ]
        assert len(receiver.at("/duty")) == 2
        assert [s["who"] for s in steps(central, alert["id"], "notified")] == ["duty"]
    finally:
        central.kill()
        receiver.close()


@dataclass
class HoldingReceiver(WebhookReceiver):
    """Holds the first post unanswered (until it closes), as a robot slow to answer while the
    central posting to it is killed; answers the others at once."""

    holding: bool = True

    async def _take(self, request: web.Request) -> web.Response:
        answer = await super()._take(request)
        if self.holding:
            self.holding = False
            self._released = asyncio.Event()
            await self._released.wait()
        return answer

    def close(self) -> None:
        if not self.holding:
            self._loop.call_soon_threadsafe(self._released.set)
        super().close()

    def posts(self) -> list[Received]:
        return self.at("/duty")


def test_a_post_cut_short_by_a_kill_is_taken_again_once_when_its_lease_runs_out(
    tmp_path: Path, central_database: str | None, database: Database
) -> None:
    receiver = HoldingReceiver()
    extra = duty_hook(receiver, "timeout = 5")  # a lease: the post's timeout and 10 s more
    # `database` is this central's own (the fixture's SQLite file is in tmp_path).
    centrals = [start_central(tmp_path, extra=extra, database=central_database)]
    if central_database is not None:  # another process on the same PostgreSQL, serving all along
        centrals.append(start_central(tmp_path / "second", registry=None, extra=extra,
                                      database=central_database))
    try:
        ingest(centrals[0], [press("btn-9999", "g-9")])
        alert = wait_alert(centrals[0], "btn-9999")
        wait_for(receiver.posts, what="the post the robot holds")
        # The process posting it is the one its lease names.
        [[owner]] = database.rows("SELECT claimed_by FROM robot_queue WHERE done_at IS NULL")
        poster = next(c for c in centrals if c.proc and f":{c.proc.pid}:" in owner)
        poster.kill()
        others = [c for c in centrals if c is not poster]
        if not others:  # SQLite: one process on the file, the same central restarted
            poster.start()
        survivor = others[0] if others else poster

        attempts = wait_for(
            lambda: deliveries(survivor, alert["id"], "/duty"), timeout=40,
            what="the post taken again",
        )
        # The post the kill cut short was never answered, so never recorded; the robot saw the
        # message twice, and took it once.
        assert [(d["attempt"], d["status"], d["outcome"]) for d in attempts] == [
            (1, 200, "delivered")
        ]
        held, taken = receiver.posts()
        assert held.body["alert"]["id"] == taken.body["alert"]["id"] == alert["id"]
        assert [s["who"] for s in steps(survivor, alert["id"], "notified")] == ["duty"]
    finally:
        for central in centrals:
            central.kill()
        receiver.close()
