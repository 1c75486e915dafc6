"""The report to print: an A4 PDF, tables first (per building, per butler, stalls by zone), then
one chart a page, all text in the CJK font and selectable (matplotlib's PdfPages)."""

from __future__ import annotations

import io
import logging
from datetime import datetime
from zoneinfo import ZoneInfo

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from cloud_bridge.report.charts import CHARTS, charts_for, cjk_style
from cloud_bridge.report.figures import Report
from cloud_bridge.report.table import HEADER, rows, stall_rows

A4_LANDSCAPE = (11.69, 8.27)
# fontTools tells at INFO each table of the font it subsets into a PDF: some fifty lines of the
# central's log for every report printed, burying what an operator must see.
logging.getLogger("fontTools.subset").setLevel(logging.WARNING)
TABLE_PAGES = 2  # per building; per butler and stalls by zone


def _table_page(title: str, subtitle: str, sections: list[tuple[str, list[str],
                list[list[str]]]]) -> Figure:
    figure = Figure(figsize=A4_LANDSCAPE)
    figure.text(0.05, 0.94, title, fontsize=18)
    figure.text(0.05, 0.905, subtitle, fontsize=9, color="#555555")
    top = 0.86
    for heading, header, body in sections:
        height = 0.04 * (len(body) + 1)
        figure.text(0.05, top, heading, fontsize=12)
        axes = figure.add_axes((0.05, top - 0.02 - height, 0.9, height))
        axes.axis("off")
        if body:
            table = axes.table(cellText=body, colLabels=header, loc="upper left",
                               cellLoc="center")
            table.auto_set_font_size(False)
            table.set_fontsize(8)
        else:
            axes.text(0, 0.5, "本月无记录", fontsize=9)
        top -= height + 0.09
    return figure


def render(report: Report) -> bytes:
    """The PDF's bytes: TABLE_PAGES pages of tables, then a page per `charts_for(report)`."""
    generated = datetime.fromtimestamp(report.generated_at, ZoneInfo(report.time_zone))
    subtitle = (f"{report.time_zone} · 生成于 {generated:%Y-%m-%d %H:%M} · 时间为 分:秒,"
                f" 自按下起{'' if report.arrivals_recorded else ' · 本月尚无到场记录 (—)'}")
    title = f"{report.month} 呼叫准备情况报告"
    buffer = io.BytesIO()
    with cjk_style():  # texts take their font when made, so the pages are made inside
        pages = [
            _table_page(title, subtitle, [("按楼栋", HEADER, rows(report.buildings))]),
            _table_page(title, subtitle, [
                ("按管家 (其为主管家的楼栋)", HEADER, rows(report.butlers)),
                *([("摊位违规 (按区域)", ["区域", "违规"], stall_rows(report))]
                  if report.stalls is not None else []),
            ]),
            *(CHARTS[name](report) for name in charts_for(report)),
        ]
        with PdfPages(buffer, metadata={"Title": title}) as pdf:
            for page in pages:
                pdf.savefig(page)
    return buffer.getvalue()
