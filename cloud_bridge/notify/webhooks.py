"""Webhooks to butlers, the duty contact and the street office: generic JSON, the WeCom group
robot (企业微信群机器人) and the DingTalk robot (钉钉自定义机器人), retried with backoff, each
attempt a row of `deliveries`.

Where a target's webhooks come from:
- `[[webhooks]]` entries whose `to` names the target ("butler:ID", "duty", "inspection");
- for "butler:ID", the URLs in that butler's registry entry (`Butler.webhooks`). Such a URL
  uses the format (and DingTalk secret) of the `[[webhooks]]` entry with the same `url`, else
  the format its host is known for (qyapi.weixin.qq.com: WeCom; oapi.dingtalk.com:
  DingTalk), else generic JSON.

Bodies, per the vendors' public robot formats:
- json:     {"event", "target", "escalation", "title", "text", "alert": {…}}
- wecom:    {"msgtype": "markdown", "markdown": {"content": text}}
- dingtalk: {"msgtype": "markdown", "markdown": {"title": title, "text": text}}, posted to the
  URL plus `timestamp` (ms) and `sign` = urlencode(base64(HMAC-SHA256(secret,
  f"{timestamp}\\n{secret}"))) when the robot has a signing secret (加签).

Both vendors answer HTTP 200 with {"errcode": 0} on success and a non-zero errcode otherwise
(rate limits among them): a non-zero errcode is retried like a 5xx. Statuses are judged by
`mashang.answers.classify`: a transient answer (408, 429, 5xx, and any status the contract does
not name, 404 and 425 among them), a timeout or a refused connection is retried, honouring
Retry-After; a refused one (400, 413, 422) or an unauthorized one (401, 403) is final.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote_plus, urlsplit, urlunsplit

import aiohttp
from pydantic import AnyHttpUrl, ValidationError
from yarl import URL

from cloud_bridge.alerts.book import Alert
from cloud_bridge.alerts.states import Page
from cloud_bridge.config import CentralConfig, WebhookFormat, guess_format
from cloud_bridge.receiver.store import Database
from cloud_bridge.registry.source import RegistrySource
from mashang.answers import Answer, classify

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alert TEXT NOT NULL,
    target TEXT NOT NULL,
    url TEXT NOT NULL,
    format TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status INTEGER,
    outcome TEXT NOT NULL,
    error TEXT,
    retry_in REAL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_by_alert ON deliveries (alert, seq);
"""

CATEGORY_WORDS = {
    "help": "一键呼叫",
    "offline": "按钮离线",
    "battery": "按钮电量低",
    "stall": "摊位违规",
    "gap": "可能漏了一次呼叫：请打电话问候住户",
    "gateway": "网关故障",
}
PRIORITY_WORDS = {"critical": "危急", "high": "紧急", "normal": "提醒", "low": "低"}
ACTION_WORDS = {"single": "单击", "double": "双击", "long": "长按"}
OFFLINE_WORDS = {"last_will": "连接中断", "silent": "长时间没有消息"}


