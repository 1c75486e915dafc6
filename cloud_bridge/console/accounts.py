"""Console accounts: a password per butler (by registry id), one for the community duty
contact (account "duty") and one per street office account (kind STREET_OFFICE). Central-only:
they never enter the registry that gateways get.

Passwords are hashed with scrypt (hashlib.scrypt, N=2^14, r=8, p=1, a random 16-byte salt),
stored as `scrypt$N$r$p$salt$hash` (base64). Setting a password, logging out or disabling
the account ends its earlier sessions: a session cookie is only good if issued after
`sessions_after`, and a disabled account has no good session and cannot log in. Open live
streams read this again every few seconds, so a change made by another process (the CLI, or
another central on the same file) ends them too.
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
DISABLED = "ALTER TABLE accounts ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;"
# Step 3: what an account is for. A butler's (or the duty contact's) sees the console; a street
# office's (`mashang office passwd`) sees the office's view of stalls (cloud_bridge/office).
KINDS = "ALTER TABLE accounts ADD COLUMN kind TEXT NOT NULL DEFAULT 'butler';"
BUTLER = "butler"
STREET_OFFICE = "street_office"


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
        db.migrate("accounts", [SCHEMA, DISABLED, KINDS])

    @property
    def database(self) -> Database:
        return self._db

    def set_password(self, account: str, password: str, kind: str = BUTLER) -> bool:
        """A new password (a new account of `kind`, enabled); a disabled account stays
        disabled. False, nothing changed, when the account exists with another kind: a
        butler's account never becomes a street office's, nor the other way round."""
        now = time.time()
        with self._db.transaction() as db:
            cursor = db.execute(
                "INSERT INTO accounts (id, password, sessions_after, updated_at, kind)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " password = excluded.password, sessions_after = excluded.sessions_after,"
                " updated_at = excluded.updated_at WHERE accounts.kind = excluded.kind",
                (account, hash_password(password), now, now, kind),
            )
        return cursor.rowcount == 1

    def kind(self, account: str) -> str | None:
        """The account's kind (BUTLER or STREET_OFFICE); None when there is no such account."""
        rows = self._db.rows("SELECT kind FROM accounts WHERE id = ?", (account,))
        return rows[0][0] if rows else None

    def check(self, account: str, password: str) -> bool:
        """The right password of an enabled account. A disabled one is checked all the same,
        and answered like a wrong password, so that the answer tells nothing."""
        rows = self._db.rows("SELECT password, disabled FROM accounts WHERE id = ?", (account,))
        if not rows:
            verify_password(password, decoy())
            return False
        stored, disabled = rows[0]
        return verify_password(password, stored) and not disabled

    def sessions_after(self, account: str, kind: str | None = None) -> float | None:
        """When the account's valid sessions begin; None for an account that does not exist,
        is disabled or is not of `kind` (any kind when None)."""
        rows = self._db.rows(
            "SELECT sessions_after FROM accounts WHERE id = ? AND disabled = 0"
            " AND kind = COALESCE(?, kind)",
            (account, kind),
        )
        return rows[0][0] if rows else None

    def end_sessions(self, account: str) -> None:
        with self._db.transaction() as db:
            db.execute(
                "UPDATE accounts SET sessions_after = ? WHERE id = ?", (time.time(), account)
            )

    def set_disabled(self, account: str, disabled: bool) -> bool:
        """Disable (its sessions end) or enable (it may log in again; the sessions it had stay
        ended) an account; False if there is no such account."""
        now, flag = time.time(), int(disabled)  # the column is an integer on both engines
        with self._db.transaction() as db:
            cursor = db.execute(
                "UPDATE accounts SET disabled = ?, updated_at = ?,"
                " sessions_after = CASE WHEN ? = 1 THEN ? ELSE sessions_after END WHERE id = ?",
                (flag, now, flag, now, account),
            )
        return cursor.rowcount == 1
