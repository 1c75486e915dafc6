"""The robots' wire formats and answers, per the vendors' public docs.

Bodies:
- json:     {"event", "target", "escalation", "title", "text", "alert": {…}}
- wecom:    {"msgtype": "markdown", "markdown": {"content"}} (4096 bytes at most), with
  `<@userid>` for each person mentioned by WeCom user id; when someone is to be mentioned by
  phone, {"msgtype": "text", "text": {"content", "mentioned_list", "mentioned_mobile_list"}}
  instead (2048 bytes at most), since only the text message takes phones.
- dingtalk: {"msgtype": "markdown", "markdown": {"title", "text"}, "at": {"atMobiles",
  "isAtAll": false}}, "@phone" written in the text for each phone (DingTalk highlights a
  mention only where the text names it), posted to the URL plus `timestamp` (ms) and `sign` =
  urlencode(base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}"))) when the robot has a
  signing secret (加签).

Answers: both robots answer HTTP 200 with {"errcode": 0} for a message taken; only that is
delivered. A non-zero errcode is one of three things: "too fast" (WeCom 45009: 20 messages a
minute; DingTalk 130101 and 410100: 20 a minute, then the robot is silenced for 10 minutes),
after which the robot is left alone for the vendor's window; permanent (a wrong key or token,
the signature or the robot's security settings, a dissolved group, a refused body), failed at
once; anything else is transient. An HTTP 200 whose body is not such an answer (a captive
portal's page, a wrong host) is transient too, and never delivered. The generic JSON format
has no such answer: any 2xx is delivered. Other statuses are judged by
`mashang.answers.classify`: transient (408, 429, 5xx, any status the contract does not name)
honouring Retry-After, else final.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote_plus

from yarl import URL

from cloud_bridge.config import WebhookFormat
from cloud_bridge.httpkit import is_whole_number
from cloud_bridge.notify.messages import Message, Text, markdown, plain
from mashang.answers import Answer, classify

# Seconds a robot stays silent after answering "too fast", by its errcode.
THROTTLED: dict[WebhookFormat, dict[int, float]] = {
    "wecom": {45009: 60.0},
    "dingtalk": {130101: 600.0, 410100: 600.0},
}
# Answers the same message can never get past: retrying them only spends the robot's quota.
PERMANENT: dict[WebhookFormat, frozenset[int]] = {
    # 93000 invalid webhook url (wrong or deleted key), 40008 invalid message type,
    # 40058 invalid parameter (a body over the limit among them), 44004 empty content.
    "wecom": frozenset({93000, 40008, 40058, 44004}),
    # 300001 token is not exist, 310000 security settings (keywords, sign, IP list),
    # 400013 group dissolved, 400101 no such access_token, 400102 robot stopped,
    # 400105 unsupported message type, 400106 no such robot, 430101-430104 content refused.
    "dingtalk": frozenset(
        {300001, 310000, 400013, 400101, 400102, 400105, 400106, 430101, 430102, 430103, 430104}
    ),
}
VENDOR_NAMES = {"wecom": "WeCom", "dingtalk": "DingTalk"}
# Bytes of content each body takes.
WECOM_MARKDOWN_BYTES = 4096
WECOM_TEXT_BYTES = 2048
DINGTALK_TEXT_BYTES = 5000


@dataclass(frozen=True)
class Mention:
    """A person a robot message is for, as each vendor mentions them."""

    phone: str | None
    wecom_userid: str | None = None


@dataclass(frozen=True)
class Attempt:
    outcome: Literal["delivered", "retry", "throttled", "failed"]
    status: int | None
    error: str | None
    # Retry-After for a transient answer; the vendor's window for a throttled one.
    wait: float | None = None


def fit(text: str, limit: int) -> str:
    """The text cut to `limit` UTF-8 bytes, whole characters only, marked when cut."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - len("…".encode())].decode(errors="ignore") + "…"


