"""Signing shared by the gateway and the central: requests (PROTOCOL §3 and §4, polls in the
v1.1 form of §6) and the central's commands (Ed25519, §6)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GATEWAY_HEADER = "X-Mashang-Gateway"
TIMESTAMP_HEADER = "X-Mashang-Timestamp"
SIGNATURE_HEADER = "X-Mashang-Signature"
NONCE_HEADER = "X-Mashang-Nonce"
MAX_SKEW_SECONDS = 300
NONCE_BYTES = 16
COMMAND_SIGNATURE = "sig"  # the command field that holds the central's signature


def signature(key: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(key, timestamp.encode() + b"\n" + body, hashlib.sha256).hexdigest()


def poll_signature(key: bytes, timestamp: str, nonce: str, target: str) -> str:
    """v1.1 (PROTOCOL §6): over the nonce, the method and the path with its query as sent, so
    that a captured poll cannot be played again, nor its query changed."""
    message = f"{timestamp}\n{nonce}\nGET {target}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def signed_poll_headers(gateway_id: str, key: bytes, target: str) -> dict[str, str]:
    """Headers of a command poll of `target` (path and query exactly as sent)."""
    timestamp = str(int(time.time()))
    nonce = secrets.token_hex(NONCE_BYTES)
    return {
        GATEWAY_HEADER: gateway_id,
        TIMESTAMP_HEADER: timestamp,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: poll_signature(key, timestamp, nonce, target),
    }


def signed_headers(gateway_id: str, key: bytes, body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {
        GATEWAY_HEADER: gateway_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(key, timestamp, body),
    }


def check_timestamp(timestamp: str) -> Refusal | None:
    """None when `timestamp` is unix seconds within the window, else why not."""
    try:
        sent = int(timestamp)
    except ValueError:
        return Refusal.BAD_TIMESTAMP
    if abs(time.time() - sent) > MAX_SKEW_SECONDS:
        return Refusal.STALE_TIMESTAMP
    return None


def check_signature(key: bytes, timestamp: str, body: bytes, claimed: str) -> Refusal | None:
    """None when the request is authentic and fresh, else why it is not (`Refusal.text` says
    it in words)."""
    return check_timestamp(timestamp) or _matches(signature(key, timestamp, body), claimed)


def check_poll_signature(
    key: bytes, timestamp: str, nonce: str | None, target: str, claimed: str
) -> Refusal | None:
    """As `check_signature`, for a poll signed the v1.1 way; the nonce's reuse is the
    caller's to check (it needs a memory shared by every process that answers)."""
    if not nonce:
        return Refusal.MISSING_NONCE
    if len(nonce) != 2 * NONCE_BYTES or not _is_hex(nonce):
        return Refusal.BAD_NONCE
    return check_timestamp(timestamp) or _matches(
        poll_signature(key, timestamp, nonce.lower(), target), claimed
    )


def _matches(expected: str, claimed: str) -> Refusal | None:
    # As bytes: compare_digest refuses str with non-ASCII characters, which a header may hold.
    if not hmac.compare_digest(expected.encode(), claimed.lower().encode(errors="replace")):
        return Refusal.BAD_SIGNATURE
    return None


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return text.isascii()


# -- the central's commands (PROTOCOL §6) ------------------------------------------------------

def canonical_command(command: dict[str, Any]) -> bytes:
    """What the central signs: the command without `sig`, keys sorted, no spaces, UTF-8."""
    unsigned = {name: value for name, value in command.items() if name != COMMAND_SIGNATURE}
    return json.dumps(
        unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def sign_command(key: Ed25519PrivateKey, command: dict[str, Any]) -> dict[str, Any]:
    """The command with its `sig`."""
    return {**command, COMMAND_SIGNATURE: key.sign(canonical_command(command)).hex()}


def command_refusal(key: Ed25519PublicKey, command: dict[str, Any]) -> str | None:
    """None when the central signed this command, else why it cannot be trusted."""
    claimed = command.get(COMMAND_SIGNATURE)
    if not isinstance(claimed, str) or not claimed:
        return "no signature (sig)"
    try:
        key.verify(bytes.fromhex(claimed), canonical_command(command))
    except ValueError:
        return "sig is not hex"
    except InvalidSignature:
        return "bad signature: not signed by the central, or changed on the way"
    return None


def public_key_text(key: Ed25519PublicKey) -> str:
    """The form installers copy into the gateway's `central.command_key`."""
    return base64.b64encode(key.public_bytes_raw()).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """The key of `central.command_key`; ValueError says what is wrong with the text."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None
    if len(raw) != 32:
        raise ValueError(f"{len(raw)} bytes, an Ed25519 public key has 32")
    return Ed25519PublicKey.from_public_bytes(raw)


class Refusal(StrEnum):
    """Why the central refused a gateway's signed request: the stable `code` of its 401 answer
    `{"error": refusal.text, "code": refusal}`. Match on the code; the text is for people."""

    MISSING_HEADERS = "missing_headers"
    UNKNOWN_GATEWAY = "unknown_gateway"
    BAD_TIMESTAMP = "bad_timestamp"  # not unix seconds
    STALE_TIMESTAMP = "stale_timestamp"  # more than MAX_SKEW_SECONDS from the central's clock
    BAD_SIGNATURE = "bad_signature"
    REPLAYED = "replayed"  # a signature (or a poll's nonce) the central has already accepted
    MISSING_NONCE = "missing_nonce"  # a poll signed the v1 way
    BAD_NONCE = "bad_nonce"  # not 16 bytes in hex

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
    Refusal.MISSING_NONCE: (
        f"a poll must carry {NONCE_HEADER} and be signed over it, the method, the path and the"
        " query (the v1.1 form of PROTOCOL §6); this central refuses v1 polls"
    ),
    Refusal.BAD_NONCE: f"{NONCE_HEADER} must be {NONCE_BYTES} random bytes in hex",
}
