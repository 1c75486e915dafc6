from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.helpers.support import Broker, Central, Gateway


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path / "broker")
    broker.start()
    yield broker
    broker.kill()


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    central = Central(tmp_path / "central")
    central.start()
    yield central
    central.kill()


@pytest.fixture
def make_gateway(tmp_path: Path, broker: Broker) -> Iterator:
    started: list[Gateway] = []

    def make(central_url: str, **kwargs) -> Gateway:
        gateway = Gateway(tmp_path / f"gateway{len(started)}", broker.port, central_url, **kwargs)
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.kill()


# Debian's Chromium (no browser download), as root and with this machine's closed network.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: ./scripts/setup installs Debian's chromium package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
