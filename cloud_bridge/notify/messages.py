"""What a person reads in a robot message (Chinese, as butlers use it): who, where, how urgent
and when, for one alert's page, or for several device faults in one message when a robot's
pace is tight ("3号楼：10 个按钮离线").

A stall's violation, and a resident's report on a stall (`report_message`), are the street
office's: they name the stall and its number, the zone, the reason in Chinese, and link to the
office's own view (/office/), not to the butlers' console.

A page is rendered when it happens (`render`), but its words are composed when the robot takes
it (`compose`, `digest`): a message that waited out a robot's silence says the date when the
call was not today, and every time is the community's (`central.time_zone`), not the host's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any
from zoneinfo import ZoneInfo

from cloud_bridge.alerts.book import Alert, rank
from cloud_bridge.alerts.states import Page
from cloud_bridge.localtime import clock_time, date_time, local
from cloud_bridge.office.facts import PURPOSE_WORDS, StallFacts, violation_facts
from cloud_bridge.visits.facts import Overdue

CATEGORY_WORDS = {
    "help": "一键呼叫",
    "offline": "按钮离线",
    "battery": "按钮电量低",
    "stall": "摊位违规",
    "gap": "可能漏了一次呼叫：请打电话问候住户",
    "gateway": "网关故障",
    "silent": "网关失联：其下按钮无法呼叫",
    "visit": "待探访",
}
PRIORITY_WORDS = {"critical": "危急", "high": "紧急", "normal": "提醒", "low": "低"}
ACTION_WORDS = {"single": "单击", "double": "双击", "long": "长按"}
OFFLINE_WORDS = {"last_will": "连接中断", "silent": "长时间没有消息"}

# A button's faults: these may share one message when a robot's pace is tight. (A gateway's
# own trouble, its silence above all, always has a message of its own.)
FAULTS = frozenset({"offline", "battery"})
# Residents named per building and fault in a digest; the count says the rest.
NAMED = 5
UNKNOWN_BUILDING = "未登记楼栋"
CONSOLE_WORDS = "打开管家控制台"
OFFICE_WORDS = "打开街道办页面"
OFFICE_PATH = "/office/"
REPORT_TEXT_CHARS = 300  # of a report's words in a message; the view shows them whole
# A report's words are a stranger's, from a public page: in a robot's markdown they must stay
# words, not a heading, a link dressed as the office's own, an image fetched from someone's
# server or an @-mention. Their full-width twins read the same to a Chinese reader.
INERT = str.maketrans({
    "[": "［", "]": "］", "<": "＜", ">": "＞", "*": "＊", "_": "＿", "`": "｀", "#": "＃",
    "!": "！", "@": "＠", "\n": " ", "\r": " ", "\t": " ",
})


@dataclass(frozen=True)
class Message:
    """One page of one alert to one target, as rendered when it was paged."""

    event: Page
    target: str
    escalation: int
    title: str
    facts: tuple[str, ...]  # "优先级: 危急", one line each
    notes: tuple[str, ...]  # lines that must stand out: a raised priority, an escalation
    raised_at: float
    console_url: str | None
    alert: dict[str, Any]  # the alert as the generic JSON format carries it
    category: str
    kind: str  # the alert's kind (`Policy.kind`): "call", "fault", "visit" or "stall"
    priority: str
    building: str  # the building's name, "" when unknown
    who: str  # the resident and room (or the device), for a digest's line
    link_words: str = CONSOLE_WORDS

    @property
    def is_call(self) -> bool:
        """A resident may need help now: calls go first and may use every post a robot
        allows."""
        return self.kind == "call"

    @property
    def is_fault(self) -> bool:
        return self.category in FAULTS

    @property
    def order(self) -> tuple[int, int]:
        """Sorts first what must reach a person first: calls, then by priority."""
        return (0 if self.is_call else 1, -rank(self.priority))

    def dumps(self) -> str:
        """The message as the robots' queue in the database keeps it (`loads` reads it)."""
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def loads(cls, text: str) -> Message:
        fields = json.loads(text)
        return cls(**fields | {
            "event": Page(fields["event"]),
            "facts": tuple(fields["facts"]),
            "notes": tuple(fields["notes"]),
        })


