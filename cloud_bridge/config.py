"""The reference central's TOML configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator

from mashang.config import Listening, Seconds, Section

REGISTRY_FILE = "registry.json"
DATABASE_FILE = "central.sqlite"


class CentralServer(Section):
    data_dir: Path
    listen: str = "127.0.0.1:8080"
    # Operators' and tests' read access to GET /v1/events and GET /v1/alerts.
    admin_token: SecretStr | None = None
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # How often the running central looks for a registry written by `mashang registry import`.
    registry_poll: Seconds = 1.0
    # /metrics: a gateway not heard from for this long counts as silent (its command long-poll
    # is renewed every central.poll_wait seconds, 25 by default, while it runs).
    silent_after: Seconds = 120.0
    # When set, GET /metrics wants `Authorization: Bearer <metrics_token>` (Prometheus's
    # `authorization` scrape setting); unset, it is open like /healthz.
    metrics_token: SecretStr | None = None


class AlertsSection(Section):
    # Unacknowledged this long → the next rung of the escalation ladder is paged.
    escalate_after: Seconds = 60.0
    # Escalations per alert, repeats of the whole ladder included; then the alert waits quietly.
    max_escalations: int = Field(default=5, ge=0, le=50)


class NotifySection(Section):
    # Delivery attempts per webhook per notification, the first one included.
    attempts: int = Field(default=5, ge=1, le=20)
    backoff_min: Seconds = 1.0
    backoff_max: Seconds = 60.0
    timeout: Seconds = 10.0


WebhookFormat = Literal["json", "wecom", "dingtalk"]

# Hosts whose format is known, for registry webhook URLs that no [[webhooks]] entry describes.
KNOWN_HOSTS: dict[str, WebhookFormat] = {
    "qyapi.weixin.qq.com": "wecom",
    "oapi.dingtalk.com": "dingtalk",
}


class WebhookEntry(Section):
    """One `[[webhooks]]` table.

    ```toml
    [[webhooks]]
    url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…"
    format = "wecom"        # "json" | "wecom" | "dingtalk"; default: known host, else "json"
    to = ["duty"]           # "butler:ID", "duty" or "inspection"; may be empty (see below)
    secret = "SEC…"         # DingTalk's signing secret (加签), only for format "dingtalk"
    ```

    A butler's own URLs live in the registry (`Butler.webhooks`). An entry whose `url` equals
    one of them, with `to` left empty, only says how to talk to that URL (format, secret).
    """

    url: AnyHttpUrl
    format: WebhookFormat | None = None
    to: list[str] = Field(default_factory=list)
    secret: SecretStr | None = None

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("to")
    @classmethod
    def _targets(cls, targets: list[str]) -> list[str]:
        for target in targets:
            kind, _, butler = target.partition(":")
            if target not in ("duty", "inspection") and not (kind == "butler" and butler):
                raise ValueError(f"{target!r}: expected 'butler:ID', 'duty' or 'inspection'")
        return targets

    @model_validator(mode="after")
    def _secret_only_for_dingtalk(self) -> WebhookEntry:
        if self.secret is not None and self.resolved_format() != "dingtalk":
            raise ValueError("secret is DingTalk's signing secret: only for format 'dingtalk'")
        return self

    def resolved_format(self) -> WebhookFormat:
        return self.format or guess_format(str(self.url))


def guess_format(url: str) -> WebhookFormat:
    return KNOWN_HOSTS.get(urlsplit(url).hostname or "", "json")


class ConsoleSection(Section):
    # Signs session cookies and CSRF tokens. Unset: a random one kept in {data_dir}/console.key.
    session_secret: SecretStr | None = None
    session_ttl: Seconds = 12 * 3600.0
    # Failed logins allowed per account and per client address within login_window.
    login_attempts: int = Field(default=5, ge=1)
    login_window: Seconds = 300.0
    # Mark cookies Secure: set it when the console is served over HTTPS (behind a proxy).
    secure_cookie: bool = False
    # The console's address as butlers reach it, for links in webhook messages.
    public_url: AnyHttpUrl | None = None


class StallsSection(Section):
    # Ratings and reports one client address may send from the stall pages within `window`.
    submissions_per_window: int = Field(default=5, ge=1)
    window: Seconds = 3600.0


class VisitsSection(Section):
    # An elderly resident living alone not visited for this long gets a reminder (7 days).
    overdue_after: Seconds = 7 * 24 * 3600.0
    check_interval: Seconds = 60.0


class CentralConfig(Section):
    central: CentralServer
    # Per-gateway keys: gateway id → shared secret.
    gateways: dict[str, SecretStr] = Field(default_factory=dict)
    alerts: AlertsSection = AlertsSection()
    notify: NotifySection = NotifySection()
    webhooks: list[WebhookEntry] = Field(default_factory=list)
    console: ConsoleSection = ConsoleSection()
    stalls: StallsSection = StallsSection()
    visits: VisitsSection = VisitsSection()

    @property
    def http(self) -> Listening:
        return Listening(listen=self.central.listen)

    @property
    def registry_path(self) -> Path:
        return self.central.data_dir / REGISTRY_FILE

    @property
    def database_path(self) -> Path:
        return self.central.data_dir / DATABASE_FILE

    def gateway_key(self, gateway_id: str) -> bytes | None:
        secret = self.gateways.get(gateway_id)
        return secret.get_secret_value().encode() if secret else None
