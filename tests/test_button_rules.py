"""The gateway's rules for help buttons: one alert per emergency, a long press is critical, an
unknown button still raises an alert, offline by last will and by silence, a low battery once
per crossing, and the local fallback when the central is out of reach."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web

from devices.simulators.buttons import SimulatedButton
from edge.gateway import REGISTRY_FILE
from edge.registry_store import RegistryStore
from lab.processes import free_port
from mashang.registry import Building, Butler, Button, Community, Contact, Registry, Resident
from tests.helpers.support import get_json, wait_for

REGISTRY = Registry(
    version=1,
    community=Community(name="康城社区", duty_contact=Contact(name="社区值班室", phone="110")),
    butlers=[Butler(id="b-wang", name="王管家", phone="13800000001"),
             Butler(id="b-li", name="李管家")],
    buildings=[Building(id="B3", name="3号楼", primary_butler="b-wang", backup_butler="b-li")],
    buttons=[
        Button(device_id="btn-0007", resident=Resident(name="张秀英", phone="13900000007",
                                                       building="B3", room="1201")),
        # Supervised every 2 seconds, so silence shows within a test.
        Button(device_id="btn-quiet", supervision_hours=2 / 3600,
               resident=Resident(name="刘桂兰", building="B3", room="302")),
    ],
)


def start_gateway(make_gateway, central_url: str, rules: str = "", **sections: str):
    gateway = make_gateway(central_url, sections={"rules": rules, **sections})
    RegistryStore(Path(gateway.data_dir) / REGISTRY_FILE).replace(REGISTRY)
    gateway.start()
    return gateway


def events_of(central, device_id: str, *types: str) -> list[dict]:
    return [e for e in central.events() if e["device_id"] == device_id and e["type"] in types]


def wait_events(central, device_id: str, count: int, *types: str) -> list[dict]:
    return wait_for(lambda: (found := events_of(central, device_id, *types)) and
                    len(found) >= count and found, 15, what=f"{count} × {types} of {device_id}")


@pytest.fixture
def button(broker):
    started: list[SimulatedButton] = []

    def make(device_id: str) -> SimulatedButton:
        device = SimulatedButton(device_id, port=broker.port)
        device.start()
        started.append(device)
        return device

    yield make
    for device in started:
        device.stop()


@pytest.mark.system
def test_presses_within_the_guard_window_are_one_alert(make_gateway, central, button):
    start_gateway(make_gateway, central.url, "guard_window = 3.0\n")
    resident = button("btn-0007")
    resident.press("single")
    resident.press("single")
    resident.press("long")
    first, second, third = wait_events(central, "btn-0007", 3, "button.press", "button.repeat")
    assert [e["type"] for e in (first, second, third)] == [
        "button.press", "button.repeat", "button.repeat"]
    assert {e["data"]["alert_id"] for e in (first, second, third)} == {first["data"]["alert_id"]}
    assert [e["data"]["presses"] for e in (first, second, third)] == [1, 2, 3]
    assert third["priority"] == "critical", "a long press raises the emergency to critical"
    assert first["data"]["resident"]["name"] == "张秀英"
    assert first["data"]["butlers"]["primary"]["name"] == "王管家"
    # When the guard window ends, the next press is a new emergency: tests/test_rules_clock.py.


@pytest.mark.system
def test_an_unknown_button_still_raises_an_alert(make_gateway, central, button):
    start_gateway(make_gateway, central.url)
    button("btn-stranger").press("single")
    [alert] = wait_events(central, "btn-stranger", 1, "button.press")
    assert alert["kind"] == "alert"
    assert alert["data"]["unregistered"] is True
    assert alert["data"]["duty_contact"]["name"] == "社区值班室"


@pytest.mark.system
def test_offline_by_last_will_then_online_again(make_gateway, central, broker, button):
    start_gateway(make_gateway, central.url)
    first = button("btn-0007")
    first.stop(clean=False)  # the connection drops: the broker publishes the last will
    [offline] = wait_events(central, "btn-0007", 1, "button.offline")
    assert offline["data"]["reason"] == "last_will"
    assert offline["priority"] == "normal"
    assert offline["data"]["resident"]["room"] == "1201"
    button("btn-0007")  # back: its online status
    wait_events(central, "btn-0007", 1, "button.online")


@pytest.mark.system
def test_offline_by_silence_past_the_supervision_interval(make_gateway, central):
    start_gateway(make_gateway, central.url, "tick_interval = 0.2\n")
    [offline] = wait_events(central, "btn-quiet", 1, "button.offline")
    assert offline["data"]["reason"] == "silent"
    # Silent for longer still gives no second reminder: tests/test_rules_clock.py.


@pytest.mark.system
def test_a_low_battery_warns_once_per_crossing(make_gateway, central, button):
    start_gateway(make_gateway, central.url)
    device = button("btn-0007")
    for level in (50, 19, 15, 12, 30, 10):
        device.status("online", battery=level)
    # Seven heartbeats (the one at start, six readings) and, beside them, the warnings.
    wait_events(central, "btn-0007", 9, "button.status", "button.battery_low")
    warnings = events_of(central, "btn-0007", "button.battery_low")
    assert [w["data"]["battery"] for w in warnings] == [19, 10]


class DutyRoom:
    """The community duty room's local webhook: a real HTTP server on loopback."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[dict] = []
        self._ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()
        self._ready.wait(10)

    def _serve(self) -> None:
        async def take(request: web.Request) -> web.Response:
            self.received.append(await request.json())
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_post("/duty", take)
        runner = web.AppRunner(app)
        loop = asyncio.new_event_loop()
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        loop.run_forever()


@pytest.mark.system
def test_local_fallback_when_the_central_is_unreachable(make_gateway, button):
    duty = DutyRoom()
    nowhere = f"http://127.0.0.1:{free_port()}"
    gateway = start_gateway(
        make_gateway, nowhere,
        fallback=f'after = 1.0\nwebhooks = ["http://127.0.0.1:{duty.port}/duty"]\n',
    )
    button("btn-0007").press("long")
    def press_posted() -> dict | None:
        return next((p for p in duty.received if p["alert"]["type"] == "button.press"), None)

    posted = wait_for(press_posted, 20, what="the press at the duty room's webhook")
    assert "张秀英" in posted["text"]
    page = wait_for(lambda: fetch_text(f"http://127.0.0.1:{gateway.http_port}/"), 10)
    assert "中心平台暂时无法连接" in page
    assert "张秀英" not in page, "residents' names only behind the page password"
    assert get_json(f"http://127.0.0.1:{gateway.http_port}/healthz") is not None


def fetch_text(url: str) -> str | None:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return text if "btn-0007" in text else None


@pytest.mark.unit
def test_registry_file_is_replaced_atomically(tmp_path):
    store = RegistryStore(tmp_path / REGISTRY_FILE)
    store.replace(REGISTRY)
    assert store.load() == REGISTRY
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temp file left"
    assert json.loads((tmp_path / REGISTRY_FILE).read_text())["meta"]["1"]["version"] == 1
