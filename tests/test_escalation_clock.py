"""Escalation by the clock, in-process: the alert book and engine read time from a fake clock
the test moves by hand, so "unacknowledged for `escalate_after`" is checked to the second with
no sleeps, no event loop and no processes (the system tests in test_escalation.py cover the
real timers)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud_bridge.alerts.book import Alert, AlertBook
from cloud_bridge.alerts.engine import AlertEngine
from cloud_bridge.alerts.live import AlertBus
from cloud_bridge.alerts.states import AlertState, Step
from cloud_bridge.commands.queue import CommandQueue
from cloud_bridge.config import AlertsSection, CentralConfig
from cloud_bridge.notify.webhooks import Notifier
from cloud_bridge.receiver.store import Database, EventStore
from cloud_bridge.registry.source import RegistrySource
from tests.helpers.clock import FakeClock

pytestmark = [pytest.mark.unit, pytest.mark.central]

ESCALATE_AFTER = 60.0
MAX_ESCALATIONS = 3
GATEWAY = "g-1"


@dataclass
class Central:
    store: EventStore
    book: AlertBook
    engine: AlertEngine
    clock: FakeClock

    def raise_alert(self, device_id: str) -> Alert:
        """A help press reaches the central; the clock is then the moment it arrived."""
        event = {
            "id": uuid.uuid4().hex,
            "kind": "alert",
            "type": "button.press",
            "priority": "high",
            "device_id": device_id,
            "data": {"action": "single", "alert_id": uuid.uuid4().hex, "presses": 1},
        }
        self.store.add(GATEWAY, [event])
        self.clock.now = self.store.list()[-1]["arrived_at"]
        _, changes = self.book.feed()
        [change] = changes
        assert change.step is Step.RAISED
        return change.alert

    def alert(self, alert_id: str) -> Alert:
        alert = self.book.get(alert_id)
        assert alert is not None
        return alert

    def escalated_steps(self, alert_id: str) -> list[dict]:
        return [s for s in self.book.steps(alert_id) if s["step"] == Step.ESCALATED]


@pytest.fixture
def central(tmp_path: Path, database: Database) -> Central:
    db = database
    registry = RegistrySource(db)  # none yet: every alert goes to duty
    commands = CommandQueue(db, registry, [GATEWAY])
    settings = AlertsSection(escalate_after=ESCALATE_AFTER, max_escalations=MAX_ESCALATIONS)
    clock = FakeClock()
    book = AlertBook(db, settings, clock=clock)
    config = CentralConfig.model_validate({"central": {"data_dir": tmp_path}})
    notifier = Notifier(db, config, registry)  # never started: nothing is sent
    engine = AlertEngine(book, registry, notifier, AlertBus(), commands)
    return Central(EventStore(db), book, engine, clock)


def test_an_unacknowledged_alert_escalates_only_after_escalate_after(central: Central) -> None:
    alert = central.raise_alert("btn-0001")
    raised_at = central.clock()
    assert alert.state is AlertState.RAISED
    assert alert.next_escalation_at == pytest.approx(raised_at + ESCALATE_AFTER)
    assert central.engine.escalation_delay(alert) == pytest.approx(ESCALATE_AFTER)

    # A moment before the deadline: not due, and asking the book changes nothing.
    central.clock.advance(ESCALATE_AFTER - 0.5)
    assert not alert.escalation_due(central.clock())
    assert central.engine.escalation_delay(alert) == pytest.approx(0.5)
    assert central.book.escalate(alert.id) is None
    assert central.alert(alert.id).escalations == 0
    assert central.escalated_steps(alert.id) == []

    # At the deadline: the first escalation, and the next one is escalate_after later.
    central.clock.advance(0.5)
    assert central.engine.escalation_delay(alert) == 0.0
    escalated = central.book.escalate(alert.id)
    assert escalated is not None and escalated.escalations == 1
    assert escalated.next_escalation_at == pytest.approx(central.clock() + ESCALATE_AFTER)
    [step] = central.escalated_steps(alert.id)
    assert step["at"] == pytest.approx(central.clock()) and step["detail"] == {"escalation": 1}

    # Asked again at once (a timer that ran ahead of the clock): not due yet, nothing counted.
    assert central.book.escalate(alert.id) is None
    central.clock.advance(ESCALATE_AFTER - 1)
    assert central.book.escalate(alert.id) is None
    assert central.alert(alert.id).escalations == 1

    central.clock.advance(1)
    second = central.book.escalate(alert.id)
    assert second is not None and second.escalations == 2


def test_an_alert_reached_but_not_acknowledged_still_escalates(central: Central) -> None:
    alert = central.raise_alert("btn-0002")
    central.clock.advance(5)
    change = central.book.notified(alert.id, "duty", {"channel": "webhook"})
    assert change is not None and change.alert.state is AlertState.NOTIFIED

    central.clock.advance(ESCALATE_AFTER - 5)
    escalated = central.book.escalate(alert.id)
    assert escalated is not None and escalated.escalations == 1


def test_an_acknowledged_alert_never_escalates(central: Central) -> None:
    alert = central.raise_alert("btn-0003")
    central.clock.advance(ESCALATE_AFTER / 2)
    change = central.book.acknowledge(alert.id, "butler:b-wang", "王师傅")
    assert change is not None and change.step is Step.ACKNOWLEDGED
    acknowledged = change.alert
    assert acknowledged.state is AlertState.ACKNOWLEDGED
    assert acknowledged.acknowledged_at == pytest.approx(central.clock())
    assert acknowledged.next_escalation_at is None
    assert central.engine.escalation_delay(acknowledged) is None

    for _ in range(10):  # long past every deadline it had
        central.clock.advance(ESCALATE_AFTER * 10)
        assert not central.alert(alert.id).escalation_due(central.clock())
        assert central.book.escalate(alert.id) is None
    assert central.alert(alert.id).escalations == 0
    assert central.escalated_steps(alert.id) == []
    assert central.book.escalating() == []  # nothing for the engine to restore a timer for


def test_acknowledging_after_an_escalation_stops_the_next_one(central: Central) -> None:
    alert = central.raise_alert("btn-0004")
    central.clock.advance(ESCALATE_AFTER)
    assert central.book.escalate(alert.id) is not None
    central.clock.advance(1)
    assert central.book.acknowledge(alert.id, "butler:b-wang", "王师傅") is not None

    central.clock.advance(ESCALATE_AFTER * 5)
    assert central.book.escalate(alert.id) is None
    assert central.alert(alert.id).escalations == 1


def test_escalation_stops_after_max_escalations(central: Central) -> None:
    alert = central.raise_alert("btn-0005")
    for count in range(1, MAX_ESCALATIONS + 1):
        central.clock.advance(ESCALATE_AFTER)
        escalated = central.book.escalate(alert.id)
        assert escalated is not None and escalated.escalations == count
    assert central.alert(alert.id).next_escalation_at is None

    central.clock.advance(ESCALATE_AFTER * 5)
    assert central.book.escalate(alert.id) is None
    assert central.alert(alert.id).escalations == MAX_ESCALATIONS
    assert central.alert(alert.id).state is AlertState.RAISED  # still open, waiting quietly
