"""The central's registry in its database: one row holding the current registry document and
its version, so that every central process on one database serves the same registry.

A change (`mashang registry import`, a button PUT over HTTP) reads the current row and writes
the new one in one write transaction, the version one up: two changes at once, from two
processes, each build on the other instead of one losing the other's. Only the current
document is kept: a copy per change would grow with the square of the registry when buttons
are added one at a time (`mashang device add`), and `mashang registry export` is the backup.

A central from before this kept its registry in `{data_dir}/registry.json`: while the table
is empty, that file is imported once, and left as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from cloud_bridge.config import CentralConfig
from cloud_bridge.receiver.engines import open_database
from cloud_bridge.receiver.store import Connection, Database
from mashang.registry import Registry

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS registry (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    document TEXT NOT NULL,
    changed_at REAL NOT NULL
);
"""

_WRITE = (
    "INSERT INTO registry (id, version, document, changed_at) VALUES (1, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET version = excluded.version,"
    " document = excluded.document, changed_at = excluded.changed_at"
)


class RegistryTable:
    def __init__(self, db: Database, old_file: Path | None = None) -> None:
        """`old_file`: the `registry.json` of a central from before, imported once."""
        self._db = db
        db.migrate("registry", [SCHEMA])
        if old_file is not None:
            self._adopt(old_file)

    def version(self) -> int | None:
        """The version in the database, None while it holds no registry: one small read."""
        rows = self._db.rows("SELECT version FROM registry WHERE id = 1")
        return rows[0][0] if rows else None

    def load(self) -> Registry:
        """The current registry (an empty one while there is none); ValueError when the stored
        one is not valid for this release (a newer release's process wrote fields it lacks)."""
        rows = self._db.rows("SELECT document FROM registry WHERE id = 1")
        return Registry.model_validate_json(rows[0][0]) if rows else Registry()

    def change(self, edit: Callable[[Registry], Registry]) -> Registry:
        """Store `edit(current)`, which must be a version above it; whatever `edit` raises
        leaves the registry as it was."""
        with self._db.transaction() as db:
            row = db.execute("SELECT document FROM registry WHERE id = 1").fetchone()
            current = Registry() if row is None else Registry.model_validate_json(row[0])
            updated = edit(current)
            if updated.version <= current.version:
                raise ValueError(f"registry version {updated.version} is not above the current "
                                 f"{current.version}")
            _store(db, updated)
        return updated

    def _adopt(self, path: Path) -> None:
        if self.version() is not None:
            return
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        try:
            registry = Registry.model_validate_json(text)
        except ValueError as exc:  # as before: the central starts with none, and says why
            log.error("registry %s is not valid, not imported into the database: %s", path, exc)
            return
        with self._db.transaction() as db:
            # Two processes starting together: the first one's import stands.
            if db.execute("SELECT 1 FROM registry WHERE id = 1").fetchone() is not None:
                return
            _store(db, registry)
        log.warning("registry version %s imported from %s into the database %s: the file is "
                    "no longer read (kept as it was); change the registry with `mashang "
                    "registry import`", registry.version, path, self._db.shown)


def central_registry(config: CentralConfig) -> Registry:
    """The current registry of the central `config` describes, read from its database (for
    the commands that read it once)."""
    db = open_database(config)
    try:
        return RegistryTable(db, config.registry_path).load()
    finally:
        db.close()


def _store(db: Connection, registry: Registry) -> None:
    db.execute(_WRITE, (registry.version, registry.model_dump_json(), time.time()))
