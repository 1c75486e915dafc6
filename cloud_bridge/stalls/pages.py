"""The stall page a resident's phone opens from a placard (多多评): the stall's licence, zone
and hours, whether it trades now, and a form to rate it or report it to the street office.

The page verifies the placard's own token, the same way a gateway does, so a copied placard
of a revoked licence shows as revoked. Submissions are rate-limited per client address and
carry a form key (`formkey`), so a flood or a forged cross-site post is refused with a reason.
A refused form comes back filled in as it was sent: a resident never types a report twice.
"""

from __future__ import annotations

import asyncio
import datetime
import html
import time
import urllib.parse
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from aiohttp import web

from cloud_bridge.clients import Networks, client_address, client_group
from cloud_bridge.config import StallsSection
from cloud_bridge.httpkit import require_admin
from cloud_bridge.localtime import local
from cloud_bridge.receiver.store import Database
from cloud_bridge.stalls.formkey import FormKeys
from cloud_bridge.stalls.public import (
    HEADERS,
    Lang,
    add_lost_pages,
    check_code,
    language,
    message_page,
    page,
)
from mashang.registry import Contact, Registry, Stall

MAX_REPORT_CHARS = 500
# What the street office sorts reports by; stored as the key, shown in the reader's language.
CATEGORIES = ("food_safety", "obstruction", "price", "hygiene", "other")

SCHEMA = """
CREATE TABLE IF NOT EXISTS stall_feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    stall_id TEXT NOT NULL,
    rating INTEGER,
    report TEXT,
    client TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS stall_feedback_by_stall ON stall_feedback (stall_id, seq);
"""
# Step 2: a report's category (one of CATEGORIES; NULL for a rating alone).
CATEGORY_STEP = "ALTER TABLE stall_feedback ADD COLUMN category TEXT;"
# Step 3 (the street office's, cloud_bridge/office/reports.py): what the office made of a
# report (new, handled, dismissed) with its note, and when its robot was told of it (reports
# stored before this step are not told again).
HANDLING_STEP = """
ALTER TABLE stall_feedback ADD COLUMN state TEXT NOT NULL DEFAULT 'new';
ALTER TABLE stall_feedback ADD COLUMN note TEXT;
ALTER TABLE stall_feedback ADD COLUMN state_at REAL;
ALTER TABLE stall_feedback ADD COLUMN state_by TEXT;
ALTER TABLE stall_feedback ADD COLUMN told_at REAL;
UPDATE stall_feedback SET told_at = at;
CREATE INDEX IF NOT EXISTS stall_feedback_untold ON stall_feedback (seq) WHERE told_at IS NULL;
"""


