"""Robot messages that really reach the butler: each WeCom or DingTalk robot at a pace under
the vendor's 20 a minute, counted in the database; help calls first; device faults in one
message when the pace is tight; a robot's "too fast" waited out, a permanent refusal failed at
once, a page that is not the vendor's answer never taken for delivery; the butler
@-mentioned; times in the community's zone; the queue in the database, each message posted
once by one of two notifiers (two central processes) on it.

The notifier posts to real robots on loopback (tests/helpers/robots.py) that answer as the
vendors document, throttling included, and every wait goes by a virtual clock that moves when
the notifier sleeps: ten minutes of DingTalk's silence take no real time. Alerts are real ones,
raised by the alert book from stored events in a real database, on each engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cloud_bridge.alerts.book import Alert, AlertBook
from cloud_bridge.alerts.states import Page, Step
from cloud_bridge.commands.queue import CommandQueue
from cloud_bridge.config import AlertsSection, CentralConfig
from cloud_bridge.notify.webhooks import Endpoint, Notifier, render
from cloud_bridge.receiver.postgres import PostgresDatabase
from cloud_bridge.receiver.store import Database, EventStore, SQLiteDatabase
from cloud_bridge.registry.source import RegistrySource
from cloud_bridge.registry.table import RegistryTable
from mashang.registry import Registry
from tests.helpers.console import enrichment, event
from tests.helpers.robots import Post, Robots, VirtualTime, per_minute

# A real aiohttp server, in-process: system by the project's markers (an HTTP server).
pytestmark = [pytest.mark.system, pytest.mark.central]

# 2026-11-30 05:51 UTC: 13:51 in Kangbashi (Asia/Shanghai, UTC+8).
START = datetime(2026, 11, 30, 5, 51, tzinfo=UTC).timestamp()
WANG, LI = "butler:b-wang", "butler:b-li"
WANG_PHONE, LI_PHONE, LI_WECOM = "13800000001", "13800000002", "li.guanjia"
PER_MINUTE, RESERVE = 18, 5
GATEWAY = "gw-test"

REGISTRY: dict[str, Any] = {
    "version": 1,
    "community": {"name": "康城社区"},
    "butlers": [
        {"id": "b-wang", "name": "王管家", "phone": WANG_PHONE},
        {"id": "b-li", "name": "李管家", "phone": LI_PHONE, "wecom_userid": LI_WECOM},
    ],
    "buildings": [
        {"id": "B3", "name": "3号楼", "primary_butler": "b-wang", "backup_butler": "b-li"},
        {"id": "B5", "name": "5号楼", "primary_butler": "b-wang"},
    ],
    "buttons": [
        {
            "device_id": f"btn-{building[1]}{n:02d}",
            "resident": {
                "name": f"住户{building[1]}{n:02d}",
                "phone": f"139000{building[1]}{n:04d}",
                "building": building,
                "room": f"{n + 1}01",
            },
        }
        for building, count in (("B3", 40), ("B5", 5))
        for n in range(count)
    ],
}


@dataclass
class Desk:
    """The central's alert book and notifier, and the robots they post to."""

    clock: VirtualTime
    robots: Robots
    store: EventStore
    book: AlertBook
    notifier: Notifier

    def raise_alerts(self, kind: str, devices: list[str], at: float = START) -> list[Alert]:
        """Alerts of these buttons, raised at `at` (when the gateway received the event)."""
        stamp = datetime.fromtimestamp(at, UTC).isoformat()
        events = []
        for device in devices:
            data = dict(enrichment(device, REGISTRY))
            if kind == "button.press":
                data |= {"action": "single", "presses": 1, "alert_id": f"g-{device}"}
            elif kind == "button.offline":
                data |= {"reason": "last_will"}
            else:
                data |= {"battery": 9}
            fact = event(kind, device, data, priority="high" if kind == "button.press" else "low")
            events.append(fact | {"occurred_at": stamp, "received_at": stamp})
        self.store.add(GATEWAY, events)
        _, changes = self.book.feed()
        return [change.alert for change in changes if change.step is Step.RAISED]

    async def page(self, endpoint: Endpoint, alerts: list[Alert], target: str = WANG) -> list:
        """Each alert's first page to `target`, through this endpoint: True when delivered."""
        return await self.notifier.deliver_all(
            [(alert.id, endpoint, render(alert, Page.RAISED, target, None)) for alert in alerts]
        )

    def rows(self, alert: Alert) -> list[tuple]:
        return [
            (d["attempt"], d["outcome"], d["retry_in"])
            for d in self.notifier.deliveries(alert.id)
        ]


