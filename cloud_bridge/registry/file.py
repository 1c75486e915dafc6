"""The central's registry file, `{data_dir}/registry.json`: the registry's own JSON, written
atomically, so that an operator can read it and a running central never sees half of it."""

from __future__ import annotations

from pathlib import Path

from mashang.files import atomic_write
from mashang.registry import Registry


class RegistryFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Registry:
        """The registry in the file (an empty one when there is no file yet); ValueError when
        the file is not a valid registry."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Registry()
        return Registry.model_validate_json(text)

    def replace(self, registry: Registry) -> None:
        atomic_write(self.path, registry.model_dump_json(indent=1))
