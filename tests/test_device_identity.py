"""What a device sends is data, never identity or meaning (PROTOCOL §6).

- A payload cannot pose as a resident: the resident, building and butlers of an alert come
  from the registry alone; a device key that collides with one the gateway derives is kept,
  unchanged, under `data.device`. An event's kind, type and priority never come from the
  payload.
- Made-up device ids cannot grow the gateway without bound: 10,000 unregistered ids heard
  once each leave `devices.json` and the gateway's memory within a stated bound, and raise
  no alert at all.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.config import RulesSection
from edge.events import now
from edge.gateway import DEVICES_FILE
from edge.ops.lanpage import DeviceBoard, device_rows
from edge.source.messages import parse_message
from edge.transform.rules import Rules
from mashang.registry import Building, Butler, Button, Registry, Resident
from tests.helpers.support import device_topic, publish, wait_for

ROOT = "mashang/v1"
REGISTRY = Registry(
    butlers=[Butler(id="b-wang", name="王管家")],
    buildings=[Building(id="B3", name="3号楼", primary_butler="b-wang")],
    buttons=[Button(device_id="btn-0007",
                    resident=Resident(name="张秀英", building="B3", room="1201"))],
)

FAKE_IDS = 10_000
# devices.json keeps at most rules.max_unregistered (default 1,000) unregistered devices, at
# about 180 bytes each.
DEVICES_FILE_BOUND = 400 * 1024
# The gateway idles near 60 MB here; the burst may add transient allocations, not state.
RSS_BOUND_MB = 100


@pytest.mark.unit
def test_a_device_cannot_pose_as_a_resident_nor_set_what_the_gateway_derives():
    payload = json.dumps({
        "action": "long", "building": {"id": "B3"}, "presses": 99, "kind": "log",
        "resident": {"name": "李秀英", "room": "1201", "phone": "17000000000"},
        "priority": "low", "type": "visit.checkin", "alert_id": "forged",
    }).encode()
    message = parse_message(ROOT, f"{ROOT}/buttons/btn-stranger/events", payload, now())
    [press] = Rules(RulesSection(), REGISTRY, None).evaluate(message)
    assert (press.kind, press.type, press.priority) == ("alert", "button.press", "critical")
    data = press.data
    assert "resident" not in data and "building" not in data
    assert data["unregistered"] is True
    assert data["presses"] == 1 and data["alert_id"] != "forged"
    assert data["device"]["resident"]["name"] == "李秀英", "kept, but only as the device's word"
    registered = parse_message(ROOT, f"{ROOT}/buttons/btn-0007/events", payload, now())
    [press] = Rules(RulesSection(), REGISTRY, None).evaluate(registered)
    assert press.data["resident"]["name"] == "张秀英"
    assert press.data["building"] == {"id": "B3", "name": "3号楼"}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.system
def test_a_device_cannot_pose_as_a_resident(broker, central, make_gateway):
    gateway = make_gateway(central.url)
    gateway.start()
    forged = {"action": "long", "building": {"id": "B3"}, "kind": "log", "priority": "low",
              "resident": {"name": "李秀英", "room": "1201", "phone": "17000000000"},
              "type": "visit.checkin", "alert_id": "forged", "presses": 9}
    publish(broker.port, [(device_topic("btn-attacker"), json.dumps(forged))])
    [press] = wait_for(lambda: central.events("button.press"), what="the press")
    assert (press["kind"], press["priority"], press["device_id"]) == (
        "alert", "critical", "btn-attacker")
    data = press["data"]
    assert "resident" not in data and "building" not in data
    assert data["unregistered"] is True and data["alert_id"] != "forged"
    assert data["presses"] == 1
    assert data["device"]["resident"]["phone"] == "17000000000", "kept as the device's word"
    assert central.events("visit.checkin") == []


@pytest.mark.system
def test_ten_thousand_made_up_ids_stay_within_bounds(broker, central, make_gateway):
    gateway = make_gateway(central.url)
    gateway.start()
    publish(broker.port, [(device_topic(f"fake-{n:05d}", "status"), b'{"state": "online"}')
                          for n in range(FAKE_IDS)])
    publish(broker.port, [(device_topic("btn-after"), json.dumps({"seq": 1}))])
    wait_for(lambda: central.events("button.press"), 60, what="the press after the burst")
    rss = rss_mb(gateway.proc.pid)
    assert gateway.terminate() == 0
    state = gateway.data_dir / DEVICES_FILE
    size = state.stat().st_size
    remembered = json.loads(state.read_text())
    print(f"\n{FAKE_IDS} made-up ids: devices.json {size:,} bytes, {len(remembered)} devices; "
          f"RSS {rss:.1f} MB")
    assert len(remembered) <= 1001
    assert "btn-after" in remembered and "fake-09999" in remembered
    assert size <= DEVICES_FILE_BOUND
    assert rss <= RSS_BOUND_MB
    assert not [e for e in central.events() if e["kind"] == "alert"
                and e["device_id"].startswith("fake-")], "made-up ids raise no alert"


@pytest.mark.unit
def test_the_lan_pages_memory_of_devices_is_bounded_and_registered_buttons_come_first():
    """Found by trying the gateway as an attacker: 120,000 made-up ids grew it by 54 MB, and
    500 made-up offline ids pushed a registered offline button off the page."""
    rules = Rules(RulesSection(), REGISTRY, None)
    board = DeviceBoard(remembered=100)
    board.committed(rules.evaluate(parse_message(
        ROOT, f"{ROOT}/buttons/btn-0007/status", b'{"state": "offline"}', now())))
    for number in range(5000):
        board.committed(rules.evaluate(parse_message(
            ROOT, f"{ROOT}/buttons/a{number:05d}/status", b'{"state": "offline"}', now())))
    assert len(board.snapshot()) == 100
    rows = device_rows(rules.device_snapshot(), board.snapshot(), REGISTRY)
    assert rows[0]["device_id"] == "btn-0007" and rows[0]["offline"]
    assert rows[0]["resident"]["name"] == "张秀英"
