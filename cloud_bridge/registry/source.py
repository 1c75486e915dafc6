"""The central's registry, the source of truth: read from the database (`registry.table`),
reread when its version changes (an import, a button PUT, by this process or another one on
the same database), and trimmed before it goes to gateways."""

from __future__ import annotations

import logging
from pathlib import Path

from cloud_bridge.receiver.store import Database
from cloud_bridge.registry.table import RegistryTable
from mashang.registry import Registry

log = logging.getLogger(__name__)


class RegistrySource:
    def __init__(self, db: Database, old_file: Path | None = None) -> None:
        """`old_file`: the `registry.json` of a central from before, imported once."""
        self.table = RegistryTable(db, old_file)
        self._version: int | None = None
        self.current = Registry()
        self.refresh()

    @property
    def exists(self) -> bool:
        return self._version is not None

    def refresh(self) -> bool:
        """Reread the registry if its version changed since the last look; True when it did.
        A look that finds it unchanged is one read of one small column."""
        version = self.table.version()
        if version is None or version == self._version:
            return False
        try:
            self.current = self.table.load()
        except ValueError as exc:  # a newer release's registry: keep serving the last good one
            log.error("the registry in the database is not valid for this release, keeping "
                      "version %s: %s", self.current.version, exc)
            return False
        self._version = self.current.version
        log.info("registry version %s loaded", self.current.version)
        return True

    def for_gateways(self) -> Registry:
        """The registry as gateways get it: without the butlers' webhook URLs, which are
        credentials for group-chat robots that only the central posts to."""
        butlers = [butler.model_copy(update={"webhooks": []}) for butler in self.current.butlers]
        return self.current.model_copy(update={"butlers": butlers})
