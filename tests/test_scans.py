"""Scans verified offline at the gateway: stall check-ins, violations, visits, rejections,
and the scanner's beep for each."""

from __future__ import annotations

import base64
import datetime
import queue
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cloud_bridge.issuing.keys import issue_token
from devices.simulators.scanners import SimulatedScanner
from edge.gateway import REGISTRY_FILE
from edge.registry_store import RegistryStore
from mashang.codes import code_url
from mashang.registry import Community, Contact, Household, Registry, Scanner, Stall
from tests.helpers.support import wait_for

pytestmark = pytest.mark.system

BASE = "HTTPS://M.DDP.CN"
TODAY = datetime.date.today()


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def all_day_except_now() -> str:
    """Opening hours that exclude the present hour, whatever the time the test runs."""
    now = datetime.datetime.now()
    start = (now + datetime.timedelta(hours=2)).strftime("%H:00")
    end = (now + datetime.timedelta(hours=3)).strftime("%H:00")
    return f"{start}-{end}"


class Codes:
    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.other_key = Ed25519PrivateKey.generate()

    def url(self, kind: str, subject: str, *, generation: int = 1, key_id: int = 1,
            key: Ed25519PrivateKey | None = None, expires: datetime.date | None = None) -> str:
        token = issue_token(key or self.key, key_id, kind, subject, generation,
                            expires or TODAY + datetime.timedelta(days=30))
        return code_url(BASE, kind, token)


@pytest.fixture
def codes() -> Codes:
    return Codes()


@pytest.fixture
def scan_gateway(make_gateway, central, codes: Codes):
    gateway = make_gateway(central.url)
    registry = Registry(
        version=1,
        community=Community(name="康城社区", inspection_contact=Contact(name="街道执法队")),
        zones=[],
        scanners=[
            Scanner(device_id="gate-north", zone="night-market", purpose="checkin"),
            Scanner(device_id="butler-phone", purpose="visit"),
        ],
        stalls=[
            Stall(id="ST-001", name="老王烤串", number="017", zone="night-market",
                  hours="00:00-23:59", min_generation=1),
            Stall(id="ST-002", name="张姐凉皮", zone="riverside", hours="00:00-23:59"),
            Stall(id="ST-003", name="夜宵粥铺", zone="night-market", hours=all_day_except_now()),
            Stall(id="ST-004", name="旧牌照", zone="night-market", hours="00:00-23:59",
                  min_generation=3),
            Stall(id="ST-005", name="黑名单摊", zone="night-market", hours="00:00-23:59"),
        ],
        households=[Household(id="HH-0301", building="B1", room="301",
                              elderly_living_alone=True)],
        code_keys={1: base64.b64encode(raw_public(codes.key)).decode()},
        denied_codes=["ST-005"],
    )
    RegistryStore(Path(gateway.data_dir) / REGISTRY_FILE).replace(registry)
    gateway.start()
    return gateway


def scan_and_hear(broker, scanner_id: str, text: str, purpose: str | None = None) -> dict:
    """Scan once with a real MQTT scanner and return the beep it was sent back."""
    heard: queue.Queue = queue.Queue()
    scanner = SimulatedScanner(scanner_id, port=broker.port,
                               on_feedback=lambda device, feedback: heard.put(feedback))
    scanner.start()
    try:
        sent = scanner.scan(text, purpose) if purpose else scanner.scan(text)
        while True:
            feedback = heard.get(timeout=10)
            if feedback.get("seq") == sent["seq"]:
                return feedback
    finally:
        scanner.stop()


def event_for(central, event_type: str, device_id: str, code: str) -> dict:
    def found():
        return next((e for e in central.events(event_type)
                     if e["device_id"] == device_id and e["data"].get("code") == code), None)

    return wait_for(found, 10, what=f"{event_type} at the central")


def test_valid_checkin_is_accepted_with_the_stall(broker, central, codes, scan_gateway):
    url = codes.url("stall", "ST-001")
    feedback = scan_and_hear(broker, "gate-north", url, "checkin")
    assert feedback["result"] == "accepted"
    assert feedback["subject"]["name"] == "老王烤串"
    event = event_for(central, "scan.accepted", "gate-north", url)
    assert event["kind"] == "log"
    assert event["data"]["subject"]["zone"] == "night-market"


def test_wrong_zone_and_outside_hours_are_violations_for_the_street_office(
    broker, central, codes, scan_gateway
):
    wrong_zone = codes.url("stall", "ST-002")
    closed = codes.url("stall", "ST-003")
    for url, reason in ((wrong_zone, "wrong_zone"), (closed, "outside_hours")):
        feedback = scan_and_hear(broker, "gate-north", url, "checkin")
        assert (feedback["result"], feedback["reason"]) == ("rejected", reason)
        event = event_for(central, "stall.violation", "gate-north", url)
        assert event["kind"] == "alert"
        assert event["data"]["subject"]["route"] == "inspection"
        assert event["data"]["subject"]["inspection_contact"]["name"] == "街道执法队"
        assert "butlers" not in event["data"]


def test_household_visit_is_logged(broker, central, codes, scan_gateway):
    url = codes.url("household", "HH-0301")
    feedback = scan_and_hear(broker, "butler-phone", url, "visit")
    assert feedback["result"] == "accepted"
    event = event_for(central, "visit.checkin", "butler-phone", url)
    assert event["data"]["subject"]["elderly_living_alone"] is True


