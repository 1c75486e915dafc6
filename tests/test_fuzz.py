"""Fuzzing what devices can send: MQTT payloads into ingest, scanned texts into the verifier.

Documented behaviour under test:

- `edge.source.messages.parse_message` never raises: anything it cannot use comes back with a
  `rejection` reason (PROTOCOL §1: invalid messages become `gateway.rejected`, never dropped).
- `edge.transform.rules.Rules.evaluate` turns every message into at least one event; the first
  is the message's own event, whose id depends on the message alone (PROTOCOL §2); every event
  encodes
  to strict JSON (UTF-8, no NaN/Infinity, bounded nesting) that a central can parse, so that no
  device message can stop the commit thread or park a batch in the dead letters.
- `mashang.codes.verify_code` raises only `CodeRejected`, and never accepts a token that differs
  from one the issuer signed.

A smaller batch of generated payloads also goes end to end: real Mosquitto, the real gateway,
the real central (on each of its storage engines): each message's event arrives, nothing is
dead-lettered, the gateway lives.

No hang: a watchdog (faulthandler) dumps every thread and ends the run if one test takes
longer than WATCHDOG seconds; there are no timing assertions.

MASHANG_FUZZ_EXAMPLES scales the number of generated inputs (default 1; e.g. 10 for a long run).
"""

from __future__ import annotations

import datetime
import faulthandler
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from edge.config import RulesSection
from edge.events import event_id, now
from edge.source.messages import MAX_PAYLOAD_BYTES, REJECTED_EXCERPT_BYTES, parse_message
from edge.transform.rules import PRIMARY, Rules
from mashang.codes import (
    MAX_TEXT_LENGTH,
    REASONS,
    CodeRejected,
    code_url,
    encode_token,
    signing_payload,
    token_body,
    verify_code,
)
from mashang.registry import Button, Registry, Resident, Scanner, Stall
from tests.helpers.support import outbox_depth, publish, wait_for

ROOT = "mashang/v1"
SCALE = int(os.environ.get("MASHANG_FUZZ_EXAMPLES", "1"))
WATCHDOG = 600.0
# The central's JSON parser stops at 200 levels; an ingest request wraps event data 4 deep.
CENTRAL_NESTING = 196
TODAY = datetime.date.today()

SIGNER = Ed25519PrivateKey.generate()
PUBLIC = SIGNER.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
KEYS = {7: PUBLIC}

@pytest.fixture(autouse=True)
def watchdog() -> Iterator[None]:
    """A hang ends the run with every thread's stack, instead of stalling the suite."""
    faulthandler.dump_traceback_later(WATCHDOG, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


# -- strategies ----------------------------------------------------------------------------

surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1,
                     max_size=2)
texts = st.one_of(st.text(max_size=40), surrogates, st.just("\x00"), st.just("单击 长按 🆘"))
numbers = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True))
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


def signed_code(kind: str, subject: str, generation: int, expires: datetime.date,
                key_id: int = 7, key: Ed25519PrivateKey = SIGNER) -> str:
    body = token_body(key_id=key_id, subject_id=subject, generation=generation, expires=expires)
    token = encode_token(body, key.sign(signing_payload(kind, body)))  # type: ignore[arg-type]
    return code_url("HTTPS://M.DDP.CN", kind, token)  # type: ignore[arg-type]


subjects = st.from_regex(r"[A-Za-z0-9._-]{1,32}", fullmatch=True)
valid_codes = st.builds(
    signed_code,
    kind=st.sampled_from(["stall", "household"]),
    subject=subjects,
    generation=st.integers(0, 0xFFFF),
    expires=st.dates(datetime.date(2020, 1, 1), datetime.date(2199, 1, 1)),
)
known_fields = {
    "seq": st.one_of(st.integers(min_value=0, max_value=2**63), json_values),
    "action": st.one_of(st.sampled_from(["single", "double", "long", "hold", "SS"]), json_values),
    "battery": st.one_of(st.integers(-5, 105), json_values),
    "ts": st.one_of(st.datetimes().map(lambda d: d.isoformat()), texts, json_values),
    "id": json_values,
    "state": st.one_of(st.sampled_from(["online", "offline", "asleep"]), json_values),
    "rssi": json_values,
    "code": st.one_of(valid_codes, texts, json_values),
    "purpose": st.one_of(st.sampled_from(["checkin", "checkout", "inspect", "visit", "x"]),
                         json_values),
}
objects = st.builds(
    lambda known, unknown: {**unknown, **known},
    st.fixed_dictionaries({}, optional=known_fields),
    st.dictionaries(texts, json_values, max_size=3),
)


def to_json(document: object, ascii_only: bool) -> bytes:
    try:
        return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates travel as \\udXXX escapes
        return json.dumps(document, ensure_ascii=True).encode("utf-8")


def nested(depth: int) -> bytes:
    return b'{"seq": 1, "deep": ' + b"[" * depth + b"]" * depth + b"}"


