"""The gateway's copy of the registry on disk, kept so that it works offline and after a
restart.

Stored with TinyDB, one table per collection, written atomically (`mashang.files`), so that a
power cut leaves either the old registry or the new one, never half of each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage

from mashang.files import atomic_write
from mashang.registry import Registry

COLLECTIONS = ("butlers", "buildings", "buttons", "households", "zones", "scanners", "stalls")


class AtomicJSONStorage(Storage):
    """TinyDB storage that replaces its file whole."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)

    def read(self) -> dict[str, Any] | None:
        try:
            text = self._path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        document = json.loads(text) if text.strip() else None
        return document if isinstance(document, dict) or document is None else {}

    def write(self, data: dict[str, Any]) -> None:
        atomic_write(self._path, json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True))

    def close(self) -> None:
        pass


class RegistryStore:
    """The registry on disk. Replaced whole in a single atomic write."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Registry:
        if not self.path.exists():
            return Registry()
        with TinyDB(self.path, storage=AtomicJSONStorage) as db:
            meta = db.table("meta").get(doc_id=1) or {}
            document = {name: list(db.table(name).all()) for name in COLLECTIONS}
        return Registry.model_validate({**meta, **document})

    def replace(self, registry: Registry) -> None:
        document = registry.model_dump(mode="json")
        meta = {key: value for key, value in document.items() if key not in COLLECTIONS}
        # One storage write holds every table, so the file is never half old, half new.
        tables: dict[str, Any] = {"meta": {"1": meta}}
        for name in COLLECTIONS:
            tables[name] = {str(n): entry for n, entry in enumerate(document[name], start=1)}
        AtomicJSONStorage(self.path).write(tables)
