"""Request signing shared by the gateway and the central (PROTOCOL §3 and §4)."""

from __future__ import annotations

import hashlib
import hmac
import time

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


def check_signature(key: bytes, timestamp: str, body: bytes, claimed: str) -> str | None:
    """None when the request is authentic and fresh, else the reason it is not."""
    try:
        sent = int(timestamp)
    except ValueError:
        return "timestamp is not unix seconds"
    if abs(time.time() - sent) > MAX_SKEW_SECONDS:
        return f"timestamp more than {MAX_SKEW_SECONDS} s away from the central's clock"
    if not hmac.compare_digest(signature(key, timestamp, body), claimed.lower()):
        return "bad signature"
    return None
