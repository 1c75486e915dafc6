"""Nobody's call is lost because a butler is busy: an alert nobody acknowledges climbs the
ladder (primary butler → backup butler → community duty contact), then repeats, at most
`max_escalations` times; every step is recorded, and a restart does not lose the timers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.console import (
    ConsoleClient,
    WebhookReceiver,
    alert_detail,
    ingest,
    pages,
    press,
    start_central,
    steps,
    wait_alert,
)
from tests.helpers.support import wait_for

pytestmark = [pytest.mark.system, pytest.mark.central]

WANG, LI, DUTY = "butler:b-wang", "butler:b-li", "duty"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def settings(receiver: WebhookReceiver, escalate_after: float) -> str:
    hooks = "".join(
        f'[[webhooks]]\nurl = "{receiver.url}/{path}"\nto = ["{target}"]\n'
        for path, target in (("wang", WANG), ("li", LI), ("duty", DUTY))
    )
    return (
        f"[alerts]\nescalate_after = {escalate_after}\nmax_escalations = 5\n"
        "[notify]\nbackoff_min = 0.05\nbackoff_max = 0.2\n"
        f"{hooks}"
    )


def test_an_unacknowledged_alert_climbs_the_ladder_then_repeats_five_times_at_most(
    tmp_path: Path, central_database: str | None, receiver: WebhookReceiver
) -> None:
    central = start_central(tmp_path / "central", extra=settings(receiver, 0.3),
                            database=central_database)
    try:
        ingest(central, [press("btn-0007", "g-1")])
        alert = wait_alert(
            central,
            "btn-0007",
            lambda a: a["escalations"] == 5 and a["next_escalation_at"] is None,
        )
        everyone = [WANG, LI, DUTY]
        ladder = [[WANG], [LI], [DUTY], everyone, everyone, everyone]
        assert pages(central, alert["id"], 6) == ladder
        escalated = [s["detail"]["escalation"] for s in steps(central, alert["id"], "escalated")]
        assert escalated == [1, 2, 3, 4, 5]

        def counts() -> dict[str, int]:
            return {path: len(receiver.at(f"/{path}")) for path in ("wang", "li", "duty")}

        wait_for(lambda: counts() == {"wang": 4, "li": 4, "duty": 4}, what="every page delivered")
        first, *later = receiver.at("/wang")
        assert first.body["event"] == "alert.raised" and first.body["escalation"] == 0
        assert [item.body["event"] for item in later] == ["alert.escalated"] * 3
        assert "张秀英" in first.body["text"] and first.body["alert"]["device_id"] == "btn-0007"
        assert receiver.at("/li")[0].body["escalation"] == 1
        assert receiver.at("/duty")[0].body["escalation"] == 2

        # Five is the most: well past the next interval nothing more happens.
        time.sleep(1.5)
        assert alert_detail(central, alert["id"])["alert"]["escalations"] == 5
        assert counts() == {"wang": 4, "li": 4, "duty": 4}
        assert alert_detail(central, alert["id"])["alert"]["state"] == "notified"
    finally:
        central.kill()


def test_acknowledging_stops_the_escalation(
    tmp_path: Path, central_database: str | None, receiver: WebhookReceiver
) -> None:
    central = start_central(tmp_path / "central", extra=settings(receiver, 0.5), accounts=("b-li",),
                            database=central_database)
    try:
        ingest(central, [press("btn-0007", "g-1")])
        alert = wait_alert(central, "btn-0007", lambda a: a["escalations"] >= 1)
        wait_for(lambda: receiver.at("/li"), what="the backup butler's page")

        backup = ConsoleClient(central)
        assert backup.login("b-li").status == 200  # the backup butler sees building B3 too
        assert backup.act(alert["id"], "acknowledge").status == 200
        acknowledged = alert_detail(central, alert["id"])["alert"]
        # Only the arrival's deadline is left (`alerts.arrive_within`, 15 minutes by default).
        arrive_by = acknowledged["acknowledged_at"] + 900.0
        assert acknowledged["next_escalation_at"] == pytest.approx(arrive_by)

        time.sleep(1.5)  # three intervals
        detail = alert_detail(central, alert["id"])
        assert detail["alert"]["escalations"] == acknowledged["escalations"]
        names = [s["step"] for s in detail["steps"]]
        assert "escalated" not in names[names.index("acknowledged") :]
    finally:
        central.kill()


def test_escalation_timers_survive_a_restart(
    tmp_path: Path, central_database: str | None, receiver: WebhookReceiver
) -> None:
    central = start_central(tmp_path / "central", extra=settings(receiver, 3.0),
                            database=central_database)
    try:
        ingest(central, [press("btn-0007", "g-1")])
        alert = wait_alert(central, "btn-0007")
        central.kill()  # SIGKILL: the timer dies with the process, only the database is left
        killed_at = time.time()
        central.start()
        wait_alert(central, "btn-0007", lambda a: a["escalations"] == 1)
        [escalated] = steps(central, alert["id"], "escalated")
        assert escalated["at"] > killed_at
        wait_for(lambda: receiver.at("/li"), what="the backup butler's page after the restart")
    finally:
        central.kill()
