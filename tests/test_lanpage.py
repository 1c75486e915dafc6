"""The LAN page at `/`: devices with last seen and battery, the outbox, alerts waiting; the
residents' names and phones only behind the page password."""

from __future__ import annotations

import base64
import json
import urllib.request

import pytest

from edge.gateway import REGISTRY_FILE
from edge.registry_store import RegistryStore
from mashang.registry import Building, Butler, Button, Registry, Resident
from tests.helpers.support import device_topic, free_port, publish, set_option, wait_for

pytestmark = pytest.mark.system

PASSWORD = "duty-room-4321"


def page(port: int, password: str | None = None) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/")
    if password is not None:
        token = base64.b64encode(f"duty:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/html")
        return response.read().decode()


def test_devices_outbox_and_privacy(broker, make_gateway):
    # The central is away: the press waits in the outbox, where the page shows it.
    gateway = make_gateway(f"http://127.0.0.1:{free_port()}")
    set_option(gateway.config, "http", "page_password", json.dumps(PASSWORD))
    gateway.data_dir.mkdir(parents=True, exist_ok=True)
    RegistryStore(gateway.data_dir / REGISTRY_FILE).replace(Registry(
        version=1,
        butlers=[Butler(id="b1", name="王管家", phone="13800000000")],
        buildings=[Building(id="B1", name="1号楼", primary_butler="b1")],
        buttons=[Button(device_id="btn-page", resident=Resident(
            name="张奶奶", building="B1", room="302", phone="13912345678"))],
    ))
    gateway.start()
    publish(broker.port, [
        (device_topic("btn-page", "status"), json.dumps({"state": "online", "battery": 15})),
        (device_topic("btn-page"), json.dumps({"seq": 1, "battery": 14})),
        (device_topic("btn-stranger"), json.dumps({"seq": 1, "battery": 93})),
    ])
    public = wait_for(lambda: (text := page(gateway.http_port)) and "btn-stranger" in text
                      and "14%" in text and text, what="both buttons on the page")

    assert "devices" in public and "outbox" in public
    assert "btn-page" in public and "1号楼" in public and "93%" in public
    assert "低 low" in public, "a battery under the threshold is flagged"
    assert "未登记 unregistered" in public
    assert "秒前" in public, "last seen, in words"
    # Without the password: no resident's name, room or phone anywhere on the page.
    for personal in ("张奶奶", "302", "13912345678"):
        assert personal not in public
    assert "log in" in public

    with_password = page(gateway.http_port, PASSWORD)
    assert "张奶奶" in with_password and "13912345678" in with_password
    # An alert waits in the outbox (the central is away), with its resident behind the password.
    assert "btn-page" in with_password.split("alerts waiting", 1)[1].split("devices", 1)[0]
    assert "张奶奶" not in page(gateway.http_port, "wrong")
