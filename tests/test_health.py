"""/healthz and /readyz: live once subscribed; ready only with the broker connected, the
central answering and the outbox below its cap; each failing check named with its reason,
and readiness coming back by itself."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.helpers.support import (
    Broker,
    Central,
    device_topic,
    free_port,
    mosquitto_pub,
    set_option,
    wait_for,
)

pytestmark = pytest.mark.system


def probe(port: int, path: str) -> tuple[int | None, dict[str, Any]]:
    """(HTTP status, JSON body) of the gateway's health endpoint; (None, {}) if no answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None, {}


def ready(port: int) -> bool:
    status, body = probe(port, "/readyz")
    return status == 200 and body["ok"] is True and body["reasons"] == []


def not_ready_because(port: int, check: str, words: str):
    """The /readyz body when it is 503 and names `check` with `words` in its reason."""
    status, body = probe(port, "/readyz")
    if status != 503 or body.get("ok") is not False:
        return None
    failing = body["checks"].get(check, {})
    reason = next((r for r in body["reasons"] if r.startswith(f"{check}:")), "")
    return body if failing.get("ok") is False and words in reason else None


def test_ready_with_all_checks_named(broker, central, make_gateway):
    gateway = make_gateway(central.url)
    gateway.start()
    wait_for(lambda: ready(gateway.http_port), what="/readyz 200")
    status, body = probe(gateway.http_port, "/readyz")
    assert set(body["checks"]) == {"broker", "central", "outbox"}
    assert all(check["ok"] and check["detail"] for check in body["checks"].values())
    status, live = probe(gateway.http_port, "/healthz")
    assert status == 200 and live["ok"] is True
    assert live["checks"]["broker"]["ok"] and live["checks"]["pipeline"]["ok"]


def test_broker_down_then_back(tmp_path, central, make_gateway, broker):
    gateway = make_gateway(central.url)
    gateway.start()
    wait_for(lambda: ready(gateway.http_port), what="/readyz 200")

    broker.kill()
    body = wait_for(lambda: not_ready_because(gateway.http_port, "broker", "not connected"),
                    what="/readyz to blame the broker")
    assert body["checks"]["central"]["ok"] is True, "only the broker is down"
    assert f"127.0.0.1:{broker.port}" in body["checks"]["broker"]["detail"]
    status, live = probe(gateway.http_port, "/healthz")
    assert status == 503 and any(r.startswith("broker:") for r in live["reasons"])

    again = Broker(tmp_path / "broker", port=broker.port)
    again.start()
    try:
        wait_for(lambda: ready(gateway.http_port), what="/readyz 200 with the broker back")
        assert probe(gateway.http_port, "/healthz")[0] == 200
    finally:
        again.kill()


def test_central_unreachable_then_back(tmp_path, broker, make_gateway, central):
    gateway = make_gateway(central.url)
    gateway.start()
    wait_for(lambda: ready(gateway.http_port), what="/readyz 200")

    central.kill()
    body = wait_for(lambda: not_ready_because(gateway.http_port, "central", "failing"),
                    what="/readyz to blame the central")
    assert body["checks"]["broker"]["ok"] is True, "only the central is down"
    # Live all the same: the gateway keeps taking presses into its outbox.
    assert probe(gateway.http_port, "/healthz")[0] == 200

    again = Central(tmp_path / "central", port=central.port, database=central.database)
    again.start()
    try:
        wait_for(lambda: ready(gateway.http_port), what="/readyz 200 with the central back")
    finally:
        again.kill()


def test_central_never_reached(broker, make_gateway):
    gateway = make_gateway(f"http://127.0.0.1:{free_port()}")
    gateway.start()
    body = wait_for(lambda: not_ready_because(gateway.http_port, "central", "Connect"),
                    what="/readyz to say the central cannot be reached")
    assert "central:" in " ".join(body["reasons"])


def test_outbox_at_its_cap_then_drained(tmp_path, broker, make_gateway, central_database):
    """With the central away, alerts fill a small outbox (alerts are never evicted): not ready,
    naming the outbox. Once the central is back, every press arrives and readiness returns."""
    port = free_port()
    gateway = make_gateway(f"http://127.0.0.1:{port}")
    set_option(gateway.config, "outbox", "max_bytes", str(64 * 1024))
    gateway.start()
    presses = [json.dumps({"seq": seq, "note": "x" * 200}) for seq in range(400)]
    mosquitto_pub(broker.port, device_topic("btn-full"), presses, tmp_path / "pub")
    body = wait_for(lambda: not_ready_because(gateway.http_port, "outbox", "full"),
                    what="/readyz to say the outbox is full")
    assert "bytes" in body["checks"]["outbox"]["detail"]

    central = Central(tmp_path / "central", port=port, database=central_database)
    central.start()
    try:
        wait_for(lambda: len({e["data"]["seq"] for e in central.events()
                              if e["device_id"] == "btn-full"}) == 400,
                 60, interval=0.5, what="all 400 presses at the central")
        wait_for(lambda: ready(gateway.http_port), what="/readyz 200 once the outbox drained")
    finally:
        central.kill()
