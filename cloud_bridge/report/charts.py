"""The report's charts, drawn with matplotlib on its headless Agg backend, in the CJK font so
that building names and labels print as Chinese, not boxes.

Figures are made with the object API (`Figure`, never pyplot's global state) so that two
requests drawing at once in worker threads do not draw into each other's chart.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache

import matplotlib
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cloud_bridge.report.figures import Group, Report, ReportError

matplotlib.use("Agg")  # files only, never a display

CJK_FAMILY = "WenQuanYi Zen Hei"  # fonts-wqy-zenhei, installed by scripts/setup
SIZE = (8.0, 4.5)  # inches: a landscape half page, and a readable image on a phone
REAL, DRILL, FAULT = "#c0392b", "#2e86c1", "#7f8c8d"


@cache
def cjk_font() -> font_manager.FontEntry:
    found = [entry for entry in font_manager.fontManager.ttflist if entry.name == CJK_FAMILY]
    if not found:
        raise ReportError(f"the CJK font {CJK_FAMILY!r} is not installed (package "
                          "fonts-wqy-zenhei; scripts/setup installs it)")
    return found[0]


@contextmanager
def cjk_style() -> Iterator[None]:
    """Every text of the charts drawn inside in the CJK font, embedded whole-glyph (Type 42)
    in a PDF, so that its text can be selected and searched."""
    font = cjk_font()
    # The font has one weight (500, not 400 "normal"): every text asks for that one.
    weights = ("font.weight", "axes.titleweight", "axes.labelweight", "figure.titleweight")
    settings = {"font.family": [font.name], "pdf.fonttype": 42, "axes.unicode_minus": False,
                **dict.fromkeys(weights, font.weight)}
    with matplotlib.rc_context(settings):
        yield


def minutes(seconds: float | None) -> float:
    return 0.0 if seconds is None else seconds / 60


def _bars(figure: Figure, title: str, labels: list[str],
          series: list[tuple[str, list[float], str]], unit: str, *, counts: bool = False) -> Figure:
    axes = figure.subplots()
    axes.set_ylim(bottom=0, top=max((v for _, values, _ in series for v in values),
                                    default=0) * 1.15 or 1)
    if counts:  # no half calls on the axis
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    width = 0.8 / max(1, len(series))
    for index, (name, values, colour) in enumerate(series):
        positions = [i + (index - (len(series) - 1) / 2) * width for i in range(len(labels))]
        axes.bar(positions, values, width, label=name, color=colour)
    axes.set_xticks(range(len(labels)), labels)
    axes.set_title(title)
    axes.set_ylabel(unit)
    axes.legend(loc="upper right")
    if not labels:
        axes.text(0.5, 0.5, "本月无数据", transform=axes.transAxes, ha="center")
    figure.tight_layout()
    return figure


def _names(groups: list[Group]) -> list[str]:
    return [group.name for group in groups]


def response_chart(report: Report) -> Figure:
    groups = report.buildings
    return _bars(Figure(figsize=SIZE), f"{report.month} 按下→确认 (分钟)", _names(groups), [
        ("中位数", [minutes(g.calls.acknowledge_median) for g in groups], "#e59866"),
        ("最长", [minutes(g.calls.acknowledge_worst) for g in groups], REAL),
        ("演练中位数", [minutes(g.drills.acknowledge_median) for g in groups], DRILL),
    ], "分钟")


def calls_chart(report: Report) -> Figure:
    groups = report.buildings
    return _bars(Figure(figsize=SIZE), f"{report.month} 呼叫与演练", _names(groups), [
        ("呼叫", [float(g.calls.count) for g in groups], REAL),
        ("未确认", [float(g.calls.unacknowledged) for g in groups], "#f1948a"),
        ("升级", [float(g.calls.escalations) for g in groups], "#f5b041"),
        ("演练", [float(g.drills.count) for g in groups], DRILL),
    ], "次", counts=True)


def offline_chart(report: Report) -> Figure:
    groups = report.buildings
    return _bars(Figure(figsize=SIZE), f"{report.month} 按钮离线 (小时)", _names(groups), [
        ("离线小时", [g.offline_hours for g in groups], FAULT),
    ], "小时")


def stalls_chart(report: Report) -> Figure:
    zones = report.stalls or []
    return _bars(Figure(figsize=SIZE), f"{report.month} 摊位违规 (按区域)",
                 [zone.name for zone in zones],
                 [("违规", [float(zone.violations) for zone in zones], "#8e44ad")], "次",
                 counts=True)


# name → drawing; the name is the PNG's file name and its URL's last part.
CHARTS: dict[str, Callable[[Report], Figure]] = {
    "calls": calls_chart,
    "response": response_chart,
    "offline": offline_chart,
    "stalls": stalls_chart,
}


def charts_for(report: Report) -> list[str]:
    """The charts a viewer's report has (a butler's has no stall matters)."""
    return [name for name in CHARTS if name != "stalls" or report.stalls is not None]


def png(report: Report, name: str) -> bytes:
    with cjk_style():
        figure = CHARTS[name](report)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
