"""The report's figures as rows of text, the same for the printed PDF and the terminal."""

from __future__ import annotations

from cloud_bridge.report.figures import Group, Report, Response

NONE = "—"
HEADER = ["", "呼叫", "确认中位", "确认最长", "到场中位", "到场最长", "升级", "未确认",
          "演练", "演练确认中位", "演练未确认", "离线按钮", "离线小时", "逾期探访"]


def duration(seconds: float | None) -> str:
    """'3:05' (minutes:seconds), '1:02:05' past an hour, '—' for no figure."""
    if seconds is None:
        return NONE
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    text = f"{rest // 60}:{rest % 60:02d}"
    return f"{hours}:{text.zfill(5)}" if hours else text


def row(group: Group) -> list[str]:
    calls, drills = group.calls, group.drills
    return [
        group.name, str(calls.count),
        *times(calls),
        str(calls.escalations), str(calls.unacknowledged),
        str(drills.count), duration(drills.acknowledge_median), str(drills.unacknowledged),
        str(group.offline_buttons), f"{group.offline_hours:g}", str(group.overdue_visits),
    ]


def times(response: Response) -> list[str]:
    return [duration(response.acknowledge_median), duration(response.acknowledge_worst),
            duration(response.arrival_median), duration(response.arrival_worst)]


def rows(groups: list[Group]) -> list[list[str]]:
    return [row(group) for group in groups]


def stall_rows(report: Report) -> list[list[str]]:
    return [[zone.name, str(zone.violations)] for zone in report.stalls or []]
