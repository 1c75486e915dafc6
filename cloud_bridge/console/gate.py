"""The gate of every page behind the console's login (the console, the street office's view, the
report): whether a request's session holds, its CSRF token, the logout, and the security
headers on the pages and their API. Who the account is, and what it may see, each page says.

A session holds while its signed cookie is genuine and not expired and its account has not
ended its sessions since it was issued (a logout, a new password, a disabled account), in
this process or another: the account store says since when its sessions are good.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from cloud_bridge.config import CentralConfig
from cloud_bridge.console.accounts import AccountStore
from cloud_bridge.console.sessions import Session, SessionSigner, console_secret
from cloud_bridge.httpkit import json_error

COOKIE = "mashang_session"
CSRF_HEADER = "X-CSRF-Token"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
        " img-src 'self'; media-src 'self'; worker-src 'self'; manifest-src 'self';"
        " base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Viewer:
    """Who is asking, as the page names them."""

    account: str
    name: str
    session: Session


class SessionGate:
    def __init__(self, config: CentralConfig, accounts: AccountStore) -> None:
        self.signer = SessionSigner(console_secret(config, accounts.database),
                                    config.console.session_ttl)
        self._accounts = accounts
        self._zone = config.central.zone

    async def session(self, request: web.Request, kind: str | None = None) -> Session:
        """The request's session if it holds (for an account of `kind`, when given), else 401."""
        session = self.signer.read(request.cookies.get(COOKIE))
        if session is None or not await self.holds(session, kind):
            raise json_error(web.HTTPUnauthorized, "login required")
        return session

    async def holds(self, session: Session, kind: str | None = None) -> bool:
        """Asked again by an open stream: the cookie was good when it came, not for ever."""
        if session.expires <= time.time():
            return False
        valid_from = await asyncio.to_thread(
            self._accounts.sessions_after, session.account, kind
        )
        return valid_from is not None and session.issued >= valid_from

    def answer(self, viewer: Viewer) -> dict[str, Any]:
        """What a page's own session request answers: who, the CSRF token its actions send,
        until when, and the zone its times are shown in."""
        return {
            "account": viewer.account,
            "name": viewer.name,
            "csrf": self.signer.csrf_token(viewer.session),
            "expires": viewer.session.expires,
            "time_zone": str(self._zone),
        }

    def require_csrf(self, session: Session, request: web.Request) -> None:
        """403 unless the request carries the session's CSRF token, as every action must."""
        if not self.signer.csrf_ok(session, request.headers.get(CSRF_HEADER)):
            raise json_error(web.HTTPForbidden, "CSRF token missing or wrong")

    async def logout(self, session: Session) -> web.Response:
        """Ends every session of the account (its other devices too) and drops the cookie.
        The page checks the session first, who may act there being its own question."""
        await asyncio.to_thread(self._accounts.end_sessions, session.account)
        response = web.json_response({"ok": True})
        response.del_cookie(COOKIE, path="/")
        return response


def redirect(to: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        raise web.HTTPFound(to)

    return handler


def add_page(app: web.Application, name: str, static: Path, *, cache_page: bool = True) -> None:
    """The page at /{name}/ (static/index.html; /{name} leads there), its files at
    /{name}/assets, and the security headers on it and its API under /v1/{name}: by a prepare
    hook rather than a middleware, so that streams and errors get them too. The API's answers
    are never cached (nothing personal is), the page's neither unless `cache_page`."""
    api = f"/v1/{name}"
    paths = (f"/{name}", api)
    no_store = (api,) if cache_page else paths

    async def headers(request: web.Request, response: web.StreamResponse) -> None:
        if request.path.startswith(paths):
            response.headers.update(SECURITY_HEADERS)
            if request.path.startswith(no_store):
                response.headers["Cache-Control"] = "no-store"

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(static / "index.html")

    app.on_response_prepare.append(headers)
    app.router.add_get(f"/{name}", redirect(f"/{name}/"))
    app.router.add_get(f"/{name}/", page)
    app.router.add_static(f"/{name}/assets", static)
