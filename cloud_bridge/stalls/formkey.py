"""The stall form's key: proof that a post comes from the stall's own page, not another site.

It is the community's day signed with a secret kept in the data dir, so a page opened before
a restart still posts after it, and a page left open in the evening still posts after
midnight (yesterday's key is taken until GRACE_UNTIL). Nothing is stored per form.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from typing import Literal

# A night market trades past midnight: a page opened then posts until 04:00.
GRACE_UNTIL = datetime.time(4, 0)
_SHAPE = re.compile(r"(\d{4}-\d{2}-\d{2})\.([0-9a-f]{64})", re.ASCII)

Verdict = Literal["ok", "malformed", "forged", "stale"]


class FormKeys:
    def __init__(self, secret: bytes) -> None:
        # A key of its own: the secret also signs console sessions, which must not verify here.
        self._key = hmac.new(secret, b"mashang stall form key", hashlib.sha256).digest()

    def issue(self, stall_id: str, now: datetime.datetime) -> str:
        day = now.date().isoformat()
        return f"{day}.{self._mac(stall_id, day)}"

    def check(self, stall_id: str, key: str, now: datetime.datetime) -> Verdict:
        """`now` is the community's local time."""
        shape = _SHAPE.fullmatch(key)
        if shape is None:
            return "malformed"
        day_text, mac = shape.groups()
        if not hmac.compare_digest(mac, self._mac(stall_id, day_text)):
            return "forged"
        day = datetime.date.fromisoformat(day_text)  # it is signed, hence one we wrote
        today = now.date()
        if day == today or (day == today - datetime.timedelta(days=1)
                            and now.time() < GRACE_UNTIL):
            return "ok"
        return "stale"

    def _mac(self, stall_id: str, day: str) -> str:
        return hmac.new(self._key, f"{stall_id}\n{day}".encode(), hashlib.sha256).hexdigest()
