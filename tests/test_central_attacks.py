"""The central under abuse, across its pages: what a bad clock or a hostile caller sends must
get a clear 4xx or be shown as it can be, never a 500, and never one that stays.

A real central process (with the street office's registry and a loopback robot), fed through
its real ingest and asked over loopback HTTP as the pages ask; in-process, how a robot's odd
answer is judged."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from cloud_bridge.notify.vendors import judge
from tests.helpers.console import (
    PASSWORD,
    ConsoleClient,
    WebhookReceiver,
    ingest,
    press,
    request,
    set_password,
)
from tests.helpers.office import OFFICE, OFFICE_ROBOT, placard, scan_events, start_office_central
from tests.helpers.phone_pages import start_phone_central, token
from tests.helpers.support import Central, wait_for

pytestmark = pytest.mark.central

# A gateway whose clock says the year 9999 (in UTC it is already 10000).
FAR = "9999-12-31T23:59:59-12:00"


@pytest.fixture
def robot() -> Iterator[WebhookReceiver]:
    robot = WebhookReceiver()
    yield robot
    robot.close()


@pytest.fixture
def central(tmp_path: Path, robot: WebhookReceiver, central_database: str | None
            ) -> Iterator[Central]:
    central = start_office_central(tmp_path / "central", robot, database=central_database)
    set_password(central, "duty", PASSWORD)
    yield central
    central.kill()


def logged_in(central: Central, account: str) -> ConsoleClient:
    client = ConsoleClient(central)
    assert client.login(account).status == 200
    return client


@pytest.mark.system
def test_an_event_from_a_clock_in_the_year_9999_breaks_no_page(
    central: Central, robot: WebhookReceiver
) -> None:
    """Such a time was a 500 on the office's list, the stall's history and the export, for as
    long as the event was there: now it is shown at the calendar's end."""
    violation = scan_events(placard("ST-001", days=-1))[-1]
    call = press("btn-0007", uuid.uuid4().hex)
    for event in (violation, call):
        event["received_at"] = event["occurred_at"] = FAR
    ingest(central, [violation, call])
    wait_for(lambda: robot.at(OFFICE_ROBOT) or None, what="the violation at the office robot")

    office = logged_in(central, OFFICE)
    for path in ("/v1/office/violations", "/v1/office/stalls/ST-001"):
        answer = office.get(path)
        assert answer.status == 200, (path, answer.body)
    [shown] = office.get("/v1/office/violations").body["violations"]
    assert shown["time"].startswith("9999-12-30")

    duty = logged_in(central, "duty")
    found = wait_for(
        lambda: [a for a in duty.get("/v1/console/alerts").body["alerts"]
                 if a["device_id"] == "btn-0007"] or None,
        what="the call on the console",
    )
    assert duty.act(found[0]["id"], "resolve", "mistaken").status == 200
    export = duty.get("/v1/console/history.csv")
    assert export.status == 200, export.body
    assert "9999-12-30" in export.body


@pytest.mark.system
def test_months_at_the_end_of_the_calendar_are_refused_not_a_500(central: Central) -> None:
    duty = logged_in(central, "duty")
    for month in (quote(text) for text in ("9999-12", "0000-00", "٢٠٢٦-١١")):
        for path in (f"/v1/report?month={month}", f"/v1/console/visits?month={month}",
                     f"/v1/report/{month}/chart/calls.png", f"/v1/report/{month}/report.pdf"):
            answer = duty.get(path)
            assert answer.status == 400, (path, answer.status)
            assert "YYYY-MM" in json.dumps(answer.body), (path, answer.body)


@pytest.mark.system
def test_a_path_no_public_page_takes_answers_like_the_pages(
    tmp_path: Path, central_database: str | None
) -> None:
    """A placard's URL with a slash too many, or a POST to a household code, got aiohttp's
    bare English "404: Not Found" with none of the pages' headers."""
    central = start_phone_central(tmp_path / "central", database=central_database)
    try:
        stall, household = token("stall", "ST-001"), token("household", "H-3-1201")
        for method, path in (("GET", f"/S/{stall}/"), ("GET", f"/H/{household}/"),
                             ("GET", f"/s/{stall}/feedback/x"), ("POST", f"/H/{household}")):
            answer = request(f"{central.url}{path}", method)
            assert answer.status in (404, 405), (path, answer.status)
            assert "找不到这个页面" in answer.body, (path, answer.body)
            assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"], path
            assert answer.headers["X-Content-Type-Options"] == "nosniff", path
        english = request(f"{central.url}/S/{stall}/", headers={"Accept-Language": "en"})
        assert english.status == 404 and "Page not found" in english.body
        assert request(f"{central.url}/H/{household}", "POST").headers["Allow"] == "GET,HEAD"
        # Elsewhere aiohttp answers as before.
        assert request(f"{central.url}/nowhere").body == "404: Not Found"
    finally:
        central.kill()


@pytest.mark.unit
def test_a_robots_odd_retry_after_is_no_crash() -> None:
    """A robot (or a proxy in its place) answering 503 with `Retry-After: ²` raised from the
    delivery loop, again every second, so that nothing behind it on that robot ever went."""
    for odd in ("²", "٣", "9" * 400, "1e3", "-1", ""):
        attempt = judge("wecom", 503, "", odd)
        assert (attempt.outcome, attempt.wait) == ("retry", None), odd
    assert judge("dingtalk", 503, "", "30").wait == 30
