"""The stall page a resident's phone opens from a placard (多多评): the stall's licence, zone
and hours, and a form to rate it or report it. Reports are for the street office.

The page verifies the placard's own token, the same way a gateway does, so a copied placard
of a revoked licence shows as revoked. Submissions are rate-limited per client address and
carry a signed form token, so a flood or a forged cross-site post is refused with a reason.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import html
import os
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from cloud_bridge.config import StallsSection
from cloud_bridge.httpkit import require_admin
from cloud_bridge.receiver.store import Database
from mashang.codes import CodeRejected, VerifiedCode, decode_token, public_keys, verify_code
from mashang.registry import Registry, Stall

MAX_REPORT_CHARS = 500
FORM_TOKEN_TTL = 3600.0

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


TEXT = {
    "zh": {
        "title": "摊位信息", "licence": "经营许可", "valid": "有效", "revoked": "已吊销",
        "expired": "已过期", "invalid": "无效的摊位码", "zone": "区域", "hours": "经营时间",
        "number": "编号", "rate": "评分", "report": "举报内容（可选）", "send": "提交",
        "thanks": "谢谢，已收到。", "unknown": "未登记的摊位", "switch": "English",
    },
    "en": {
        "title": "Stall", "licence": "Licence", "valid": "valid", "revoked": "revoked",
        "expired": "expired", "invalid": "not a valid stall code", "zone": "Zone",
        "hours": "Hours", "number": "Number", "rate": "Rating", "report": "Report (optional)",
        "send": "Send", "thanks": "Thank you, received.", "unknown": "unregistered stall",
        "switch": "中文",
    },
}


@dataclass(frozen=True)
class Licence:
    status: str  # valid | revoked | expired | invalid
    code: VerifiedCode | None
    stall: Stall | None


class FeedbackStore:
    def __init__(self, db: Database) -> None:
        db.schema(SCHEMA)
        self._db = db

    def add(self, stall_id: str, rating: int | None, report: str | None, client: str) -> None:
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO stall_feedback (stall_id, rating, report, client, at)"
                " VALUES (?, ?, ?, ?, ?)",
                (stall_id, rating, report, client, time.time()),
            )

    def reports(self, stall_id: str | None) -> list[dict]:
        query = "SELECT stall_id, rating, report, at FROM stall_feedback"
        params: tuple = ()
        if stall_id:
            query += " WHERE stall_id = ?"
            params = (stall_id,)
        rows = self._db.rows(query + " ORDER BY seq", params)
        return [{"stall_id": s, "rating": r, "report": t, "at": a} for s, r, t, a in rows]


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
                 db: Database) -> None:
        self._registry = registry
        self._store = FeedbackStore(db)
        self._limit = RateLimit(settings.submissions_per_window, settings.window)
        self._secret = os.urandom(32)

    def licence(self, token: str) -> Licence:
        registry = self._registry()
        try:
            code = verify_code(
                f"https://central/S/{token}",
                public_keys(registry.code_keys),
                today=datetime.date.today(),
                min_generation=lambda kind, subject: _min_generation(registry, subject),
                denied=registry.denied_codes,
            )
        except CodeRejected as exc:
            status = {"revoked": "revoked", "denied": "revoked", "expired": "expired"}
            stall = None
            if exc.reason in status:
                stall = registry.stall(_subject_of(token))
            return Licence(status.get(exc.reason, "invalid"), None, stall)
        if code.kind != "stall":
            return Licence("invalid", None, None)
        return Licence("valid", code, registry.stall(code.subject_id))

    def form_token(self, stall_id: str) -> str:
        issued = str(int(time.time()))
        mac = hmac.new(self._secret, f"{stall_id}:{issued}".encode(), hashlib.sha256).hexdigest()
        return f"{issued}.{mac}"

    def form_token_ok(self, stall_id: str, token: str) -> bool:
        issued, _, mac = token.partition(".")
        if not issued.isdigit() or time.time() - int(issued) > FORM_TOKEN_TTL:
            return False
        expected = hmac.new(self._secret, f"{stall_id}:{issued}".encode(), hashlib.sha256)
        return hmac.compare_digest(mac, expected.hexdigest())

    # -- handlers ---------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        lang = "en" if request.query.get("lang") == "en" else "zh"
        token = request.match_info["token"].upper()
        licence = self.licence(token)
        status = 200 if licence.status != "invalid" else 404
        body = render(licence, token, lang, self.form_token(_stall_id(licence)),
                      thanks="thanks" in request.query)
        return web.Response(text=body, content_type="text/html", status=status)

    async def submit(self, request: web.Request) -> web.Response:
        token = request.match_info["token"].upper()
        licence = self.licence(token)
        if licence.stall is None:
            return form_problem(404, "unknown stall")
        form = await request.post()
        if not self.form_token_ok(licence.stall.id, str(form.get("form_token", ""))):
            return form_problem(403, "form expired or not from this page: reload and try again")
        rating, report, error = parse_submission(form)
        if error:
            return form_problem(400, error)
        client = request.remote or "unknown"
        if not self._limit.allow(client):
            return form_problem(429, "too many submissions from this address: try again later")
        await asyncio.to_thread(self._store.add, licence.stall.id, rating, report, client)
        raise web.HTTPSeeOther(f"/S/{token}?thanks=1")

    async def reports(self, request: web.Request) -> web.Response:
        require_admin(request)
        found = await asyncio.to_thread(self._store.reports, request.query.get("stall"))
        return web.json_response({"reports": found})


def parse_submission(form) -> tuple[int | None, str | None, str | None]:
    """(rating, report, None) or (None, None, what is wrong)."""
    raw_rating = str(form.get("rating", "")).strip()
    report = str(form.get("report", "")).strip() or None
    rating = None
    if raw_rating:
        if not raw_rating.isdigit() or not 1 <= int(raw_rating) <= 5:
            return None, None, "rating must be a whole number from 1 to 5"
        rating = int(raw_rating)
    if report is not None and len(report) > MAX_REPORT_CHARS:
        return None, None, f"report is longer than {MAX_REPORT_CHARS} characters"
    if rating is None and report is None:
        return None, None, "give a rating or a report"
    return rating, report, None


def form_problem(status: int, reason: str) -> web.Response:
    return web.Response(status=status, content_type="text/html",
                        text=f"<!doctype html><meta charset=utf-8><p>{html.escape(reason)}</p>")


def _min_generation(registry: Registry, subject: str) -> int:
    stall = registry.stall(subject)
    return stall.min_generation if stall else 0


def _subject_of(token: str) -> str:
    try:
        return decode_token(token).subject_id
    except CodeRejected:
        return ""


def _stall_id(licence: Licence) -> str:
    return licence.stall.id if licence.stall else ""


def render(licence: Licence, token: str, lang: str, form_token: str, *, thanks: bool) -> str:
    t = TEXT[lang]
    stall = licence.stall
    other = "en" if lang == "zh" else "zh"
    head = (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{t['title']}</title><style>body{{font-family:sans-serif;margin:1em;"
            "max-width:32em}.valid{color:#0a0}.revoked,.expired,.invalid{color:#c00}"
            "label,textarea,select,button{display:block;margin:.5em 0;width:100%}</style>"
            f'</head><body><p><a href="?lang={other}">{t["switch"]}</a></p>')
    if stall is None:
        heading = t["invalid" if licence.code is None else "unknown"]
        return head + f'<h1 class="invalid">{heading}</h1></body></html>'
    rows = [(t["licence"], f'<b class="{licence.status}">{t[licence.status]}</b>'),
            (t["number"], html.escape(stall.number or "-")),
            (t["zone"], html.escape(stall.zone)), (t["hours"], html.escape(stall.hours))]
    facts = "".join(f"<p>{label}: {value}</p>" for label, value in rows)
    thanks_line = f'<p class="valid">{t["thanks"]}</p>' if thanks else ""
    options = "".join(f'<option value="{n}">{"★" * n}</option>' for n in range(5, 0, -1))
    form = (f'<form method="post" action="/S/{html.escape(token)}/feedback">'
            f'<input type="hidden" name="form_token" value="{form_token}">'
            f'<label>{t["rate"]}<select name="rating"><option value=""></option>{options}'
            f'</select></label><label>{t["report"]}<textarea name="report" '
            f'maxlength="{MAX_REPORT_CHARS}"></textarea></label>'
            f'<button>{t["send"]}</button></form>')
    return head + f"<h1>{html.escape(stall.name)}</h1>{facts}{thanks_line}{form}</body></html>"


def add_stall_routes(app: web.Application, pages: StallPages) -> None:
    for letter in ("S", "s"):
        app.router.add_get(f"/{letter}/{{token}}", pages.page)
        app.router.add_post(f"/{letter}/{{token}}/feedback", pages.submit)
    app.router.add_get("/v1/stalls/reports", pages.reports)
