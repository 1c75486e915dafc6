"""The gateway's TOML configuration, validated so that a mistake names its key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator

from edge.downlink.indicator_config import IndicatorsSection
from edge.source.adapters import AdaptersSection
from mashang.config import ConfigError, Listening, Seconds, Section
from mashang.config import load_config as load_any_config
from mashang.signing import parse_public_key

__all__ = ["CENTRAL_KEY_ENV", "ConfigError", "GatewayConfig", "load_config"]

CENTRAL_KEY_ENV = "MASHANG_CENTRAL_KEY"


class GatewaySection(Section):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    data_dir: Path
    topic_root: str = "mashang/v1"


class MqttSection(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    keepalive: int = Field(default=30, ge=5, le=3600)
    # The broker keeps our session (and the presses queued for it) this long while we are away.
    session_expiry: int = Field(default=7 * 24 * 3600, ge=60)
    # How many unacked messages the broker may send at once (Mosquitto sends more: the
    # gateway bounds what it holds on its own, edge.transform.pipeline).
    receive_maximum: int = Field(default=1000, ge=1, le=65535)
    ca_file: Path | None = None
    reconnect_min: Seconds = 0.5
    reconnect_max: Seconds = 30.0


class CentralSection(Section):
    url: AnyHttpUrl
    key: SecretStr | None = Field(default=None, min_length=1)
    # The public key the central signs its commands with (base64, `mashang central
    # command-key` prints it). Unset: only `feedback` commands are taken (PROTOCOL §6).
    command_key: str | None = None
    ca_file: Path | None = None
    timeout: Seconds = 10.0
    connect_timeout: Seconds = 5.0
    backoff_min: Seconds = 0.2
    backoff_max: Seconds = 60.0
    # While the central fails, an alert is tried again every this many seconds (never sooner
    # than its Retry-After), however long the outage: it reaches the central within about
    # this long of its return. The command poll probes as often; logs back off to backoff_max.
    alert_retry: Seconds = 1.0
    poll_wait: int = Field(default=25, ge=0, le=120)

    @field_validator("command_key")
    @classmethod
    def _a_public_key(cls, text: str | None) -> str | None:
        if text is not None:
            parse_public_key(text)  # its ValueError names what is wrong
        return text

    @property
    def base_url(self) -> str:
        return str(self.url).rstrip("/")


class OutboxSection(Section):
    log_ttl: Seconds = 7 * 24 * 3600.0
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=64 * 1024)
    log_batch_size: int = Field(default=500, ge=1, le=10000)
    log_linger: Seconds = 0.5
    alert_batch_size: int = Field(default=50, ge=1, le=1000)


class HttpSection(Listening):
    # Unlocks residents' details on the LAN page (HTTP basic auth, any user name).
    page_password: SecretStr | None = None
    # /readyz says "not ready" when the central has not answered for this long (the downlink's
    # long-poll hears from it at least every central.poll_wait seconds).
    ready_central_within: Seconds = 120.0


class RulesSection(Section):
    # Presses of a button within this many seconds of its last press are one emergency.
    guard_window: Seconds = 30.0
    battery_low_percent: int = Field(default=20, ge=1, le=100)
    battery_hysteresis: int = Field(default=5, ge=0, le=50)
    # For buttons the registry does not give an interval of their own.
    supervision_hours: Seconds = 25.0
    tick_interval: Seconds = 1.0
    # A device that is not in the registry and not heard for this long is forgotten.
    forget_after: Seconds = 7 * 24 * 3600.0
    # Unregistered devices remembered at most (the least recently heard are forgotten first),
    # so that made-up device ids cannot grow devices.json or memory without bound.
    max_unregistered: int = Field(default=1000, ge=1, le=100_000)


class FallbackSection(Section):
    """When the central is out of reach, alerts still reach the community's duty room."""

    after: Seconds = 30.0
    webhooks: list[AnyHttpUrl] = Field(default_factory=list)
    timeout: Seconds = 5.0


class LoggingSection(Section):
    """Reread on SIGHUP. Unset: the `--log-level` given on the command line (default info)."""

    level: Literal["debug", "info", "warning", "error"] | None = None


class GatewayConfig(Section):
    gateway: GatewaySection
    mqtt: MqttSection = MqttSection()
    central: CentralSection
    outbox: OutboxSection = OutboxSection()
    http: HttpSection = HttpSection()
    rules: RulesSection = RulesSection()
    adapters: AdaptersSection = AdaptersSection()
    indicators: IndicatorsSection = IndicatorsSection()
    fallback: FallbackSection = FallbackSection()
    logging: LoggingSection = LoggingSection()

    def central_key(self) -> bytes:
        env = os.environ.get(CENTRAL_KEY_ENV)
        if env:
            return env.encode()
        if self.central.key is None:
            raise ConfigError(
                f"central.key: missing (set it, or the environment variable {CENTRAL_KEY_ENV})"
            )
        return self.central.key.get_secret_value().encode()


def load_config(path: Path) -> GatewayConfig:
    """The gateway's configuration, validated. The central's key may be missing: only the
    commands that sign requests need it, and they ask for it with `central_key()`, which
    raises ConfigError naming both ways to give it (`mashang gateway` exits 2; the doctor
    reports it as a finding). Local commands (`mashang outbox`, `mashang device list`, the
    doctor's local checks) run without it."""
    return load_any_config(path, GatewayConfig)
