"""Placard and household codes: the token layout and its offline verification.

A printed QR holds ``{BASE}/S/{token}`` (stall) or ``{BASE}/H/{token}`` (household). The token
is unpadded RFC 4648 base32 of::

    version (1) | key id (1) | subject length (1) | subject id (n <= 32, ASCII)
    | generation (uint16 BE) | expiry day (uint16 BE, days since 2020-01-01)
    | Ed25519 signature (64)

The signature covers the kind letter (``S`` or ``H``) followed by every byte before it, so
that a stall token pasted behind ``/H/`` cannot pass as a household code of the same id.

This module is shared by the gateway (which verifies) and the issuer (which signs), so the
layout is defined once. It does no I/O.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import json
import logging
import re
import struct
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = logging.getLogger(__name__)

Kind = Literal["stall", "household"]
Reason = Literal[
    "too_long",
    "non_ascii",
    "foreign",
    "malformed",
    "unknown_key",
    "bad_signature",
    "expired",
    "revoked",
    "denied",
]
REASONS: tuple[Reason, ...] = get_args(Reason)

TOKEN_VERSION = 1
EPOCH = datetime.date(2020, 1, 1)
MAX_TEXT_LENGTH = 512
MAX_SUBJECT_LENGTH = 32
SIGNATURE_LENGTH = 64
PUBLIC_KEY_LENGTH = 32

_KIND_LETTERS: dict[Kind, str] = {"stall": "S", "household": "H"}
_LETTER_KINDS: dict[str, Kind] = {letter: kind for kind, letter in _KIND_LETTERS.items()}
# Domain separation: these keys sign nothing else, but a prefix makes that impossible to
# break by accident later.
_SIGNING_CONTEXT = b"mashang-code/"
_HEADER = struct.Struct(">BBB")  # version, key id, subject length
_TRAILER = struct.Struct(">HH")  # generation, expiry day
_FIXED_LENGTH = _HEADER.size + _TRAILER.size + SIGNATURE_LENGTH
# Subject ids end up in file names and log lines, so keep them to a safe alphabet.
_SUBJECT_RE = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_SUBJECT_LENGTH}}}")
# Any scheme and host are accepted: the base is the central's public address, which the
# gateway does not need to know. Only the last two path segments carry meaning.
_URL_RE = re.compile(
    r"(?P<base>[a-z][a-z0-9+.-]*://[^/?#\s]+(?:/[^?#\s]*?)?)"
    r"/(?P<letter>[SH])/(?P<token>[^/?#\s]+)",
    re.IGNORECASE,
)
_BASE32_RE = re.compile(r"[A-Z2-7]+")
_BASE32_AS_DIGITS = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789abcdefghijklmnopqrstuv"
)
# Unpadded base32 lengths that RFC 4648 can produce (len % 8).
_BASE32_REMAINDERS = frozenset({0, 2, 4, 5, 7})


class CodeRejected(Exception):
    """A scanned text is not a valid code here and now; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason)
        self.reason: Reason = reason


@dataclass(frozen=True)
class ParsedCode:
    kind: Kind
    base: str
    token: str  # uppercased; not yet checked to be base32


@dataclass(frozen=True)
class TokenFields:
    key_id: int
    subject_id: str
    generation: int
    expires: datetime.date
    body: bytes  # every byte before the signature
    signature: bytes


@dataclass(frozen=True)
class VerifiedCode:
    kind: Kind
    subject_id: str
    generation: int
    expires: datetime.date
    key_id: int
    token: str  # canonical form, the one a deny list names


MinGeneration = Callable[[str, str], int] | Mapping[tuple[str, str], int]


def parse_code(text: str) -> ParsedCode:
    """Split ``{BASE}/S/{token}`` or ``{BASE}/H/{token}``; only cheap string checks."""
    if len(text) > MAX_TEXT_LENGTH:
        raise CodeRejected("too_long")
    if not text.isascii():
        raise CodeRejected("non_ascii")
    match = _URL_RE.fullmatch(text.strip())
    if match is None:
        raise CodeRejected("foreign")
    return ParsedCode(
        kind=_LETTER_KINDS[match["letter"].upper()],
        base=match["base"],
        token=match["token"].upper(),
    )


def decode_token(token: str) -> TokenFields:
    """Unpack a token's bytes without checking its signature; raises ``malformed``."""
    raw = _base32_decode(token)
    if len(raw) < _FIXED_LENGTH + 1:
        raise CodeRejected("malformed")
    version, key_id, subject_length = _HEADER.unpack_from(raw)
    if version != TOKEN_VERSION or len(raw) != _FIXED_LENGTH + subject_length:
        raise CodeRejected("malformed")
    subject_end = _HEADER.size + subject_length
    subject_id = raw[_HEADER.size : subject_end].decode("ascii", errors="replace")
    if not _SUBJECT_RE.fullmatch(subject_id):
        raise CodeRejected("malformed")
    generation, expiry_day = _TRAILER.unpack_from(raw, subject_end)
    body_end = subject_end + _TRAILER.size
    return TokenFields(
        key_id=key_id,
        subject_id=subject_id,
        generation=generation,
        expires=EPOCH + datetime.timedelta(days=expiry_day),
        body=raw[:body_end],
        signature=raw[body_end:],
    )


