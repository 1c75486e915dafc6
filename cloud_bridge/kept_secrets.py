"""The secrets a central makes itself on first start when its configuration sets none: the
command signing key (`commands.signing`) and the console's session secret
(`console.sessions`).

Where one is kept follows who must share it. On SQLite one central process owns the data
folder, so the secret stays where it always was: a file beside the database (mode 0600), which
a backup of the folder carries with the database. On PostgreSQL (`Database.shared`) any number
of processes, on machines of their own, serve the same gateways and butlers: a file per
machine would give each process its own secret, so gateways would refuse the commands signed
by all but one of them and a console session opened on one process would be refused by the
next. The database is the one thing they share, so the secret is kept in it, made by whichever
process comes first under the write transaction, and read by the others. (A configured secret
always wins; a city deployment may prefer that, to keep the secret out of database dumps.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cloud_bridge.receiver.store import Database
from mashang.files import atomic_write

SCHEMA = """
CREATE TABLE IF NOT EXISTS made_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def kept_secret(db: Database, data_dir: Path, name: str, make: Callable[[], str]) -> str:
    """The secret called `name` (its file name on SQLite), made by `make` the first time."""
    path = data_dir / name
    if not db.shared:
        if not path.exists():
            # Whole or not at all: a crash mid-write must not leave half a secret to sign with.
            atomic_write(path, make(), mode=0o600)
        return path.read_text().strip()
    db.migrate("made_secrets", [SCHEMA])
    # A central moved from SQLite to PostgreSQL keeps the secret its gateways already hold.
    first = path.read_text().strip() if path.exists() else make()
    with db.transaction() as connection:
        connection.execute(
            "INSERT INTO made_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            (name, first),
        )
        (value,) = connection.execute(
            "SELECT value FROM made_secrets WHERE name = ?", (name,)
        ).fetchone()
    return value
