"""What an HTTP status from the central means (PROTOCOL §3): the one classification that the
uplink, the gateway's health, the doctor and the central's own webhook sender all use."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Answer", "classify"]


class Answer(StrEnum):
    # The request did what it asked: for a batch, every event in it is safe.
    DELIVERED = "delivered"
    # Permanent for that request's content (400, 413, 422): the same bytes can never succeed.
    REFUSED = "refused"
    # Our credentials or clock are refused (401, 403): not the content's fault; kept, retried.
    UNAUTHORIZED = "unauthorized"
    # Try again later (408, 429, 5xx), and anything the contract does not name, so that an
    # unexpected answer never costs an event.
    TRANSIENT = "transient"


REFUSED_STATUSES = frozenset({400, 413, 422})
UNAUTHORIZED_STATUSES = frozenset({401, 403})


def classify(status: int) -> Answer:
    if 200 <= status < 300:
        return Answer.DELIVERED
    if status in REFUSED_STATUSES:
        return Answer.REFUSED
    if status in UNAUTHORIZED_STATUSES:
        return Answer.UNAUTHORIZED
    return Answer.TRANSIENT
