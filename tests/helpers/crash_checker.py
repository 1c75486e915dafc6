"""The checker for crash rounds: did every message the broker took reach the central once?

A message is identified the way PROTOCOL §2 says the gateway must: its event id is derived from
the device, the topic and the payload's seq/ts/id, so the checker computes, for each message it
published, the id the central must hold (`expected_id`), and then compares with everything the
central holds:

- missing: a published message whose event the central does not hold (lost);
- doubled: a message that became more than one event at the central (an id that was not
  stable across a crash and a redelivery would show here);
- strays: device events at the central that no published message accounts for;
- mismatched: an event whose device or seq is not the message's own.

It also runs `PRAGMA integrity_check` on an SQLite file, as a separate process would after a
crash (opening the file runs WAL recovery first).
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from edge.events import event_id, now
from edge.source.messages import parse_message
from edge.transform.rules import PRIMARY

ROOT = "mashang/v1"
# Events a device message can become (primary events) in these rounds.
# (A stall's violation is an alert beside its scan's `scan.rejected`, not a primary event.)
DEVICE_TYPES = {"button.press", "button.repeat", "scan.rejected", "scan.accepted",
                "visit.checkin"}


@dataclass(frozen=True)
class Published:
    """A message the broker acknowledged (PUBACK) to its publisher."""

    topic: str
    payload: bytes

    @property
    def device_id(self) -> str:
        return self.topic.split("/")[3]

    @property
    def seq(self) -> int:
        return json.loads(self.payload)["seq"]


def expected_id(message: Published) -> str:
    """The event id PROTOCOL §2 fixes for this message, whatever the moment it is received."""
    parsed = parse_message(ROOT, message.topic, message.payload, now())
    assert parsed.rejection is None, parsed.rejection
    return event_id(parsed.identity_key(), PRIMARY)


@dataclass
class Verdict:
    published: int
    held: int
    missing: list[Published] = field(default_factory=list)
    doubled: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    strays: list[dict] = field(default_factory=list)
    mismatched: list[tuple[Published, dict]] = field(default_factory=list)
    unwanted: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.doubled or self.strays or self.mismatched
                    or self.unwanted)

    def explain(self) -> str:
        return (
            f"{self.published} published, central holds {self.held} device events; "
            f"missing {len(self.missing)} (e.g. {self.missing[:3]}), "
            f"doubled {len(self.doubled)} (e.g. {list(self.doubled.items())[:3]}), "
            f"strays {len(self.strays)} (e.g. {self.strays[:2]}), "
            f"mismatched {len(self.mismatched)} (e.g. {self.mismatched[:2]}), "
            f"unwanted gateway events {[e['type'] for e in self.unwanted][:5]}"
        )


def check_exactly_once(published: list[Published], central_events: list[dict]) -> Verdict:
    ids = [event["id"] for event in central_events]
    assert len(ids) == len(set(ids)), "the central's listing repeats an id"
    by_id = {event["id"]: event for event in central_events}
    devices = {message.device_id for message in published}
    device_events = [e for e in central_events if e.get("device_id") in devices]
    verdict = Verdict(len(published), len(device_events))
    wanted: set[str] = set()
    for message in published:
        expected = expected_id(message)
        wanted.add(expected)
        event = by_id.get(expected)
        if event is None:
            verdict.missing.append(message)
        elif event["device_id"] != message.device_id or event["data"].get("seq") != message.seq:
            verdict.mismatched.append((message, event))
    per_message: dict[tuple[str, int], list[str]] = defaultdict(list)
    for event in device_events:
        if event["type"] in DEVICE_TYPES:
            per_message[(event["device_id"], event["data"].get("seq"))].append(event["id"])
        if event["id"] not in wanted:
            verdict.strays.append(event)
    verdict.doubled = {key: found for key, found in per_message.items() if len(found) > 1}
    verdict.unwanted = [
        e for e in central_events
        if e["type"] in ("gateway.evicted", "gateway.rejected", "gateway.rules_failed")
    ]
    return verdict


def integrity(path: Path) -> str:
    """`PRAGMA integrity_check` of an SQLite file, from a fresh connection."""
    db = sqlite3.connect(path)
    try:
        return "; ".join(row[0] for row in db.execute("PRAGMA integrity_check"))
    finally:
        db.close()
