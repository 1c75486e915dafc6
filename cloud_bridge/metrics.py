"""Prometheus metrics for the central, served at `GET /metrics`.

A registry of its own (never prometheus-client's global default), as the gateway's
(`edge/ops/metrics.py`). What the central's SQLite file already holds (alerts and their
steps, webhook attempts: delivered, retry, failed; when each gateway was last heard) is read
when Prometheus scrapes, so it cannot drift and survives a restart; what passes through the
handlers (events accepted) is counted as it happens.

| metric | type | labels |
|---|---|---|
| mashang_central_events_accepted_total | counter | gateway, kind (alert, log) |
| mashang_central_events_duplicate_total | counter | gateway |
| mashang_central_alerts | gauge | state (raised, notified, acknowledged, resolved), category |
| mashang_central_press_to_acknowledge_seconds | histogram | (help alerts: raised → acknowledged) |
| mashang_central_webhook_attempts_total | counter | target, format, url (no query), outcome |
| mashang_central_gateway_last_heard_timestamp_seconds | gauge | gateway |
| mashang_central_gateway_silent_seconds | gauge | gateway |
| mashang_central_gateway_silent | gauge | gateway (1: silent, as its gateway.silent alert says) |
| mashang_central_gateways_silent | gauge | |

A gateway is heard from whenever it makes an authentic request (ingest or the command
long-poll, which it renews all the time); the `gateways` table keeps it across restarts
(`receiver/gateways.py`). Whether a gateway is silent is `alerts/supervision.py`'s to say, for
the `gateway.silent` alert, the console's fleet view and these gauges alike; silent seconds
count from the central's start for a gateway never heard from.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from cloud_bridge.alerts.book import BY_CATEGORY
from cloud_bridge.alerts.states import AlertState
from cloud_bridge.alerts.supervision import Supervision
from cloud_bridge.httpkit import CONFIG_KEY, json_error
from cloud_bridge.receiver.store import Database

# Press → acknowledge: a butler on the way within seconds to an hour.
ACK_BUCKETS = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
KINDS = ("alert", "log")


class CentralMetrics:
    def __init__(self, db: Database, supervision: Supervision) -> None:
        disable_created_metrics()  # the *_created series only double every counter's lines
        self.registry = CollectorRegistry(auto_describe=True)
        self.supervision = supervision
        self.accepted = Counter(
            "mashang_central_events_accepted", "Events stored (new ids) from each gateway",
            ["gateway", "kind"], registry=self.registry,
        )
        self.duplicates = Counter(
            "mashang_central_events_duplicate",
            "Events sent again that the central already held (answered duplicate)",
            ["gateway"], registry=self.registry,
        )
        for gateway in supervision.configured:  # known series appear at zero before the first event
            self.duplicates.labels(gateway)
            for kind in KINDS:
                self.accepted.labels(gateway, kind)
        self.registry.register(_StoreCollector(self, db))

    # -- fed by the ingest handler ------------------------------------------------------------

    def stored(self, gateway_id: str, events: list[dict[str, Any]], accepted: list[str],
               duplicates: list[str]) -> None:
        kinds = {event["id"]: event["kind"] for event in events}
        for event_id in accepted:
            self.accepted.labels(gateway_id, kinds.get(event_id, "unknown")).inc()
        if duplicates:
            self.duplicates.labels(gateway_id).inc(len(duplicates))

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _StoreCollector:
    """Read at scrape time from the central's SQLite file."""

    def __init__(self, metrics: CentralMetrics, db: Database) -> None:
        self._metrics = metrics
        self._db = db

    def describe(self) -> list[Metric]:
        return []  # no pre-registration checks: these names are ours alone

    def collect(self) -> Iterator[Metric]:
        yield self._alerts()
        yield self._acknowledge_latency()
        yield self._webhooks()
        yield from self._gateways()

    def _alerts(self) -> Metric:
        counts = {(state, category): count for state, category, count in self._db.rows(
            "SELECT state, category, COUNT(*) FROM alerts GROUP BY state, category")}
        family = GaugeMetricFamily("mashang_central_alerts", "Alerts held, by state and category",
                                   labels=["state", "category"])
        categories = sorted({*BY_CATEGORY, *(category for _, category in counts)})
        for category in categories:
            for state in AlertState:
                family.add_metric([state.value, category], counts.get((state.value, category), 0))
        return family

    def _acknowledge_latency(self) -> Metric:
        columns = ", ".join(
            f"COALESCE(SUM(CASE WHEN acknowledged_at - raised_at <= {bound!r} THEN 1 ELSE 0 END),"
            " 0)" for bound in ACK_BUCKETS
        )
        row = self._db.rows(
            f"SELECT COUNT(*), COALESCE(SUM(acknowledged_at - raised_at), 0), {columns}"
            " FROM alerts WHERE category = 'help' AND acknowledged_at IS NOT NULL")[0]
        count, total, *cumulative = row
        buckets = [(_bound(bound), int(n)) for bound, n in zip(ACK_BUCKETS, cumulative,
                                                                strict=True)]
        buckets.append(("+Inf", int(count)))
        return HistogramMetricFamily(
            "mashang_central_press_to_acknowledge_seconds",
            "From a press reaching its gateway to a butler acknowledging the help alert",
            buckets=buckets, sum_value=float(total),
        )

    def _webhooks(self) -> Metric:
        family = Metric("mashang_central_webhook_attempts",
                        "Webhook posts to each robot (its URL without the query, where keys "
                        "travel), by outcome: delivered, retry (failed, tried again), failed "
                        "(given up)", "counter")
        for target, fmt, url, outcome, count in self._db.rows(
            "SELECT target, format, url, outcome, COUNT(*) FROM deliveries"
            " GROUP BY target, format, url, outcome ORDER BY target, format, url, outcome"):
            family.add_sample("mashang_central_webhook_attempts_total",
                              {"target": target, "format": fmt, "url": url,
                               "outcome": outcome}, count)
        return family

    def _gateways(self) -> Iterator[Metric]:
        now = time.time()
        supervision = self._metrics.supervision
        states = sorted(supervision.states(), key=lambda state: state.id)
        stamp = GaugeMetricFamily("mashang_central_gateway_last_heard_timestamp_seconds",
                                  "Unix time of the gateway's last authentic request",
                                  labels=["gateway"])
        age = GaugeMetricFamily("mashang_central_gateway_silent_seconds",
                                "Seconds since the gateway was last heard from (since the "
                                "central started, for one never heard)", labels=["gateway"])
        silent = GaugeMetricFamily("mashang_central_gateway_silent",
                                   f"1 when the gateway has been silent for more than "
                                   f"central.silent_after ({supervision.silent_after:.0f} s)",
                                   labels=["gateway"])
        quiet = 0
        for state in states:
            last = state.last_heard
            if last is not None:
                stamp.add_metric([state.id], last)
            seconds = max(0.0, now - (last if last is not None else supervision.started))
            age.add_metric([state.id], seconds)
            quiet += state.silent
            silent.add_metric([state.id], 1 if state.silent else 0)
        yield from (stamp, age, silent)
        yield GaugeMetricFamily("mashang_central_gateways_silent",
                                "Gateways silent for more than central.silent_after",
                                value=quiet)


def _bound(value: float) -> str:
    return f"{value:g}" if value != int(value) else f"{value:.1f}"


METRICS_KEY = web.AppKey("metrics", CentralMetrics)


async def metrics_page(request: web.Request) -> web.Response:
    """The scrape; behind central.metrics_token (a bearer token) when that is set."""
    token = request.app[CONFIG_KEY].central.metrics_token
    if token is not None:
        offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(offered.encode(), token.get_secret_value().encode()):
            raise json_error(web.HTTPUnauthorized, "metrics token required")
    body, content_type = await asyncio.to_thread(
        request.app[METRICS_KEY].exposition, request.headers.get("Accept"))
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


def add_metrics_route(app: web.Application, db: Database,
                      supervision: Supervision) -> CentralMetrics:
    metrics = CentralMetrics(db, supervision)
    app[METRICS_KEY] = metrics
    app.router.add_get("/metrics", metrics_page)
    return metrics
