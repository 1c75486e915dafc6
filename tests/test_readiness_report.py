"""The readiness report of a month: a scripted November of presses, acknowledgements, arrivals,
escalations, a drill, buttons offline, an overdue visit and stall violations, run through the
central's own event log and alert book on a clock the test moves, gives the figures the script
implies (each median and worst worked out by hand below), prints a PDF in the CJK font, draws
PNG charts, and is written by `mashang report --out`."""

from __future__ import annotations

import io
import json
import logging
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pypdfium2
import pytest
from PIL import Image

from cloud_bridge.alerts.book import AlertBook, add_step
from cloud_bridge.config import AlertsSection
from cloud_bridge.receiver.store import Database, EventStore
from cloud_bridge.registry.table import RegistryTable
from cloud_bridge.report.charts import CJK_FAMILY, charts_for, png
from cloud_bridge.report.figures import ARRIVED, Group, Month, Report, ReportError, gather
from cloud_bridge.report.pdf import TABLE_PAGES, render
from mashang import cli
from mashang.registry import Registry
from tests.helpers.clock import FakeClock
from tests.helpers.console import REGISTRY, enrichment

pytestmark = [pytest.mark.unit, pytest.mark.central]

ZONE = ZoneInfo("Asia/Shanghai")
MONTH = Month.parse("2026-11", ZONE)
ZONES = [{"id": "night-market", "name": "夜市"}]


def at(text: str) -> float:
    """A moment of the script, in community time."""
    return datetime.fromisoformat(text).replace(tzinfo=ZONE).timestamp()


