"""Request signing shared by the gateway and the central (PROTOCOL §3 and §4)."""

from __future__ import annotations

import hashlib
import hmac
import time
from enum import StrEnum

GATEWAY_HEADER = "X-Mashang-Gateway"
TIMESTAMP_HEADER = "X-Mashang-Timestamp"
SIGNATURE_HEADER = "X-Mashang-Signature"
MAX_SKEW_SECONDS = 300


def signature(key: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(key, timestamp.encode() + b"\n" + body, hashlib.sha256).hexdigest()


def signed_headers(gateway_id: str, key: bytes, body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {
        GATEWAY_HEADER: gateway_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(key, timestamp, body),
    }


def check_signature(key: bytes, timestamp: str, body: bytes, claimed: str) -> Refusal | None:
    """None when the request is authentic and fresh, else why it is not (`Refusal.text` says
    it in words)."""
    try:
        sent = int(timestamp)
    except ValueError:
        return Refusal.BAD_TIMESTAMP
    if abs(time.time() - sent) > MAX_SKEW_SECONDS:
        return Refusal.STALE_TIMESTAMP
    if not hmac.compare_digest(signature(key, timestamp, body), claimed.lower()):
        return Refusal.BAD_SIGNATURE
    return None


class Refusal(StrEnum):
    """Why the central refused a gateway's signed request: the stable `code` of its 401 answer
    `{"error": refusal.text, "code": refusal}`. Match on the code; the text is for people."""

    MISSING_HEADERS = "missing_headers"
    UNKNOWN_GATEWAY = "unknown_gateway"
    BAD_TIMESTAMP = "bad_timestamp"  # not unix seconds
    STALE_TIMESTAMP = "stale_timestamp"  # more than MAX_SKEW_SECONDS from the central's clock
    BAD_SIGNATURE = "bad_signature"
    REPLAYED = "replayed"  # a signature the central has already accepted once

    @property
    def text(self) -> str:
        """The words of the answer's `error`."""
        return _REFUSAL_TEXTS[self]


_REFUSAL_TEXTS = {
    Refusal.MISSING_HEADERS: "missing signature headers",
    Refusal.UNKNOWN_GATEWAY: "unknown gateway",
    Refusal.BAD_TIMESTAMP: "timestamp is not unix seconds",
    Refusal.STALE_TIMESTAMP: (
        f"timestamp more than {MAX_SKEW_SECONDS} s away from the central's clock"
    ),
    Refusal.BAD_SIGNATURE: "bad signature",
    Refusal.REPLAYED: "replayed request",
}
