"""The words of the alert lifecycle, defined once.

`StrEnum`s: each member is its string, so what is stored in SQLite, sent to the consoles, the
operators' API and webhooks, and queued to gateways is the same text as before there were enums
(`AlertState.RAISED == "raised"`, `json.dumps(AlertState.RAISED) == '"raised"'`).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["OPEN_STATES", "UNACKNOWLEDGED", "AlertState", "Listing", "Page", "Step"]


class AlertState(StrEnum):
    """`alerts.state`: raised → notified → acknowledged → arrived → resolved. Also the `state`
    of a feedback command (acknowledged, resolved) that tells a button's LED what happened:
    `arrived` never goes on the wire (PROTOCOL §1 fixes the feedback states), the button hears
    it as `acknowledged` again with `by` saying so (book.arrived_words)."""

    RAISED = "raised"
    NOTIFIED = "notified"  # someone was reached (a webhook took it, or a console showed it)
    ACKNOWLEDGED = "acknowledged"
    ARRIVED = "arrived"  # the butler scanned the resident's household code at the door
    RESOLVED = "resolved"


OPEN_STATES = frozenset(
    {AlertState.RAISED, AlertState.NOTIFIED, AlertState.ACKNOWLEDGED, AlertState.ARRIVED}
)
# Still escalating: nobody has said they are on their way.
UNACKNOWLEDGED = frozenset({AlertState.RAISED, AlertState.NOTIFIED})


class Step(StrEnum):
    """`alert_steps.step`, and the `step` of a book change the engine acts on."""

    RAISED = "raised"
    PRESSED = "pressed"  # a further press joined the open alert
    PRIORITY = "priority"  # that press raised the alert's priority
    PAGED = "paged"  # a rung of the escalation ladder was paged
    NOTIFIED = "notified"
    PUSHED = "pushed"  # shown on a butler's open console
    # Unacknowledged for `escalate_after`, or acknowledged with nobody at the door within
    # `arrive_within` (detail.why "no_arrival"): the next rung is paged.
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    ARRIVED = "arrived"  # the household's code scanned at the door: who, and how (detail.via)
    RESOLVED = "resolved"
    FEEDBACK = "feedback"  # a feedback command was queued for the button's gateway
    NOTE = "note"  # words on the alert's history (why the system closed it)
    # The duty room marked it "handled here" on a gateway's LAN page (while we were away);
    # history only: the alert stays open.
    HANDLED_LOCALLY = "handled_locally"


class Page(StrEnum):
    """Why a target is paged: the `event` of a webhook message."""

    RAISED = "alert.raised"
    PRIORITY = "alert.priority"
    ESCALATED = "alert.escalated"
    # Acknowledged, yet nobody reached the door within `alerts.arrive_within`: paged again.
    NO_ARRIVAL = "alert.no_arrival"


class Listing(StrEnum):
    """Which alerts a listing holds (`?state=` of the operators' API, the console's views)."""

    OPEN = "open"
    RESOLVED = "resolved"
    ALL = "all"