Scenario = Callable[[Desk], Awaitable[None]]


def reopened(central_database: str | None, folder: Path) -> Database:
    """The `database` fixture's database opened again, as another central process (or a
    restarted one) opens it; SQLite's file is in the test's folder."""
    if central_database is None:
        return SQLiteDatabase(folder / "central.sqlite")
    return PostgresDatabase(central_database)


def run(db: Database, folder: Path, scenario: Scenario, **notify: Any) -> None:
    async def main() -> None:
        clock = VirtualTime(START)
        robots = Robots(clock)
        await robots.start()
        RegistryTable(db).change(lambda _: Registry.model_validate(REGISTRY))
        config = CentralConfig.model_validate(
            {
                "central": {"data_dir": folder},
                "notify": {"robot_per_minute": PER_MINUTE, "robot_reserve": RESERVE} | notify,
            }
        )
        book = AlertBook(db, AlertsSection(), clock=clock)
        registry = RegistrySource(db)
        CommandQueue(db, registry, [GATEWAY])  # resolving queues the button's feedback
        notifier = Notifier(
            db, config, registry, alerts=book.get, clock=clock, sleep=clock.sleep
        )
        await notifier.start()
        try:
            await scenario(Desk(clock, robots, EventStore(db), book, notifier))
        finally:
            await notifier.close()
            await robots.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def buttons(building: str, count: int, first: int = 0) -> list[str]:
    return [f"btn-{building[1]}{n:02d}" for n in range(first, first + count)]


def test_a_burst_of_thirty_calls_stays_under_the_robots_limit(
    database: Database, tmp_path: Path
) -> None:
    async def scenario(desk: Desk) -> None:
        robot = Endpoint(desk.robots.wecom("wang-key"), "wecom")
        calls = desk.raise_alerts("button.press", buttons("B3", 30))
        assert all(await desk.page(robot, calls))

        posts = desk.robots.at("wang-key")
        assert len(posts) == 30 and all(post.taken for post in posts)  # never a 45009
        assert per_minute(posts) <= PER_MINUTE < 20
        # The 19th waited for the first to leave its minute, no longer.
        assert posts[PER_MINUTE].at - posts[0].at == pytest.approx(60.0)
        assert all(desk.rows(call) == [(1, "delivered", None)] for call in calls)

    run(database, tmp_path, scenario)


def test_the_pace_is_kept_across_a_restart(
    database: Database, central_database: str | None, tmp_path: Path
) -> None:
    """The quota used is in the database: a notifier started afresh on it waits the minute
    out instead of sending a 19th message at once."""

    async def scenario(desk: Desk) -> None:
        robot = Endpoint(desk.robots.wecom("wang-key"), "wecom")
        assert all(await desk.page(robot, desk.raise_alerts("button.press", buttons("B3", 18))))
        await desk.notifier.close()
        desk.clock.now += 10

        db = reopened(central_database, tmp_path)
        config = CentralConfig.model_validate({"central": {"data_dir": tmp_path}})
        registry = RegistrySource(db)
        again = Notifier(db, config, registry, clock=desk.clock, sleep=desk.clock.sleep)
        await again.start()
        try:
            [call] = desk.raise_alerts("button.press", ["btn-318"])
            assert await again.deliver(call.id, robot, render(call, Page.RAISED, WANG, None))
        finally:
            await again.close()
            db.close()
        posts = desk.robots.at("wang-key")
        assert len(posts) == 19 and all(post.taken for post in posts)
        assert posts[-1].at == pytest.approx(START + 60.0)

    run(database, tmp_path, scenario)


