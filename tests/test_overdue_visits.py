"""An elderly resident living alone not visited for too long raises a reminder to the butler,
on a short test interval and not before; the stall pages and reports live on the same central."""

from __future__ import annotations

import base64
import datetime
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cloud_bridge.issuing.keys import issue_token
from tests.helpers.console import (
    REGISTRY,
    admin_get,
    alerts,
    event,
    ingest,
    request,
    start_central,
)
from tests.helpers.support import ADMIN_TOKEN, wait_for

pytestmark = pytest.mark.system

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


def test_a_reminder_fires_after_the_interval_and_not_before(tmp_path):
    central = start_central(
        tmp_path / "central",
        registry=registry_with_households(),
        extra=f"[visits]\noverdue_after = {OVERDUE_AFTER}\ncheck_interval = 0.2\n",
    )
    try:
        ingest(central, [visit("H-3-1201")])
        visited_at = time.time()
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


def test_the_stall_page_and_the_street_offices_reports(tmp_path):
    central = start_central(tmp_path / "central", registry=registry_with_households())
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
