"""Group-chat robots on loopback that answer as WeCom and DingTalk document, throttling
included, by a clock the test moves (`VirtualTime`), so that minutes of pacing take no real
time. A real aiohttp server in the test's own event loop.

WeCom (POST /cgi-bin/webhook/send?key=…): an unknown key answers errcode 93000; a `text` or
`markdown` message is taken (errcode 0) unless its content is empty (44004) or over 2048 /
4096 bytes (40058), or another msgtype (40008); a 21st message within 60 s answers 45009.

DingTalk (POST /robot/send?access_token=…): an unknown token answers 300001; a robot with a
signing secret wants `timestamp` (ms, within an hour) and `sign`, else 310000; a 21st message
within 60 s answers 130101 and silences the robot for 10 minutes, every post meanwhile
answered 130101 too; a `markdown` message needs its title and text (else 400105 as another
msgtype).

/portal/… answers any post with an HTML page and status 200, as a captive portal does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

from aiohttp import ClientSession, web
from yarl import URL

PER_MINUTE = 20
DINGTALK_SILENCE = 600.0
OK = {"errcode": 0, "errmsg": "ok"}


class VirtualTime:
    """Wall-clock seconds that move only when the code under test sleeps: its sleep returns
    at once with the clock moved on by what it asked for."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


@dataclass
class Post:
    vendor: str  # "wecom" | "dingtalk" | "portal"
    robot: str  # the key or access token
    query: dict[str, str]
    body: Any
    at: float  # by the robots' clock
    answer: dict[str, Any]

    @property
    def taken(self) -> bool:
        return self.answer.get("errcode") == 0

    @property
    def content(self) -> str:
        """The words, whatever the message type."""
        for kind in ("text", "markdown"):
            part = self.body.get(kind) if isinstance(self.body, dict) else None
            if isinstance(part, dict):
                return str(part.get("content") or part.get("text") or "")
        return ""