def test_two_notifiers_on_one_database_post_each_message_exactly_once(
    database: Database, central_database: str | None, tmp_path: Path
) -> None:
    """Two central processes' notifiers, each with its own connections to the database, queue
    calls for one robot; both lanes go after every message in the queue, and each message is
    posted once, by one of them, who alone records it as delivered. By the wall clock: a lease
    is a time."""
    told: dict[str, list[str]] = {"first": [], "second": []}
    calls_count = 12  # within the robot's minute: no waiting for the pace

    async def main() -> None:
        clock = VirtualTime(START)  # the robots' and the alert book's; the notifiers' is real
        robots = Robots(clock)
        await robots.start()
        other = reopened(central_database, tmp_path)
        RegistryTable(database).change(lambda _: Registry.model_validate(REGISTRY))
        config = CentralConfig.model_validate({"central": {"data_dir": tmp_path}})
        book = AlertBook(database, AlertsSection(), clock=clock)
        everyone = asyncio.Event()
        notifiers: dict[str, Notifier] = {}
        loop = asyncio.get_running_loop()
        for name, db in (("first", database), ("second", other)):
            notifier = notifiers[name] = Notifier(db, config, RegistrySource(db))

            async def delivered(alert_id: str, target: str, endpoint: Endpoint,
                                name: str = name) -> None:
                told[name].append(alert_id)
                if sum(len(ids) for ids in told.values()) >= calls_count:
                    everyone.set()

            await notifier.start(delivered)
            # As the central wires them (receiver/app.py): what one process queues or finishes
            # wakes the other's lane (on PostgreSQL; SQLite has one process per file).
            db.listen(lambda topic, payload, notifier=notifier: loop.call_soon_threadsafe(
                notifier.wake, payload) if topic == "robot" else None)
        database.announce_changes("robot_queue", "robot", "endpoint")
        try:
            desk = Desk(clock, robots, EventStore(database), book, notifiers["first"])
            calls = desk.raise_alerts("button.press", buttons("B3", calls_count))
            robot = Endpoint(robots.wecom("wang-key"), "wecom")
            pages = [(call.id, robot, render(call, Page.RAISED, WANG, None)) for call in calls]
            half = calls_count // 2
            await asyncio.gather(notifiers["first"].enqueue(pages[:half]),
                                 notifiers["second"].enqueue(pages[half:]))
            await everyone.wait()
            posts = robots.at("wang-key")
            assert all(post.taken for post in posts)
            assert sorted(
                next(call.id for call in calls if call.data["resident"]["name"] in post.content)
                for post in posts
            ) == sorted(call.id for call in calls)
            assert sorted(told["first"] + told["second"]) == sorted(call.id for call in calls)
            assert all(desk.rows(call) == [(1, "delivered", None)] for call in calls)
        finally:
            for notifier in notifiers.values():
                await notifier.close()
            await robots.close()
            other.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_help_calls_go_before_device_faults_that_came_first(
    database: Database, tmp_path: Path
) -> None:
    async def scenario(desk: Desk) -> None:
        robot = Endpoint(desk.robots.wecom("wang-key"), "wecom")
        # The robot's minute is used up by earlier calls.
        assert all(await desk.page(robot, desk.raise_alerts("button.press", buttons("B3", 18))))
        faults = desk.raise_alerts("button.offline", buttons("B3", 4, first=30))
        calls = desk.raise_alerts("button.press", buttons("B5", 3))
        assert all(await desk.page(robot, faults + calls))

        later = desk.robots.at("wang-key")[18:]
        kinds = ["一键呼叫" if "一键呼叫" in post.content else "按钮离线" for post in later]
        assert kinds == ["一键呼叫"] * 3 + ["按钮离线"] * 4
        assert all(post.taken for post in later)
        # Not tight (4 faults, 10 posts left for them): each fault is a message of its own.
        assert not any("设备故障" in post.content for post in later)

    run(database, tmp_path, scenario)


def test_device_faults_are_coalesced_when_the_pace_is_tight(
    database: Database, tmp_path: Path
) -> None:
    async def scenario(desk: Desk) -> None:
        robot = Endpoint(desk.robots.dingtalk("wang-token"), "dingtalk")
        assert all(await desk.page(robot, desk.raise_alerts("button.press", buttons("B3", 12))))
        # A power cut in 3号楼 and two flat batteries in 5号楼: 12 faults, one post to spare.
        faults = desk.raise_alerts("button.offline", buttons("B3", 10, first=20))
        faults += desk.raise_alerts("button.battery_low", buttons("B5", 2))
        assert all(await desk.page(robot, faults))

        [summary] = desk.robots.at("wang-token")[12:]
        assert summary.taken
        title, text = summary.body["markdown"]["title"], summary.body["markdown"]["text"]
        assert "3号楼：10 个按钮离线" in title and "5号楼：2 个按钮电量低" in title
        assert "住户320 2101" in text and "等 10 个" in text  # five named, the count says all
        assert "住户500 101" in text and "住户501 201" in text
        assert text.count("@" + WANG_PHONE) == 1
        assert summary.body["at"]["atMobiles"] == [WANG_PHONE]
        assert all(desk.rows(fault) == [(1, "delivered", None)] for fault in faults)

        # Two more once the minute has room for them: one message each.
        more = desk.raise_alerts("button.offline", buttons("B3", 2, first=35))
        assert all(await desk.page(robot, more))
        alone = desk.robots.at("wang-token")[13:]
        assert ["住户335" in alone[0].content, "住户336" in alone[1].content] == [True, True]
        assert per_minute(desk.robots.at("wang-token")) <= PER_MINUTE

    run(database, tmp_path, scenario)


