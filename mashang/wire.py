"""The wire contract's events (PROTOCOL §3) and their identity (§2), as both sides know them.

The gateway builds an event from a device message and encodes it once; the central validates
what arrives with `IngestRequest`. The literals below are the only definition of an event's
kind and priority.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from mashang.signing import Refusal

__all__ = [
    "EVENT_NAMESPACE",
    "FACTS_PARAM",
    "Command",
    "CommandPage",
    "CommandType",
    "ErrorBody",
    "GatewayFacts",
    "IngestRequest",
    "IngestResult",
    "Kind",
    "OutboxDepth",
    "Priority",
    "WireEvent",
    "event_id",
    "facts_or_none",
]

Kind = Literal["alert", "log"]
Priority = Literal["critical", "high", "normal", "low"]

# A fixed namespace: the same message gives the same event id on every gateway run.
EVENT_NAMESPACE = uuid.UUID("5b0e3c1e-6a57-4c55-9f1e-6d6173686e67")
_NAMESPACE_BYTES = EVENT_NAMESPACE.bytes


def event_id(identity: str, event_type: str) -> str:
    """Deterministic: a redelivered message yields the same id, so the central sees a duplicate.

    uuid5(EVENT_NAMESPACE, identity + "\\n" + event_type), computed without the UUID object."""
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + f"{identity}\n{event_type}".encode()).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


# An event's own fields are columns of the central's database, and PostgreSQL's text holds no
# NUL character (no gateway sends one: MQTT topics, whence device ids, hold none).
NO_NUL = r"^[^\x00]*$"


class WireEvent(BaseModel):
    """One event as it travels in `POST /v1/ingest`."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    kind: Kind
    type: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    priority: Priority
    device_id: str | None = Field(default=None, max_length=128, pattern=NO_NUL)
    occurred_at: datetime
    received_at: datetime
    data: dict[str, Any] = Field(default_factory=dict)


class OutboxDepth(BaseModel):
    """Events waiting in the gateway's outbox, per class."""

    alert: int = Field(ge=0)
    log: int = Field(ge=0)


class GatewayFacts(BaseModel):
    """What a gateway says of itself (PROTOCOL §6): in an ingest body's `gateway`, and as the
    compact JSON of a command poll's `gateway` query parameter. Every field may be missing."""

    model_config = ConfigDict(extra="ignore")  # a newer gateway's additions are not a fault

    version: str | None = Field(default=None, max_length=64)  # its software version
    outbox: OutboxDepth | None = None
    oldest_alert_waiting_s: float | None = Field(default=None, ge=0)  # None: no alert waits
    uptime_s: float | None = Field(default=None, ge=0)


# The command poll's query parameter that carries the facts.
FACTS_PARAM = "gateway"


def facts_or_none(raw: object) -> GatewayFacts | None:
    """The facts, or None when they do not validate: they are diagnostics, never a reason to
    refuse the events or the poll they travel with (a refused batch is dead-lettered)."""
    try:
        if isinstance(raw, str):
            return GatewayFacts.model_validate_json(raw)
        return None if raw is None else GatewayFacts.model_validate(raw)
    except ValidationError:
        return None


class IngestRequest(BaseModel):
    """The body of `POST /v1/ingest`."""

    gateway_id: str
    sent_at: datetime
    events: list[WireEvent] = Field(max_length=10000)
    gateway: GatewayFacts | None = None

    @field_validator("gateway", mode="wrap")
    @classmethod
    def _facts_never_refuse(
        cls, value: object, handler: ValidatorFunctionWrapHandler
    ) -> GatewayFacts | None:
        try:
            facts: GatewayFacts | None = handler(value)
        except ValidationError:
            return None  # see facts_or_none
        return facts


# -- the central's answers (PROTOCOL §3, §4) ------------------------------------------------

CommandType = Literal["feedback", "registry.replace", "placard.revoke"]


class IngestResult(BaseModel):
    """The 200 answer to `POST /v1/ingest`: every id in the batch is now safe, new ones under
    accepted, ids the central already held under duplicates."""

    accepted: list[str]
    duplicates: list[str]


class ErrorBody(BaseModel):
    """The body of every refusal the central answers (4xx)."""

    error: str
    # Why a request's signature was refused (401), as a stable code a tool can match.
    code: Refusal | None = None


class Command(BaseModel):
    """One command for a gateway; each type carries its own fields beside these."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: CommandType
    # PROTOCOL §6: hex Ed25519 signature by the central over the canonical JSON without it.
    sig: str | None = None


class CommandPage(BaseModel):
    """The answer to `GET /v1/gateways/{gateway_id}/commands`: the commands after the cursor
    (possibly none), and the cursor to poll with next."""

    cursor: str
    commands: list[Command]