TEXT: dict[Lang, dict[str, str]] = {
    "zh": {
        "title": "摊位信息", "licence": "经营许可", "valid": "有效", "revoked": "已吊销",
        "expired": "已过期", "invalid": "无效的摊位码", "unknown": "未登记的摊位",
        "invalid_why": "这个二维码不是本社区签发的摊位码，或已损坏。请以摊位上的原码为准。",
        "unknown_why": "这个摊位码是真的，但摊位已不在登记名单中。",
        "zone": "区域", "hours": "经营时间", "number": "编号",
        "open": "现在是经营时间", "closed": "现在不在经营时间", "hours_now": "{hours}（{now}）",
        "not_valid_warning": "这个摊位的经营许可{status}。如果它仍在经营，可以在下面举报。",
        "rate": "评分", "unrated": "未评分（可不评）", "stars": "{n} 分",
        "rating_hint": "评分默认为空，不选就只提交举报。",
        "report_box": "举报（可选）", "category": "类别", "report": "举报内容",
        "report_hint": "选一个类别（不选则归为“其他”）；内容可写可不写，最多 500 字。",
        "food_safety": "食品安全", "obstruction": "占道", "price": "价格",
        "hygiene": "卫生", "other": "其他",
        "send": "提交", "sent": "已转交街道办",
        "sent_report": "举报", "sent_rating": "评分",
        "next": "街道办工作人员会在管理后台看到您的{what}，逐条核实并记下处理结果，"
                "需要时到现场检查。本页不收集姓名和电话，所以不会回访您。",
        "urgent": "情况紧急（如有人食物中毒）请直接拨打 120。",
        "urgent_contact": "情况紧急（如有人食物中毒）请直接拨打 120，或{name} ",
        "again": "再评价一次",
        "bad_field": "表单内容不对：请用本页的表单提交。",
        "bad_key": "表单密钥格式不对：请刷新本页后再提交。",
        "forged_key": "表单不是来自本页面。已为您保留填写的内容，请再点一次“提交”。",
        "stale_key": "表单已过期（页面打开超过一天）。已为您保留填写的内容，请再点一次“提交”。",
        "bad_rating": "评分只能是 1 到 5 分之间的整数。",
        "bad_category": "举报类别不对：请从食品安全、占道、价格、卫生、其他中选择。",
        "too_long": "举报内容超过 500 字，请删减后再提交。",
        "empty": "请评分，或选择一个举报类别。",
        "flood": "这个网络提交得太多了，请过一会儿再试。填写的内容已保留。",
        "too_large": "提交的内容太大了。",
        "refused": "未能提交",
    },
    "en": {
        "title": "Stall", "licence": "Licence", "valid": "valid", "revoked": "revoked",
        "expired": "expired", "invalid": "Not a valid stall code", "unknown": "Unregistered stall",
        "invalid_why": "This QR code is not a stall code issued by this community, or it is "
                       "damaged. Trust the code on the stall itself.",
        "unknown_why": "This stall code is genuine, but the stall is no longer registered.",
        "zone": "Zone", "hours": "Hours", "number": "Number",
        "open": "open now", "closed": "not open now", "hours_now": "{hours} ({now})",
        "not_valid_warning": "This stall's licence is {status}. If it is trading, you can "
                             "report it below.",
        "rate": "Rating", "unrated": "Not rated (optional)", "stars": "{n} of 5",
        "rating_hint": "No rating is chosen unless you pick one: a report alone is fine.",
        "report_box": "Report (optional)", "category": "Category", "report": "What happened",
        "report_hint": "Pick a category (none picked: other); the text is optional, at most "
                       "500 characters.",
        "food_safety": "Food safety", "obstruction": "Blocking the way", "price": "Prices",
        "hygiene": "Hygiene", "other": "Other",
        "send": "Send", "sent": "Passed to the street office (已转交街道办)",
        "sent_report": "report", "sent_rating": "rating",
        "next": "Street office staff see your {what} in their console, check each one and "
                "record what was done, inspecting on site where needed. This page collects no "
                "name or phone, so nobody will call you back.",
        "urgent": "In an emergency (food poisoning, say) call 120.",
        "urgent_contact": "In an emergency (food poisoning, say) call 120, or {name} at ",
        "again": "Rate again",
        "bad_field": "The form is not as this page sends it: use the form on this page.",
        "bad_key": "The form key is malformed: reload this page and send again.",
        "forged_key": "The form did not come from this page. Your entries are kept: press "
                      "Send once more.",
        "stale_key": "The form has expired (the page was open for over a day). Your entries "
                     "are kept: press Send once more.",
        "bad_rating": "The rating must be a whole number from 1 to 5.",
        "bad_category": "Unknown category: choose food safety, blocking the way, prices, "
                        "hygiene or other.",
        "too_long": "The report is longer than 500 characters: shorten it and send again.",
        "empty": "Give a rating or choose a report category.",
        "flood": "Too many submissions from this network: try again later. Your entries are "
                 "kept.",
        "too_large": "What was sent is too large.",
        "refused": "Not sent",
    },
}


