"""The console's history: what a person asks of past alerts (words to find, a building, a day
in the community's time zone, a kind, a page) and the CSV export of what they found.

The page's cursor is opaque to the page: the (raised_at, id) of the last alert it was given,
so the next page starts right after it however many alerts share a moment.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, get_args
from zoneinfo import ZoneInfo

from cloud_bridge.alerts.book import Alert, Kind, Search, categories_of
from cloud_bridge.httpkit import is_whole_number
from cloud_bridge.localtime import date_time

KINDS: frozenset[str] = frozenset(get_args(Kind))
PAGE = 50
PAGE_MAX = 200
EXPORT_MAX = 10_000
TEXT_MAX = 100
DAY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
COLUMNS = (
    "raised", "building", "room", "resident", "kind", "type", "state",
    "acknowledged_by", "acknowledged_at", "resolved_by", "resolved_at", "reason", "note",
)
# A spreadsheet runs a cell that starts so as a formula: a name or note must stay text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class BadQuery(ValueError):
    """A parameter the history cannot take; the text says which and why (a 400)."""


@dataclass(frozen=True)
class HistoryQuery:
    text: str | None = None
    building: str | None = None
    day: date | None = None
    kind: str | None = None
    before: tuple[float, str] | None = None
    limit: int = PAGE

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> HistoryQuery:
        text = query.get("q", "").strip()
        if len(text) > TEXT_MAX or any(ord(char) < 32 for char in text):
            raise BadQuery(f"q must be at most {TEXT_MAX} characters of text")
        building = query.get("building") or None
        if building is not None and len(building) > 64:
            raise BadQuery("building must be a building id")
        kind = query.get("kind") or None
        if kind is not None and kind not in KINDS:
            raise BadQuery(f"kind must be one of {', '.join(sorted(KINDS))}")
        return cls(
            text=text or None,
            building=building,
            day=read_day(query.get("day") or None),
            kind=kind,
            before=read_cursor(query.get("before") or None),
            limit=read_limit(query.get("limit")),
        )

    def search(self, kinds: frozenset[str], zone: ZoneInfo) -> Search:
        """What the book looks for, for a viewer who may see alerts of these kinds."""
        shown = kinds & {self.kind} if self.kind else kinds
        start, end = day_span(self.day, zone) if self.day else (None, None)
        return Search(
            categories=categories_of(shown),
            building=self.building,
            text=self.text,
            raised_from=start,
            raised_until=end,
        )


def read_day(raw: str | None) -> date | None:
    if raw is None:
        return None
    try:
        if not DAY.fullmatch(raw):
            raise ValueError
        day = date.fromisoformat(raw)
        if day == date.max:  # its end, the next midnight, is past the calendar
            raise ValueError
        return day
    except ValueError:
        raise BadQuery("day must be a date, YYYY-MM-DD") from None


def day_span(day: date, zone: ZoneInfo) -> tuple[float, float]:
    """The Unix times a local day starts and ends at (23 or 25 hours long where clocks move)."""
    start = datetime.combine(day, time(), zone)
    end = datetime.combine(day + timedelta(days=1), time(), zone)
    return start.timestamp(), end.timestamp()


def read_limit(raw: str | None) -> int:
    if raw is None:
        return PAGE
    if not is_whole_number(raw) or not 1 <= int(raw) <= PAGE_MAX:
        raise BadQuery(f"limit must be a whole number from 1 to {PAGE_MAX}")
    return int(raw)


def cursor(alert: Alert) -> str:
    raw = json.dumps([alert.raised_at, alert.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_cursor(raw: str | None) -> tuple[float, str] | None:
    if raw is None:
        return None
    try:
        found = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError):
        found = None
    if (
        isinstance(found, list)
        and len(found) == 2
        and isinstance(found[0], int | float)
        and not isinstance(found[0], bool)
        and isinstance(found[1], str)
    ):
        return float(found[0]), found[1]
    raise BadQuery("before must be a cursor (the `next` of an earlier answer)")


def export(rows: list[tuple[Alert, dict[str, Any]]], zone: ZoneInfo) -> bytes:
    """The alerts and their views as CSV, with the BOM that makes Excel read it as UTF-8."""

    def when(moment: float | None) -> str:
        return "" if moment is None else date_time(moment, zone)

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for alert, view in rows:
        resident = view["resident"] or {}
        writer.writerow(
            cell(value)
            for value in (
                when(alert.raised_at),
                view["building"]["name"] or alert.building,
                resident.get("room") or alert.data.get("room"),
                resident.get("name"),
                alert.kind,
                alert.type,
                alert.state,
                alert.acknowledged_by,
                when(alert.acknowledged_at),
                alert.resolved_by,
                when(alert.resolved_at),
                alert.resolve_reason,
                alert.resolve_note,
            )
        )
    return out.getvalue().encode("utf-8-sig")


def cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text
