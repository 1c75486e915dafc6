"""The central's registry, the source of truth: read from `{data_dir}/registry.json`, reread
when `mashang registry import` replaces that file, and trimmed before it goes to gateways."""

from __future__ import annotations

import logging
from pathlib import Path

from cloud_bridge.registry.file import RegistryFile
from mashang.registry import Registry

log = logging.getLogger(__name__)


class RegistrySource:
    def __init__(self, path: Path) -> None:
        self._store = RegistryFile(path)
        self._stamp: tuple[int, int] | None = None
        self.current = Registry()
        self.refresh()

    @property
    def exists(self) -> bool:
        return self._stamp is not None

    def refresh(self) -> bool:
        """Reread the file if it changed since the last look; True when it did.

        The import writes by atomic rename, so a changed (mtime, inode) pair means a whole new
        file, never a half-written one.
        """
        try:
            info = self._store.path.stat()
        except FileNotFoundError:
            return False
        stamp = (info.st_mtime_ns, info.st_ino)
        if stamp == self._stamp:
            return False
        try:
            self.current = self._store.load()
        except ValueError as exc:  # a hand-edited file gone wrong: keep serving the last good one
            log.error(
                "registry %s is not valid, keeping version %s: %s",
                self._store.path,
                self.current.version,
                exc,
            )
            return False
        self._stamp = stamp
        log.info("registry version %s loaded", self.current.version)
        return True

    def for_gateways(self) -> Registry:
        """The registry as gateways get it: without the butlers' webhook URLs, which are
        credentials for group-chat robots that only the central posts to."""
        butlers = [butler.model_copy(update={"webhooks": []}) for butler in self.current.butlers]
        return self.current.model_copy(update={"butlers": butlers})