def flipped(url: str) -> str:
    position = len(url) - 20
    replacement = "A" if url[position] != "A" else "B"
    return url[:position] + replacement + url[position + 1 :]


def test_every_bad_code_is_rejected_with_its_reason(broker, central, codes, scan_gateway):
    yesterday = TODAY - datetime.timedelta(days=1)
    cases = [
        ("bad_signature", flipped(codes.url("stall", "ST-001"))),
        ("bad_signature", codes.url("stall", "ST-001", key=codes.other_key)),
        ("unknown_key", codes.url("stall", "ST-001", key_id=9, key=codes.other_key)),
        ("expired", codes.url("stall", "ST-001", expires=yesterday)),
        ("revoked", codes.url("stall", "ST-004", generation=2)),
        ("denied", codes.url("stall", "ST-005")),
        ("foreign", "https://example.com/pay?id=42"),
        ("malformed", f"{BASE}/S/NOTBASE32!!"),
        ("too_long", "X" * 10_000),
        ("non_ascii", f"{BASE}/S/码上生活"),
    ]
    for expected, text in cases:
        feedback = scan_and_hear(broker, "gate-north", text, "checkin")
        assert (feedback["result"], feedback["reason"]) == ("rejected", expected), text
        event = event_for(central, "scan.rejected", "gate-north", text)
        assert event["data"]["reason"] == expected
    assert scan_gateway.running()
    # Still judging good codes after all of that.
    assert scan_and_hear(broker, "gate-north", codes.url("stall", "ST-001"))["result"] == "accepted"


def scan_and_hear_all(broker, scanner_id: str, texts: list[str], purpose: str) -> list[dict]:
    """Scan each text in turn with one real scanner, then a last good code; every beep heard
    until the last one's, in order: a scan beeped twice would show here."""
    heard: queue.Queue = queue.Queue()
    scanner = SimulatedScanner(scanner_id, port=broker.port,
                               on_feedback=lambda device, feedback: heard.put(feedback))
    scanner.start()
    try:
        for text in texts:
            scanner.scan(text, purpose)
        last = scanner.scan(texts[-1], purpose)
        beeps = []
        while not beeps or beeps[-1].get("seq") != last["seq"]:
            beeps.append(heard.get(timeout=10))
        return beeps[:-1]
    finally:
        scanner.stop()


def test_a_bad_placard_at_a_checkin_is_a_violation_beside_its_rejection(
    broker, central, codes, scan_gateway
):
    yesterday = TODAY - datetime.timedelta(days=1)
    cases = [  # (the code's reason, the violation's, the placard)
        ("revoked", "revoked", codes.url("stall", "ST-004", generation=2)),
        ("denied", "denied", codes.url("stall", "ST-005")),
        ("expired", "expired", codes.url("stall", "ST-001", expires=yesterday)),
        ("bad_signature", "forged", flipped(codes.url("stall", "ST-001"))),
        ("bad_signature", "forged", codes.url("stall", "ST-001", key=codes.other_key)),
        ("unknown_key", "forged", codes.url("stall", "ST-001", key_id=9, key=codes.other_key)),
    ]
    beeps = scan_and_hear_all(broker, "gate-north", [text for *_, text in cases], "checkin")
    # One beep a scan, the code's own reason, nothing said of the stall: as before.
    assert [(b["result"], b["reason"], b["subject"]) for b in beeps] == [
        ("rejected", reason, {}) for reason, _, _ in cases
    ]
    for reason, violation_reason, text in cases:
        assert event_for(central, "scan.rejected", "gate-north", text)["data"]["reason"] == reason
        violation = event_for(central, "stall.violation", "gate-north", text)
        assert violation["kind"] == "alert"
        data = violation["data"]
        assert (data["reason"], data["result"]) == (violation_reason, "rejected"), text
        subject = data["subject"]
        assert subject["route"] == "inspection" and subject["scanner_zone"] == "night-market"
        assert subject["verified"] is (violation_reason != "forged")
    forged = event_for(central, "stall.violation", "gate-north", cases[-1][2])["data"]["subject"]
    assert (forged["id"], forged["name"], forged["number"]) == ("ST-001", "老王烤串", "017")


def test_a_bad_placard_elsewhere_is_only_rejected(broker, central, codes, scan_gateway):
    revoked = codes.url("stall", "ST-004", generation=2)
    household = codes.url("household", "HH-0301", expires=TODAY - datetime.timedelta(days=1))
    # At a checkout, on a visit, or a household's code: a refusal, no violation.
    for scanner, text, purpose in (("gate-north", revoked, "checkout"),
                                   ("butler-phone", revoked, "visit"),
                                   ("gate-north", household, "checkin")):
        assert scan_and_hear(broker, scanner, text, purpose)["result"] == "rejected"
        event_for(central, "scan.rejected", scanner, text)
    # The central has every event by now (one gateway, in order): none is a violation.
    last = codes.url("stall", "ST-002")
    scan_and_hear(broker, "gate-north", last, "checkin")
    event_for(central, "stall.violation", "gate-north", last)
    codes_of_violations = {e["data"].get("code") for e in central.events("stall.violation")}
    assert codes_of_violations == {last}
