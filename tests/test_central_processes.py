"""Several central processes on one PostgreSQL database, any of them answering any request:
the same batch handed to two processes at once is stored once; what one process does (an
alert raised, a command queued) reaches the consoles and long-polls served by another; and a
process killed with SIGKILL mid-stream loses nothing and doubles nothing while the other keeps
serving: every alert once, every escalation step once."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from devices.simulators.butler import request
from lab.postgres import PostgresServer
from mashang.signing import signed_headers
from tests.helpers.console import (
    ConsoleClient,
    Received,
    WebhookReceiver,
    alerts,
    feedback_for,
    now_text,
    poll_commands,
    press,
    start_central,
    steps,
)
from tests.helpers.e2e import ARTIFACTS
from tests.helpers.support import (
    GATEWAY_ID,
    GATEWAY_KEY,
    Central,
    free_port,
    wait_for,
)

pytestmark = pytest.mark.system

BUTLER = "b-wang"


def batch(events: list[dict[str, Any]]) -> bytes:
    return json.dumps({"gateway_id": GATEWAY_ID, "sent_at": now_text(), "events": events},
                      ensure_ascii=False).encode()


def post(url: str, body: bytes) -> dict[str, Any] | None:
    """One signed ingest, as a gateway sends it: the answer, or None when no answer came."""
    headers = {"Content-Type": "application/json"}
    headers |= signed_headers(GATEWAY_ID, GATEWAY_KEY.encode(), body)
    try:
        answer = request(f"{url}/v1/ingest", "POST", body, headers, timeout=15)
    except OSError:
        return None
    return answer.body if answer.status == 200 else None


def deliver(url: str, body: bytes) -> dict[str, Any]:
    """Again and again until a process takes it, as the gateway's outbox does."""
    return wait_for(lambda: post(url, body), 60, interval=0.1, what="a central to take the batch")


def feedback_polled(central: Central, cursor: str, alert_id: str) -> list[dict[str, Any]]:
    """Long-poll after `cursor` until feedback for the gateway's `alert_id` comes."""
    while True:
        page = poll_commands(central, cursor, 20)
        found = feedback_for(page["commands"], alert_id)
        if found or not page["commands"]:
            return found
        cursor = page["cursor"]


def logs(count: int) -> list[dict[str, Any]]:
    return [{"id": uuid.uuid4().hex, "kind": "log", "type": "scan.checkin", "priority": "low",
             "device_id": "scanner-1", "occurred_at": now_text(), "received_at": now_text(),
             "data": {"n": n}} for n in range(count)]


@pytest.fixture
def shared_database(postgres_server: PostgresServer) -> str:
    return postgres_server.new_database()


def test_one_batch_handed_to_two_processes_at_once_is_stored_once(
    tmp_path: Path, shared_database: str
) -> None:
    first = start_central(tmp_path / "a", database=shared_database)
    second = start_central(tmp_path / "b", database=shared_database)
    try:
        bodies = [batch([press(f"btn-90{n:02d}", uuid.uuid4().hex), *logs(20)])
                  for n in range(20)]
        with ThreadPoolExecutor(2) as pool:
            for body in bodies:
                start = threading.Barrier(2)

                def at_once(central: Central, body: bytes = body,
                            start: threading.Barrier = start) -> dict[str, Any]:
                    start.wait()
                    return deliver(central.url, body)

                answers = list(pool.map(at_once, (first, second)))
                ids = [event["id"] for event in json.loads(body)["events"]]
                assert sorted(answers[0]["accepted"] + answers[1]["accepted"]) == sorted(ids)
                assert sorted(answers[0]["duplicates"] + answers[1]["duplicates"]) == sorted(ids)
        raised = Counter(alert["device_id"] for alert in alerts(first, limit="1000"))
        assert raised == {f"btn-90{n:02d}": 1 for n in range(20)}
        assert len(first.events()) == len(second.events()) == 20 * 21
    finally:
        first.kill()
        second.kill()