@pytest.mark.parametrize(
    ("vendor", "errcode", "window"), [("wecom", 45009, 60.0), ("dingtalk", 130101, 600.0)]
)
def test_a_throttled_call_waits_out_the_vendors_window_then_is_delivered(
    database: Database, tmp_path: Path, vendor: str, errcode: int, window: float
) -> None:
    async def scenario(desk: Desk) -> None:
        url = getattr(desk.robots, vendor)("shared")
        await desk.robots.flood(url, 20)  # another program used the robot's minute
        [call] = desk.raise_alerts("button.press", ["btn-300"])
        [fault] = desk.raise_alerts("button.offline", ["btn-301"])
        delivered = await desk.page(Endpoint(url, vendor), [fault, call])
        assert delivered == [True, True]

        ours = desk.robots.at("shared")[20:]
        assert ours[0].answer["errcode"] == errcode  # the call, refused "too fast"
        assert "一键呼叫" in ours[0].content
        # Left alone for the vendor's window, then the call first, still ahead of the fault.
        assert ours[1].at - ours[0].at == pytest.approx(window)
        assert ["一键呼叫" in post.content for post in ours[1:]] == [True, False]
        assert all(post.taken for post in ours[1:])
        rows = desk.notifier.deliveries(call.id)
        assert [(r["attempt"], r["outcome"], r["retry_in"]) for r in rows] == [
            (1, "retry", window),
            (2, "delivered", None),
        ]
        assert str(errcode) in rows[0]["error"]

    run(database, tmp_path, scenario)


def test_a_call_waiting_out_a_silence_leaves_the_queue_when_it_is_resolved(
    database: Database, tmp_path: Path,
) -> None:
    async def scenario(desk: Desk) -> None:
        url = desk.robots.dingtalk("shared")
        await desk.robots.flood(url, 20)
        [call] = desk.raise_alerts("button.press", ["btn-300"])

        def resolve_when_refused(post: Post) -> None:
            if post.answer.get("errcode") == 130101:
                desk.book.resolve(call.id, WANG, "王管家", "phoned")  # by phone, meanwhile

        desk.robots.after = resolve_when_refused
        assert await desk.page(Endpoint(url, "dingtalk"), [call]) == [False]
        assert len(desk.robots.at("shared")) == 21  # not posted again after the silence
        assert [row[1] for row in desk.rows(call)] == ["retry", "dropped"]

    run(database, tmp_path, scenario)


@pytest.mark.parametrize(
    ("vendor", "errcode"),
    [("wecom-unknown-key", 93000), ("dingtalk-wrong-secret", 310000), ("dingtalk-unknown", 300001)],
)
def test_a_permanent_errcode_fails_at_once_with_the_reason(
    database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture, vendor: str, errcode: int
) -> None:
    async def scenario(desk: Desk) -> None:
        robots = desk.robots
        endpoint = {
            "wecom-unknown-key": Endpoint(f"{robots.url}/cgi-bin/webhook/send?key=gone", "wecom"),
            "dingtalk-wrong-secret": Endpoint(
                robots.dingtalk("signed", secret="SEC-right"), "dingtalk", "SEC-wrong"
            ),
            "dingtalk-unknown": Endpoint(f"{robots.url}/robot/send?access_token=x", "dingtalk"),
        }[vendor]
        [call] = desk.raise_alerts("button.press", ["btn-300"])
        with caplog.at_level(logging.WARNING, logger="cloud_bridge.notify.webhooks"):
            assert await desk.page(endpoint, [call]) == [False]

        assert len(robots.posts) == 1  # one post, not five: the quota is not spent on it
        [row] = desk.notifier.deliveries(call.id)
        assert (row["attempt"], row["status"], row["outcome"]) == (1, 200, "failed")
        assert f"errcode {errcode}" in row["error"]
        logged = [r.getMessage() for r in caplog.records if call.id in r.getMessage()]
        assert logged and f"errcode {errcode}" in logged[0]
        assert "access_token" not in logged[0] and "key=" not in logged[0]

    run(database, tmp_path, scenario)