class FormError(Exception):
    """A submission refused: the HTTP status and the TEXT key of the reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Licence:
    status: str  # valid | revoked | expired | invalid
    stall: Stall | None


@dataclass(frozen=True)
class Submission:
    rating: int | None
    category: str | None
    report: str | None


@dataclass(frozen=True)
class FormState:
    """What the form shows: empty at first, as sent after a refusal."""

    values: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None  # a TEXT key


class FeedbackStore:
    def __init__(self, db: Database) -> None:
        db.migrate("stalls", [SCHEMA, CATEGORY_STEP, HANDLING_STEP])
        self._db = db

    def add(self, stall_id: str, submission: Submission, client: str, at: float) -> None:
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO stall_feedback (stall_id, rating, category, report, client, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (stall_id, submission.rating, submission.category, submission.report, client, at),
            )

    def reports(self, stall_id: str | None) -> list[dict]:
        query = "SELECT stall_id, rating, category, report, at FROM stall_feedback"
        params: tuple = ()
        if stall_id:
            query += " WHERE stall_id = ?"
            params = (stall_id,)
        rows = self._db.rows(query + " ORDER BY seq", params)
        return [{"stall_id": s, "rating": r, "category": c, "report": t, "at": a}
                for s, r, c, t, a in rows]


class RateLimit:
    """At most `limit` events per key within `window` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self._limit = limit
        self._window = window
        self._seen: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, key: str) -> bool:
        moment = time.monotonic()
        seen = self._seen[key]
        while seen and moment - seen[0] > self._window:
            seen.popleft()
        if len(seen) >= self._limit:
            return False
        seen.append(moment)
        return True


class StallPages:
    def __init__(self, settings: StallsSection, registry: Callable[[], Registry],
                 db: Database, proxies: Networks = (), *, zone: ZoneInfo, secret: bytes,
                 clock: Callable[[], float] = time.time) -> None:
        self._registry = registry
        self._proxies = proxies
        self._zone = zone
        self._clock = clock
        self._keys = FormKeys(secret)
        self._store = FeedbackStore(db)
        self._limit = RateLimit(settings.submissions_per_window, settings.window)

    def now(self) -> datetime.datetime:
        """The community's local time: the day a form key is of, the hours a stall keeps."""
        return local(self._clock(), self._zone)

    def licence(self, token: str, registry: Registry) -> Licence:
        checked = check_code(registry, "stall", token, self.now().date())
        stall = registry.stall(checked.subject_id) if checked.subject_id else None
        return Licence(checked.status, stall)

    # -- handlers ---------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        lang, token, registry = language(request), _token(request), self._registry()
        licence = self.licence(token, registry)
        if licence.stall is None:
            return not_a_stall(lang, token, licence)
        sent = request.query.get("sent")
        return self._render(request, registry, licence, FormState(),
                            sent=sent if sent in ("report", "rating") else None)

    async def submit(self, request: web.Request) -> web.Response:
        lang, token, registry = language(request), _token(request), self._registry()
        licence = self.licence(token, registry)
        if licence.stall is None:
            return not_a_stall(lang, token, licence)
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            return message_page(lang, TEXT[lang]["refused"], TEXT[lang]["too_large"],
                                switch_to=f"/S/{token}", status=413)
        except ValueError:  # a body that claims to be a form and is not one
            form = None
        values = form_values(form)
        try:
            if form is None or any(not isinstance(form.get(name, ""), str) for name in FIELDS):
                raise FormError(400, "bad_field")
            check_form_key(self._keys.check(licence.stall.id, values.get("form_token", ""),
                                            self.now()))
            submission = parse_submission(values)
            client = client_address(request, self._proxies)
            if not self._limit.allow(client_group(client)):
                raise FormError(429, "flood")
        except FormError as refused:
            return self._render(request, registry, licence, FormState(values, refused.reason),
                                status=refused.status)
        await asyncio.to_thread(self._store.add, licence.stall.id, submission, client,
                                self._clock())
        sent = "report" if submission.category else "rating"
        raise web.HTTPSeeOther(f"/S/{token}?sent={sent}{_lang_query(request, '&')}",
                               headers=HEADERS)

    async def back_to_page(self, request: web.Request) -> web.Response:
        """A reload or a bookmark of the form's address: the page it belongs to."""
        path = f"/S/{urllib.parse.quote(_token(request), safe='')}"  # whatever was typed
        raise web.HTTPSeeOther(f"{path}{_lang_query(request, '?')}", headers=HEADERS)

    async def reports(self, request: web.Request) -> web.Response:
        require_admin(request)
        found = await asyncio.to_thread(self._store.reports, request.query.get("stall"))
        return web.json_response({"reports": found})

    def _render(self, request: web.Request, registry: Registry, licence: Licence,
                state: FormState, *, sent: str | None = None,
                status: int = 200) -> web.Response:
        stall = licence.stall
        assert stall is not None
        lang, token, now = language(request), _token(request), self.now()
        zone = registry.zone(stall.zone)
        view = StallView(
            stall=stall, licence=licence.status, zone_name=zone.name if zone else stall.zone,
            open_now=stall.open_at(now.time()), token=token,
            form_key=self._keys.issue(stall.id, now), lang_query=_lang_query(request, "?"),
            inspection=registry.community.inspection_contact,
        )
        t = TEXT[lang]
        body = render(view, t, state, sent=sent)
        return page(lang, f"{stall.name} · {t['title']}", body, switch_to=f"/S/{token}",
                    status=status)


