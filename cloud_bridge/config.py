"""The reference central's TOML configuration."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from edge.config import HttpSection, Section


class CentralServer(Section):
    data_dir: Path
    listen: str = "127.0.0.1:8080"
    # Operators' and tests' read access to GET /v1/events.
    admin_token: SecretStr | None = None
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)


class CentralConfig(Section):
    central: CentralServer
    # Per-gateway keys: gateway id → shared secret.
    gateways: dict[str, SecretStr] = Field(default_factory=dict)

    @property
    def http(self) -> HttpSection:
        return HttpSection(listen=self.central.listen)

    def gateway_key(self, gateway_id: str) -> bytes | None:
        secret = self.gateways.get(gateway_id)
        return secret.get_secret_value().encode() if secret else None