@dataclass(frozen=True)
class Endpoint:
    url: str
    format: WebhookFormat
    secret: str | None = None

    @property
    def shown(self) -> str:
        """The URL without its query: robot keys and tokens travel there, and must not be
        copied into the deliveries table or logs."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


@dataclass(frozen=True)
class Message:
    event: Page
    target: str
    escalation: int
    title: str
    text: str
    alert: dict[str, Any]


@dataclass(frozen=True)
class Attempt:
    outcome: str  # "delivered" | "retry" | "failed"
    status: int | None
    error: str | None
    retry_after: float | None = None


def render(alert: Alert, event: Page, target: str, console_url: str | None) -> Message:
    """The message a person reads: who, where, how urgent (Chinese, as butlers use it)."""
    data = alert.data
    resident = data.get("resident") if isinstance(data.get("resident"), dict) else {}
    building = data.get("building") if isinstance(data.get("building"), dict) else {}
    who = resident.get("name") or f"未登记的设备 {alert.device_id}"
    where = " ".join(
        str(part) for part in (building.get("name") or alert.building, resident.get("room")) if part
    )
    label = CATEGORY_WORDS.get(alert.category, alert.type)
    title = f"【{label}】{who}" + (f" · {where}" if where else "")
    lines = [f"### {title}", f"- 优先级: {PRIORITY_WORDS.get(alert.priority, alert.priority)}"]
    if resident.get("phone"):
        lines.append(f"- 电话: {resident['phone']}")
    if alert.category == "help":
        action = ACTION_WORDS.get(str(data.get("action")))
        lines.append(f"- 按键: {action + ' ' if action else ''}共 {alert.presses} 次")
    if data.get("reason") in OFFLINE_WORDS:
        lines.append(f"- 原因: {OFFLINE_WORDS[data['reason']]}")
    if isinstance(data.get("battery"), int | float):
        lines.append(f"- 电量: {data['battery']}%")
    lines.append(f"- 时间: {datetime.fromtimestamp(alert.raised_at).strftime('%m-%d %H:%M:%S')}")
    if event == Page.PRIORITY:
        lines.append("- **优先级升高**")
    if event == Page.ESCALATED:
        lines.append(f"- **无人确认，第 {alert.escalations} 次升级**")
    if console_url:
        lines.append(f"\n[打开管家控制台]({console_url.rstrip('/')}/console/)")
    view = {
        key: getattr(alert, key)
        for key in ("id", "type", "category", "priority", "state", "device_id", "building")
    }
    view |= {"presses": alert.presses, "raised_at": alert.raised_at, "data": data}
    return Message(event, target, alert.escalations, title, "\n".join(lines), view)


def body_for(endpoint: Endpoint, message: Message) -> dict[str, Any]:
    if endpoint.format == "wecom":
        return {"msgtype": "markdown", "markdown": {"content": message.text}}
    if endpoint.format == "dingtalk":
        return {"msgtype": "markdown", "markdown": {"title": message.title, "text": message.text}}
    return {
        "event": message.event,
        "target": message.target,
        "escalation": message.escalation,
        "title": message.title,
        "text": message.text,
        "alert": message.alert,
    }


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return quote_plus(base64.b64encode(digest))


def url_for(endpoint: Endpoint) -> URL:
    """The URL to post to now: DingTalk's signature holds the time, so it is made per attempt,
    and sent exactly as encoded here (the HTTP client would otherwise re-encode the sign)."""
    url = URL(endpoint.url)
    if endpoint.format != "dingtalk" or not endpoint.secret:
        return url
    timestamp = int(time.time() * 1000)
    sign = dingtalk_sign(endpoint.secret, timestamp)
    joiner = "&" if url.raw_query_string else "?"
    return URL(f"{url}{joiner}timestamp={timestamp}&sign={sign}", encoded=True)


def judge(endpoint: Endpoint, status: int, text: str, retry_after: str | None) -> Attempt:
    wait = float(retry_after) if retry_after and retry_after.isdigit() else None
    if 200 <= status < 300:
        if endpoint.format == "json":
            return Attempt("delivered", status, None)
        try:
            answer = json.loads(text)
        except ValueError:
            answer = {}
        errcode = answer.get("errcode", 0) if isinstance(answer, dict) else 0
        if errcode == 0:
            return Attempt("delivered", status, None)
        return Attempt("retry", status, f"errcode {errcode}: {answer.get('errmsg', '')}"[:300])
    if classify(status) is Answer.TRANSIENT:
        return Attempt("retry", status, f"HTTP {status}", wait)
    return Attempt("failed", status, f"HTTP {status}: {text[:200]}")


def normalized(url: str) -> str:
    """A URL as the config's entries hold theirs, so that the same address matches."""
    try:
        return str(AnyHttpUrl(url))
    except ValidationError:
        return url