def body_for(
    fmt: WebhookFormat, message: Message, text: Text, mentions: Sequence[Mention]
) -> dict[str, Any]:
    """The body for one message (`message` is the only one for "json": nothing is coalesced
    for an unpaced endpoint) in `text`'s words."""
    if fmt == "wecom":
        return wecom_body(text, mentions)
    if fmt == "dingtalk":
        return dingtalk_body(text, mentions)
    return {
        "event": message.event,
        "target": message.target,
        "escalation": message.escalation,
        "title": text.title,
        "text": markdown(text),
        "alert": message.alert,
    }


def wecom_body(text: Text, mentions: Sequence[Mention]) -> dict[str, Any]:
    userids = [m.wecom_userid for m in mentions if m.wecom_userid]
    phones = [m.phone for m in mentions if m.phone and not m.wecom_userid]
    if phones:
        content: dict[str, Any] = {"content": fit(plain(text), WECOM_TEXT_BYTES)}
        if userids:
            content["mentioned_list"] = userids
        content["mentioned_mobile_list"] = phones
        return {"msgtype": "text", "text": content}
    tags = "".join(f"\n<@{userid}>" for userid in userids)
    room = WECOM_MARKDOWN_BYTES - len(tags.encode())
    return {"msgtype": "markdown", "markdown": {"content": fit(markdown(text), room) + tags}}


def dingtalk_body(text: Text, mentions: Sequence[Mention]) -> dict[str, Any]:
    phones = [m.phone for m in mentions if m.phone]
    tags = ("\n\n" + " ".join(f"@{phone}" for phone in phones)) if phones else ""
    room = DINGTALK_TEXT_BYTES - len(tags.encode())
    body: dict[str, Any] = {
        "msgtype": "markdown",
        "markdown": {"title": text.title, "text": fit(markdown(text), room) + tags},
    }
    if phones:
        body["at"] = {"atMobiles": phones, "isAtAll": False}
    return body


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return quote_plus(base64.b64encode(digest))


def url_for(url: str, fmt: WebhookFormat, secret: str | None, now: float) -> URL:
    """The URL to post to at `now`: DingTalk's signature holds the time, so it is made per
    attempt, and sent exactly as encoded here (the HTTP client would otherwise re-encode the
    sign)."""
    target = URL(url)
    if fmt != "dingtalk" or not secret:
        return target
    timestamp = int(now * 1000)
    sign = dingtalk_sign(secret, timestamp)
    joiner = "&" if target.raw_query_string else "?"
    return URL(f"{target}{joiner}timestamp={timestamp}&sign={sign}", encoded=True)


def errcode_of(text: str) -> tuple[int, str] | None:
    """(errcode, errmsg) when the body is a robot's JSON answer, else None."""
    try:
        answer = json.loads(text)
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    errcode = answer.get("errcode")
    if not isinstance(errcode, int) or isinstance(errcode, bool):
        return None
    return errcode, str(answer.get("errmsg", ""))


def judge(fmt: WebhookFormat, status: int, text: str, retry_after: str | None) -> Attempt:
    # isdigit() takes "²", which float() does not: a robot's odd header must not stop its queue.
    wait = float(retry_after) if retry_after and is_whole_number(retry_after) else None
    if 200 <= status < 300:
        if fmt == "json":
            return Attempt("delivered", status, None)
        answer = errcode_of(text)
        if answer is None:
            return Attempt(
                "retry",
                status,
                f"HTTP {status} but not {VENDOR_NAMES[fmt]}'s answer: {text[:120]!r}",
            )
        errcode, errmsg = answer
        if errcode == 0:
            return Attempt("delivered", status, None)
        reason = f"errcode {errcode}: {errmsg}"[:300]
        window = THROTTLED[fmt].get(errcode)
        if window is not None:
            return Attempt("throttled", status, reason, window)
        if errcode in PERMANENT[fmt]:
            return Attempt("failed", status, reason)
        return Attempt("retry", status, reason)
    if classify(status) is Answer.TRANSIENT:
        return Attempt("retry", status, f"HTTP {status}", wait)
    return Attempt("failed", status, f"HTTP {status}: {text[:200]}")