def test_what_one_process_does_reaches_the_console_and_long_poll_of_another(
    tmp_path: Path, shared_database: str
) -> None:
    first = start_central(tmp_path / "a", database=shared_database)
    second = start_central(tmp_path / "b", database=shared_database, accounts=(BUTLER,))
    try:
        console = ConsoleClient(second)
        assert console.login(BUTLER).status == 200
        with console.stream() as live:
            wait_for(lambda: any(name == "snapshot" for name, _, _ in live.events),
                     what="the console's snapshot")
            pressed = press("btn-0007", uuid.uuid4().hex, action="long")
            deliver(first.url, batch([pressed]))  # through the other process
            seen = wait_for(lambda: [a for a in live.alerts() if a["device_id"] == "btn-0007"],
                            what="the alert on the other process's live stream")
        alert_id = seen[0]["id"]

        # A gateway long-polling the first process hears the acknowledgement made on the second
        # (its long-poll may first answer with other commands, the registry's: it polls again).
        cursor = poll_commands(first)["cursor"]
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(feedback_polled, first, cursor, pressed["data"]["alert_id"])
            assert console.act(alert_id, "acknowledge").status == 200
            feedback = waiting.result(timeout=60)
        assert [c["state"] for c in feedback] == ["acknowledged"]
    finally:
        first.kill()
        second.kill()


def test_a_process_killed_mid_stream_loses_and_doubles_nothing(
    tmp_path: Path, shared_database: str
) -> None:
    receiver = WebhookReceiver()
    port = free_port()
    settings = (
        "reuse_port = true\n"
        "[alerts]\nescalate_after = 1.0\nmax_escalations = 2\n"
        "[notify]\nbackoff_min = 0.05\nbackoff_max = 0.2\n"
        f'[[webhooks]]\nurl = "{receiver.url}/duty"\nto = ["duty"]\n'
    )
    first = start_central(tmp_path / "a", database=shared_database, port=port, extra=settings)
    second = start_central(tmp_path / "b", database=shared_database, port=port, extra=settings)
    devices = [f"btn-91{n:02d}" for n in range(24)]
    bodies = [batch([press(device, uuid.uuid4().hex), *logs(30)]) for device in devices]
    try:
        with ThreadPoolExecutor(4) as pool:
            sending = [pool.submit(deliver, first.url, body) for body in bodies]
            wait_for(lambda: sum(f.done() for f in sending) >= len(bodies) // 3,
                     what="a third of the stream stored")
            first.proc.kill()  # SIGKILL, mid-stream
            answers = [f.result(timeout=120) for f in sending]
        assert first.proc.wait(10) == -9
        assert all(answer is not None for answer in answers)

        sent = [event["id"] for body in bodies for event in json.loads(body)["events"]]
        stored = [event["id"] for event in second.events()]
        assert Counter(stored) == Counter(sent)  # every event once: none lost, none doubled

        def settled() -> list[dict] | None:
            found = alerts(second, limit="1000")
            done = [a for a in found if a["escalations"] == 2 and a["next_escalation_at"] is None]
            return found if len(found) == len(devices) == len(done) else None

        raised = wait_for(settled, 60, what="every alert escalated to the end")
        assert Counter(alert["device_id"] for alert in raised) == Counter(devices)
        for alert in raised:
            assert len(steps(second, alert["id"], "raised")) == 1
            assert len(steps(second, alert["id"], "escalated")) == 2
        # The duty contact's robot heard each alert's raise and both escalations, those the
        # killed process had queued too. Once each while both ran: only the one post the killed
        # process may have had in flight to the robot (one lane per robot) can come twice, its
        # lease retaken by the other process with no word of whether it went out.
        wanted = {f"{alert['id']}:{rung}" for alert in raised for rung in range(3)}
        wait_for(lambda: set(robot_posts(receiver.received)) == wanted, 60,
                 what="every alert's three posts at the duty contact's robot")
        posted = Counter(robot_posts(receiver.received))
        assert sum(count - 1 for count in posted.values()) <= 1, posted
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "central-processes-sigkill.txt").write_text(
            f"events sent {len(sent)}, distinct {len(set(sent))}; stored {len(stored)},"
            f" distinct {len(set(stored))}\n"
            f"alerts {len(raised)} for {len(devices)} buttons; raised steps"
            f" {sum(len(steps(second, a['id'], 'raised')) for a in raised)}, escalated steps"
            f" {sum(len(steps(second, a['id'], 'escalated')) for a in raised)}\n"
            f"robot posts {sum(posted.values())} for {len(wanted)} pages;"
            f" doubled {sum(count - 1 for count in posted.values())}\n")
    finally:
        first.kill()
        second.kill()
        receiver.close()


def robot_posts(received: list[Received]) -> list[str]:
    """Each post's alert and rung, from the generic webhook's JSON body."""
    return [f"{r.body['alert']['id']}:{r.body['escalation']}"
            for r in received if isinstance(r.body, dict) and "alert" in r.body]