@dataclass(frozen=True)
class Text:
    """A message's words before a vendor's format: its robot renders them as markdown or as
    plain text (`markdown`, `plain`)."""

    title: str
    lines: tuple[str, ...]
    strong: tuple[str, ...] = ()
    link: str | None = None
    link_words: str = CONSOLE_WORDS


def render(alert: Alert, event: Page, target: str, console_url: str | None) -> Message:
    data = alert.data
    resident: dict[str, Any] = data["resident"] if isinstance(data.get("resident"), dict) else {}
    building: dict[str, Any] = data["building"] if isinstance(data.get("building"), dict) else {}
    who = resident.get("name") or (
        f"网关 {alert.gateway_id}" if alert.device_id is None
        else f"住户 {data.get('household')}" if alert.kind == "visit"
        else f"未登记的设备 {alert.device_id}"
    )
    building_name = str(building.get("name") or alert.building or "")
    where = " ".join(str(part) for part in (building_name, resident.get("room")) if part)
    label = CATEGORY_WORDS.get(alert.category, alert.type)
    title = f"【{label}】{who}" + (f" · {where}" if where else "")
    facts = [f"优先级: {PRIORITY_WORDS.get(alert.priority, alert.priority)}"]
    if resident.get("phone"):
        facts.append(f"电话: {resident['phone']}")
    if alert.category == "help":
        action = ACTION_WORDS.get(str(data.get("action")))
        facts.append(f"按键: {action + ' ' if action else ''}共 {alert.presses} 次")
    if data.get("reason") in OFFLINE_WORDS:
        facts.append(f"原因: {OFFLINE_WORDS[data['reason']]}")
    if isinstance(data.get("battery"), int | float):
        facts.append(f"电量: {data['battery']}%")
    if alert.category == "silent":  # the central's own alert (alerts/supervision.py)
        names = "、".join(b["name"] for b in data["buildings"]) or UNKNOWN_BUILDING
        facts.append(f"受影响: {names}，共 {data['buttons']} 个按钮")
    overdue = Overdue.of(data) if alert.kind == "visit" else None
    if overdue is not None:  # as it stood when raised (and paged), the date as the watch wrote it
        facts.extend(overdue.words(alert.raised_at, data.get("last_visit_date")))
    link, link_words = view_url(console_url, "/console/"), CONSOLE_WORDS
    if alert.kind == "stall":
        title, facts = violation_words(alert.data, alert.device_id)
        link, link_words = view_url(console_url, OFFICE_PATH), OFFICE_WORDS
    notes = []
    if event == Page.PRIORITY:
        notes.append("优先级升高")
    if event == Page.ESCALATED:
        notes.append(f"无人确认，第 {alert.escalations} 次升级")
    if event == Page.NO_ARRIVAL:
        notes.append(f"已确认但无人到场，第 {alert.escalations} 次升级")
    view = {
        key: getattr(alert, key)
        for key in ("id", "type", "category", "priority", "state", "device_id", "building")
    }
    view |= {"presses": alert.presses, "raised_at": alert.raised_at, "data": data}
    room = " ".join(str(part) for part in (who, resident.get("room")) if part)
    return Message(
        event=event,
        target=target,
        escalation=alert.escalations,
        title=title,
        facts=tuple(facts),
        notes=tuple(notes),
        raised_at=alert.raised_at,
        console_url=link,
        alert=view,
        category=alert.category,
        kind=alert.policy.kind,
        priority=alert.priority,
        building=building_name,
        who=room,
        link_words=link_words,
    )


def view_url(public_url: str | None, path: str) -> str | None:
    return public_url.rstrip("/") + path if public_url else None


