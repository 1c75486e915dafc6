"""What every page a resident's phone opens from a printed code shares (the stall pages and the
household page): the language, the page frame, its security headers, and the code check.

These pages are public: no login, no cookie. So they carry nothing a stranger may not see,
take no script at all, and refuse to be framed (a placard's page inside someone else's site
could be dressed up to collect a phone number).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler

from mashang.codes import CodeRejected, Kind, decode_token, public_keys, verify_code
from mashang.registry import Registry

Lang = Literal["zh", "en"]
Status = Literal["valid", "revoked", "expired", "invalid"]

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:0 auto;padding:1em;max-width:32em;"
    "font-size:17px;line-height:1.5;color:#222}"
    "h1{font-size:1.5em;margin:.3em 0}.lang{text-align:right;margin:0}"
    ".valid{color:#070}.closed{color:#a60}.revoked,.expired,.invalid,.error{color:#b00}"
    ".notice{border:2px solid #070;border-radius:8px;padding:.6em .9em;background:#f3fbf3}"
    ".error{border:2px solid #b00;border-radius:8px;padding:.6em .9em;background:#fdf3f3}"
    "dl{display:grid;grid-template-columns:auto 1fr;gap:.2em .8em}dt{color:#555}dd{margin:0}"
    "fieldset{border:1px solid #ccc;border-radius:8px;margin:.8em 0}"
    "label{display:block;margin:.4em 0}select,textarea,button{font-size:1em;width:100%;"
    "box-sizing:border-box;margin:.3em 0;padding:.5em}textarea{min-height:6em}"
    "button{background:#1565c0;color:#fff;border:0;border-radius:8px;padding:.8em}"
    "a.tel{font-size:1.2em;font-weight:bold;white-space:nowrap}.hint{color:#555;font-size:.9em}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
# No script may run, styles only the one above, forms post only here, and no frame holds it.
CSP = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token in the URL is the placard's, not for others
    "Cache-Control": "no-store",
}

SWITCH = {"zh": "English", "en": "中文"}
# aiohttp's own answer under a page's path (a slash too many, a POST where none is taken).
LOST: dict[Lang, tuple[str, str]] = {
    "zh": ("找不到这个页面", "请重新扫描摊位或门牌上的二维码。"),
    "en": ("Page not found", "Scan the code on the stall or the door again."),
}


def language(request: web.Request) -> Lang:
    """Chinese, unless the page's own switch asked otherwise or the browser's most preferred
    language is English."""
    asked = request.query.get("lang")
    if asked in ("zh", "en"):
        return "en" if asked == "en" else "zh"
    return "en" if _first_language(request.headers.get("Accept-Language", "")) == "en" else "zh"


def _first_language(header: str) -> str:
    ranked: list[tuple[float, int, str]] = []
    for order, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and tag != "*":
            ranked.append((-quality, order, tag.split("-")[0].lower()))
    return min(ranked)[2] if ranked else ""


def page(lang: Lang, title: str, body: str, *, switch_to: str, status: int = 200) -> web.Response:
    """A whole page: `body` is HTML already escaped; `switch_to` is this page's own path, for
    the link to the other language."""
    other = "en" if lang == "zh" else "zh"
    text = (
        f'<!doctype html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head>'
        '<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f'<p class="lang"><a href="{html.escape(switch_to)}?lang={other}">{SWITCH[lang]}</a></p>'
        f"{body}</body></html>"
    )
    return web.Response(text=text, content_type="text/html", status=status, headers=HEADERS)


def message_page(lang: Lang, title: str, message: str, *, switch_to: str, status: int,
                 extra: str = "") -> web.Response:
    """An error or notice page: a heading and one sentence, in the reader's language."""
    body = f'<h1 class="invalid">{html.escape(title)}</h1><p>{html.escape(message)}</p>{extra}'
    return page(lang, title, body, switch_to=switch_to, status=status)


@dataclass(frozen=True)
class CodeCheck:
    status: Status
    # Whose code it is: for a valid code, and for an authentic one that is revoked or expired.
    subject_id: str | None


_LETTERS: dict[Kind, str] = {"stall": "S", "household": "H"}
_STATUS_OF: dict[str, Status] = {"revoked": "revoked", "denied": "revoked", "expired": "expired"}


def check_code(registry: Registry, kind: Kind, token: str, today: datetime.date) -> CodeCheck:
    """Verify a page's token the way a gateway verifies a scan (PROTOCOL §5)."""
    try:
        code = verify_code(
            f"https://central/{_LETTERS[kind]}/{token}",
            public_keys(registry.code_keys),
            today=today,
            min_generation=lambda _kind, subject: _min_generation(registry, kind, subject),
            denied=registry.denied_codes,
        )
    except CodeRejected as exc:
        status = _STATUS_OF.get(exc.reason, "invalid")
        # These reasons are given only for authentic codes, so the subject is the signer's.
        return CodeCheck(status, decode_token(token).subject_id if status != "invalid" else None)
    return CodeCheck("valid", code.subject_id)


def _min_generation(registry: Registry, kind: Kind, subject: str) -> int:
    entry = registry.stall(subject) if kind == "stall" else registry.household(subject)
    return entry.min_generation if entry else 0


def add_lost_pages(app: web.Application, letter: str) -> None:
    """Under /{letter}/ (either case), a path no route takes answers as the pages do: in the
    reader's language, with their headers, never aiohttp's bare English."""
    prefixes = (f"/{letter.upper()}/", f"/{letter.lower()}/")

    @web.middleware
    async def lost(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as refused:
            if not request.path.startswith(prefixes):
                raise
            lang = language(request)
            title, words = LOST[lang]
            answer = message_page(lang, title, words, switch_to=request.path,
                                  status=refused.status)
            if "Allow" in refused.headers:
                answer.headers["Allow"] = refused.headers["Allow"]
            return answer

    app.middlewares.append(lost)
