"""A resident's name, room and phone are for that resident's butlers: no page or API gives them
without a session, a butler of another building cannot see or act on the alert, actions need
the session's CSRF token, and a login cannot be posted by another site's form. (Guessing
passwords is slowed down per client: tests/test_login_throttle.py; sessions end with their
streams: tests/test_session_end.py.)"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.console import (
    PASSWORD,
    ConsoleClient,
    ingest,
    press,
    request,
    set_password,
    start_central,
    wait_alert,
)
from tests.helpers.support import Central, wait_for

pytestmark = [pytest.mark.system, pytest.mark.central]

RESIDENT_FACTS = ("张秀英", "13900000007", "1201")


@pytest.fixture
def central(tmp_path: Path, central_database: str | None) -> Iterator[Central]:
    central = start_central(tmp_path / "central", accounts=("b-wang", "b-zhao", "duty"),
                            database=central_database)
    yield central
    central.kill()


@pytest.fixture
def alert(central: Central) -> dict:
    ingest(central, [press("btn-0007", "g-1")])  # building B3: b-wang's, backup b-li
    return wait_alert(central, "btn-0007")


def shows_resident(text: str) -> bool:
    return any(fact in text for fact in RESIDENT_FACTS)


def test_nothing_about_a_resident_without_a_session(central: Central, alert: dict) -> None:
    anonymous = ConsoleClient(central)
    for path in (
        "/v1/console/alerts",
        "/v1/console/alerts?view=history",
        f"/v1/console/alerts/{alert['id']}",
        "/v1/console/session",
        "/v1/console/stream",
        "/v1/alerts",
        f"/v1/alerts/{alert['id']}",
        "/v1/events",
    ):
        answer = anonymous.get(path)
        assert answer.status == 401, path
        assert not shows_resident(json.dumps(answer.body, ensure_ascii=False)), path
    for action in ("acknowledge", "resolve"):
        assert anonymous.act(alert["id"], action).status == 401
    for path in ("/console/", "/console/assets/app.js", "/console/assets/i18n.js"):
        page = anonymous.get(path)
        assert page.status == 200 and not shows_resident(str(page.body)), path
    assert "frame-ancestors 'none'" in anonymous.get("/console/").headers["Content-Security-Policy"]

    # A cookie that was not issued by the central, or was altered, is no session.
    forged = ConsoleClient(central)
    payload = {"account": "b-wang", "issued": 0, "expires": 4e9, "nonce": "x"}
    token = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    forged.cookie = f"mashang_session={token}.AAAA"
    assert forged.get("/v1/console/alerts").status == 401
    real = ConsoleClient(central)
    real.login("b-wang")
    value = real.cookie.split("=", 1)[1]
    body, mac = value.split(".")
    stretched = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    stretched["account"] = "duty"
    forged.cookie = "mashang_session=" + (
        base64.urlsafe_b64encode(json.dumps(stretched).encode()).decode().rstrip("=") + "." + mac
    )
    assert forged.get("/v1/console/alerts").status == 401


def test_a_butler_sees_and_acts_on_their_own_buildings_only(central: Central, alert: dict) -> None:
    other = ConsoleClient(central)
    assert other.login("b-zhao").status == 200  # building B5's butler
    listed = other.get("/v1/console/alerts")
    assert listed.status == 200 and listed.body["alerts"] == []
    assert other.get(f"/v1/console/alerts/{alert['id']}").status == 404
    assert other.act(alert["id"], "acknowledge").status == 404
    assert other.act(alert["id"], "resolve").status == 404
    with other.stream() as live:
        wait_for(lambda: live.events, what="b-zhao's snapshot")
        ingest(central, [press("btn-0008", "g-2")])  # B3 again
        ingest(central, [press("btn-0501", "g-3")])  # B5: this one is b-zhao's
        wait_for(
            lambda: any(a["device_id"] == "btn-0501" for a in live.alerts()),
            what="b-zhao's own alert on the stream",
        )
        assert {a["device_id"] for a in live.alerts()} == {"btn-0501"}
        assert not shows_resident(json.dumps(live.events, ensure_ascii=False))

    own = ConsoleClient(central)
    own.login("b-wang")
    [shown] = [a for a in own.get("/v1/console/alerts").body["alerts"] if a["id"] == alert["id"]]
    assert shown["resident"] == {
        "name": "张秀英",
        "room": "1201",
        "phone": "13900000007",
        "household": "H-3-1201",
    }
    assert own.act(alert["id"], "acknowledge").status == 200
    # The duty contact sees every building's alerts.
    duty = ConsoleClient(central)
    duty.login("duty")
    seen = {a["device_id"] for a in duty.get("/v1/console/alerts").body["alerts"]}
    assert {"btn-0007", "btn-0008", "btn-0501"} <= seen


def test_an_action_without_the_csrf_token_is_refused(central: Central, alert: dict) -> None:
    butler = ConsoleClient(central)
    butler.login("b-wang")
    path = f"/v1/console/alerts/{alert['id']}/acknowledge"
    assert butler.post(path, csrf=False).status == 403
    token = butler.csrf
    butler.csrf = "forged-token"
    assert butler.post(path).status == 403
    # Another session's token does not fit this one either.
    other = ConsoleClient(central)
    other.login("b-wang")
    butler.csrf = other.csrf
    assert butler.post(path).status == 403
    assert wait_alert(central, "btn-0007")["state"] in ("raised", "notified")
    butler.csrf = token
    assert butler.post(path).status == 200

    cookie = butler.cookie
    assert butler.post("/v1/console/logout").status == 200
    butler.cookie = cookie  # the old cookie, kept by someone after logout, is dead
    assert butler.get("/v1/console/alerts").status == 401


def test_a_login_is_json_only(central: Central) -> None:
    # Only JSON: a cross-site HTML form cannot post a login.
    answer = request(
        f"{central.url}/v1/console/login",
        "POST",
        b"account=duty&password=x",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status == 415


def test_a_new_password_retires_the_old_one_and_its_sessions(central: Central) -> None:
    butler = ConsoleClient(central)
    assert butler.login("b-zhao").status == 200
    set_password(central, "b-zhao", "another good password")
    assert butler.get("/v1/console/alerts").status == 401
    assert ConsoleClient(central).login("b-zhao", PASSWORD).status == 401
    assert ConsoleClient(central).login("b-zhao", "another good password").status == 200