def violation_words(data: dict[str, Any], scanner: str | None) -> tuple[str, list[str]]:
    """A violation's title and facts, from its event's data (the gateway's registry copy)."""
    facts = violation_facts(data, scanner)
    lines = [f"原因: {facts.reason_words}"]
    if facts.forged:
        lines.append("摊位码验签失败：摊位为码上所写，未经核实")
    if facts.zone:
        lines.append(f"区域: {facts.zone}")
    if facts.stall.zone and facts.stall.zone != facts.zone:
        lines.append(f"登记区域: {facts.stall.zone}")
    purpose = PURPOSE_WORDS.get(facts.purpose or "", "扫码")
    if scanner:
        lines.append(f"{purpose}设备: {scanner}")
    return f"【摊位违规】{facts.stall.label}", lines


@dataclass(frozen=True)
class Report:
    """A resident's report on a stall, as the street office's robot is told it."""

    seq: int
    stall: StallFacts
    category: str | None
    text: str
    at: float


def report_message(report: Report, target: str, public_url: str | None) -> Message:
    """The page of a new report to the street office: the stall, its zone, what was said."""
    words = report.text.translate(INERT)
    if len(words) > REPORT_TEXT_CHARS:
        words = words[:REPORT_TEXT_CHARS] + "…"
    facts = [f"区域: {report.stall.zone}"] if report.stall.zone else []
    if report.category:
        facts.append(f"类别: {report.category}")
    facts.append(f"内容: {words}")
    key = f"report-{report.seq}"
    return Message(
        event=Page.RAISED,
        target=target,
        escalation=0,
        title=f"【居民举报】{report.stall.label}",
        facts=tuple(facts),
        notes=(),
        raised_at=report.at,
        console_url=view_url(public_url, OFFICE_PATH),
        alert={"id": key, "type": "stall.report", "category": "report", "stall": report.stall.id,
               "report": report.text, "report_category": report.category,
               "raised_at": report.at},
        category="report",
        kind="stall",
        priority="normal",
        building="",
        who=report.stall.label,
        link_words=OFFICE_WORDS,
    )


def when(ts: float, zone: ZoneInfo, now: float) -> str:
    """'13:51' for a moment of the community's today, '2026-11-30 13:51' for another day."""
    if local(ts, zone).date() == local(now, zone).date():
        return clock_time(ts, zone)
    return date_time(ts, zone)


def compose(message: Message, zone: ZoneInfo, now: float) -> Text:
    return Text(
        title=message.title,
        lines=(*message.facts, f"时间: {when(message.raised_at, zone, now)}"),
        strong=message.notes,
        link=message.console_url,
        link_words=message.link_words,
    )


def digest(messages: Sequence[Message], zone: ZoneInfo, now: float) -> Text:
    """Device faults in one message, by building and fault: no name or room in it that the
    faults' own messages would not have carried."""
    groups: dict[tuple[str, str], list[Message]] = {}
    for message in sorted(messages, key=lambda m: m.raised_at):
        key = (message.building or UNKNOWN_BUILDING, message.category)
        groups.setdefault(key, []).append(message)
    counts = [
        f"{building}：{len(group)} 个{CATEGORY_WORDS.get(category, category)}"
        for (building, category), group in groups.items()
    ]
    lines = [
        f"{count}（{'、'.join(m.who for m in group[:NAMED])}"
        f"{f' 等 {len(group)} 个' if len(group) > NAMED else ''}）"
        for count, group in zip(counts, groups.values(), strict=True)
    ]
    first, last = min(m.raised_at for m in messages), max(m.raised_at for m in messages)
    span = when(first, zone, now)
    if when(last, zone, now) != span:
        span += f" 至 {when(last, zone, now)}"
    return Text(
        title="【设备故障】" + "；".join(counts[:3]) + ("…" if len(counts) > 3 else ""),
        lines=(*lines, f"时间: {span}"),
        link=next((m.console_url for m in messages if m.console_url), None),
    )


def markdown(text: Text) -> str:
    lines = [f"### {text.title}", *(f"- {line}" for line in text.lines)]
    lines += [f"- **{line}**" for line in text.strong]
    if text.link:
        lines.append(f"\n[{text.link_words}]({text.link})")
    return "\n".join(lines)


def plain(text: Text) -> str:
    lines = [text.title, *text.lines, *text.strong]
    if text.link:
        lines.append(f"{text.link_words}: {text.link}")
    return "\n".join(lines)
