"""The butler at the door: the household code a console scanned (or the butler typed), checked
the way a gateway checks a scan and the household pages check their token (PROTOCOL §5), and
matched with the call it is to prove an arrival for.

The words are the butler's own, in Chinese: they are shown on the card as the central said them.
"""

from __future__ import annotations

import datetime

from pydantic import BaseModel, Field

from cloud_bridge.alerts.book import Alert
from cloud_bridge.alerts.states import AlertState
from cloud_bridge.stalls.public import check_code
from mashang.codes import MAX_TEXT_LENGTH, CodeRejected, parse_code
from mashang.registry import Registry

# Why a code proves nothing, by the household page's check (`stalls.public.check_code`).
REFUSED = {
    "invalid": "无法识别的门牌码（不是本社区签发的，或没扫完整）",
    "revoked": "这张门牌码已作废",
    "expired": "这张门牌码已过期",
}


class DoorCode(BaseModel):
    """The body of an arrival: the scanned text, a URL `…/H/{token}` or the token alone."""

    code: str = Field(min_length=1, max_length=MAX_TEXT_LENGTH)


class NotProof(Exception):
    """The code does not show the butler at this alert's door: 400 for a code that is no valid
    household code, 409 for a valid one that is not this alert's household."""

    def __init__(self, status: int, words: str) -> None:
        super().__init__(words)
        self.status = status
        self.words = words


def household_of(registry: Registry, text: str, today: datetime.date) -> str:
    """The household a valid household code names; NotProof (400) for anything else."""
    text = text.strip()
    try:
        parsed = parse_code(text)
    except CodeRejected:
        token = text.upper()  # the token alone, as typed or pasted
    else:
        if parsed.kind != "household":
            raise NotProof(400, "这是摊位码，不是住户的门牌码")
        token = parsed.token
    if not token.isascii() or not token.isalnum():
        raise NotProof(400, REFUSED["invalid"])
    checked = check_code(registry, "household", token, today)
    if checked.status != "valid" or checked.subject_id is None:
        raise NotProof(400, REFUSED.get(checked.status, REFUSED["invalid"]))
    return checked.subject_id


def door_of(alert: Alert, household: str) -> None:
    """Nothing, when `household` is the door of this acknowledged call; NotProof (409) saying
    why not. The book asks again in its transaction (a colleague may be quicker)."""
    expected = alert.household
    if expected is None:
        raise NotProof(409, "这次呼叫没有登记门牌码，无法扫码确认到达")
    if household != expected:
        resident = alert.data.get("resident")
        name = resident.get("name") if isinstance(resident, dict) else None
        raise NotProof(409, f"这不是{name or '这位住户'}家的门牌码")
    if alert.state in (AlertState.RAISED, AlertState.NOTIFIED):
        raise NotProof(409, "请先接单，再扫码确认到达")
    if alert.state == AlertState.RESOLVED:
        raise NotProof(409, "这次呼叫已经结束")