@dataclass(frozen=True)
class StallView:
    stall: Stall
    licence: str
    zone_name: str
    open_now: bool
    token: str
    form_key: str
    lang_query: str  # "?lang=en" when the reader chose a language with the page's switch
    inspection: Contact | None


FIELDS = ("form_token", "rating", "category", "report")
RATINGS = ("1", "2", "3", "4", "5")  # compared as text: int() would take "²" and 5,000 digits


def form_values(form: Mapping[str, object] | None) -> dict[str, str]:
    """The form's text fields, as sent (a file in their place counts as absent)."""
    if form is None:
        return {}
    return {name: value for name in FIELDS if isinstance(value := form.get(name, ""), str)}


def check_form_key(verdict: str) -> None:
    refusals = {"malformed": (400, "bad_key"), "forged": (403, "forged_key"),
                "stale": (403, "stale_key")}
    if verdict in refusals:
        raise FormError(*refusals[verdict])


def parse_submission(values: Mapping[str, str]) -> Submission:
    """The submission, or FormError with what is wrong."""
    raw_rating = values.get("rating", "").strip()
    category = values.get("category", "").strip() or None
    report = values.get("report", "").strip() or None
    if raw_rating and raw_rating not in RATINGS:
        raise FormError(400, "bad_rating")
    if category is not None and category not in CATEGORIES:
        raise FormError(400, "bad_category")
    if report is not None and len(report) > MAX_REPORT_CHARS:
        raise FormError(400, "too_long")
    if report is not None and category is None:
        category = "other"  # a report sent without choosing is still a report
    if not raw_rating and category is None:
        raise FormError(400, "empty")
    return Submission(int(raw_rating) if raw_rating else None, category, report)


def not_a_stall(lang: Lang, token: str, licence: Licence) -> web.Response:
    t = TEXT[lang]
    which = "invalid" if licence.status == "invalid" else "unknown"
    return message_page(lang, t[which], t[f"{which}_why"], switch_to=f"/S/{token}", status=404)


def _token(request: web.Request) -> str:
    return request.match_info.get("token", "").upper()


def _lang_query(request: web.Request, lead: str) -> str:
    asked = request.query.get("lang")
    return f"{lead}lang={asked}" if asked in ("zh", "en") else ""