class Notifier:
    def __init__(self, db: Database, config: CentralConfig, registry: RegistrySource) -> None:
        self._db = db
        self._config = config
        self._registry = registry
        self._session: aiohttp.ClientSession | None = None
        db.schema(SCHEMA)

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._config.notify.timeout)
        self._session = aiohttp.ClientSession(timeout=timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def console_url(self) -> str | None:
        url = self._config.console.public_url
        return str(url) if url else None

    def endpoints(self, target: str) -> list[Endpoint]:
        entries = self._config.webhooks
        found = [
            Endpoint(
                str(entry.url),
                entry.resolved_format(),
                entry.secret.get_secret_value() if entry.secret else None,
            )
            for entry in entries
            if target in entry.to
        ]
        kind, _, butler_id = target.partition(":")
        butler = self._registry.current.butler(butler_id) if kind == "butler" else None
        described = {str(entry.url): entry for entry in entries}
        for url in butler.webhooks if butler else []:
            entry = described.get(normalized(url))
            if entry is None:
                found.append(Endpoint(url, guess_format(url)))
            else:
                secret = entry.secret.get_secret_value() if entry.secret else None
                found.append(Endpoint(url, entry.resolved_format(), secret))
        unique = {endpoint.url: endpoint for endpoint in found}
        return list(unique.values())

    async def deliver(self, alert_id: str, endpoint: Endpoint, message: Message) -> bool:
        """Post until the endpoint takes the message or the attempts run out."""
        settings = self._config.notify
        body = json.dumps(body_for(endpoint, message), ensure_ascii=False).encode()
        for attempt in range(1, settings.attempts + 1):
            result = await self._post(endpoint, body)
            final = result.outcome != "retry" or attempt == settings.attempts
            outcome = "failed" if result.outcome == "retry" and final else result.outcome
            delay = None if final else self._backoff(attempt, result.retry_after)
            await asyncio.to_thread(
                self._record, alert_id, message.target, endpoint, attempt, result, outcome, delay
            )
            if final:
                if outcome != "delivered":
                    log.warning(
                        "webhook %s for alert %s: %s after %d attempts",
                        endpoint.shown,
                        alert_id,
                        result.error,
                        attempt,
                    )
                return outcome == "delivered"
            await asyncio.sleep(delay or 0)
        return False

    async def _post(self, endpoint: Endpoint, body: bytes) -> Attempt:
        assert self._session is not None, "Notifier.start() first"
        try:
            async with self._session.post(
                url_for(endpoint),
                data=body,
                headers={"Content-Type": "application/json; charset=utf-8"},
            ) as response:
                text = await response.text(errors="replace")
                return judge(endpoint, response.status, text, response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Attempt("retry", None, f"{type(exc).__name__}: {exc}"[:300])

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        settings = self._config.notify
        base = min(settings.backoff_max, settings.backoff_min * 2 ** (attempt - 1))
        # Jitter in [base/2, base]: robots of one community do not all retry in step, and each
        # wait is still at least the one before it.
        delay = base * random.uniform(0.5, 1.0)
        if retry_after is not None:
            delay = max(delay, min(retry_after, settings.backoff_max))
        return round(delay, 3)

    def _record(
        self,
        alert_id: str,
        target: str,
        endpoint: Endpoint,
        attempt: int,
        result: Attempt,
        outcome: str,
        retry_in: float | None,
    ) -> None:
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO deliveries (alert, target, url, format, attempt, status, outcome,"
                " error, retry_in, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    alert_id,
                    target,
                    endpoint.shown,
                    endpoint.format,
                    attempt,
                    result.status,
                    outcome,
                    result.error,
                    retry_in,
                    time.time(),
                ),
            )

    def deliveries(self, alert_id: str) -> list[dict[str, Any]]:
        names = (
            "target",
            "url",
            "format",
            "attempt",
            "status",
            "outcome",
            "error",
            "retry_in",
            "at",
        )
        rows = self._db.rows(
            f"SELECT {', '.join(names)} FROM deliveries WHERE alert = ? ORDER BY seq", (alert_id,)
        )
        return [dict(zip(names, row, strict=True)) for row in rows]