def verify_code(
    text: str,
    keys: Mapping[int, bytes],
    *,
    today: datetime.date,
    min_generation: MinGeneration,
    denied: Collection[str],
) -> VerifiedCode:
    """Verify a scanned text offline, or raise ``CodeRejected``.

    Checks run cheapest first, and the signature is checked only on a well-formed token with
    a known key. Reasons about the subject (denied, revoked, expired) are given only for
    authentic codes, so a forgery is always reported as a forgery.

    ``min_generation`` is ``f(kind, subject_id)`` or a mapping keyed by ``(kind, subject_id)``
    (missing means 0). ``denied`` may name a canonical token, a subject id, or
    ``"kind:subject_id"``.
    """
    parsed = parse_code(text)
    fields = decode_token(parsed.token)
    raw_key = keys.get(fields.key_id)
    if raw_key is None:
        raise CodeRejected("unknown_key")
    try:
        _public_key(bytes(raw_key)).verify(
            fields.signature, signing_payload(parsed.kind, fields.body)
        )
    except InvalidSignature:
        raise CodeRejected("bad_signature") from None
    if _is_denied(parsed.kind, fields.subject_id, parsed.token, denied):
        raise CodeRejected("denied")
    if fields.generation < _minimum(min_generation, parsed.kind, fields.subject_id):
        raise CodeRejected("revoked")
    if today > fields.expires:
        raise CodeRejected("expired")
    return VerifiedCode(
        kind=parsed.kind,
        subject_id=fields.subject_id,
        generation=fields.generation,
        expires=fields.expires,
        key_id=fields.key_id,
        token=parsed.token,
    )


def token_body(*, key_id: int, subject_id: str, generation: int, expires: datetime.date) -> bytes:
    """The token's bytes before the signature; raises ``ValueError`` on out-of-range fields."""
    if not 0 <= key_id <= 0xFF:
        raise ValueError(f"key id {key_id} is outside 0-255")
    if not _SUBJECT_RE.fullmatch(subject_id):
        raise ValueError(
            f"subject id {subject_id!r} must be 1-{MAX_SUBJECT_LENGTH} of A-Z a-z 0-9 . _ -"
        )
    if not 0 <= generation <= 0xFFFF:
        raise ValueError(f"generation {generation} is outside 0-65535")
    expiry_day = (expires - EPOCH).days
    if not 0 <= expiry_day <= 0xFFFF:
        raise ValueError(f"expiry {expires} is outside {EPOCH} + 65535 days")
    subject = subject_id.encode("ascii")
    return (
        _HEADER.pack(TOKEN_VERSION, key_id, len(subject))
        + subject
        + _TRAILER.pack(generation, expiry_day)
    )


def signing_payload(kind: Kind, body: bytes) -> bytes:
    """The exact bytes an issuer signs and a gateway verifies for a token body."""
    return _SIGNING_CONTEXT + _KIND_LETTERS[kind].encode("ascii") + body


def encode_token(body: bytes, signature: bytes) -> str:
    if len(signature) != SIGNATURE_LENGTH:
        raise ValueError(f"signature must be {SIGNATURE_LENGTH} bytes")
    return base64.b32encode(body + signature).decode("ascii").rstrip("=")


def code_url(base: str, kind: Kind, token: str) -> str:
    """The text to put in the QR: all uppercase, so the QR can use alphanumeric mode."""
    return f"{base.rstrip('/')}/{_KIND_LETTERS[kind]}/{token}".upper()


def parse_keyring(text: str) -> dict[int, bytes]:
    """Read ``{"keys": {"<key id>": "<base64 raw Ed25519 public key>"}}``."""
    document = json.loads(text)
    keys: dict[int, bytes] = {}
    for key_id, encoded in document["keys"].items():
        raw = base64.b64decode(encoded, validate=True)
        if len(raw) != PUBLIC_KEY_LENGTH or not 0 <= int(key_id) <= 0xFF:
            raise ValueError(f"keyring entry {key_id!r} is not a 32-byte key with id 0-255")
        keys[int(key_id)] = raw
    return keys


def dump_keyring(keys: Mapping[int, bytes]) -> str:
    entries = {
        str(key_id): base64.b64encode(keys[key_id]).decode("ascii") for key_id in sorted(keys)
    }
    return json.dumps({"keys": entries}, indent=2) + "\n"


def _base32_decode(token: str) -> bytes:
    if len(token) % 8 not in _BASE32_REMAINDERS or not _BASE32_RE.fullmatch(token):
        raise CodeRejected("malformed")
    # int() reads base 32 in C, several times faster than the pure-Python base64.b32decode,
    # and base32 is a big-endian bit string, so the whole token is one integer.
    value = int(token.translate(_BASE32_AS_DIGITS), 32)
    unused_bits = len(token) * 5 % 8
    # Non-zero unused bits in the last character would let several texts decode to the same
    # token and slip past a deny list that names the token.
    if value & ((1 << unused_bits) - 1):
        raise CodeRejected("malformed")
    return (value >> unused_bits).to_bytes(len(token) * 5 // 8, "big")


@functools.lru_cache(maxsize=256)
def _public_key(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def _is_denied(kind: Kind, subject_id: str, token: str, denied: Collection[str]) -> bool:
    return subject_id in denied or f"{kind}:{subject_id}" in denied or token in denied


def _minimum(min_generation: MinGeneration, kind: Kind, subject_id: str) -> int:
    if isinstance(min_generation, Mapping):
        return min_generation.get((kind, subject_id), 0)
    return min_generation(kind, subject_id)


def public_keys(code_keys: Mapping[int, str]) -> dict[int, bytes]:
    """A registry's `code_keys` (base64 of the raw Ed25519 keys) as the verifier takes them."""
    keys = {}
    for key_id, encoded in code_keys.items():
        try:
            keys[int(key_id)] = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            log.error("registry key %s is not base64; codes signed with it will be refused", key_id)
    return keys
