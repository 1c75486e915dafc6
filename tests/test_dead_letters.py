"""An event the central refuses permanently (422) is split out of its batch, parked in the
dead-letter table with the reason, and holds back nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.buffer.outbox import Outbox
from edge.gateway import OUTBOX_FILE
from tests.helpers.receiver import Receiver
from tests.helpers.support import (
    device_topic,
    mosquitto_pub,
    outbox_depth,
    outbox_report,
    publish,
    wait_for,
)

pytestmark = pytest.mark.system

BUTTONS = [f"btn-{n:04d}" for n in range(4)]
PRESSES_PER_BUTTON = 30
LOGS_PER_BUTTON = 100
POISONED_PRESS = ("btn-0002", 13)
POISONED_LOG = ("btn-0001", 57)


def is_poisoned(event: dict) -> bool:
    data = event.get("data") or {}
    key = (event.get("device_id"), data.get("seq", data.get("n")))
    if event.get("kind") == "alert":
        return key == POISONED_PRESS
    return key == POISONED_LOG


def opened_outbox(data_dir: Path) -> Outbox:
    return Outbox(data_dir / OUTBOX_FILE, max_bytes=256 * 1024 * 1024, log_ttl=7 * 24 * 3600)


def test_a_poisoned_event_is_dead_lettered_and_the_rest_flow(broker, make_gateway, tmp_path):
    with Receiver() as receiver:
        receiver.poison(is_poisoned)
        gateway = make_gateway(receiver.url)
        gateway.start()
        for device in BUTTONS:
            presses = [json.dumps({"seq": seq}) for seq in range(PRESSES_PER_BUTTON)]
            statuses = [
                json.dumps({"state": "online", "battery": 90, "n": n})
                for n in range(LOGS_PER_BUTTON)
            ]
            mosquitto_pub(broker.port, device_topic(device), presses, tmp_path)
            mosquitto_pub(broker.port, device_topic(device, "status"), statuses, tmp_path)

        def mine(events: list[dict]) -> list[dict]:
            return [e for e in events if e.get("device_id") in BUTTONS]

        expected = len(BUTTONS) * (PRESSES_PER_BUTTON + LOGS_PER_BUTTON) - 2
        receiver.wait_for_events(
            lambda events: len(mine(events)) >= expected, what="everything but the poison"
        )
        wait_for(
            lambda: outbox_depth(gateway.config)["dead_letters"] >= 2,
            what="two dead letters in the outbox report",
        )
        delivered = mine(receiver.events())
        assert len(delivered) == expected
        assert not [e for e in delivered if is_poisoned(e)]
        alerts = {(e["device_id"], e["data"]["seq"]) for e in delivered if e["kind"] == "alert"}
        assert alerts == {
            (device, seq) for device in BUTTONS for seq in range(PRESSES_PER_BUTTON)
        } - {POISONED_PRESS}
        logs = {(e["device_id"], e["data"]["n"]) for e in delivered if e["kind"] == "log"}
        assert logs == {(device, n) for device in BUTTONS for n in range(LOGS_PER_BUTTON)} - {
            POISONED_LOG
        }

        poisoned_ids = {
            event["id"]
            for request in receiver.requests()
            for event in request.events
            if is_poisoned(event)
        }
        assert len(poisoned_ids) == 2
        # Parked, the poison is not sent again: more traffic goes without it.
        tries = sum(bool(poisoned_ids & set(r.ids)) for r in receiver.requests())
        publish(broker.port, [(device_topic("btn-late"), json.dumps({"seq": 1}))])
        receiver.wait_for_events(
            lambda events: any(e.get("device_id") == "btn-late" for e in events),
            what="a later press",
        )
        assert sum(bool(poisoned_ids & set(r.ids)) for r in receiver.requests()) == tries

        # The last answer may still be on its way into the outbox: wait for it to empty.
        wait_for(
            lambda: outbox_depth(gateway.config) == {"alerts": 0, "logs": 0, "dead_letters": 2},
            what="an outbox holding only the two dead letters",
        )
        report = outbox_report(gateway.config)
        for event_id in poisoned_ids:
            assert event_id in report
        assert report.count("HTTP 422") == 2

        assert gateway.terminate() == 0

    outbox = opened_outbox(gateway.data_dir)
    try:
        letters = outbox.dead_letters()
        stats = outbox.stats()
    finally:
        outbox.close()
    assert stats.alerts.events == 0 and stats.logs.events == 0
    assert {letter.id for letter in letters} == poisoned_ids
    for letter in letters:
        assert letter.status == 422
        assert f"poisoned event {letter.id}" in letter.reason
        event = json.loads(letter.body)
        assert event["id"] == letter.id
        assert is_poisoned(event)


def test_refused_credentials_are_not_a_reason_to_dead_letter(broker, make_gateway, tmp_path):
    with Receiver() as receiver:
        receiver.fail(401)
        gateway = make_gateway(receiver.url)
        gateway.start()
        presses = [json.dumps({"seq": seq}) for seq in range(20)]
        mosquitto_pub(broker.port, device_topic("btn-0500"), presses, tmp_path)
        receiver.wait_for_requests(
            lambda requests: sum(r.status == 401 and bool(r.events) for r in requests) >= 4,
            what="the gateway trying again after 401s",
        )
        assert receiver.events() == []
        assert outbox_depth(gateway.config)["dead_letters"] == 0
        receiver.recover()
        receiver.wait_for_events(
            lambda events: len([e for e in events if e.get("device_id") == "btn-0500"]) >= 20,
            what="the presses once the credentials are accepted",
        )
        seqs = sorted(e["data"]["seq"] for e in receiver.events() if e["device_id"] == "btn-0500")
        assert seqs == list(range(20))
        wait_for(
            lambda: outbox_depth(gateway.config) == {"alerts": 0, "logs": 0, "dead_letters": 0},
            what="an empty outbox without dead letters",
        )
