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
from collections.abc import Callable
from dataclasses import dataclass

from cloud_bridge.clients import client_group
from cloud_bridge.config import CentralConfig, ConsoleSection
from cloud_bridge.kept_secrets import kept_secret
from cloud_bridge.receiver.store import Connection, Database

SECRET_FILE = "console.key"
# Tries each client has at an account under attack: one slip of the butler's finger.
UNDER_ATTACK_TRIES = 2

THROTTLE_SCHEMA = """
CREATE TABLE IF NOT EXISTS login_failures (
    account TEXT NOT NULL,
    client TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_by_client ON login_failures (client, at);
CREATE INDEX IF NOT EXISTS login_failures_by_account ON login_failures (account, client, at);
CREATE INDEX IF NOT EXISTS login_failures_by_time ON login_failures (at);
"""


def console_secret(config: CentralConfig, db: Database) -> bytes:
    """The configured secret, else one made on first start and kept as
    `cloud_bridge.kept_secrets` says (beside the SQLite database, or in the PostgreSQL one for
    every process on it), so that sessions survive a restart and hold on every process."""
    if config.console.session_secret is not None:
        return config.console.session_secret.get_secret_value().encode()
    return kept_secret(db, config.central.data_dir, SECRET_FILE,
                       lambda: secrets.token_hex(32)).encode()


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
    """Failed logins slow down where they come from, never the right password from elsewhere.

    Counted in `login_window`: `login_attempts` failures of one account from one client
    (an IPv4 address, an IPv6 /64) and `login_address_attempts` from one client over all
    accounts; past either, that client's logins are refused (429) without a password check
    until the oldest failures age out. An account with `login_account_attempts` failures from
    anywhere is under attack from many clients: each client then gets UNDER_ATTACK_TRIES at
    it, not login_attempts, so guessing on needs a fresh client every try or two, while its
    butler, from a client of their own, still gets in. Nothing ever refuses every client.

    The failures are rows in the central's database, so several central processes on one
    file count them together and a restart forgets none. A login is counted before its
    password is checked (and uncounted if right), so requests sent in parallel cannot all
    slip in under the limit. Rows older than the window are deleted at every attempt, and only
    attempts that reach a password check (each costs a scrypt) write one: the table holds at
    most a window's worth of checks.
    """

    def __init__(
        self, db: Database, settings: ConsoleSection, clock: Callable[[], float] = time.time
    ) -> None:
        db.migrate("login_failures", [THROTTLE_SCHEMA])
        self._db = db
        self._pair = settings.login_attempts
        self._client = settings.login_address_attempts
        self._account = settings.login_account_attempts
        self._window = settings.login_window
        self._clock = clock

    def attempt(self, account: str, address: str) -> float | None:
        """None: check the password, the attempt counted as failed until `succeeded`. Else
        the seconds until this client may try this account again, nothing counted."""
        client, now = client_group(address), self._clock()
        with self._db.transaction() as db:
            db.execute("DELETE FROM login_failures WHERE at <= ?", (now - self._window,))
            (under_attack,) = db.execute(
                "SELECT COUNT(*) >= ? FROM login_failures WHERE account = ?",
                (self._account, account),
            ).fetchone()
            pair = min(self._pair, UNDER_ATTACK_TRIES) if under_attack else self._pair
            waits = [
                wait
                for where, params, limit in (
                    ("client = ?", (client,), self._client),
                    ("account = ? AND client = ?", (account, client), pair),
                )
                if (wait := self._full(db, where, params, limit, now)) is not None
            ]
            if waits:
                return max(waits)
            db.execute(
                "INSERT INTO login_failures (account, client, at) VALUES (?, ?, ?)",
                (account, client, now),
            )
        return None

    def _full(
        self, db: Connection, where: str, params: tuple, limit: int, now: float
    ) -> float | None:
        """Seconds until fewer than `limit` failures match, or None if fewer do now: the
        limit-th newest must age out."""
        row = db.execute(
            f"SELECT at FROM login_failures WHERE {where} ORDER BY at DESC LIMIT 1 OFFSET ?",
            (*params, limit - 1),
        ).fetchone()
        return None if row is None else row[0] + self._window - now

    def succeeded(self, account: str, address: str) -> None:
        """The right password: this client's failures at this account are forgiven (not the
        account's elsewhere, which would let a guesser's count reset by its butler)."""
        with self._db.transaction() as db:
            db.execute(
                "DELETE FROM login_failures WHERE account = ? AND client = ?",
                (account, client_group(address)),
            )
