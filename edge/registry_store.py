"""The gateway's copy of the registry on disk, kept so that it works offline and after a
restart.

Stored with TinyDB, one table per collection, written atomically (`mashang.files`), so that a
power cut leaves either the old registry or the new one, never half of each.

A file that cannot be read, or is not a registry, is never trusted: at start-up
(`RegistryStore.load_at_start`) it is moved aside as `registry.json.damaged-<moment>`, and the
gateway starts with an empty registry, in which every button is unregistered and every press
still an alert (to the community's duty contact), until the central sends a fresh one.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tinydb import TinyDB
from tinydb.storages import Storage

from mashang.files import atomic_write
from mashang.registry import Registry

COLLECTIONS = ("butlers", "buildings", "buttons", "households", "zones", "scanners", "stalls")

log = logging.getLogger(__name__)


class RegistryDamaged(ValueError):
    """The registry file cannot be read, or what it holds is not a registry."""


class AtomicJSONStorage(Storage):
    """TinyDB storage that replaces its file whole."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)

    def read(self) -> dict[str, Any] | None:
        try:
            text = self._path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        if not text.strip():
            # replace() never writes an empty file: this one was cut short.
            raise RegistryDamaged("the file is empty")
        try:
            document = json.loads(text)
        except ValueError as exc:  # JSONDecodeError
            raise RegistryDamaged(f"not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise RegistryDamaged("not valid JSON: nested too deep") from exc
        if not isinstance(document, dict) or not all(
            isinstance(table, dict) and all(isinstance(row, dict) for row in table.values())
            for table in document.values()
        ):
            raise RegistryDamaged("valid JSON, but not the tables this store writes")
        return document

    def write(self, data: dict[str, Any]) -> None:
        atomic_write(self._path, json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True))

    def close(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class SetAside:
    """A registry file that could not be loaded, and where it was moved (None: it could not
    be moved)."""

    problem: str
    moved_to: Path | None


def describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"not a valid registry: {exc.error_count()} problems, first {where}: {first['msg']}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text: {exc.reason} at byte {exc.start}"
    if isinstance(exc, OSError):
        return f"cannot be read: {exc.strerror or exc}"
    return str(exc)


class RegistryStore:
    """The registry on disk. Replaced whole in a single atomic write."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Registry:
        """The registry in the file (empty when there is none). Raises ValueError (a
        RegistryDamaged, or pydantic's ValidationError) or OSError for a file that cannot be
        read or is not a registry."""
        if not self.path.exists():
            return Registry()
        with TinyDB(self.path, storage=AtomicJSONStorage) as db:
            meta = db.table("meta").get(doc_id=1) or {}
            document = {name: list(db.table(name).all()) for name in COLLECTIONS}
        return Registry.model_validate({**meta, **document})

    def load_at_start(self) -> tuple[Registry, SetAside | None]:
        """The registry, or, when the file cannot be loaded, an empty one with the damaged
        file moved aside (`registry.json.damaged-<moment>`, kept for an operator). The caller
        asks the central for a fresh registry when the second item is not None."""
        try:
            return self.load(), None
        except (ValueError, OSError) as exc:
            problem = describe(exc)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            log.error("registry %s is damaged (%s) and could not be moved aside (%s); started "
                      "with no registry: every press is an alert to the duty contact until the "
                      "central's fresh one (asked for now) replaces the file", self.path,
                      problem, exc.strerror or exc)
            return Registry(), SetAside(problem, None)
        log.error("registry %s is damaged (%s): moved it to %s and started with no registry; "
                  "every press is an alert to the duty contact until the central's fresh one "
                  "(asked for now) arrives", self.path, problem, aside)
        return Registry(), SetAside(problem, aside)

    def replace(self, registry: Registry) -> None:
        document = registry.model_dump(mode="json")
        meta = {key: value for key, value in document.items() if key not in COLLECTIONS}
        # One storage write holds every table, so the file is never half old, half new.
        tables: dict[str, Any] = {"meta": {"1": meta}}
        for name in COLLECTIONS:
            tables[name] = {str(n): entry for n, entry in enumerate(document[name], start=1)}
        AtomicJSONStorage(self.path).write(tables)