def test_an_html_page_answered_200_is_not_a_delivery(database: Database, tmp_path: Path) -> None:
    async def scenario(desk: Desk) -> None:
        portal = Endpoint(f"{desk.robots.url}/portal/cgi-bin/webhook/send?key=k", "wecom")
        [call] = desk.raise_alerts("button.press", ["btn-300"])
        assert await desk.page(portal, [call]) == [False]

        rows = desk.notifier.deliveries(call.id)
        assert [(r["attempt"], r["status"], r["outcome"]) for r in rows] == [
            (1, 200, "retry"),
            (2, 200, "retry"),
            (3, 200, "failed"),
        ]
        assert all("not WeCom's answer" in r["error"] for r in rows)
        assert len(desk.robots.at("portal")) == 3

    run(database, tmp_path, scenario, attempts=3)


def test_the_responsible_butler_is_mentioned_in_each_vendors_body(
    database: Database, tmp_path: Path
) -> None:
    async def scenario(desk: Desk) -> None:
        robots = desk.robots
        [call] = desk.raise_alerts("button.press", ["btn-300"])
        ding = Endpoint(robots.dingtalk("ding", secret="SEC-ding"), "dingtalk", "SEC-ding")
        assert await desk.page(ding, [call], WANG) == [True]
        assert await desk.page(Endpoint(robots.wecom("wang"), "wecom"), [call], WANG) == [True]
        assert await desk.page(Endpoint(robots.wecom("li"), "wecom"), [call], LI) == [True]

        [dingtalk] = robots.at("ding")
        assert dingtalk.taken and dingtalk.body["msgtype"] == "markdown"
        assert dingtalk.body["at"] == {"atMobiles": [WANG_PHONE], "isAtAll": False}
        assert f"@{WANG_PHONE}" in dingtalk.body["markdown"]["text"]

        # No WeCom user id for 王管家: a text message, mentioning by phone.
        [by_phone] = robots.at("wang")
        assert by_phone.taken and by_phone.body["msgtype"] == "text"
        assert by_phone.body["text"]["mentioned_mobile_list"] == [WANG_PHONE]
        assert "住户300" in by_phone.content and "###" not in by_phone.content

        # 李管家's WeCom user id is registered: markdown, with <@userid>.
        [by_id] = robots.at("li")
        assert by_id.taken and by_id.body["msgtype"] == "markdown"
        assert by_id.content.endswith(f"<@{LI_WECOM}>") and LI_PHONE not in by_id.content

        # The resident's facts are those today's messages carry, nothing more.
        for post in (dingtalk, by_phone, by_id):
            assert "住户300" in post.content and "3号楼 101" in post.content
            assert "1390003" in post.content  # the resident's phone, for the butler to call

    run(database, tmp_path, scenario)


@pytest.fixture
def utc_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("utc_host")
def test_times_are_the_communitys_on_a_utc_host_with_the_date_when_not_today(
    database: Database, tmp_path: Path,
) -> None:
    assert time.localtime(START).tm_hour == 5  # the host says 05:51

    async def scenario(desk: Desk) -> None:
        robot = Endpoint(desk.robots.dingtalk("ding"), "dingtalk")
        [today] = desk.raise_alerts("button.press", ["btn-300"])
        assert await desk.page(robot, [today]) == [True]
        # 23:50 in Kangbashi, sent ten minutes later: after midnight there.
        late = START + 10 * 3600 - 60
        [yesterday] = desk.raise_alerts("button.press", ["btn-301"], at=late)
        desk.clock.now = late + 600
        assert await desk.page(robot, [yesterday]) == [True]

        first, second = (post.body["markdown"]["text"] for post in desk.robots.at("ding"))
        assert "时间: 13:51" in first and "05:51" not in first and "2026" not in first
        assert "时间: 2026-11-30 23:50" in second

    run(database, tmp_path, scenario)
