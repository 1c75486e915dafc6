"""Console sessions and login throttling.

A session is a cookie holding {account, issued, expires, nonce} and an HMAC-SHA256 of it under
the console secret: nothing is stored per session, and a cookie cannot be forged or stretched.
The CSRF token of a session is an HMAC of its nonce; every action must send it back in a header,
which a page of another site cannot read or set.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

from cloud_bridge.config import CentralConfig
from mashang.files import atomic_write

SECRET_FILE = "console.key"


def console_secret(config: CentralConfig) -> bytes:
    """The configured secret, else one made on first start and kept beside the database, so
    that sessions survive a restart."""
    if config.console.session_secret is not None:
        return config.console.session_secret.get_secret_value().encode()
    path: Path = config.central.data_dir / SECRET_FILE
    if not path.exists():
        # Whole or not at all: a crash mid-write must not leave an empty secret to sign with.
        atomic_write(path, secrets.token_hex(32), mode=0o600)
    return path.read_text().strip().encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    account: str
    issued: float
    expires: float
    nonce: str


class SessionSigner:
    def __init__(self, secret: bytes, ttl: float) -> None:
        self._secret = secret
        self.ttl = ttl

    def _mac(self, purpose: str, payload: bytes) -> bytes:
        return hmac.new(self._secret, purpose.encode() + b"\n" + payload, hashlib.sha256).digest()

    def issue(self, account: str) -> tuple[str, Session]:
        now = time.time()
        session = Session(account, now, now + self.ttl, secrets.token_urlsafe(16))
        payload = json.dumps(session.__dict__, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._mac('session', payload))}", session

    def read(self, cookie: str | None) -> Session | None:
        """The session in a cookie if it is genuine and not expired, else None."""
        if not cookie or "." not in cookie:
            return None
        payload_text, _, mac_text = cookie.partition(".")
        try:
            payload, mac = _unb64(payload_text), _unb64(mac_text)
            if not hmac.compare_digest(mac, self._mac("session", payload)):
                return None
            session = Session(**json.loads(payload))
        except (ValueError, TypeError):
            return None
        return session if session.expires > time.time() else None

    def csrf_token(self, session: Session) -> str:
        return _b64(self._mac("csrf", session.nonce.encode()))

    def csrf_ok(self, session: Session, offered: str | None) -> bool:
        return bool(offered) and hmac.compare_digest(
            offered.encode(), self.csrf_token(session).encode()
        )


class LoginLimiter:
    """At most `attempts` failed logins per account and per client address in a sliding
    `window`; past that, logins are refused without checking the password."""

    def __init__(self, attempts: int, window: float) -> None:
        self._attempts = attempts
        self._window = window
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures[key]
        while failures and now - failures[0] > self._window:
            failures.popleft()
        if not failures:
            del self._failures[key]  # keep the table the size of the current attackers
            return deque()
        return failures

    def retry_after(self, account: str, address: str) -> float | None:
        """Seconds until a login may be tried again, or None if it may be tried now."""
        now = time.time()
        waits = [
            failures[0] + self._window - now
            for failures in (self._recent(f"a:{account}", now), self._recent(f"c:{address}", now))
            if len(failures) >= self._attempts
        ]
        return max(waits) if waits else None

    def failed(self, account: str, address: str) -> None:
        now = time.time()
        for key in (f"a:{account}", f"c:{address}"):
            self._failures[key].append(now)

    def succeeded(self, account: str) -> None:
        self._failures.pop(f"a:{account}", None)
