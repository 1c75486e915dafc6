"""Console accounts: a password per butler (by registry id) and one for the community duty
contact (account "duty"). Central-only: they never enter the registry that gateways get.

Passwords are hashed with scrypt (hashlib.scrypt, N=2^14, r=8, p=1, a random 16-byte salt),
stored as `scrypt$N$r$p$salt$hash` (base64). Setting a password, or logging out, ends the
account's earlier sessions: a session cookie is only good if issued after `sessions_after`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import time

from cloud_bridge.receiver.store import Database

DUTY_ACCOUNT = "duty"
MIN_PASSWORD = 8
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2**14, 8, 1, 32

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    password TEXT NOT NULL,
    sessions_after REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_LEN
    )
    encode = base64.b64encode
    return (
        f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encode(salt).decode()}${encode(digest).decode()}"
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return scheme == "scrypt" and hmac.compare_digest(actual, expected)


@functools.cache
def decoy() -> str:
    """Checked against when the account does not exist, so that a wrong name costs as long as
    a wrong password and the answer's timing does not tell which accounts exist."""
    return hash_password(os.urandom(16).hex())


class AccountStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.schema(SCHEMA)

    def set_password(self, account: str, password: str) -> None:
        now = time.time()
        with self._db.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO accounts (id, password, sessions_after, updated_at)"
                " VALUES (?, ?, ?, ?)",
                (account, hash_password(password), now, now),
            )

    def check(self, account: str, password: str) -> bool:
        rows = self._db.rows("SELECT password FROM accounts WHERE id = ?", (account,))
        if not rows:
            verify_password(password, decoy())
            return False
        return verify_password(password, rows[0][0])

    def sessions_after(self, account: str) -> float | None:
        """When the account's valid sessions begin; None for an account that does not exist."""
        rows = self._db.rows("SELECT sessions_after FROM accounts WHERE id = ?", (account,))
        return rows[0][0] if rows else None

    def end_sessions(self, account: str) -> None:
        with self._db.transaction() as db:
            db.execute(
                "UPDATE accounts SET sessions_after = ? WHERE id = ?", (time.time(), account)
            )
