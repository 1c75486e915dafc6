"""Times as a person in the community reads them, in the central's configured time zone."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

# The moments a calendar can show in any zone. A time a gateway's clock made up (the year
# 9999, say) is shown at the end of that span rather than failing the page, export or robot
# message that holds it, and every later one with it.
EARLIEST = datetime(1, 1, 2, tzinfo=UTC).timestamp()
LATEST = datetime(9999, 12, 30, tzinfo=UTC).timestamp()


def local(ts: float, zone: ZoneInfo) -> datetime:
    shown = EARLIEST if math.isnan(ts) else min(max(ts, EARLIEST), LATEST)
    return datetime.fromtimestamp(shown, zone)


def clock_time(ts: float, zone: ZoneInfo) -> str:
    """'13:51' for a time today's readers place by context (a live card, a robot message)."""
    return local(ts, zone).strftime("%H:%M")


def date_time(ts: float, zone: ZoneInfo) -> str:
    """'2026-11-30 13:51' for history and exports, where the day matters."""
    return local(ts, zone).strftime("%Y-%m-%d %H:%M")
