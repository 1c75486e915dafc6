"""50 presses from 50 buttons, each to the butler's open console exactly once, with latencies.

Real processes throughout: 50 simulated buttons (one paho client each) on a Mosquitto broker,
the gateway (its registry from the central's `registry.replace`), the central, and the butler's
live stream (server-sent events) read as the page reads it. Press→console latency is the time
from just before a button publishes to the stream delivering the new alert, on this test's own
clock (every process runs on this machine). The numbers are printed and written to
test-artifacts/press-to-console.txt; they are a report, not a pass mark.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.console import ConsoleClient, start_central
from tests.helpers.e2e import ARTIFACTS, FeedbackLog, buttons, percentile, synced_gateway
from tests.helpers.support import Broker, Central, Gateway, wait_for

pytestmark = [pytest.mark.system, pytest.mark.central]

PRESSES = 50
DEVICES = [f"btn-lat-{n:02d}" for n in range(PRESSES)]
REGISTRY = {
    "version": 1,
    "community": {
        "name": "康城社区",
        "duty_contact": {"name": "社区值班室", "phone": "0477-8590000"},
    },
    "butlers": [{"id": "b-sun", "name": "孙管家", "phone": "13800000009"}],
    "buildings": [{"id": "B9", "name": "9号楼", "primary_butler": "b-sun"}],
    "buttons": [
        {
            "device_id": device_id,
            "resident": {
                "name": f"住户{n:02d}",
                "phone": f"139000090{n:02d}",
                "building": "B9",
                "room": f"{1 + n // 4}0{1 + n % 4}",
            },
        }
        for n, device_id in enumerate(DEVICES)
    ],
}


@pytest.fixture
def central(tmp_path: Path, central_database: str | None) -> Iterator[Central]:
    central = start_central(tmp_path / "central", registry=REGISTRY, accounts=("b-sun",),
                            database=central_database)
    yield central
    central.kill()


@pytest.fixture
def gateway(central: Central, make_gateway) -> Gateway:
    return synced_gateway(make_gateway, central.url, DEVICES)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def test_fifty_presses_reach_the_console_once_each(
    broker: Broker, central: Central, gateway: Gateway
) -> None:
    butler = ConsoleClient(central)
    assert butler.login("b-sun").status == 200
    feedback = FeedbackLog()
    pressed_at: dict[str, float] = {}

    with buttons(broker.port, DEVICES, feedback) as pressable, butler.stream() as live:
        assert live.response.status == 200
        [(name, snapshot, _)] = wait_for(lambda: live.events[:1], what="the stream's snapshot")
        assert (name, snapshot) == ("snapshot", [])

        for device_id in DEVICES:  # one press per button, back to back
            pressed_at[device_id] = time.time()
            pressable[device_id].press()

        def new_alerts() -> dict[str, tuple[dict, float]]:
            """Each alert's first appearance on the stream: {alert id: (alert, arrival)}."""
            first: dict[str, tuple[dict, float]] = {}
            for event, data, arrived in list(live.events):
                if event == "alert":
                    first.setdefault(data["id"], (data, arrived))
            return first

        wait_for(lambda: len(new_alerts()) >= PRESSES, 60, what=f"{PRESSES} alerts on the stream")

        # The alert's later change (notified, when the stream itself pushed it) comes on the
        # same stream: once every alert has it, a duplicate would have had time to show.
        def all_notified() -> bool:
            notified = {
                data["id"]
                for event, data, _ in list(live.events)
                if event == "alert" and data["state"] == "notified"
            }
            return notified >= set(new_alerts())

        wait_for(all_notified, 30, what="every alert marked notified on the stream")
        time.sleep(1.0)
        first = new_alerts()
        events = [(e, d) for e, d, _ in list(live.events) if e == "alert"]

    # Exactly one new alert per button, raised once, one press each.
    by_device: dict[str, list[str]] = {}
    for alert, _ in first.values():
        by_device.setdefault(alert["device_id"], []).append(alert["id"])
    assert sorted(by_device) == DEVICES
    assert all(len(ids) == 1 for ids in by_device.values()), by_device
    for alert_id, (alert, _) in first.items():
        raised = [d for e, d in events if d["id"] == alert_id and d["state"] == "raised"]
        assert len(raised) == 1, f"alert {alert_id} raised {len(raised)} times on the stream"
        assert alert["state"] == "raised" and alert["presses"] == 1
        assert alert["resident"]["name"] == f"住户{DEVICES.index(alert['device_id']):02d}"
        assert alert["building"] == {"id": "B9", "name": "9号楼"}
    assert all(d["presses"] == 1 for _, d in events)

    latencies = {
        alert["device_id"]: arrived - pressed_at[alert["device_id"]]
        for alert, arrived in first.values()
    }
    leds = {
        device_id: items[0].at - pressed_at[device_id]
        for device_id in DEVICES
        if (items := feedback.of(device_id, "received"))
    }
    values = list(latencies.values())
    engine = "postgresql" if central.database else "sqlite"
    lines = [
        f"press → console live stream, {PRESSES} presses from {PRESSES} buttons, back to back",
        "(publish on the button's MQTT client → the butler's SSE stream delivers the new alert;",
        " real Mosquitto, gateway and central processes on one machine, one clock)",
        f"the central's database: {engine}",
        f"p50 {ms(percentile(values, 50))}",
        f"p99 {ms(percentile(values, 99))}",
        f"min {ms(min(values))}  max {ms(max(values))}",
    ]
    if leds:
        led = list(leds.values())
        lines.append(
            f"press → LED `received` over MQTT ({len(led)} buttons):"
            f" p50 {ms(percentile(led, 50))}, p99 {ms(percentile(led, 99))}"
        )
    lines.append("")
    lines.append("per press (ms): device press→console press→received")
    for device_id in DEVICES:
        led_text = f"{leds[device_id] * 1000:.1f}" if device_id in leds else "-"
        lines.append(f"{device_id} {latencies[device_id] * 1000:.1f} {led_text}")
    report = "\n".join(lines) + "\n"
    ARTIFACTS.mkdir(exist_ok=True)
    # One report per engine: the second run of the test must not overwrite the first's.
    (ARTIFACTS / f"press-to-console-{engine}.txt").write_text(report, encoding="utf-8")
    print("\n" + "\n".join(lines[:7]))
