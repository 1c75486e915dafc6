"""What every TOML configuration of the project shares: strict sections, and errors that name
the key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "ConfigError",
    "Listening",
    "Seconds",
    "Section",
    "describe_errors",
    "load_config",
    "parse_toml",
]

Seconds = Annotated[float, Field(gt=0)]
ModelT = TypeVar("ModelT", bound=BaseModel)


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the key."""


class Unavailable(Exception):
    """A command cannot do its work for a reason outside its configuration (its database out
    of reach, or from a newer release); the message says which, in one line."""


class Section(BaseModel):
    # A misspelt key is an error, not a silently ignored default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listening(Section):
    """A `listen = "HOST:PORT"` key, and the host and port it names."""

    listen: str = "127.0.0.1:8181"

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("expected HOST:PORT, for example 127.0.0.1:8181")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


def describe_errors(error: ValidationError) -> str:
    """One line per problem, each naming the dotted key, in the words a person needs."""
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (misspelt?)"
        lines.append(f"{key}: {message}")
    return "; ".join(lines)


def parse_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def load_config(path: Path, model: type[ModelT]) -> ModelT:
    try:
        return model.model_validate(parse_toml(path))
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_errors(exc)}") from exc
