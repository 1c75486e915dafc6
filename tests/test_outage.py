"""The central goes away in every way it can — connections refused, 500s, requests that hang
past the gateway's timeout, slow answers — and comes back: nothing is lost, the alerts held
during the outage go before the log backlog, and Retry-After is honoured."""

from __future__ import annotations

import json
import time

import pytest

from tests.helpers.receiver import Receiver
from tests.helpers.support import device_topic, mosquitto_pub, outbox_depth, publish, wait_for

pytestmark = pytest.mark.system

PHASES = ["refused", "http500", "hanging", "slow", "recovered"]
# Messages published in the phases when nothing can be delivered.
OUTAGE = {"refused", "http500", "hanging"}
ALERTS_PER_PHASE = 8
LOGS_PER_PHASE = 60


def publish_phase(port: int, phase: str, folder) -> None:
    presses = [json.dumps({"seq": n, "phase": phase}) for n in range(ALERTS_PER_PHASE)]
    statuses = [
        json.dumps({"state": "online", "battery": 90, "n": n, "phase": phase})
        for n in range(LOGS_PER_PHASE)
    ]
    # Logs first: they are older than the alerts, and must still wait for them.
    mosquitto_pub(port, device_topic(f"btn-{phase}-s", "status"), statuses, folder)
    mosquitto_pub(port, device_topic(f"btn-{phase}-a"), presses, folder)


def phase_of(event: dict) -> str | None:
    return (event.get("data") or {}).get("phase")


def test_an_outage_loses_nothing_and_alerts_go_first(broker, make_gateway, tmp_path):
    with Receiver() as receiver:
        gateway = make_gateway(receiver.url)
        gateway.start()
        receiver.wait_for_events(
            lambda events: any(e["type"] == "gateway.started" for e in events),
            what="gateway.started",
        )

        def held() -> dict[str, int]:
            return outbox_depth(gateway.config)

        def requests_in(mode: str, status: int | None = None) -> int:
            return sum(
                r.mode == mode and bool(r.events) and (status is None or r.status == status)
                for r in receiver.requests()
            )

        # 1. Connections refused: everything stays in the outbox.
        receiver.refuse()
        publish_phase(broker.port, "refused", tmp_path)
        wait_for(
            lambda: (d := held())["alerts"] >= ALERTS_PER_PHASE and d["logs"] >= LOGS_PER_PHASE,
            what="the first outage messages held in the outbox",
        )

        # 2. 500 for every request: retried, with backoff.
        receiver.fail(500)
        publish_phase(broker.port, "http500", tmp_path)
        wait_for(lambda: requests_in("fail", 500) >= 3, what="three requests answered 500")
        wait_for(lambda: held()["alerts"] >= 2 * ALERTS_PER_PHASE, what="the 500-phase alerts held")

        # 3. Requests held unanswered: the gateway gives up on each (its timeout) and retries.
        receiver.hang()
        publish_phase(broker.port, "hanging", tmp_path)
        wait_for(
            lambda: requests_in("hang") >= 2,
            timeout=30,
            what="a request retried after the gateway timed out on a hanging one",
        )
        wait_for(lambda: held()["alerts"] >= 3 * ALERTS_PER_PHASE, what="all outage alerts held")
        assert receiver.events_where(lambda e: phase_of(e) in OUTAGE) == []

        # 4. Slow answers, within the gateway's timeout: delivery resumes.
        receiver.slow(0.4)
        publish_phase(broker.port, "slow", tmp_path)
        wait_for(lambda: requests_in("slow", 200) >= 2, what="two slow answers")

        # 5. Back to normal.
        receiver.recover()
        publish_phase(broker.port, "recovered", tmp_path)

        def complete(events: list[dict]) -> bool:
            return len([e for e in events if phase_of(e)]) >= len(PHASES) * (
                ALERTS_PER_PHASE + LOGS_PER_PHASE
            )

        receiver.wait_for_events(complete, timeout=60, what="every message of every phase")
        wait_for(
            lambda: held() == {"alerts": 0, "logs": 0, "dead_letters": 0},
            what="an empty outbox",
        )

        events = [e for e in receiver.events() if phase_of(e)]
        # Nothing lost, nothing doubled: each message is one event.
        seen: dict[tuple, str] = {}
        for event in events:
            key = (
                event["kind"],
                event["device_id"],
                event["data"].get("seq", event["data"].get("n")),
            )
            assert key not in seen, f"{key} arrived as two events"
            seen[key] = event["id"]
        for phase in PHASES:
            alerts = sorted(
                e["data"]["seq"] for e in events if phase_of(e) == phase and e["kind"] == "alert"
            )
            logs = sorted(
                e["data"]["n"] for e in events if phase_of(e) == phase and e["kind"] == "log"
            )
            assert alerts == list(range(ALERTS_PER_PHASE)), phase
            assert logs == list(range(LOGS_PER_PHASE)), phase

        # Alerts committed during the outage arrived before any of the log backlog.
        order = {event["id"]: position for position, event in enumerate(receiver.events())}
        outage_alerts = [
            order[e["id"]] for e in events if phase_of(e) in OUTAGE and e["kind"] == "alert"
        ]
        outage_logs = [
            order[e["id"]] for e in events if phase_of(e) in OUTAGE and e["kind"] == "log"
        ]
        assert max(outage_alerts) < min(outage_logs), (
            "a log of the backlog went before an alert held during the outage"
        )
        # And every request the gateway made was signed and well formed.
        assert all(r.signature_error is None for r in receiver.requests())
        assert gateway.running()


def retry_after_window(broker, receiver, status: int, retry_after: float, second_press: bool):
    """The requests that arrived inside the Retry-After window of the first refused one."""
    receiver.fail(status, retry_after=retry_after)
    publish(broker.port, [(device_topic("btn-0700"), json.dumps({"seq": 1}))])
    [first] = receiver.wait_for_requests(
        lambda requests: [r for r in requests if r.status == status and r.events][:1],
        what=f"the first request answered {status}",
    )
    if second_press:
        # Another alert inside the window: it too must wait for the window to pass.
        publish(broker.port, [(device_topic("btn-0701"), json.dumps({"seq": 2}))])
    # The window as the receiver saw it, less a margin for the answer's way to the gateway.
    window_ends = first.answered + retry_after - 0.3
    time.sleep(max(0.0, window_ends - time.monotonic()))
    during = [r for r in receiver.requests() if r.index > first.index and r.arrived < window_ends]
    receiver.recover()
    devices = {"btn-0700", "btn-0701"} if second_press else {"btn-0700"}
    receiver.wait_for_events(
        lambda events: devices <= {e["device_id"] for e in events},
        what="the presses after the window",
    )
    return during


def started_gateway(make_gateway, receiver):
    gateway = make_gateway(receiver.url)
    gateway.start()
    receiver.wait_for_events(
        lambda events: any(e["type"] == "gateway.started" for e in events),
        what="gateway.started",
    )
    return gateway


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(broker, make_gateway, status):
    with Receiver() as receiver:
        started_gateway(make_gateway, receiver)
        during = retry_after_window(broker, receiver, status, 3, second_press=False)
        assert during == [], f"{len(during)} requests inside the Retry-After window"


def test_a_new_alert_waits_out_retry_after_too(broker, make_gateway):
    with Receiver() as receiver:
        started_gateway(make_gateway, receiver)
        during = retry_after_window(broker, receiver, 429, 3, second_press=True)
        assert during == [], f"{len(during)} requests inside the Retry-After window"