def render(view: StallView, t: Mapping[str, str], state: FormState, *, sent: str | None) -> str:
    """The stall's facts, then the form, or after a submission (`sent`: what was sent, "report"
    or "rating") where it went and what happens next."""
    stall, e = view.stall, html.escape
    hours = e(t["hours_now"].format(hours=stall.hours,
                                    now=t["open" if view.open_now else "closed"]))
    facts = [(t["licence"], f'<b class="{view.licence}">{t[view.licence]}</b>'),
             (t["number"], e(stall.number or "-")), (t["zone"], e(view.zone_name)),
             (t["hours"], f'<span class="{"valid" if view.open_now else "closed"}">{hours}</span>')]
    parts = [f"<h1>{e(stall.name)}</h1>",
             "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"]
    if view.licence != "valid":
        warning = t["not_valid_warning"].format(status=t[view.licence])
        parts.append(f'<p class="error">{e(warning)}</p>')
    if sent:
        parts.append(sent_notice(view, t, sent))
    else:
        parts.append(render_form(view, t, state))
    return "".join(parts)


def sent_notice(view: StallView, t: Mapping[str, str], sent: str) -> str:
    e = html.escape
    contact = view.inspection
    if contact is not None and contact.phone:
        urgent = (f"{e(t['urgent_contact'].format(name=contact.name))}"
                  f'<a class="tel" href="tel:{e(contact.phone)}">{e(contact.phone)}</a>')
    else:
        urgent = e(t["urgent"])
    what = t[f"sent_{sent}"]
    return (f'<div class="notice" id="sent"><h2>{e(t["sent"])}</h2>'
            f"<p>{e(t['next'].format(what=what))}</p><p>{urgent}</p>"
            f'<p><a href="/S/{e(view.token)}{view.lang_query}">{e(t["again"])}</a></p></div>')


def render_form(view: StallView, t: Mapping[str, str], state: FormState) -> str:
    e, values = html.escape, state.values
    error = (f'<p class="error" id="error" role="alert">{e(t[state.error])}</p>'
             if state.error else "")
    chosen = values.get("rating", "")
    stars = "".join(
        f'<option value="{n}"{" selected" if chosen == str(n) else ""}>'
        f'{"★" * n}{"☆" * (5 - n)} {e(t["stars"].format(n=n))}</option>'
        for n in range(5, 0, -1))
    unrated = f'<option value=""{"" if chosen in RATINGS else " selected"}>'
    categories = "".join(
        f'<label><input type="radio" name="category" value="{key}"'
        f'{" checked" if values.get("category") == key else ""}> {e(t[key])}</label>'
        for key in CATEGORIES)
    return (f'{error}<form method="post" action="/S/{e(view.token)}/feedback{view.lang_query}">'
            f'<input type="hidden" name="form_token" value="{e(view.form_key)}">'
            f'<label>{e(t["rate"])}<select name="rating" id="rating">{unrated}'
            f'{e(t["unrated"])}</option>{stars}</select></label>'
            f'<p class="hint">{e(t["rating_hint"])}</p>'
            f'<fieldset><legend>{e(t["report_box"])}</legend>'
            f'<p class="hint">{e(t["report_hint"])}</p>{categories}'
            f'<label>{e(t["report"])}<textarea name="report" id="report" '
            f'maxlength="{MAX_REPORT_CHARS}">{e(values.get("report", ""))}</textarea></label>'
            f'</fieldset><button id="send">{e(t["send"])}</button></form>')


def add_stall_routes(app: web.Application, pages: StallPages) -> None:
    add_lost_pages(app, "S")
    for letter in ("S", "s"):
        app.router.add_get(f"/{letter}/", pages.page)  # a QR cut short: not a valid code
        app.router.add_get(f"/{letter}/{{token}}", pages.page)
        app.router.add_get(f"/{letter}/{{token}}/feedback", pages.back_to_page)
        app.router.add_post(f"/{letter}/{{token}}/feedback", pages.submit)
    app.router.add_get("/v1/stalls/reports", pages.reports)
