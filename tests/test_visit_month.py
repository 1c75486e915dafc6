"""The month's visit list per butler, from a real central: `GET /v1/console/visits?month=…`
gives a butler the residents living alone in their buildings, each with the last visit up to
the month's end, the accepted visits in the month (by when they were scanned, in the
community's time zone) and the days since; the duty room gets every butler's list; a bad month
is a 400 that says how to write it; without a login, nothing. `mashang visits` prints the same
per butler."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers.console import ConsoleClient, admin_cli, request
from tests.helpers.visits import COMMUNITY, OTHER_GATEWAY, checkin, send, visits_central

pytestmark = [pytest.mark.system, pytest.mark.central]


def month_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


def rows(answer: dict) -> dict[str, dict[str, dict]]:
    """butler → household → its row."""
    return {entry["butler"]: {row["household"]: row for row in entry["households"]}
            for entry in answer["butlers"]}


def test_each_butler_gets_the_months_visits_of_their_residents_living_alone(
    tmp_path: Path, central_database: str | None
) -> None:
    central = visits_central(tmp_path / "central", accounts=("b-wang", "b-zhao", "duty"),
                             database=central_database)
    try:
        now = datetime.now(COMMUNITY)
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        before = start - timedelta(days=5)  # in the month before this one
        # A visit last month, two this month (one held back by an outage and sent through the
        # other gateway: it counts when it was scanned), a refused scan that is no visit.
        send(central, [checkin("H-3-1201", at=before), checkin("H-3-1201", at=start),
                       checkin("H-3-1201", result="rejected")])
        send(central, [checkin("H-3-1201", at=max(start, now - timedelta(minutes=1)))],
             gateway=OTHER_GATEWAY)
        wang, zhao, duty = (ConsoleClient(central) for _ in range(3))
        for client, account in ((wang, "b-wang"), (zhao, "b-zhao"), (duty, "duty")):
            client.login(account)

        answer = wang.get(f"/v1/console/visits?month={month_of(now)}")
        assert answer.status == 200, answer.body
        assert answer.body["month"] == month_of(now)
        mine = rows(answer.body)
        assert set(mine) == {"b-wang"}
        assert set(mine["b-wang"]) == {"H-3-1201", "H-3-1205"}, "living alone in 3号楼 only"
        row = mine["b-wang"]["H-3-1201"]
        assert (row["resident"], row["building_name"], row["room"]) == ("张秀英", "3号楼", "1201")
        assert row["visits"] == 2
        assert row["last_visit_date"] == now.date().isoformat()
        assert row["days_since_visit"] == 0
        never = mine["b-wang"]["H-3-1205"]
        assert (never["visits"], never["last_visit_at"]) == (0, None)
        assert never["days_since_visit"] is None
        assert [r["household"] for r in answer.body["butlers"][0]["households"]] == [
            "H-3-1205", "H-3-1201"], "the longest unvisited first"

        # Last month: the one visit then, and the days counted to that month's end.
        last = rows(wang.get(f"/v1/console/visits?month={month_of(before)}").body)
        then = last["b-wang"]["H-3-1201"]
        assert (then["visits"], then["last_visit_date"]) == (1, before.date().isoformat())
        assert then["days_since_visit"] == 5

        assert set(rows(zhao.get(f"/v1/console/visits?month={month_of(now)}").body)) == {
            "b-zhao"}
        everyone = rows(duty.get(f"/v1/console/visits?month={month_of(now)}").body)
        assert set(everyone) == {"b-wang", "b-li", "b-zhao"}  # b-li is 3号楼's backup
        assert set(everyone["b-zhao"]) == {"H-5-0601"}
        assert everyone["b-li"]["H-3-1201"]["visits"] == 2

        bad = wang.get("/v1/console/visits?month=2026-13")
        assert bad.status == 400 and "YYYY-MM" in bad.body["error"]
        assert request(f"{central.url}/v1/console/visits?month={month_of(now)}").status == 401

        printed = admin_cli("visits", "--month", month_of(now), "--config", str(central.config))
        assert printed.returncode == 0, printed.stderr
        text = printed.stdout
        assert "王管家 (b-wang): 2 户独居老人" in text and "赵管家 (b-zhao): 1 户独居老人" in text
        assert f"张秀英  3号楼 1201  上次探访 {now.date().isoformat()}（今天）  当月 2 次" in text
        assert "H-3-1205  3号楼 1205  没有探访记录  当月 0 次" in text
        one = admin_cli("visits", "--month", month_of(now), "--config", str(central.config),
                        "--butler", "b-zhao")
        assert one.returncode == 0 and "王管家" not in one.stdout and "H-5-0601" in one.stdout
        unknown = admin_cli("visits", "--month", "11-2026", "--config", str(central.config))
        assert unknown.returncode == 1 and "YYYY-MM" in unknown.stderr
    finally:
        central.kill()
