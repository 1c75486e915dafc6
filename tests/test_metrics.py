"""/metrics in the Prometheus text format, parsed with prometheus_client's own parser, and its
counters checked against what really happened: messages in, events by type, rejects, retries,
latency observations, dead letters, evictions, outbox depth."""

from __future__ import annotations

import json
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.receiver import Receiver
from tests.helpers.support import device_topic, mosquitto_pub, publish, set_option, wait_for

pytestmark = pytest.mark.system

POISONED_SEQ = 7


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} from the gateway's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def is_poisoned(event: dict) -> bool:
    return event.get("device_id") == "btn-m9" and event["data"].get("seq") == POISONED_SEQ


def test_counters_match_what_happened(broker, make_gateway):
    with Receiver() as receiver:
        receiver.fail(503, times=2)  # the first two batches fail: two retries
        receiver.poison(is_poisoned)  # one press the central refuses for good: a dead letter
        gateway = make_gateway(receiver.url)
        gateway.start()
        presses = [(device_topic(f"btn-m{n}"), json.dumps({"seq": 1, "battery": 80}))
                   for n in range(5)]
        publish(broker.port, [
            *presses,
            (device_topic("btn-m9"), json.dumps({"seq": POISONED_SEQ})),
            (device_topic("btn-bad"), b"{not json"),
            # A press's bad fields make it no rejection (PROTOCOL §6); a status's do.
            (device_topic("btn-bad", "status"), json.dumps({"state": "exploded"})),
            (device_topic("btn-m0", "status"), json.dumps({"state": "online", "battery": 79})),
        ])
        receiver.wait_for_events(
            lambda events: {e["device_id"] for e in events if e["type"] == "button.press"}
            == {f"btn-m{n}" for n in range(5)}
            and len([e for e in events if e["type"] == "gateway.rejected"]) == 2,
            what="five presses and two rejections delivered",
        )

        def settled():
            samples = scrape(gateway.http_port)
            answered = [r.status for r in receiver.requests()]
            done = (
                value(samples, "mashang_dead_letters_total") == 1
                and value(samples, "mashang_outbox_events", **{"class": "alert"}) == 0
                and value(samples, "mashang_outbox_events", **{"class": "log"}) == 0
                and value(samples, "mashang_uplink_request_duration_seconds_count",
                          outcome="ok") == answered.count(200)
            )
            return (samples, answered) if done else None

        samples, answered = wait_for(settled, what="the metrics to settle")

    received = value(samples, "mashang_messages_received_total", kind="button", channel="events")
    assert received == 7
    assert value(samples, "mashang_messages_received_total", kind="button",
                 channel="status") == 2
    assert value(samples, "mashang_events_total", type="button.press", kind="alert") == 6
    assert value(samples, "mashang_events_total", type="gateway.rejected", kind="log") == 2
    assert value(samples, "mashang_events_total", type="button.status", kind="log") == 1
    assert value(samples, "mashang_messages_rejected_total", reason="payload is not JSON") == 1
    assert value(samples, "mashang_messages_rejected_total", reason="invalid fields") == 1

    # Every transient answer is one retry; every answer is one latency observation.
    assert answered.count(503) == 2
    assert value(samples, "mashang_uplink_retries_total") == 2
    assert value(samples, "mashang_uplink_request_duration_seconds_count",
                 outcome="error") == answered.count(503)
    assert value(samples, "mashang_uplink_request_duration_seconds_count",
                 outcome="refused") == answered.count(422) >= 1
    assert value(samples, "mashang_uplink_request_duration_seconds_bucket",
                 outcome="ok", le="+Inf") == answered.count(200)

    assert value(samples, "mashang_dead_letters_total") == 1
    assert value(samples, "mashang_outbox_dead_letters") == 1
    assert value(samples, "mashang_outbox_oldest_age_seconds", **{"class": "alert"}) == 0
    assert value(samples, "mashang_broker_connected") == 1
    assert value(samples, "mashang_outbox_full") == 0
    assert value(samples, "mashang_devices", state="online") >= 6
    assert value(samples, "mashang_outbox_evicted_total", reason="disk_cap") == 0


def test_evictions_counted(broker, make_gateway, tmp_path):
    """Logs pushed past a small outbox's cap are evicted, oldest first; the metric counts every
    log dropped, which is at least every status log that never reached the central."""
    with Receiver() as receiver:
        receiver.refuse()
        gateway = make_gateway(receiver.url)
        set_option(gateway.config, "outbox", "max_bytes", str(64 * 1024))
        gateway.start()
        # In rounds: the cap is enforced as each commit begins, not in the middle of one.
        for first in range(0, 800, 100):
            statuses = [json.dumps({"state": "online", "n": n, "pad": "y" * 100})
                        for n in range(first, first + 100)]
            mosquitto_pub(broker.port, device_topic("btn-chatty", "status"), statuses,
                          tmp_path / "pub")
            wait_for(lambda first=first: value(scrape(gateway.http_port),
                                               "mashang_messages_committed_total")
                     >= first + 100, what=f"status messages up to {first + 100} committed")
        samples = scrape(gateway.http_port)
        assert value(samples, "mashang_outbox_evicted_total", reason="disk_cap") > 0
        assert value(samples, "mashang_outbox_events", **{"class": "alert"}) == 0
        # The outbox stays near its cap.
        assert value(samples, "mashang_outbox_used_bytes") <= 2 * 64 * 1024

        receiver.recover()

        def drained():
            samples = scrape(gateway.http_port)
            empty = all(value(samples, "mashang_outbox_events", **{"class": c}) == 0
                        for c in ("alert", "log"))
            return samples if empty else None

        samples = wait_for(drained, 30, what="the outbox drained")
        events = receiver.events()
    counted = value(samples, "mashang_outbox_evicted_total", reason="disk_cap")
    statuses = {e["data"]["n"] for e in events if e["type"] == "button.status"}
    notices = [e["data"]["count"] for e in events if e["type"] == "gateway.evicted"]
    lost = 800 - len(statuses)
    assert lost > 0 and notices, "the test must have made the outbox evict"
    # Eviction notices are logs too and may be evicted in turn: the metric counts those as well.
    assert counted >= lost
    assert all(0 < count <= counted for count in notices)
