"""The reference central's TOML configuration."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator

from mashang.config import Listening, Seconds, Section

REGISTRY_FILE = "registry.json"  # where releases before the registry table kept it
DATABASE_FILE = "central.sqlite"


class CentralServer(Section):
    data_dir: Path
    listen: str = "127.0.0.1:8080"
    # PostgreSQL (15 or newer) for every table, shared by any number of central processes:
    # postgresql://user@host:port/name, the password from MASHANG_DATABASE_PASSWORD or the URL.
    # Unset: an SQLite file in data_dir, for one process.
    database: SecretStr | None = None
    # Let several central processes on one machine listen on the same port (SO_REUSEPORT);
    # the kernel spreads connections among them. Only with `database`.
    reuse_port: bool = False
    # Operators' and tests' read access to GET /v1/events and GET /v1/alerts.
    admin_token: SecretStr | None = None
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # How often the running central looks at the registry's version in the database, for a
    # change by `mashang registry import` or by another central process.
    registry_poll: Seconds = 1.0
    # A gateway not heard from for this long is silent: a gateway.silent alert, /metrics (its
    # command long-poll is renewed every central.poll_wait seconds, 25 by default, while it runs).
    silent_after: Seconds = 120.0
    # When set, GET /metrics wants `Authorization: Bearer <metrics_token>` (Prometheus's
    # `authorization` scrape setting); unset, it is open like /healthz.
    metrics_token: SecretStr | None = None
    # The community's clock: every time a person reads (console, robots, exports, reports).
    time_zone: str = "Asia/Shanghai"
    # Reverse proxies whose X-Forwarded-For is believed (addresses or networks). Empty: the
    # client is the connection's peer, whatever a request claims.
    trusted_proxies: list[IPv4Network | IPv6Network] = Field(default_factory=list)
    # Signs the commands gateways fetch (PROTOCOL §6): 32 bytes in hex, the same for every
    # central process on one database. Unset: one made on first start, kept in
    # {data_dir}/command.key on SQLite, in the database on PostgreSQL (cloud_bridge.kept_secrets).
    # `mashang central command-key` prints its public key.
    command_signing_key: SecretStr | None = None

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{zone!r} is not a time zone this machine knows") from None
        return zone

    @field_validator("database")
    @classmethod
    def _a_postgresql_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None:
            parts = urlsplit(url.get_secret_value())
            if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
                raise ValueError("expected postgresql://user@host:port/database")
        return url

    @model_validator(mode="after")
    def _reuse_port_shares_a_database(self) -> CentralServer:
        if self.reuse_port and self.database is None:
            raise ValueError("reuse_port: several processes need central.database (PostgreSQL)")
        return self

    @field_validator("command_signing_key")
    @classmethod
    def _a_key(cls, key: SecretStr | None) -> SecretStr | None:
        text = key.get_secret_value() if key is not None else "0" * 64
        if len(text) != 64 or not all(c in "0123456789abcdefABCDEF" for c in text):
            raise ValueError("expected 64 hex digits (32 bytes)")
        return key

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


class AlertsSection(Section):
    # Unacknowledged this long → the next rung of the escalation ladder is paged.
    escalate_after: Seconds = 60.0
    # Escalations per alert, repeats of the whole ladder included; then the alert waits quietly.
    max_escalations: int = Field(default=5, ge=0, le=50)
    # Acknowledged this long with nobody at the door (the resident's household code not
    # scanned): the call escalates again as if unacknowledged. Only for a help call from a
    # resident with a household code, the one thing an arrival can be proved by.
    arrive_within: Seconds = 900.0


class NotifySection(Section):
    # Delivery attempts per webhook per notification, the first one included, for failures
    # (network, 5xx, an answer that is not the vendor's). A robot's own "too fast" answer
    # costs no attempt: the message waits out the vendor's window and keeps its place.
    attempts: int = Field(default=5, ge=1, le=20)
    backoff_min: Seconds = 1.0
    backoff_max: Seconds = 60.0
    timeout: Seconds = 10.0
    # Posts to one WeCom or DingTalk robot in any 60 s (both vendors allow 20; DingTalk then
    # silences the robot for 10 minutes): counted from the central's database.
    robot_per_minute: int = Field(default=18, ge=1, le=20)
    # Of those, the last ones only help calls may use: faults and reminders wait or are
    # coalesced into one message instead.
    robot_reserve: int = Field(default=5, ge=0, le=19)

    @model_validator(mode="after")
    def _reserve_leaves_room(self) -> NotifySection:
        if self.robot_reserve >= self.robot_per_minute:
            raise ValueError("robot_reserve must be less than robot_per_minute")
        return self


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
    # Signs session cookies and CSRF tokens. Unset: a random one kept in {data_dir}/console.key
    # on SQLite, in the database on PostgreSQL (cloud_bridge.kept_secrets).
    session_secret: SecretStr | None = None
    session_ttl: Seconds = 12 * 3600.0
    # Failed logins allowed within login_window: of one account from one client address
    # (an IPv6 /64 counts as one), past which that client waits (429) for that account...
    login_attempts: int = Field(default=5, ge=1)
    # ...from one client address over all accounts (an office or a mobile network's shared
    # address may hold several butlers), past which that client waits for any account...
    login_address_attempts: int = Field(default=20, ge=1)
    # ...and of one account from all addresses, past which the account is under attack from
    # many: each address then has two tries at it. No count ever refuses every address.
    login_account_attempts: int = Field(default=20, ge=1)
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
