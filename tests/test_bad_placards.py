"""A stall's placard that does not hold, judged by the gateway's rules in-process: at a
check-in or an inspection it is a `scan.rejected` (what the scanner hears, as before) and a
`stall.violation` beside it, each with an id fixed by the message (PROTOCOL §2), and a scanner
cannot dictate the violation's facts (PROTOCOL §6): its own `reason`, `subject` or `result`
stand under `data.device`, never where the gateway's do."""

from __future__ import annotations

import base64
import datetime
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cloud_bridge.issuing.keys import issue_token
from edge.config import RulesSection
from edge.events import event_id, now
from edge.source.messages import parse_message
from edge.transform.rules import PRIMARY, Rules
from mashang.codes import code_url
from mashang.registry import Community, Contact, Registry, Scanner, Stall, Zone

pytestmark = pytest.mark.unit

ROOT = "mashang/v1"
KEY = Ed25519PrivateKey.generate()
TODAY = datetime.date.today()
REGISTRY = Registry(
    community=Community(inspection_contact=Contact(name="街道执法队")),
    zones=[Zone(id="night-market", name="夜市")],
    scanners=[Scanner(device_id="gate-north", zone="night-market", purpose="checkin"),
              Scanner(device_id="gate-south", zone="night-market", purpose="checkout")],
    stalls=[Stall(id="ST-001", name="老王烤串", number="017", zone="night-market",
                  hours="00:00-23:59", min_generation=2)],
    code_keys={1: base64.b64encode(
        KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()},
)


def placard(generation: int = 2, key: Ed25519PrivateKey = KEY) -> str:
    token = issue_token(key, 1, "stall", "ST-001", generation, TODAY + datetime.timedelta(30))
    return code_url("HTTPS://M.DDP.CN", "stall", token)


def judged(scanner: str, fields: dict) -> list:
    payload = json.dumps({"seq": 7, **fields}, ensure_ascii=False).encode()
    message = parse_message(ROOT, f"{ROOT}/scanners/{scanner}/scans", payload, now())
    return Rules(RulesSection(), REGISTRY, None).evaluate(message), message


def test_a_revoked_placard_is_a_rejection_and_a_violation_with_ids_of_its_message():
    (rejection, violation), message = judged("gate-north", {"code": placard(generation=1)})
    assert (rejection.type, rejection.kind, rejection.data["reason"]) == (
        "scan.rejected", "log", "revoked")
    assert rejection.data["subject"] == {}  # the beep says what it said before
    assert rejection.id == event_id(message.identity_key(), PRIMARY)
    assert (violation.type, violation.kind, violation.priority) == (
        "stall.violation", "alert", "high")
    assert violation.id == event_id(message.identity_key(), "stall.violation")
    assert violation.device_id == "gate-north"
    subject = violation.data["subject"]
    assert (violation.data["reason"], subject["id"], subject["name"], subject["verified"]) == (
        "revoked", "ST-001", "老王烤串", True)
    assert (subject["zone_name"], subject["scanner_zone_name"]) == ("夜市", "夜市")


def test_a_forgery_names_the_stall_it_claims_unverified():
    (_, violation), _ = judged("gate-north", {"code": placard(key=Ed25519PrivateKey.generate())})
    assert violation.data["reason"] == "forged"
    assert violation.data["subject"]["verified"] is False


def test_a_scanner_cannot_set_the_violations_facts():
    fields = {"code": placard(generation=1), "reason": "licensed", "result": "accepted",
              "subject": {"id": "ST-999", "name": "假摊位"}}
    (rejection, violation), _ = judged("gate-north", fields)
    for event in (rejection, violation):
        assert event.data["result"] == "rejected"
        assert event.data["device"]["subject"] == {"id": "ST-999", "name": "假摊位"}
        assert event.data["device"]["reason"] == "licensed"
    assert violation.data["subject"]["id"] == "ST-001"


def test_at_a_checkout_a_bad_placard_is_only_refused():
    events, _ = judged("gate-south", {"code": placard(generation=1)})
    assert [event.type for event in events] == ["scan.rejected"]