payloads = st.one_of(
    st.builds(to_json, objects, st.booleans()),
    st.builds(to_json, json_values, st.booleans()),
    st.binary(max_size=200),
    st.integers(1, 3000).map(nested),
    st.integers(4000, 6000).map(lambda n: b'{"seq": ' + b"7" * n + b"}"),
    st.sampled_from([
        b"", b"null", b"[]", b'{"seq": NaN}', b'{"battery": Infinity}', b'{"seq": 1e400}',
        b'{"seq": 1, "x": -Infinity}', b"\xff\xfe{}", b'{"seq": 1}\x00', b'{"a": "\\ud800"}',
        b'{"seq": 1, "seq": 2}', b'{"' + b"k" * 100 + b'": 1}',
        b'{"seq": 1, "pad": "' + b"x" * (MAX_PAYLOAD_BYTES - 20) + b'"}',
        b'{"seq": 1, "pad": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}',
    ]),
)
topic_levels = st.text(
    # Mosquitto refuses topics with control characters or non-characters (and so would a
    # device's MQTT library): those never reach the gateway.
    st.characters(exclude_characters="/+#", exclude_categories=["Cc", "Cs", "Cn", "Co"]),
    min_size=1,
    max_size=24,
).filter(lambda level: not level.startswith("$"))
device_topics = st.builds(
    lambda kind_channel, device: f"{ROOT}/{kind_channel[0]}/{device}/{kind_channel[1]}",
    st.sampled_from([("buttons", "events"), ("buttons", "status"), ("scanners", "scans"),
                     ("scanners", "status")]),
    st.one_of(st.sampled_from(["btn-0001", "gate-north", "sc-1"]), topic_levels),
)
topics = st.one_of(device_topics, st.text(max_size=60), st.just(f"{ROOT}/buttons//events"))


# -- checks --------------------------------------------------------------------------------


