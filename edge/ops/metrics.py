"""Prometheus metrics for the gateway, served at /metrics on its HTTP listener.

A registry of its own (never prometheus-client's global default), so that nothing another
library registers leaks in, and so that a process could hold two gateways. Counters are fed
where things happen (a message arrives, events are committed, a request to the central ends);
what the gateway already knows (outbox depth and age, retries, dead letters, broker state) is
read when Prometheus scrapes, by a collector, so it can never drift.

| metric | type | labels |
|---|---|---|
| mashang_messages_received_total | counter | kind (button, scanner, unknown), channel |
| mashang_events_total | counter | type, kind (alert, log) |
| mashang_messages_rejected_total | counter | reason (its first words) |
| mashang_outbox_evicted_total | counter | reason (ttl, disk_cap) |
| mashang_outbox_events / _bytes | gauge | class (alert, log) |
| mashang_outbox_oldest_age_seconds | gauge | class (0 when empty) |
| mashang_outbox_used_bytes / _max_bytes | gauge | |
| mashang_outbox_dead_letters | gauge | (held in the dead-letter table) |
| mashang_dead_letters_total | counter | (parked since start) |
| mashang_uplink_request_duration_seconds | histogram | outcome (ok, refused, error, failed) |
| mashang_uplink_retries_total | counter | |
| mashang_uplink_events_sent_total | counter | class |
| mashang_broker_connected, mashang_outbox_full, mashang_fallback_active | gauge | |
| mashang_central_reachable, mashang_central_unreachable_seconds | gauge | |
| mashang_devices | gauge | state (online, offline) |
| mashang_devices_battery_low | gauge | |
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from types import SimpleNamespace
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from edge.buffer.outbox import EventClass
from edge.events import Event
from edge.ops.facts import GatewayFacts
from edge.source.messages import DeviceMessage

# answered(path, HTTP status or None, error or None), for each request to the central: once
# with neither when the request is sent, once with one of them when it ends.
Answered = Callable[[str, "int | None", "str | None"], None]
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REASON_WORDS = 40


def reason_label(reason: str | None) -> str:
    """A bounded label from a rejection reason: the words before its first colon."""
    head = (reason or "unknown").split(":", 1)[0].strip()
    return re.sub(r"\s+", " ", head)[:REASON_WORDS] or "unknown"


class Metrics:
    def __init__(self) -> None:
        # The *_created series only double every counter's lines on a small gateway.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages = Counter(
            "mashang_messages_received", "MQTT messages received from devices",
            ["kind", "channel"], registry=self.registry,
        )
        self.events = Counter(
            "mashang_events", "Events committed to the outbox, by type",
            ["type", "kind"], registry=self.registry,
        )
        self.rejected = Counter(
            "mashang_messages_rejected",
            "Device messages that could not be understood (gateway.rejected events)",
            ["reason"], registry=self.registry,
        )
        self.uplink_latency = Histogram(
            "mashang_uplink_request_duration_seconds",
            "Time for the central to answer a batch of events (POST /v1/ingest)",
            ["outcome"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        # Labels known up front appear at zero, so a dashboard sees them before the first one.
        for outcome in ("ok", "refused", "error", "failed"):
            self.uplink_latency.labels(outcome)
        # The counters' children by their labels: `labels()` takes a lock and validates its
        # arguments on every call, as much as the rest of counting a message.
        self._children: dict[tuple[Counter, tuple[str, ...]], Counter] = {}

    # -- fed by the gateway --------------------------------------------------------------------

    def received(self, message: DeviceMessage) -> None:
        """Any thread: one MQTT message arrived."""
        self._child(self.messages, message.device_kind or "unknown",
                    message.channel or "unknown").inc()

    def committed(self, events: Iterable[Event]) -> None:
        """Commit thread: these events are on disk."""
        for event in events:
            self._child(self.events, event.type, event.kind).inc()
            if event.type == "gateway.rejected":
                self._child(self.rejected, reason_label(event.data.get("reason"))).inc()

    def _child(self, counter: Counter, *labels: str) -> Counter:
        key = (counter, labels)
        child = self._children.get(key)
        if child is None:  # two threads may both make it: labels() gives them the same one
            child = self._children[key] = counter.labels(*labels)
        return child

    def watch(self, facts: GatewayFacts) -> None:
        self.registry.register(GatewayCollector(facts))

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The scrape body and its content type (text format, or OpenMetrics if asked for)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    # -- requests to the central -----------------------------------------------------------

    def trace_config(self, central_url: str, answered: Answered) -> aiohttp.TraceConfig:
        """Times every request of the gateway's HTTP session. Requests to the central are
        reported to `answered(path, status or None, error or None)`; batches of events
        (POST /v1/ingest) also feed the latency histogram. Duty-room webhooks are ignored."""
        base = central_url.rstrip("/")
        ingest = f"{base}/v1/ingest"
        trace = aiohttp.TraceConfig()

        def ours(params: Any) -> str | None:
            url = str(params.url)
            return url[len(base):].split("?", 1)[0] if url.startswith(base) else None

        async def start(session: Any, context: SimpleNamespace, params: Any) -> None:
            context.started = time.monotonic()

        async def end(session: Any, context: SimpleNamespace, params: Any) -> None:
            path = ours(params)
            if path is None:
                return
            status = params.response.status
            if str(params.url).startswith(ingest) and params.method == "POST":
                outcome = "ok" if status < 300 else "refused" if status < 500 else "error"
                self.uplink_latency.labels(outcome).observe(time.monotonic() - context.started)
            answered(path, status, None)

        async def failed(session: Any, context: SimpleNamespace, params: Any) -> None:
            path = ours(params)
            if path is None:
                return
            if str(params.url).startswith(ingest) and params.method == "POST":
                self.uplink_latency.labels("failed").observe(time.monotonic() - context.started)
            error = params.exception
            answered(path, None, f"{type(error).__name__}: {error}".rstrip(": "))

        async def sent(session: Any, context: SimpleNamespace, params: Any) -> None:
            # The central took our connection and request: for a long-poll, the answer (and
            # with it on_request_end) comes only when the poll ends, many seconds later.
            path = ours(params)
            if path is not None:
                answered(path, None, None)

        trace.on_request_start.append(start)
        trace.on_request_headers_sent.append(sent)
        trace.on_request_end.append(end)
        trace.on_request_exception.append(failed)
        return trace


class GatewayCollector:
    """Read at scrape time: what the gateway's stages already keep."""

    def __init__(self, facts: GatewayFacts) -> None:
        self._facts = facts

    def describe(self) -> list[Metric]:
        return []  # no pre-registration checks: these names are ours alone

    def collect(self) -> Iterator[Metric]:
        facts = self._facts
        stats = facts.outbox_stats()
        events = GaugeMetricFamily("mashang_outbox_events", "Events waiting in the outbox",
                                   labels=["class"])
        size = GaugeMetricFamily("mashang_outbox_bytes", "Bytes of events waiting, by class",
                                 labels=["class"])
        age = GaugeMetricFamily("mashang_outbox_oldest_age_seconds",
                                "Age of the oldest event waiting (0 when none)", labels=["class"])
        for klass, depth in ((EventClass.ALERT, stats.alerts), (EventClass.LOG, stats.logs)):
            name = klass.label
            events.add_metric([name], depth.events)
            size.add_metric([name], depth.bytes)
            age.add_metric([name], depth.oldest_age or 0.0)
        yield from (events, size, age)
        yield GaugeMetricFamily("mashang_outbox_used_bytes", "Bytes the outbox file uses",
                                value=stats.used_bytes)
        yield GaugeMetricFamily("mashang_outbox_max_bytes", "The outbox's size cap",
                                value=stats.max_bytes)
        yield GaugeMetricFamily("mashang_outbox_dead_letters",
                                "Events held in the dead-letter table", value=stats.dead_letters)
        evicted = CounterMetricFamily("mashang_outbox_evicted",
                                      "Log events dropped from the outbox (ttl or disk_cap)",
                                      labels=["reason"])
        dropped = dict(facts.outbox_usage.evicted)
        for reason in sorted({"ttl", "disk_cap", *dropped}):
            evicted.add_metric([reason], dropped.get(reason, 0))
        yield evicted

        uplink = facts.uplink
        yield CounterMetricFamily("mashang_uplink_retries",
                                  "Batches that failed transiently and were retried",
                                  value=uplink.retries)
        yield CounterMetricFamily("mashang_dead_letters",
                                  "Events the central refused permanently, parked since start",
                                  value=uplink.dead_lettered)
        sent = CounterMetricFamily("mashang_uplink_events_sent",
                                   "Events the central confirmed, by class", labels=["class"])
        for klass, count in sorted(uplink.sent.items()):
            sent.add_metric([klass.label], count)
        yield sent

        yield GaugeMetricFamily("mashang_broker_connected", "1 while connected to the broker",
                                value=1 if facts.broker.connected else 0)
        yield GaugeMetricFamily("mashang_outbox_full",
                                "1 while nothing fits in the outbox (MQTT acks held back)",
                                value=1 if facts.pipeline_full() else 0)
        central = facts.central
        reachable = central.failing_since is None and central.last_ok is not None
        yield GaugeMetricFamily("mashang_central_reachable",
                                "1 while the central answers (0 before its first answer and "
                                "while it fails)", value=1 if reachable else 0)
        yield GaugeMetricFamily("mashang_central_unreachable_seconds",
                                "How long the central has been failing (0 while it answers)",
                                value=central.unreachable_for())
        yield GaugeMetricFamily("mashang_fallback_active",
                                "1 while alerts go to the duty room (central out of reach)",
                                value=1 if facts.fallback_active() else 0)
        yield CounterMetricFamily("mashang_messages_committed",
                                  "MQTT messages committed and acked since start",
                                  value=facts.committed_messages())

        devices = facts.devices()
        states = GaugeMetricFamily("mashang_devices", "Buttons known to the gateway",
                                   labels=["state"])
        offline = sum(1 for device in devices.values() if device.get("offline"))
        states.add_metric(["online"], len(devices) - offline)
        states.add_metric(["offline"], offline)
        yield states
        yield GaugeMetricFamily("mashang_devices_battery_low", "Buttons whose battery is low",
                                value=sum(1 for d in devices.values() if d.get("battery_low")))