class Script:
    """The central's log and book, on the test's clock; each method one thing that happens."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.store = EventStore(self.db)
        self.clock = FakeClock(at("2026-10-01 00:00"))
        self.book = AlertBook(self.db, AlertsSection(), clock=self.clock)

    def _event(self, moment: float, event_type: str, device_id: str, data: dict[str, Any],
               source: str = "gw-test") -> str | None:
        """Store an event received at `moment`; the alert it raised, if any."""
        self.clock.now = moment
        received = datetime.fromtimestamp(moment, ZONE).isoformat()
        self.store.add(source, [{
            "id": uuid.uuid4().hex, "kind": "alert", "type": event_type, "priority": "high",
            "device_id": device_id, "occurred_at": received, "received_at": received,
            "data": data,
        }])
        _, changes = self.book.feed()
        raised = [change.alert.id for change in changes if change.step == "raised"]
        return raised[0] if raised else None

    def press(self, when: str, device_id: str, *, drill: bool = False,
              ack_after: float | None = None, arrive_after: float | None = None,
              escalations: int = 0) -> str:
        data = {"action": "single", "presses": 1} | enrichment(device_id)
        alert_id = self._event(at(when), "button.press", device_id,
                               data | ({"drill": True} if drill else {}),
                               source="central" if drill else "gw-test")
        assert alert_id is not None
        for _ in range(escalations):  # each when its time comes
            alert = self.book.get(alert_id)
            assert alert is not None and alert.next_escalation_at is not None
            self.clock.now = alert.next_escalation_at
            assert self.book.escalate(alert_id) is not None
        if ack_after is not None:
            self.clock.now = at(when) + ack_after
            self.book.acknowledge(alert_id, "b-wang", "王管家")
        if arrive_after is not None:
            with self.db.transaction() as db:  # the butler's scan at the door
                add_step(db, at(when) + arrive_after, alert_id, ARRIVED, "b-wang")
        self.clock.now = at(when) + 3600
        self.book.resolve(alert_id, "b-wang", "王管家", "arrived" if ack_after else "phoned")
        return alert_id

    def offline(self, device_id: str, since: str, until: str | None) -> None:
        self._event(at(since), "button.offline", device_id, enrichment(device_id))
        if until is not None:
            self._event(at(until), "button.online", device_id, enrichment(device_id))

    def overdue_visit(self, when: str, building: str) -> None:
        self._event(at(when), "visit.overdue", "household:H-3-1201",
                    {"household": "H-3-1201", "building": {"id": building}}, source="central")

    def violation(self, when: str, zone: str) -> None:
        self._event(at(when), "stall.violation", "scanner-1",
                    {"result": "rejected", "reason": "wrong_zone",
                     "subject": {"id": "ST-9", "zone": "other", "scanner_zone": zone}})


def script(db: Database) -> Script:
    month = Script(db)
    # 3号楼 (B3), 王管家 primary. Press → acknowledge: 30, 90, 300, 45 s, and one never.
    month.press("2026-11-01 00:00:10", "btn-0007", ack_after=30)  # 10 s into November here
    month.press("2026-11-03 08:00", "btn-0007", ack_after=90, arrive_after=600)
    month.press("2026-11-10 21:30", "btn-0008", ack_after=300, arrive_after=1200, escalations=1)
    month.press("2026-11-20 02:00", "btn-0007", ack_after=45)
    month.press("2026-11-25 19:00", "btn-0008", escalations=2)  # resolved by phone, unacked
    month.press("2026-11-28 10:00", "btn-0007", drill=True, ack_after=120, arrive_after=400)
    # Not November in the community's time zone (the first is November in UTC).
    month.press("2026-10-31 23:59", "btn-0007", ack_after=5)
    month.press("2026-12-01 00:00:30", "btn-0008", ack_after=5)
    # 5号楼 (B5), 赵管家: one call; its button offline across the month's start, and again.
    month.press("2026-11-15 12:00", "btn-0501", ack_after=200, arrive_after=900)
    month.offline("btn-0501", "2026-10-30 12:00", "2026-11-02 12:00")  # 36 h of it in November
    month.offline("btn-0501", "2026-11-29 18:00", "2026-11-30 00:00")  # 6 h
    month.offline("btn-0008", "2026-11-05 08:00", "2026-11-05 14:30")  # 6.5 h, in B3
    month.overdue_visit("2026-11-12 09:00", "B3")
    month.violation("2026-11-06 20:00", "night-market")
    month.violation("2026-11-07 21:00", "night-market")
    month.violation("2026-11-08 22:00", "east-gate")  # a zone the registry does not name
    return month


def registry() -> Registry:
    return Registry.model_validate(REGISTRY | {"zones": ZONES})


@pytest.fixture
def report(database) -> Report:
    month = script(database)
    return gather(month.db, registry(), MONTH, now=at("2026-12-01 08:00"))


def by_id(groups: list[Group]) -> dict[str, Group]:
    return {group.id: group for group in groups}


def test_calls_per_building_give_the_scripted_times(report):
    b3 = by_id(report.buildings)["B3"]
    assert b3.name == "3号楼"
    assert b3.calls.count == 5
    # acknowledged after 30, 90, 300, 45 s → sorted 30, 45, 90, 300: median (45 + 90) / 2
    assert b3.calls.acknowledge_median == pytest.approx((45 + 90) / 2)
    assert b3.calls.acknowledge_worst == pytest.approx(300)
    # arrivals after 600 and 1200 s: median their mean
    assert b3.calls.arrival_median == pytest.approx((600 + 1200) / 2)
    assert b3.calls.arrival_worst == pytest.approx(1200)
    assert b3.calls.escalations == 1 + 2
    assert b3.calls.unacknowledged == 1
    b5 = by_id(report.buildings)["B5"]
    assert (b5.calls.count, b5.calls.acknowledge_median, b5.calls.arrival_worst) == (
        1, pytest.approx(200), pytest.approx(900))
    assert report.arrivals_recorded


def test_a_drill_counts_apart_from_real_calls(report):
    b3 = by_id(report.buildings)["B3"]
    assert b3.drills.count == 1
    assert b3.drills.acknowledge_median == pytest.approx(120)
    assert b3.drills.arrival_worst == pytest.approx(400)
    assert b3.drills.unacknowledged == 0
    assert b3.calls.acknowledge_worst != pytest.approx(120)  # not among the real ones
    assert by_id(report.buildings)["B5"].drills.count == 0


def test_offline_hours_count_only_the_part_inside_the_month(report):
    b5, b3 = by_id(report.buildings)["B5"], by_id(report.buildings)["B3"]
    # 2026-11-01 00:00 → 11-02 12:00 is 36 h; 11-29 18:00 → 11-30 00:00 is 6 h; one button
    assert (b5.offline_buttons, b5.offline_hours) == (1, pytest.approx(36 + 6))
    assert (b3.offline_buttons, b3.offline_hours) == (1, pytest.approx(6.5))


def test_an_outage_still_open_runs_to_the_month_end(database):
    month = Script(database)
    month.offline("btn-0501", "2026-11-30 12:00", None)
    found = gather(month.db, registry(), MONTH, now=at("2026-12-03 00:00"))
    assert by_id(found.buildings)["B5"].offline_hours == pytest.approx(12)


def test_per_butler_the_buildings_they_are_primary_of(report):
    butlers = by_id(report.butlers)
    assert set(butlers) == {"b-wang", "b-zhao"}
    assert (butlers["b-wang"].name, butlers["b-wang"].buildings) == ("王管家", ["B3"])
    assert butlers["b-wang"].calls == by_id(report.buildings)["B3"].calls
    assert butlers["b-zhao"].offline_hours == pytest.approx(42)


def test_overdue_visits_and_stall_violations_by_zone(report):
    assert by_id(report.buildings)["B3"].overdue_visits == 1
    assert by_id(report.buildings)["B5"].overdue_visits == 0
    zones = {zone.zone: (zone.name, zone.violations) for zone in report.stalls or []}
    assert zones == {"night-market": ("夜市", 2), "east-gate": ("east-gate", 1)}


def test_a_butlers_report_holds_his_buildings_and_no_stalls(database):
    month = script(database)
    mine = gather(month.db, registry(), MONTH, now=at("2026-12-01 08:00"),
                  buildings=frozenset({"B5"}))
    assert [group.id for group in mine.buildings] == ["B5"]
    assert [group.id for group in mine.butlers] == ["b-zhao"]
    assert mine.stalls is None
    assert "stalls" not in charts_for(mine)


def test_no_arrival_steps_reads_as_none(database):
    month = Script(database)
    month.press("2026-11-03 08:00", "btn-0007", ack_after=90)
    found = gather(month.db, registry(), MONTH, now=at("2026-12-01 08:00"))
    b3 = by_id(found.buildings)["B3"]
    assert (b3.calls.arrival_median, b3.calls.arrival_worst) == (None, None)
    assert not found.arrivals_recorded


def test_a_month_it_cannot_read_is_refused():
    # 9999-12 ends in the year 10000, which a datetime cannot hold (it was a 500); other
    # scripts' digits are no month either.
    for text in ("2026-13", "2026/11", "November", "26-11", "0000-00", "9999-12", "٢٠٢٦-١١"):
        with pytest.raises(ReportError, match="YYYY-MM"):
            Month.parse(text, ZONE)
    assert Month.parse("9998-12", ZONE).end > Month.parse("9998-12", ZONE).start


def test_the_pdf_has_its_pages_and_its_text_in_the_cjk_font(report):
    document = pypdfium2.PdfDocument(render(report))
    assert len(document) == TABLE_PAGES + len(charts_for(report))
    first = document[0].get_textpage().get_text_range()
    assert "呼叫准备情况报告" in first and "3号楼" in first and "5号楼" in first
    assert "夜市" in document[1].get_textpage().get_text_range()
    assert "\ufffd" not in first  # the text came out as Chinese, not replacement characters
    bitmap = document[0].render(scale=0.5).to_pil()
    assert bitmap.getextrema() != ((255, 255), (255, 255), (255, 255))  # something printed


def test_printing_the_pdf_does_not_flood_the_log(report, caplog):
    caplog.set_level(logging.INFO)
    render(report)
    assert [r.name for r in caplog.records if r.name.startswith("fontTools")] == []


def test_the_pdf_embeds_the_cjk_font(report):
    assert CJK_FAMILY.replace(" ", "").encode() in render(report)


def test_every_chart_is_a_png_image(report):
    for name in charts_for(report):
        image = Image.open(io.BytesIO(png(report, name)))
        assert image.format == "PNG"
        assert image.width > 400 and image.height > 200
        assert len(image.convert("L").getcolors(maxcolors=1 << 16) or []) > 2  # not a blank


def test_the_command_writes_pdf_charts_and_figures(database, central_database, tmp_path, capsys):
    script(database)
    RegistryTable(database).change(lambda _: registry())
    # The central's folder is where the `database` fixture put its SQLite file.
    engine = f"database = {json.dumps(central_database)}\n" if central_database else ""
    config = tmp_path / "central.toml"
    config.write_text(f'[central]\ndata_dir = "{tmp_path}"\n{engine}', encoding="utf-8")
    out = tmp_path / "out"
    assert cli.main(["report", "--month", "2026-11", "--config", str(config),
                     "--out", str(out)]) == 0
    figures = json.loads((out / "report.json").read_text(encoding="utf-8"))
    b3 = next(group for group in figures["buildings"] if group["id"] == "B3")
    assert (b3["calls"]["count"], b3["drills"]["count"]) == (5, 1)
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    for name in ("calls", "response", "offline", "stalls"):
        assert Image.open(out / f"{name}.png").format == "PNG"
    printed = capsys.readouterr().out
    assert "3号楼\t5\t1:08\t5:00\t15:00\t20:00\t3\t1\t1" in printed


def test_the_command_refuses_a_bad_month(tmp_path, capsys):
    config = tmp_path / "central.toml"
    config.write_text(f'[central]\ndata_dir = "{tmp_path}"\n', encoding="utf-8")
    assert cli.main(["report", "--month", "2026-13", "--config", str(config)]) == 1
    assert "YYYY-MM" in capsys.readouterr().err