def _refuse_constant(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


def depth(value: object) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return deepest


def strict_json(body: bytes) -> dict:
    """What a strict central accepts: UTF-8 without lone surrogates, RFC 8259 JSON only."""
    text = body.decode("utf-8")
    document = json.loads(text, parse_constant=_refuse_constant)
    assert isinstance(document, dict)
    for item in _strings(document):
        item.encode("utf-8")  # a lone surrogate escape decodes to unencodable text
    assert depth(document) <= CENTRAL_NESTING, "nested deeper than the central parses"
    return document


def _strings(value: object) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            yield from (key for key in item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def fuzz_registry() -> Registry:
    return Registry(
        version=1,
        buttons=[Button(device_id="btn-0001",
                        resident=Resident(name="王奶奶", building="B1", room="301"))],
        scanners=[Scanner(device_id="gate-north", zone="night-market", purpose="checkin")],
        stalls=[Stall(id="ST-001", name="老王烤串", zone="night-market", hours="00:00-23:59")],
        code_keys={7: __import__("base64").b64encode(PUBLIC).decode()},
    )


def check_message(rules: Rules, topic: str, raw: bytes) -> list[dict]:
    message = parse_message(ROOT, topic, raw, now())
    again = parse_message(ROOT, topic, raw, now())
    assert message.identity_key() == again.identity_key(), "identity must not depend on time"
    events = rules.evaluate(message)
    assert events, "every message becomes at least one event"
    assert events[0].id == event_id(message.identity_key(), PRIMARY)
    documents = [strict_json(event.encode()) for event in events]
    if message.rejection is not None:
        assert [e.type for e in events] == ["gateway.rejected"]
        excerpt = documents[0]["data"]["payload"]
        assert len(excerpt.encode("utf-8", "surrogatepass")) <= 3 * REJECTED_EXCERPT_BYTES
    return documents


# -- unit-level fuzzing --------------------------------------------------------------------

RULES = Rules(RulesSection(), fuzz_registry(), None)


@pytest.mark.unit
@settings(max_examples=1000 * SCALE, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(topic=topics, raw=payloads)
@example(topic=f"{ROOT}/buttons/btn-0001/events", raw=b'{"seq": 1, "note": "\\ud83d"}')
@example(topic=f"{ROOT}/buttons/btn-0001/events", raw=b'{"seq": 2, "note": NaN}')
@example(topic=f"{ROOT}/buttons/btn-0001/events", raw=b'{"seq": 3, "note": 1e999}')
@example(topic=f"{ROOT}/scanners/gate-north/scans",
         raw=b'{"code": "x", "seq": ' + b"9" * 4301 + b"}")
@example(topic=f"{ROOT}/buttons/btn-0001/events", raw=nested(250))
def test_any_payload_on_any_topic_becomes_events_a_central_can_read(topic: str, raw: bytes):
    check_message(RULES, topic, raw)


@pytest.mark.unit
@settings(max_examples=1000 * SCALE, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(
    st.text(max_size=MAX_TEXT_LENGTH + 20),
    st.builds(lambda base, letter, token: f"{base}/{letter}/{token}",
              st.sampled_from(["HTTPS://M.DDP.CN", "http://x", "a://b/c/d", "https://例子.cn"]),
              st.sampled_from(["S", "H", "s", "h", "X"]),
              st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567=abc01/ "),
                      max_size=200)),
    st.just("https://a/" + "/" * 500 + "S/A"),
    st.just("a://" + "a/" * 250 + "S/" + "A" * 7),
))
def test_any_scanned_text_is_verified_or_rejected_with_a_reason(text: str):
    try:
        code = verify_code(text, KEYS, today=TODAY, min_generation={}, denied=())
    except CodeRejected as exc:
        assert exc.reason in REASONS
        return
    raise AssertionError(f"an unsigned text was accepted: {text!r} -> {code}")


@pytest.mark.unit
@settings(max_examples=1000 * SCALE, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(code=valid_codes, data=st.data())
def test_a_signed_code_verifies_and_any_change_to_its_token_is_rejected(code: str, data):
    base, letter, token = code.rsplit("/", 2)
    verified = verify_code(code, KEYS, today=datetime.date(2020, 1, 1), min_generation={},
                           denied=())
    assert verified.token == token
    # The same token in lower case, or behind another base, is the same code.
    assert verify_code(f"https://elsewhere.example/{letter.lower()}/{token.lower()}", KEYS,
                       today=datetime.date(2020, 1, 1), min_generation={},
                       denied=()).token == token
    change = data.draw(st.sampled_from(["flip", "cut", "extend", "kind", "swap"]))
    if change == "flip":
        at = data.draw(st.integers(0, len(token) - 1))
        other = data.draw(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567").filter(
            lambda c: c != token[at]))
        forged = token[:at] + other + token[at + 1:]
        text = f"{base}/{letter}/{forged}"
    elif change == "cut":
        text = f"{base}/{letter}/{token[:data.draw(st.integers(0, len(token) - 1))]}"
    elif change == "extend":
        text = f"{base}/{letter}/{token}{data.draw(st.text('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', min_size=1, max_size=8))}"  # noqa: E501
    elif change == "kind":
        text = f"{base}/{'H' if letter == 'S' else 'S'}/{token}"
    else:
        other_key = Ed25519PrivateKey.generate()
        fields = verified
        text = signed_code(fields.kind, fields.subject_id, fields.generation, fields.expires,
                           key=other_key)
    with pytest.raises(CodeRejected):
        verify_code(text, KEYS, today=datetime.date(2020, 1, 1), min_generation={}, denied=())


# -- end to end ----------------------------------------------------------------------------

PRESS = f"{ROOT}/buttons/btn-0001/events"
# Each of these once stopped the gateway or parked its event in the dead letters.
POISON = [
    (PRESS, b'{"seq": 1, "note": "\\ud83d"}'),
    (PRESS, b'{"seq": 2, "note": NaN}'),
    (PRESS, b'{"seq": 3, "note": 1e999}'),
    (PRESS, b'{"seq": 4, "n": ' + b"9" * 4301 + b"}"),
    (PRESS, nested(250)),
    (PRESS, b'{"seq": 5}'),
    (PRESS, b'{"seq": 6, "note": "nul \\u0000 inside"}'),  # no text PostgreSQL's jsonb holds
]

e2e_topics = st.builds(
    lambda kind_channel, device: f"{ROOT}/{kind_channel[0]}/{device}/{kind_channel[1]}",
    st.sampled_from([("buttons", "events"), ("buttons", "status"), ("scanners", "scans")]),
    st.one_of(st.sampled_from(["btn-0001", "gate-north"]), topic_levels),
)


@pytest.mark.system
@pytest.mark.central
def test_generated_payloads_through_broker_gateway_and_central(
    tmp_path: Path, broker, central, make_gateway
):
    gateway = make_gateway(central.url)
    gateway.start()
    delivered: set[str] = set()

    # No shrinking: each example is a real round trip, and the batch that failed is printed.
    @settings(max_examples=4 * SCALE, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(batch=st.lists(st.tuples(e2e_topics, payloads), min_size=10, max_size=30))
    @example(batch=POISON)
    def run_batch(batch: list[tuple[str, bytes]]) -> None:
        expected = {
            event_id(parse_message(ROOT, topic, raw, now()).identity_key(), PRIMARY)
            for topic, raw in batch
        }
        publish(broker.port, batch)

        def arrived() -> bool:
            assert gateway.running(), f"the gateway died:\n{gateway.output()[-3000:]}"
            delivered.update(event["id"] for event in central.events())
            return expected <= delivered

        wait_for(arrived, 60, interval=0.2, what="every message's event at the central")

    run_batch()
    depth = outbox_depth(gateway.config)
    assert depth["dead_letters"] == 0, "the central refused an event the gateway made"
    assert "Traceback" not in gateway.output(), gateway.output()[-3000:]
