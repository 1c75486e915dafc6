from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.helpers.support import Broker, Central, Gateway

# Every test is exactly one kind (pyproject.toml's markers say what each means); `-m unit` is
# the in-process suite that runs in seconds, `-m system` the one on real processes.
TEST_KINDS = ("unit", "system")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects anything, so no test escapes the check
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = []
    for item in items:
        kinds = sorted({mark.name for mark in item.iter_markers() if mark.name in TEST_KINDS})
        if len(kinds) != 1:
            wrong.append(f"{item.nodeid}: {' and '.join(kinds) or 'neither'}")
    if wrong:
        raise pytest.UsageError(
            "each test must be marked either unit or system (pytestmark = pytest.mark.unit or "
            "pytest.mark.system at the top of its file, or a decorator on the test), "
            "not neither nor both:\n  " + "\n  ".join(wrong)
        )


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