@dataclass
class Robots:
    clock: VirtualTime
    wecom_keys: set[str] = field(default_factory=set)
    dingtalk_secrets: dict[str, str | None] = field(default_factory=dict)
    posts: list[Post] = field(default_factory=list)
    # Called with each post once answered, as a person in the group might act on it.
    after: Callable[[Post], None] | None = None
    url: str = ""
    _silent_until: dict[str, float] = field(default_factory=dict)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/cgi-bin/webhook/send", self._wecom)
        app.router.add_post("/robot/send", self._dingtalk)
        app.router.add_post("/portal/{rest:.*}", self._portal)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def close(self) -> None:
        await self._runner.cleanup()

    def wecom(self, key: str) -> str:
        self.wecom_keys.add(key)
        return f"{self.url}/cgi-bin/webhook/send?key={key}"

    def dingtalk(self, token: str, secret: str | None = None) -> str:
        self.dingtalk_secrets[token] = secret
        return f"{self.url}/robot/send?access_token={token}"

    def at(self, robot: str) -> list[Post]:
        return [post for post in self.posts if post.robot == robot]

    def taken(self, robot: str) -> list[Post]:
        return [post for post in self.at(robot) if post.taken]

    async def flood(self, url: str, count: int, secret: str | None = None) -> None:
        """Another program posts `count` messages to the robot now."""
        async with ClientSession() as session:
            for n in range(count):
                signed = url + (sign_query(secret, self.clock()) if secret else "")
                target = URL(signed, encoded=True)
                body = {"msgtype": "text", "text": {"content": f"别的程序 {n}"}}
                async with session.post(target, json=body) as response:
                    await response.read()

    # -- the vendors ---------------------------------------------------------------------

    async def _wecom(self, request: web.Request) -> web.Response:
        key = request.query.get("key", "")
        body = await body_of(request)
        if key not in self.wecom_keys:
            answer = {"errcode": 93000, "errmsg": "invalid webhook url"}
        else:
            answer = wecom_check(body) or self._paced(key, silence=0.0, code=45009)
        return self._answer("wecom", key, request, body, answer)

    async def _dingtalk(self, request: web.Request) -> web.Response:
        token = request.query.get("access_token", "")
        body = await body_of(request)
        if token not in self.dingtalk_secrets:
            answer = {"errcode": 300001, "errmsg": "token is not exist"}
        else:
            answer = (
                self._signature(request, self.dingtalk_secrets[token])
                or self._silenced(token)
                or dingtalk_check(body)
                or self._paced(token, silence=DINGTALK_SILENCE, code=130101)
            )
        return self._answer("dingtalk", token, request, body, answer)

    async def _portal(self, request: web.Request) -> web.Response:
        body = await body_of(request)
        self.posts.append(Post("portal", "portal", dict(request.query), body, self.clock(), {}))
        page = "<html><body>请先登录本网络</body></html>"
        return web.Response(text=page, content_type="text/html", status=200)

    def _answer(
        self, vendor: str, robot: str, request: web.Request, body: Any, answer: dict[str, Any]
    ) -> web.Response:
        post = Post(vendor, robot, dict(request.query), body, self.clock(), answer)
        self.posts.append(post)
        if self.after is not None:
            self.after(post)
        return web.json_response(answer)

    def _paced(self, robot: str, *, silence: float, code: int) -> dict[str, Any]:
        now = self.clock()
        recent = [p for p in self.taken(robot) if p.at > now - 60]
        if len(recent) < PER_MINUTE:
            return OK
        if silence:
            self._silent_until[robot] = now + silence
        if code == 45009:
            return {"errcode": 45009, "errmsg": "api freq out of limit"}
        return {"errcode": code, "errmsg": "send too fast, exceed 20 times per minute"}

    def _silenced(self, token: str) -> dict[str, Any] | None:
        if self._silent_until.get(token, 0.0) > self.clock():
            return {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
        return None

    def _signature(self, request: web.Request, secret: str | None) -> dict[str, Any] | None:
        if secret is None:
            return None
        timestamp = request.query.get("timestamp", "")
        if not timestamp.isdigit() or abs(int(timestamp) - self.clock() * 1000) > 3600_000:
            return {"errcode": 310000, "errmsg": "invalid timestamp"}
        if request.query.get("sign") != signature(secret, int(timestamp)):
            return {"errcode": 310000, "errmsg": "sign not match"}
        return None


async def body_of(request: web.Request) -> Any:
    try:
        return json.loads(await request.text())
    except ValueError:
        return None


def wecom_check(body: Any) -> dict[str, Any] | None:
    kind = body.get("msgtype") if isinstance(body, dict) else None
    limits = {"text": 2048, "markdown": 4096}
    if kind not in limits:
        return {"errcode": 40008, "errmsg": "invalid message type"}
    content = (body.get(kind) or {}).get("content")
    if not isinstance(content, str) or not content:
        return {"errcode": 44004, "errmsg": "empty content"}
    if len(content.encode()) > limits[kind]:
        return {"errcode": 40058, "errmsg": f"{kind}.content exceed max length {limits[kind]}"}
    return None


def dingtalk_check(body: Any) -> dict[str, Any] | None:
    kind = body.get("msgtype") if isinstance(body, dict) else None
    part = body.get(kind) if kind in ("text", "markdown") else None
    needed = ("content",) if kind == "text" else ("title", "text")
    if not isinstance(part, dict) or not all(part.get(name) for name in needed):
        return {"errcode": 400105, "errmsg": "不支持的消息类型"}
    return None


def signature(secret: str, timestamp_ms: int) -> str:
    """DingTalk's sign, as its docs give it: base64(HMAC-SHA256(secret, "ts\\nsecret"))."""
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


def sign_query(secret: str, now: float) -> str:
    timestamp = int(now * 1000)
    return f"&timestamp={timestamp}&sign={quote_plus(signature(secret, timestamp))}"


def per_minute(posts: list[Post]) -> int:
    """The most posts in any 60 s, as the vendors count them."""
    times = sorted(post.at for post in posts)
    return max((sum(1 for t in times if start <= t < start + 60) for start in times), default=0)
